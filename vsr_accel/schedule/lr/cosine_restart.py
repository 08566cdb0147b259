"""BasicSR's `CosineAnnealingRestartLR`, as a pure function of the iteration.

BasicSR (basicsr/models/lr_scheduler.py) builds cycles of `periods` iterations; in cycle i the LR
is ``eta_min + w_i * 0.5 * (base_lr - eta_min) * (1 + cos(pi * (t - start_i) / period_i))`` with
t = the scheduler's `last_epoch`, which during 1-based iteration c is c - 1, i.e. our 0-based t.
The cycle of t is the first i with ``t <= cumulative_period[i]`` (`get_position_from_periods`),
so the last iteration of a cycle reaches eta_min exactly and the restart comes one iteration
after the cumulative period, not at it. We reproduce that, quirk included, so a recipe copied
from BasicSR gets BasicSR's LRs.
"""
from __future__ import annotations

import math
from typing import Sequence


def cosine_restart_factor(t: int, *, periods: Sequence[int], restart_weights: Sequence[float]) -> tuple[float, float]:
    """(weight, cosine term in [0, 1]) of iteration t; the LR is eta_min + weight * term * (base - eta_min)."""
    if len(periods) != len(restart_weights) or not periods:
        raise ValueError("periods and restart_weights must be non-empty and of equal length")
    start = 0
    for index, period in enumerate(periods):
        end = start + period
        if t <= end:
            return float(restart_weights[index]), 0.5 * (1.0 + math.cos(math.pi * (t - start) / period))
        start = end
    raise ValueError(f"iteration {t} is beyond the periods' total {start}")


def cosine_restart_lr(t: int, *, base_lr: float, periods: Sequence[int], restart_weights: Sequence[float],
                      eta_min: float = 0.0) -> float:
    weight, term = cosine_restart_factor(t, periods=periods, restart_weights=restart_weights)
    return eta_min + weight * term * (base_lr - eta_min)


def restart_iterations(periods: Sequence[int]) -> list[int]:
    """Iterations (0-based) at which BasicSR's schedule jumps back up: one after each cycle's end."""
    ends, total = [], 0
    for period in periods[:-1]:
        total += period
        ends.append(total + 1)
    return ends
