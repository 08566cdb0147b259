"""Warmup at the start of training (Goyal et al. 2017; paper Sec. 3.2 and Table 5).

The factor multiplies the scheduled LR during the first `warmup_iter` iterations (0-based t):

- ``linear``: (t + 1) / warmup_iter, reaching 1 at t = warmup_iter - 1. This is BasicSR's ramp
  (`lr = initial_lr * current_iter / warmup_iter` for 1-based current_iter), except that BasicSR
  ramps the *initial* LR while we ramp the *scheduled* one; the two differ by the cosine's decay
  over the warmup (about 1% for the paper's 5k warmup in a 75k run).
- ``constant``: a fixed `warmup_factor` (e.g. 0.1) until warmup_iter, then 1 (Goyal et al.'s
  "constant warmup", Table 5's "constant" row).
- ``none``: always 1.

`warmup_iter <= 0` (BasicSR's -1) means no warmup, whatever the mode (`warmup_iters`). Warmup
happens once, at the start of the run; the multigrid restarts are not warmed up again.
"""
from __future__ import annotations

from dataclasses import dataclass

WARMUP_MODES = ("linear", "constant", "none")


def warmup_iters(warmup_iter: int, mode: str) -> int:
    """How many iterations are warmed up: none for mode 'none' or BasicSR's `warmup_iter: -1` (or 0)."""
    return max(warmup_iter, 0) if mode != "none" else 0


def warmup_factor(t: int, *, warmup_iter: int, mode: str = "linear", factor: float = 0.1) -> float:
    """Multiplier in (0, 1] for the LR of iteration t."""
    if mode not in WARMUP_MODES:
        raise ValueError(f"unknown warmup mode {mode!r}")
    if mode == "none" or t >= warmup_iter:
        return 1.0
    if mode == "linear":
        return (t + 1) / warmup_iter
    return factor


@dataclass(frozen=True)
class Warmup:
    """A run's warmup: `mode`, over its first `iters` iterations (already 0 for none)."""
    mode: str
    iters: int
    factor: float = 0.1

    def multiplier(self, t: int) -> float:
        return warmup_factor(t, warmup_iter=self.iters, mode=self.mode, factor=self.factor)
