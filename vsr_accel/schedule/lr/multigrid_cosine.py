"""The paper's dynamic learning rate: cosine annealing that restarts at every stage boundary.

Eq. 1 as printed is garbled: its two cases overlap (the second should read s(t) = p, not p-1),
and its cos has neither pi nor the 0.5 (1 + cos) form, so taken literally the LR would not start
at eta nor anneal to zero in the last stage. We implement what the text around it says it means
(Sec. 3.1: "never decay to zero for P_1..P_{p-1}"; Sec. 4.1: each period "begins at a large
value ... then decays following the cosine annealing"), with tau = t - (start of stage s):

    non-final stage s:  lr = eta_s * 0.5 * (1 + cos(pi * tau / I_total))
    final stage p:      lr = eta_min + (eta_s - eta_min) * 0.5 * (1 + cos(pi * tau / P_p))

Dividing by the whole run's length I_total in the non-final stages keeps their decay gentle
(a stage of 1/6 of the run ends at 93% of its peak), so no iterations are wasted at tiny LRs;
only the final stage anneals fully. eta_s is the stage's peak: the base LR, or the stage's
override (EDVR-M starts its 32x32 stage lower). t is 0-based: iteration 0 of a stage gets the
full peak, exactly like BasicSR's CosineAnnealingRestartLR (whose scheduler sits at
last_epoch = t during 1-based iteration t + 1). With a single stage this *is* BasicSR's
CosineAnnealingRestartLR with one period and restart weight 1.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Callable, Sequence

from vsr_accel.schedule.curriculum import Schedule, Stage
from vsr_accel.schedule.lr.warmup import Warmup


def stage_cosine_lr(tau: int, *, peak_lr: float, stage_iters: int, total_iter: int, final: bool,
                    eta_min: float = 0.0) -> float:
    """LR at iteration `tau` (0-based) inside one stage of Eq. 1."""
    if not 0 <= tau < stage_iters:
        raise ValueError(f"iteration {tau} is outside the stage's {stage_iters} iterations")
    if final:
        return eta_min + (peak_lr - eta_min) * 0.5 * (1.0 + math.cos(math.pi * tau / stage_iters))
    return peak_lr * 0.5 * (1.0 + math.cos(math.pi * tau / total_iter))


def multigrid_cosine_lr(t: int, *, periods: Sequence[int], peak_lrs: Sequence[float], eta_min: float = 0.0) -> float:
    """LR at global iteration t for stages of `periods` iterations with peaks `peak_lrs`."""
    if len(periods) != len(peak_lrs) or not periods:
        raise ValueError("periods and peak_lrs must be non-empty and of equal length")
    starts = [0]
    for period in periods[:-1]:
        starts.append(starts[-1] + period)
    total_iter = starts[-1] + periods[-1]
    if not 0 <= t < total_iter:
        raise ValueError(f"iteration {t} is outside the run [0, {total_iter})")
    stage = bisect.bisect_right(starts, t) - 1
    return stage_cosine_lr(t - starts[stage], peak_lr=peak_lrs[stage], stage_iters=periods[stage],
                           total_iter=total_iter, final=stage == len(periods) - 1, eta_min=eta_min)


@dataclass(frozen=True)
class MultigridCosineLR:
    """`train.scheduler.type: MultigridCosineLR`: Eq. 1 over the curriculum's stages, warmed up by
    multiplying the scheduled LR. It restarts where the curriculum changes shape, so it takes no
    periods of its own."""

    @staticmethod
    def check_options(periods: Sequence[int] | None, restart_weights: Sequence[float] | None, total_iter: int,
                      fail: Callable[[str, str], None], keys: dict[str, str]) -> None:
        for key, value in (("periods", periods), ("restart_weights", restart_weights)):
            if value is not None:
                fail(key, "is not used by MultigridCosineLR (it restarts at every curriculum stage); remove it, "
                          "or set the scheduler type to CosineAnnealingRestartLR")

    @classmethod
    def from_options(cls, periods: Sequence[int] | None, restart_weights: Sequence[float] | None,
                     total_iter: int) -> "MultigridCosineLR":
        return cls()

    def restart_iters(self, schedule: Schedule) -> list[int]:
        return schedule.boundaries

    def annealed_peak(self, peaks: Sequence[float]) -> tuple[float, str]:
        """The peak `eta_min` must stay below (with how messages name it): only the final stage anneals."""
        return peaks[-1], "final stage's"

    def lr_at(self, t: int, stage: Stage, schedule: Schedule, peak: float, eta_min: float, warmup: Warmup) -> float:
        final = stage.index == len(schedule.stages) - 1
        lr = stage_cosine_lr(t - stage.start_iter, peak_lr=peak, stage_iters=stage.iters,
                             total_iter=schedule.total_iter, final=final, eta_min=eta_min)
        return lr * warmup.multiplier(t)
