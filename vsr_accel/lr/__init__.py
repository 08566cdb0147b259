"""Learning-rate schedules as pure functions of the iteration (timm `scheduler/` style: one small
file per schedule, no optimizer state; `LRSchedule` composes them for a curriculum).

The trainer sets, before optimizer step t (0-based),
``group["lr"] = group_base_lr * lr_schedule.lr_scale_at(t)`` for every param group (so BasicVSR's
flow-network multiplier keeps its ratio). Because nothing is stateful, resuming at iteration t
gives exactly the LRs of an uninterrupted run, and the peaks (restarts) fall on exactly the
iterations where the curriculum changes shape.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from vsr_accel.curriculum import Schedule, Stage
from vsr_accel.errors import ConfigError
from vsr_accel.lr.multigrid_cosine import multigrid_cosine_lr, stage_cosine_lr
from vsr_accel.lr.scaling import global_batch, scaled_lr
from vsr_accel.lr.warmup import WARMUP_MODES, warmup_factor

__all__ = ["LRSchedule", "multigrid_cosine_lr", "stage_cosine_lr", "scaled_lr", "global_batch", "warmup_factor",
           "WARMUP_MODES", "DEFAULT_OPTION_KEYS"]

# Where each argument comes from in the option file, for one-line errors (override per recipe).
DEFAULT_OPTION_KEYS = {
    "base_lr": "train.optim_g.lr",
    "base_batch": "train.base_batch",
    "eta_min": "train.scheduler.eta_min",
    "warmup_iter": "train.warmup_iter",
    "warmup": "train.warmup",
    "warmup_factor": "train.warmup_factor",
}


@dataclass(frozen=True)
class LRSchedule:
    """Multigrid cosine restarts x linear scaling x warmup, for one curriculum.

    `base_lr` is tuned for a global batch of `base_batch`; each stage's peak is its LR (the
    stage's override, else `base_lr`, both in base-batch units) scaled by that stage's global
    batch / `base_batch`, so per-stage batches get per-stage LRs. `base_batch=None` turns scaling
    off (the LRs are used as given). `eta_min` is absolute and only reached by the final stage.
    `warmup_iter <= 0` (BasicSR's -1) means no warmup.
    """

    schedule: Schedule
    base_lr: float
    base_batch: int | None
    world_size: int = 1
    grad_accum: int = 1
    eta_min: float = 0.0
    warmup_iter: int = 0
    warmup: str = "linear"
    warmup_factor: float = 0.1
    option_keys: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_OPTION_KEYS), compare=False, hash=False)

    def __post_init__(self) -> None:
        keys = {**DEFAULT_OPTION_KEYS, **self.option_keys}
        if isinstance(self.base_lr, bool) or not isinstance(self.base_lr, (int, float)) or not self.base_lr > 0:
            raise ConfigError(f"{keys['base_lr']}: the learning rate must be a positive number, got {self.base_lr!r}")
        if self.base_batch is not None and (isinstance(self.base_batch, bool) or not isinstance(self.base_batch, int)
                                            or self.base_batch <= 0):
            raise ConfigError(f"{keys['base_batch']}: must be a positive integer (the global batch the LR was "
                              f"tuned for) or null, got {self.base_batch!r}")
        if self.world_size <= 0 or self.grad_accum <= 0:
            raise ValueError(f"world_size and grad_accum must be positive, got {self.world_size}, {self.grad_accum}")
        if isinstance(self.eta_min, bool) or not isinstance(self.eta_min, (int, float)) or self.eta_min < 0:
            raise ConfigError(f"{keys['eta_min']}: must be a number >= 0, got {self.eta_min!r}")
        final_peak = self.peak_lr(self.schedule.stages[-1])
        if self.eta_min >= final_peak:
            raise ConfigError(f"{keys['eta_min']}: {self.eta_min:g} is not below the final stage's peak LR "
                              f"{final_peak:g}, so the LR could not anneal down to it")
        if self.warmup not in WARMUP_MODES:
            raise ConfigError(f"{keys['warmup']}: unknown warmup '{self.warmup}' "
                              f"(choose from {', '.join(WARMUP_MODES)})")
        if isinstance(self.warmup_iter, bool) or not isinstance(self.warmup_iter, int):
            raise ConfigError(f"{keys['warmup_iter']}: must be an integer (-1 or 0 for none), got {self.warmup_iter!r}")
        if self.warmup_iter > self.schedule.total_iter:
            raise ConfigError(f"{keys['warmup_iter']}: {self.warmup_iter} is longer than the whole run "
                              f"({self.schedule.total_iter} iterations)")
        if self.warmup == "constant" and not 0 < self.warmup_factor <= 1:
            raise ConfigError(f"{keys['warmup_factor']}: must be in (0, 1], got {self.warmup_factor!r}")

    @property
    def restart_iters(self) -> list[int]:
        """Iterations where the LR jumps back to a peak: exactly the curriculum's shape changes."""
        return self.schedule.boundaries

    def global_batch(self, stage: Stage) -> int:
        return global_batch(stage.batch_per_device, self.world_size, self.grad_accum)

    def peak_lr(self, stage: Stage) -> float:
        """The LR a stage restarts at (before warmup): its override or the base, linearly scaled."""
        lr = self.base_lr if stage.lr is None else stage.lr
        if self.base_batch is None:
            return float(lr)
        return scaled_lr(lr, self.global_batch(stage), self.base_batch)

    def lr_at(self, t: int) -> float:
        """LR of iteration t (0-based)."""
        stage = self.schedule.stage_at(t)
        final = stage.index == len(self.schedule.stages) - 1
        lr = stage_cosine_lr(t - stage.start_iter, peak_lr=self.peak_lr(stage), stage_iters=stage.iters,
                             total_iter=self.schedule.total_iter, final=final, eta_min=self.eta_min)
        return lr * warmup_factor(t, warmup_iter=max(self.warmup_iter, 0), mode=self.warmup,
                                  factor=self.warmup_factor)

    def lr_scale_at(self, t: int) -> float:
        """lr_at(t) / base_lr: the factor to apply to every param group's own initial LR."""
        return self.lr_at(t) / self.base_lr
