"""Process-group helpers that cost nothing on a single device.

`python train.py` (one process) must never touch `torch.distributed`: no process group, no
gloo/nccl start-up, no barriers. Only when torchrun has set `WORLD_SIZE > 1` do we initialise a
group (nccl on CUDA, gloo on CPU). Everything else asks the returned `DistContext`.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def pick_device(local_rank: int = 0, requested: str | None = None) -> torch.device:
    """CUDA (one GPU per local rank) when present, else CPU; `requested` ('cpu', 'cuda', 'cuda:1') wins."""
    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def pick_backend(requested: str | None, device: torch.device) -> tuple[str, str | None]:
    """(backend, note): the requested one (BasicSR's `dist_params.backend`) where it can run, else
    nccl on CUDA and gloo on CPU; the note says when a request was replaced (nccl needs CUDA)."""
    default = "nccl" if device.type == "cuda" else "gloo"
    if requested is None or requested == default:
        return default, None
    if requested == "nccl" and device.type != "cuda":
        return "gloo", f"dist_params.backend nccl needs CUDA; using gloo on {device.type}"
    return requested, None


def init_distributed(requested_device: str | None = None, timeout_s: int = 1800,
                     backend: str | None = None) -> DistContext:
    """Read torchrun's environment; start a process group only when there is more than one rank."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    device = pick_device(local_rank, requested_device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not torch.distributed.is_initialized():
        backend, note = pick_backend(backend, device)
        if note and rank == 0:
            print(f"note: {note}", flush=True)
        timeout = datetime.timedelta(seconds=timeout_s)
        device_id = {"device_id": device} if device.type == "cuda" else {}
        store = _restart_store(world_size, timeout)
        if store is None:
            torch.distributed.init_process_group(backend=backend, timeout=timeout, **device_id)
        else:
            torch.distributed.init_process_group(backend=backend, rank=rank, world_size=world_size, store=store,
                                                 timeout=timeout, **device_id)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def _restart_store(world_size: int, timeout: datetime.timedelta) -> torch.distributed.Store | None:
    """torchrun restarts a failed group on the same agent key-value store, where the bootstrap keys
    of the failed attempt (gloo peer addresses, NCCL ids) are still stored: a restarted rank may
    read a dead peer's address and fail with 'Connection refused'. From the second attempt on, the
    group starts on a store namespaced by the attempt number. None: the first attempt, or no
    torchrun agent store, where torch's own rendezvous is right."""
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or "0"
    if attempt == "0" or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    agent_store = torch.distributed.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size,
                                             is_master=False, timeout=timeout)
    return torch.distributed.PrefixStore(f"vsr_attempt_{attempt}", agent_store)


def barrier(ctx: DistContext) -> None:
    if ctx.is_distributed:
        torch.distributed.barrier()


def all_reduce_mean_(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """In-place mean over ranks (no-op on one device)."""
    if ctx.is_distributed:
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        tensor.div_(ctx.world_size)
    return tensor


def all_reduce_max_(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """In-place maximum over ranks (no-op on one device)."""
    if ctx.is_distributed:
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
    return tensor


def broadcast_object(obj, ctx: DistContext, src: int = 0):
    """Rank `src`'s value on every rank (identity on one device)."""
    if not ctx.is_distributed:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=src)
    return box[0]


def shutdown(ctx: DistContext) -> None:
    if ctx.is_distributed and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def wrap_ddp(model: torch.nn.Module, ctx: DistContext, find_unused: bool) -> torch.nn.Module:
    """DistributedDataParallel around `model` (the model itself on one device). DDP registers only
    parameters that require grad when it is built, so a model whose flow part is unfrozen must be
    wrapped again."""
    if not ctx.is_distributed:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)
