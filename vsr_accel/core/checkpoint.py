"""Reading and writing weights and training states safely.

Weights are always read with `torch.load(weights_only=True)`: a checkpoint is data, never code.
Files are written atomically (temp file, flush, fsync, rename, fsync of the folder), so a crash
or a full disk during a save never leaves a file that looks complete; a training state is also
checked against the CRC-32 of every record of its zip container when read, so a truncated or
bit-flipped state is reported and skipped instead of being half-loaded.
"""
from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch

from vsr_accel.core import test_hooks
from vsr_accel.core.errors import CheckpointError
from vsr_accel.core.fsio import atomic_writer

PARAM_KEYS = ("params_ema", "params", "state_dict")
"""Where a weights file keeps its state_dict, in order of preference: BasicSR's EMA and plain
weights, then MMagic's `state_dict` (whose `generator.` keys `models.to_basicsr_keys` converts)."""


def read_weights(path: str | Path, param_key: str | None = "params") -> dict[str, torch.Tensor]:
    """Load a state_dict from a BasicSR-style file (`{'params': ..., 'params_ema': ...}`) or a
    bare state_dict. `param_key=None` picks `params_ema` when present, else `params`, else the
    bare dict. A missing, truncated or code-carrying file raises CheckpointError naming it."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a weights file (give the .pth file itself)")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        blob: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle with code (refused by weights_only), ...
        raise CheckpointError(f"{path}: cannot be read as a weights-only checkpoint ({load_failure(path, exc)})") from exc
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
    return strip_ddp_prefix(blob)


def strip_ddp_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BasicSR strips DDP's `module.` prefix on save; tolerate files saved without that step."""
    return {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}


def read_network_weights(path: str | Path, param_key: str | None = None) -> dict[str, torch.Tensor]:
    """Network weights from any file a user may point a loader at: a BasicSR file (`params_ema`
    preferred over `params` unless `param_key` says otherwise), MMagic's `state_dict` (its keys
    are converted by `models.to_basicsr_keys`), a bare state_dict, or a vsr-accel training state
    (`<iter>.state`, whose `network` entry holds the same `params`/`params_ema` pair). All are
    read weights-only; a file that is none of them reports why it is not a weights file."""
    path = Path(path)
    try:
        return read_weights(path, param_key=param_key)
    except CheckpointError as not_weights:
        try:
            state = read_training_state(path)
        except CheckpointError:
            raise not_weights from None
    network = state.get("network")
    if not isinstance(network, dict):
        raise CheckpointError(f"{path}: training state has no 'network' weights")
    key = param_key or next((k for k in PARAM_KEYS if isinstance(network.get(k), dict)), None)
    weights = network.get(key) if key else None
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(f"{path}: training state has no '{key or 'params'}' weights under 'network'")
    return strip_ddp_prefix(weights)


def load_failure(path: Path, exc: Exception) -> str:
    """Why torch.load(weights_only=True) failed, in a few words. torch's own first line for a
    pickle with code suggests retrying with weights_only=False -- advice we must not pass on."""
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) or "Weights only load failed" in text:
        detail = next((line.strip() for line in text.splitlines() if "GLOBAL" in line or "Unsupported" in line), "")
        return "it holds pickled code or objects, which a weights-only load refuses" + (f": {detail}" if detail else "")
    damaged = _damaged_record(path)
    if damaged:
        return damaged
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


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

def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save through `vsr_accel.core.fsio.atomic_writer` (temp file, fsync, rename, folder fsync,
    the umask's mode).

    A crash (kill -9, full disk) during the write leaves the previous file untouched and at most
    a stray `.tmp` file (see `remove_stale_temps`), never a file that looks complete but is not.
    A failed write raises CheckpointError naming `path` and the OS's reason."""
    path = Path(path)
    try:
        with atomic_writer(path, before_rename=lambda: test_hooks.kill_point(f"save:{path.name}")) as handle:
            torch.save(obj, handle)
    except BaseException as exc:
        os_error = _os_error_behind(exc)
        if os_error is not None:
            raise CheckpointError(f"{path}: checkpoint not written ({os_error.strerror or os_error}); no existing "
                                  f"file was replaced") from exc
        raise


def _os_error_behind(exc: BaseException) -> OSError | None:
    """The OSError (ENOSPC, EDQUOT, EIO ...) behind a failed save. torch.save reports a failed
    write as an opaque `RuntimeError('unexpected pos ...')` raised while the OSError propagates,
    so the OSError is that error's context."""
    seen = 0
    while exc is not None and seen < 5 and isinstance(exc, (OSError, RuntimeError)):
        if isinstance(exc, OSError):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


REQUIRED_STATE_KEYS = ("iter", "network", "optimizer", "sampler")
STATE_NAME = "{iter}.state"
"""A run's files, `{iter}` standing for the iteration: training states and BasicSR's weights."""
WEIGHTS_NAME = "net_g_{iter}.pth"


def numbered_files(folder: str | Path, pattern: str) -> list[Path]:
    """Files in `folder` named like `pattern` (e.g. `STATE_NAME`), newest iteration first; temp
    files of killed writes never match. A missing folder holds none."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    regex = re.compile("^" + re.escape(pattern).replace(re.escape("{iter}"), r"(\d+)") + "$")
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := regex.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def iteration_of(path: Path, pattern: str) -> int:
    """The `{iter}` number of a file named like `pattern` (as `numbered_files` lists them)."""
    prefix, suffix = pattern.split("{iter}")
    return int(path.name[len(prefix): len(path.name) - len(suffix)])


def list_training_states(folder: str | Path) -> list[Path]:
    """Training states `<iter>.state` in `folder`, newest iteration first (temp files ignored)."""
    return numbered_files(folder, STATE_NAME)


def read_training_state(path: str | Path) -> dict[str, Any]:
    """A training state, checked before use: container CRCs (truncation, bit flips), weights-only
    unpickling (no code), and the entries a resume needs (BasicSR's `KeyError: 'iter'`)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a training state file (give the .state file itself)")
    if not path.is_file():
        raise CheckpointError(f"{path}: training state not found")
    damaged = _damaged_record(path)
    if damaged:
        raise CheckpointError(f"{path}: corrupt training state ({damaged})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: corrupt or unsafe training state ({load_failure(path, exc)})") from exc
    if not isinstance(state, dict) or "iter" not in state:
        raise CheckpointError(f"{path}: not a vsr-accel training state (no 'iter' entry)")
    missing = [key for key in REQUIRED_STATE_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path}: incomplete training state (no {', '.join(repr(k) for k in missing)} entry)")
    return state


def _damaged_record(path: Path) -> str | None:
    """Why the zip container torch.save writes is damaged, or None. torch.load alone would read a
    state with a flipped bit in a tensor without complaint; zipfile checks every record's CRC."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        return f"truncated or not a torch.save file: {exc}"
    return f"CRC mismatch in record {bad}" if bad else None


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def latest_good_state(folder: str | Path, on_skip: Callable[[str], None] = _warn) -> tuple[Path, dict[str, Any]] | None:
    """The newest state that loads; damaged newer ones are reported (`on_skip`) and skipped,
    never deleted (a user may want to inspect them)."""
    for path in list_training_states(folder):
        try:
            return path, read_training_state(path)
        except CheckpointError as exc:
            on_skip(f"skipping damaged training state: {exc}")
    return None


def prune(folder: str | Path, pattern: str, keep_last: int, regular: Callable[[int], bool] = lambda it: True) -> None:
    """Keep the newest `keep_last` files named like `pattern` (`{iter}` is the number) whose
    iteration is `regular`; delete the older ones, and every file of another iteration (a stop's
    save, superseded by the newer one). `keep_last` <= 0 keeps everything."""
    if keep_last <= 0:
        return
    files = numbered_files(folder, pattern)
    kept = [p for p in files if regular(iteration_of(p, pattern))][:keep_last]
    for path in files:
        if path not in kept:
            path.unlink(missing_ok=True)
