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
