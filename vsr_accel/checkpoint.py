"""Reading and writing weights and training states safely.

Weights are always read with `torch.load(weights_only=True)`: a checkpoint is data, never code.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vsr_accel.errors import CheckpointError

PARAM_KEYS = ("params_ema", "params")


def read_weights(path: str | Path, param_key: str | None = "params") -> dict[str, torch.Tensor]:
    """Load a state_dict from a BasicSR-style file (`{'params': ..., 'params_ema': ...}`) or a
    bare state_dict. `param_key=None` picks `params_ema` when present, else `params`, else the
    bare dict. A missing, truncated or code-carrying file raises CheckpointError naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        blob: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle with code (refused by weights_only), ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: cannot be read as a weights-only checkpoint ({reason})") from exc
    if not isinstance(blob, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(blob).__name__}")
    if param_key is None:
        param_key = next((k for k in PARAM_KEYS if k in blob), None)
    if param_key is not None:
        if param_key not in blob:
            raise CheckpointError(f"{path}: no '{param_key}' entry (has: {', '.join(map(str, blob))})")
        blob = blob[param_key]
    if not all(isinstance(v, torch.Tensor) for v in blob.values()):
        raise CheckpointError(f"{path}: entry '{param_key}' is not a state_dict of tensors")
    # BasicSR strips DDP's 'module.' prefix on save; tolerate files saved without that step.
    return {k[7:] if k.startswith("module.") else k: v for k, v in blob.items()}


def load_weights_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """`load_state_dict(strict=True)` with a one-line error listing what does not match."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {keys[0]})")
        raise CheckpointError(f"{source}: weights do not fit {type(module).__name__}: " + "; ".join(parts))
    module.load_state_dict(state, strict=True)


# -- atomic writes and training states ---------------------------------------------------------

import os
import re
import tempfile
import warnings


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temp file in the same folder, flush + fsync, then rename over `path`.

    A crash (kill -9, full disk) during the write leaves the previous file untouched and at most
    a stray `.tmp` file, never a file that looks complete but is not."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


_STATE_NAME = re.compile(r"^(\d+)\.state$")


def list_training_states(folder: str | Path) -> list[Path]:
    """Training states `<iter>.state` in `folder`, newest iteration first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STATE_NAME.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def read_training_state(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: corrupt or unsafe training state ({reason})") from exc
    if not isinstance(state, dict) or "iter" not in state:
        raise CheckpointError(f"{path}: not a vsr-accel training state (no 'iter' entry)")
    return state


def latest_good_state(folder: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest state that loads; damaged newer ones are reported and skipped, never deleted."""
    for path in list_training_states(folder):
        try:
            return path, read_training_state(path)
        except CheckpointError as exc:
            warnings.warn(f"skipping damaged training state: {exc}")
    return None


def prune(folder: str | Path, pattern: str, keep_last: int) -> None:
    """Delete all but the newest `keep_last` files named like `pattern` (`{iter}` is the number)."""
    if keep_last <= 0:
        return
    regex = re.compile("^" + re.escape(pattern).replace(re.escape("{iter}"), r"(\d+)") + "$")
    folder = Path(folder)
    found = sorted(((int(m.group(1)), p) for p in folder.iterdir() if (m := regex.match(p.name))), reverse=True)
    for _, path in found[keep_last:]:
        path.unlink(missing_ok=True)
