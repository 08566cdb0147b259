"""The learning rate of every iteration of a curriculum: a schedule x linear scaling x warmup.

`LRSchedule.lr_at(t)` is a pure function of the 0-based iteration, so resuming at t gives
exactly the LRs of an uninterrupted run. The schedule itself is one small class per
`train.scheduler.type` (timm's `scheduler/` layout), each with the same few methods
(`check_options`, `from_options`, `restart_iters`, `annealed_peak`, `lr_at`), looked up once in
`SCHEDULERS` instead of branching on the name:

- `MultigridCosineLR` (the paper's Eq. 1, `multigrid_cosine.py`): a cosine that restarts at every
  curriculum stage, so the peaks fall exactly where the shape changes.
- `CosineAnnealingRestartLR` (BasicSR's, `cosine_restart.py`): cosines over `periods` with
  `restart_weights`, blind to the curriculum, with BasicSR's warmup.

Both scale each stage's peak by that stage's global batch / `base_batch` (the linear scaling
rule). A param group with a multiplier (BasicSR's `flow_lr_mul` for SpyNet) gets
``lr_at(t, lr_mul)``: the multiplier scales the peak, and `eta_min` stays absolute, as in
BasicSR, where every group anneals from its own initial LR to the same `eta_min`.
Every rule about these options lives in `check_lr_options`, which `vsr_accel.train.options`
applies when a file is loaded and `LRSchedule` applies to its own arguments.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from vsr_accel.core.checks import is_int, is_number
from vsr_accel.core.errors import ConfigError
from vsr_accel.schedule.curriculum import Schedule, Stage, global_batch
from vsr_accel.schedule.lr.cosine_restart import CosineAnnealingRestartLR
from vsr_accel.schedule.lr.multigrid_cosine import MultigridCosineLR
from vsr_accel.schedule.lr.scaling import scaled_lr
from vsr_accel.schedule.lr.warmup import WARMUP_MODES, Warmup, warmup_iters

SCHEDULERS = {"MultigridCosineLR": MultigridCosineLR, "CosineAnnealingRestartLR": CosineAnnealingRestartLR}
"""`train.scheduler.type` -> its class (the one place the name is read)."""

# Where each argument comes from in the option file, for one-line errors (override per recipe).
DEFAULT_OPTION_KEYS = {
    "base_lr": "train.optim_g.lr",
    "base_batch": "train.base_batch",
    "eta_min": "train.scheduler.eta_min",
    "warmup_iter": "train.warmup_iter",
    "warmup": "train.warmup",
    "warmup_factor": "train.warmup_factor",
    "total_iter": "train.total_iter",
    "scheduler": "train.scheduler.type",
    "periods": "train.scheduler.periods",
    "restart_weights": "train.scheduler.restart_weights",
}


def check_lr_options(*, base_lr: float, base_batch: int | None, eta_min: float, warmup: str, warmup_iter: int,
                     warmup_factor: float, total_iter: int, scheduler: str = "MultigridCosineLR",
                     periods: Sequence[int] | None = None, restart_weights: Sequence[float] | None = None,
                     keys: Mapping[str, str] = DEFAULT_OPTION_KEYS, where: str = "") -> None:
    """The LR rules. `where` prefixes each message (the options file); `keys` names the options."""
    k = {**DEFAULT_OPTION_KEYS, **keys}

    def fail(key: str, text: str) -> None:
        raise ConfigError(f"{where}'{k[key]}' {text}")

    if not is_number(base_lr) or not base_lr > 0:
        fail("base_lr", f"must be positive, got {base_lr!r}")
    if base_batch is not None and (not is_int(base_batch) or base_batch <= 0):
        fail("base_batch", f"must be a positive integer (the global batch the LR was tuned for) or null, got {base_batch!r}")
    if not is_number(eta_min) or eta_min < 0:
        fail("eta_min", f"must be a number >= 0, got {eta_min!r}")
    if warmup not in WARMUP_MODES:
        fail("warmup", f"= {warmup!r} is not one of {', '.join(WARMUP_MODES)}")
    if not is_int(warmup_iter):
        fail("warmup_iter", f"must be an integer (-1 or 0 for none), got {warmup_iter!r}")
    if warmup_iter >= total_iter:
        fail("warmup_iter", f"({warmup_iter}) must be smaller than '{k['total_iter']}' ({total_iter})")
    if warmup == "constant" and not (is_number(warmup_factor) and 0 < warmup_factor <= 1):
        fail("warmup_factor", f"must be in (0, 1], got {warmup_factor!r}")
    if scheduler not in SCHEDULERS:
        fail("scheduler", f"= {scheduler!r} is not one of {', '.join(SCHEDULERS)}")
    SCHEDULERS[scheduler].check_options(periods, restart_weights, total_iter, fail, k)


@dataclass(frozen=True)
class LRSchedule:
    """The LR of every iteration of `schedule`.

    `base_lr` is tuned for a global batch of `base_batch`; each stage's peak is its LR (the
    stage's override, else `base_lr`, both in base-batch units) scaled by that stage's global
    batch / `base_batch`, so per-stage batches get per-stage LRs. `base_batch=None` turns scaling
    off (the LRs are used as given). `eta_min` is absolute and only reached by the final stage
    (MultigridCosineLR) or at the end of each period (CosineAnnealingRestartLR).
    `warmup_iter <= 0` (BasicSR's -1) means no warmup (`warmup.warmup_iters`).
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
    scheduler: str = "MultigridCosineLR"
    periods: tuple[int, ...] | None = None
    restart_weights: tuple[float, ...] | None = None
    option_keys: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_OPTION_KEYS), compare=False, hash=False)
    annealing: Any = field(init=False, repr=False, compare=False, hash=False)  # SCHEDULERS[scheduler], built once
    warmup_plan: Warmup = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.world_size <= 0 or self.grad_accum <= 0:
            raise ValueError(f"world_size and grad_accum must be positive, got {self.world_size}, {self.grad_accum}")
        check_lr_options(base_lr=self.base_lr, base_batch=self.base_batch, eta_min=self.eta_min, warmup=self.warmup,
                         warmup_iter=self.warmup_iter, warmup_factor=self.warmup_factor,
                         total_iter=self.schedule.total_iter, scheduler=self.scheduler, periods=self.periods,
                         restart_weights=self.restart_weights, keys=self.option_keys)
        object.__setattr__(self, "annealing", SCHEDULERS[self.scheduler].from_options(
            self.periods, self.restart_weights, self.schedule.total_iter))
        object.__setattr__(self, "warmup_plan", Warmup(self.warmup, self.warmup_iters, self.warmup_factor))
        lowest_peak, which = self.annealing.annealed_peak([self.peak_lr(s) for s in self.schedule.stages])
        if self.eta_min >= lowest_peak:
            key = {**DEFAULT_OPTION_KEYS, **self.option_keys}["eta_min"]
            raise ConfigError(f"'{key}': {self.eta_min:g} is not below the {which} peak LR {lowest_peak:g}, so the "
                              f"LR could not anneal down to it")

    @property
    def restart_iters(self) -> list[int]:
        """Iterations where the LR jumps back to a peak: the curriculum's shape changes for
        MultigridCosineLR; one after each period's end for BasicSR's schedule."""
        return self.annealing.restart_iters(self.schedule)

    @property
    def warmup_iters(self) -> int:
        """Iterations that are warmed up (none for `warmup_iter <= 0` or mode 'none')."""
        return warmup_iters(self.warmup_iter, self.warmup)

    def global_batch(self, stage: Stage) -> int:
        return global_batch(stage.batch_per_device, self.world_size, self.grad_accum)

    def peak_lr(self, stage: Stage) -> float:
        """The LR a stage restarts at (before warmup): its override or the base, linearly scaled."""
        lr = self.base_lr if stage.lr is None else stage.lr
        if self.base_batch is None:
            return float(lr)
        return scaled_lr(lr, self.global_batch(stage), self.base_batch)

    def lr_at(self, t: int, lr_mul: float = 1.0) -> float:
        """LR of iteration t (0-based) for a param group whose peak is `lr_mul` x the schedule's."""
        stage = self.schedule.stage_at(t)
        return self.annealing.lr_at(t, stage, self.schedule, self.peak_lr(stage) * lr_mul, self.eta_min,
                                    self.warmup_plan)
