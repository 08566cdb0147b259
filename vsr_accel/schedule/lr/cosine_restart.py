"""BasicSR's `CosineAnnealingRestartLR`, as a pure function of the iteration.

BasicSR (basicsr/models/lr_scheduler.py) builds cycles of `periods` iterations; in cycle i the LR
is ``eta_min + w_i * 0.5 * (base_lr - eta_min) * (1 + cos(pi * (t - start_i) / period_i))`` with
t = the scheduler's `last_epoch`, which during 1-based iteration c is c - 1, i.e. our 0-based t.
The cycle of t is the first i with ``t <= cumulative_period[i]`` (`get_position_from_periods`),
so the last iteration of a cycle reaches eta_min exactly and the restart comes one iteration
after the cumulative period, not at it. We reproduce that, quirk included, so a recipe copied
from BasicSR gets BasicSR's LRs. Blind to the curriculum: with a multigrid curriculum this is the
paper's Sec. 3.1 control ("the original scheduler ... causes an accuracy drop"). Its warmup is
BasicSR's: the initial LR ramped as ``lr * c / warmup_iter`` while the 1-based iteration
c < warmup_iter.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from vsr_accel.core.checks import is_int, is_number
from vsr_accel.schedule.curriculum import Schedule, Stage
from vsr_accel.schedule.lr.warmup import Warmup


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


def restart_iterations(periods: Sequence[int]) -> list[int]:
    """Iterations (0-based) at which BasicSR's schedule jumps back up: one after each cycle's end."""
    ends, total = [], 0
    for period in periods[:-1]:
        total += period
        ends.append(total + 1)
    return ends


@dataclass(frozen=True)
class CosineAnnealingRestartLR:
    """`train.scheduler.type: CosineAnnealingRestartLR`: BasicSR's cosines over `periods` (default:
    one over the run) with `restart_weights` (default [1])."""
    periods: tuple[int, ...]
    restart_weights: tuple[float, ...]

    @staticmethod
    def check_options(periods: Sequence[int] | None, restart_weights: Sequence[float] | None, total_iter: int,
                      fail: Callable[[str, str], None], keys: dict[str, str]) -> None:
        periods = tuple(periods) if periods is not None else (total_iter,)
        weights = tuple(restart_weights) if restart_weights is not None else (1.0,)
        if not periods or any(not is_int(p) or p <= 0 for p in periods):
            fail("periods", f"must be a list of positive integers, got {list(periods)}")
        if len(weights) != len(periods):
            fail("periods", f"has {len(periods)} entries but '{keys['restart_weights']}' has {len(weights)} "
                            f"(BasicSR's CosineAnnealingRestartLR needs one restart weight per period; its default is [1])")
        if any(not is_number(w) or w < 0 for w in weights):
            fail("restart_weights", f"must be numbers >= 0, got {list(weights)}")
        if sum(periods) < total_iter:
            fail("periods", f"{list(periods)} sum to {sum(periods)}, fewer than '{keys['total_iter']}' ({total_iter}): "
                            f"BasicSR's scheduler has no LR after its last period")

    @classmethod
    def from_options(cls, periods: Sequence[int] | None, restart_weights: Sequence[float] | None,
                     total_iter: int) -> "CosineAnnealingRestartLR":
        return cls(tuple(periods or (total_iter,)), tuple(restart_weights or (1.0,)))

    def restart_iters(self, schedule: Schedule) -> list[int]:
        return restart_iterations(self.periods)

    def annealed_peak(self, peaks: Sequence[float]) -> tuple[float, str]:
        """The peak `eta_min` must stay below (with how messages name it): every period anneals."""
        return min(peaks), "lowest stage"

    def lr_at(self, t: int, stage: Stage, schedule: Schedule, peak: float, eta_min: float, warmup: Warmup) -> float:
        if warmup.mode == "linear" and t + 1 < warmup.iters:  # BasicSR ramps the initial LR
            return peak * (t + 1) / warmup.iters
        weight, term = cosine_restart_factor(t, periods=self.periods, restart_weights=self.restart_weights)
        lr = eta_min + weight * term * (peak - eta_min)
        return lr * (warmup.multiplier(t) if warmup.mode == "constant" else 1.0)
