"""The learning rate of every iteration of a curriculum: a schedule x linear scaling x warmup.

`LRSchedule.lr_at(t)` is a pure function of the 0-based iteration, so resuming at t gives
exactly the LRs of an uninterrupted run. Two schedules (`train.scheduler.type`):

- `MultigridCosineLR` (the paper's Eq. 1, `multigrid_cosine.py`): a cosine that restarts at every
  curriculum stage, so the peaks fall exactly where the shape changes.
- `CosineAnnealingRestartLR` (BasicSR's, `cosine_restart.py`): cosines over `periods` with
  `restart_weights`, blind to the curriculum; with a multigrid curriculum this is the paper's
  Sec. 3.1 control ("the original scheduler ... causes an accuracy drop"). Its warmup is
  BasicSR's: the initial LR ramped as ``lr * c / warmup_iter`` while the 1-based iteration
  c < warmup_iter.

Both scale each stage's peak by that stage's global batch / `base_batch` (the linear scaling
rule). A param group with a multiplier (BasicSR's `flow_lr_mul` for SpyNet) gets
``lr_at(t, lr_mul)``: the multiplier scales the peak, and `eta_min` stays absolute, as in
BasicSR, where every group anneals from its own initial LR to the same `eta_min`.
Every rule about these options lives in `check_lr_options`, which `vsr_accel.train.options` applies
when a file is loaded and `LRSchedule` applies to its own arguments.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from vsr_accel.schedule.curriculum import Schedule, Stage
from vsr_accel.core.errors import ConfigError
from vsr_accel.schedule.lr.cosine_restart import cosine_restart_factor, restart_iterations
from vsr_accel.schedule.lr.multigrid_cosine import stage_cosine_lr
from vsr_accel.schedule.lr.scaling import global_batch, scaled_lr
from vsr_accel.schedule.lr.warmup import WARMUP_MODES, warmup_factor

SCHEDULERS = ("MultigridCosineLR", "CosineAnnealingRestartLR")

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


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_lr_options(*, base_lr: float, base_batch: int | None, eta_min: float, warmup: str, warmup_iter: int,
                     warmup_factor: float, total_iter: int, scheduler: str = "MultigridCosineLR",
                     periods: Sequence[int] | None = None, restart_weights: Sequence[float] | None = None,
                     keys: Mapping[str, str] = DEFAULT_OPTION_KEYS, where: str = "") -> None:
    """The LR rules. `where` prefixes each message (the options file); `keys` names the options."""
    k = {**DEFAULT_OPTION_KEYS, **keys}

    def fail(key: str, text: str) -> None:
        raise ConfigError(f"{where}'{k[key]}' {text}")

    if not _is_number(base_lr) or not base_lr > 0:
        fail("base_lr", f"must be positive, got {base_lr!r}")
    if base_batch is not None and (isinstance(base_batch, bool) or not isinstance(base_batch, int) or base_batch <= 0):
        fail("base_batch", f"must be a positive integer (the global batch the LR was tuned for) or null, got {base_batch!r}")
    if not _is_number(eta_min) or eta_min < 0:
        fail("eta_min", f"must be a number >= 0, got {eta_min!r}")
    if warmup not in WARMUP_MODES:
        fail("warmup", f"= {warmup!r} is not one of {', '.join(WARMUP_MODES)}")
    if isinstance(warmup_iter, bool) or not isinstance(warmup_iter, int):
        fail("warmup_iter", f"must be an integer (-1 or 0 for none), got {warmup_iter!r}")
    if warmup_iter >= total_iter:
        fail("warmup_iter", f"({warmup_iter}) must be smaller than '{k['total_iter']}' ({total_iter})")
    if warmup == "constant" and not (_is_number(warmup_factor) and 0 < warmup_factor <= 1):
        fail("warmup_factor", f"must be in (0, 1], got {warmup_factor!r}")
    if scheduler not in SCHEDULERS:
        fail("scheduler", f"= {scheduler!r} is not one of {', '.join(SCHEDULERS)}")
    if scheduler == "MultigridCosineLR":
        for key, value in (("periods", periods), ("restart_weights", restart_weights)):
            if value is not None:
                fail(key, "is not used by MultigridCosineLR (it restarts at every curriculum stage); remove it, "
                          "or set the scheduler type to CosineAnnealingRestartLR")
        return
    periods = tuple(periods) if periods is not None else (total_iter,)
    weights = tuple(restart_weights) if restart_weights is not None else (1.0,)
    if not periods or any(isinstance(p, bool) or not isinstance(p, int) or p <= 0 for p in periods):
        fail("periods", f"must be a list of positive integers, got {list(periods)}")
    if len(weights) != len(periods):
        fail("periods", f"has {len(periods)} entries but '{k['restart_weights']}' has {len(weights)} "
                        f"(BasicSR's CosineAnnealingRestartLR needs one restart weight per period; its default is [1])")
    if any(not _is_number(w) or w < 0 for w in weights):
        fail("restart_weights", f"must be numbers >= 0, got {list(weights)}")
    if sum(periods) < total_iter:
        fail("periods", f"{list(periods)} sum to {sum(periods)}, fewer than '{k['total_iter']}' ({total_iter}): "
                        f"BasicSR's scheduler has no LR after its last period")


@dataclass(frozen=True)
class LRSchedule:
    """The LR of every iteration of `schedule`.

    `base_lr` is tuned for a global batch of `base_batch`; each stage's peak is its LR (the
    stage's override, else `base_lr`, both in base-batch units) scaled by that stage's global
    batch / `base_batch`, so per-stage batches get per-stage LRs. `base_batch=None` turns scaling
    off (the LRs are used as given). `eta_min` is absolute and only reached by the final stage
    (MultigridCosineLR) or at the end of each period (CosineAnnealingRestartLR).
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
    scheduler: str = "MultigridCosineLR"
    periods: tuple[int, ...] | None = None
    restart_weights: tuple[float, ...] | None = None
    option_keys: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_OPTION_KEYS), compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.world_size <= 0 or self.grad_accum <= 0:
            raise ValueError(f"world_size and grad_accum must be positive, got {self.world_size}, {self.grad_accum}")
        check_lr_options(base_lr=self.base_lr, base_batch=self.base_batch, eta_min=self.eta_min, warmup=self.warmup,
                         warmup_iter=self.warmup_iter, warmup_factor=self.warmup_factor,
                         total_iter=self.schedule.total_iter, scheduler=self.scheduler, periods=self.periods,
                         restart_weights=self.restart_weights, keys=self.option_keys)
        lowest_peak = min(self.peak_lr(s) for s in self.schedule.stages) if self.scheduler != "MultigridCosineLR" \
            else self.peak_lr(self.schedule.stages[-1])
        if self.eta_min >= lowest_peak:
            which = "final stage's" if self.scheduler == "MultigridCosineLR" else "lowest stage"
            key = {**DEFAULT_OPTION_KEYS, **self.option_keys}["eta_min"]
            raise ConfigError(f"'{key}': {self.eta_min:g} is not below the {which} peak LR {lowest_peak:g}, so the "
                              f"LR could not anneal down to it")

    @property
    def restart_iters(self) -> list[int]:
        """Iterations where the LR jumps back to a peak: the curriculum's shape changes for
        MultigridCosineLR; one after each period's end for BasicSR's schedule."""
        if self.scheduler == "MultigridCosineLR":
            return self.schedule.boundaries
        return restart_iterations(self.periods or (self.schedule.total_iter,))

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
        warmup_iter = max(self.warmup_iter, 0)
        peak = self.peak_lr(stage) * lr_mul
        if self.scheduler == "CosineAnnealingRestartLR":
            if self.warmup == "linear" and t + 1 < warmup_iter:  # BasicSR ramps the initial LR
                return peak * (t + 1) / warmup_iter
            weight, term = cosine_restart_factor(t, periods=self.periods or (self.schedule.total_iter,),
                                                 restart_weights=self.restart_weights or (1.0,))
            lr = self.eta_min + weight * term * (peak - self.eta_min)
            return lr * (warmup_factor(t, warmup_iter=warmup_iter, mode=self.warmup, factor=self.warmup_factor)
                         if self.warmup == "constant" else 1.0)
        final = stage.index == len(self.schedule.stages) - 1
        lr = stage_cosine_lr(t - stage.start_iter, peak_lr=peak, stage_iters=stage.iters,
                             total_iter=self.schedule.total_iter, final=final, eta_min=self.eta_min)
        return lr * warmup_factor(t, warmup_iter=warmup_iter, mode=self.warmup, factor=self.warmup_factor)

    def lr_scale_at(self, t: int) -> float:
        """lr_at(t) / base_lr (for callers that keep per-group base LRs of their own)."""
        return self.lr_at(t) / self.base_lr
