"""Hide the host-to-device copy of training batches behind the previous step (CUDA).

Without it, `batch.to(device)` runs on the compute stream: the GPU sits idle while the next
clip crosses PCIe, and with pageable memory the host blocks too. `DevicePrefetcher` keeps one
batch in flight: while the model works on batch k, batch k+1 is copied from pinned host memory
on a side stream with `non_blocking=True`; before batch k+1 is handed out the compute stream
waits for that copy (a GPU-side wait, not a host sync), and each tensor is tied to the compute
stream with `record_stream` so the caching allocator does not recycle its memory while the
step still reads it.

On any other device there is nothing to overlap (the batch already lives in host memory), so
the prefetcher is a plain pass-through: same batches, same objects, same order.

Training datasets send uint8 frames (a quarter of the bytes of float32 through the workers'
shared memory, pinned memory and PCIe); the prefetcher turns the tensors under `unit_keys`
("lq", "gt") that arrive as uint8 into float32 in [0, 1] on the device, after the copy (on
CUDA, on the copy stream, so the conversion also overlaps the step). The values are exactly
numpy's `x.astype(float32) / 255` that the datasets used to compute (`vsr_accel.core.pixels`).
Batches with no uint8 tensor under those keys pass untouched.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch

from vsr_accel.core.pixels import uint8_to_unit_float

__all__ = ["DevicePrefetcher", "move_to_device", "UNIT_KEYS"]

UNIT_KEYS = ("lq", "gt")  # batch entries that are uint8 images on the wire, float32 in [0, 1] in the step


def to_unit_float(batch: Any, keys: tuple[str, ...] = UNIT_KEYS) -> Any:
    """`batch` with its uint8 tensors under `keys` made float32 in [0, 1]: a new dict when one
    is converted, else the same object."""
    if not isinstance(batch, dict) or not any(isinstance(batch.get(k), torch.Tensor) and batch[k].dtype == torch.uint8
                                              for k in keys):
        return batch
    return {key: uint8_to_unit_float(value) if key in keys and isinstance(value, torch.Tensor)
            and value.dtype == torch.uint8 else value for key, value in batch.items()}


def move_to_device(batch: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """`batch` with every tensor moved to `device` (dicts, lists and tuples are rebuilt, other
    values such as clip keys are kept as they are)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, dict):
        return {key: move_to_device(value, device, non_blocking) for key, value in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(move_to_device(value, device, non_blocking) for value in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(value, device, non_blocking) for value in batch)
    return batch


def _pinned(batch: Any) -> Any:
    """Page-locked copies of CPU tensors that are not pinned yet (DataLoader(pin_memory=True)
    already pins them; then this is free). Only pinned memory makes `non_blocking` asynchronous."""
    if isinstance(batch, torch.Tensor):
        return batch if batch.device.type != "cpu" or batch.is_pinned() else batch.pin_memory()
    if isinstance(batch, dict):
        return {key: _pinned(value) for key, value in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_pinned(value) for value in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_pinned(value) for value in batch)
    return batch


def _tensors(batch: Any) -> Iterator[torch.Tensor]:
    if isinstance(batch, torch.Tensor):
        yield batch
    elif isinstance(batch, dict):
        for value in batch.values():
            yield from _tensors(value)
    elif isinstance(batch, (list, tuple)):
        for value in batch:
            yield from _tensors(value)


class DevicePrefetcher:
    """Iterate `loader`'s batches already on `device`, one batch ahead on CUDA, with uint8
    images under `unit_keys` made float32 in [0, 1].

    Each `iter()` starts a fresh pass over `loader`. On CUDA the yielded batch's tensors live on
    `device` and are safe to use on the current stream; elsewhere batches are yielded in host
    memory (move them yourself if `device` is not the CPU; `.to()` of a tensor already there is
    free), converted where they hold uint8 images and otherwise untouched.
    """

    def __init__(self, loader: Iterable[Any], device: torch.device | str,
                 unit_keys: tuple[str, ...] = UNIT_KEYS) -> None:
        self.loader = loader
        self.device = torch.device(device)
        self.unit_keys = tuple(unit_keys)

    @property
    def overlaps_copies(self) -> bool:
        """True when batches are copied on a side stream (CUDA); False for the pass-through."""
        return self.device.type == "cuda"

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        if not self.overlaps_copies:
            return (to_unit_float(batch, self.unit_keys) for batch in self.loader)
        return self._cuda_batches()

    def _cuda_batches(self) -> Iterator[Any]:
        device = self.device
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        copy_stream = torch.cuda.Stream(device=device)
        batches = iter(self.loader)

        def start_copy() -> tuple[bool, Any]:
            try:
                host_batch = next(batches)
            except StopIteration:
                return False, None
            with torch.cuda.stream(copy_stream):
                return True, to_unit_float(move_to_device(_pinned(host_batch), device, non_blocking=True),
                                           self.unit_keys)

        has_next, upcoming = start_copy()
        while has_next:
            compute_stream = torch.cuda.current_stream(device)
            compute_stream.wait_stream(copy_stream)
            ready = upcoming
            for tensor in _tensors(ready):
                if tensor.device.type == "cuda":
                    tensor.record_stream(compute_stream)
            has_next, upcoming = start_copy()  # overlaps with the caller's step on `ready`
            yield ready
