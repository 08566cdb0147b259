"""Learning-rate schedules as pure functions of the iteration (timm `scheduler/` style: one small
file and class per schedule, no optimizer state): `multigrid_cosine` (the paper's Eq. 1),
`cosine_restart` (BasicSR's CosineAnnealingRestartLR), `warmup`, `scaling` (the linear scaling
rule), and `schedule.LRSchedule`, which composes them for a curriculum and holds the LR option rules."""
from __future__ import annotations

from vsr_accel.schedule.lr.cosine_restart import CosineAnnealingRestartLR
from vsr_accel.schedule.lr.multigrid_cosine import MultigridCosineLR, multigrid_cosine_lr, stage_cosine_lr
from vsr_accel.schedule.lr.scaling import scaled_lr
from vsr_accel.schedule.lr.schedule import DEFAULT_OPTION_KEYS, SCHEDULERS, LRSchedule, check_lr_options
from vsr_accel.schedule.lr.warmup import WARMUP_MODES, warmup_factor, warmup_iters

__all__ = ["LRSchedule", "check_lr_options", "MultigridCosineLR", "CosineAnnealingRestartLR", "multigrid_cosine_lr",
           "stage_cosine_lr", "scaled_lr", "warmup_factor", "warmup_iters", "WARMUP_MODES", "DEFAULT_OPTION_KEYS",
           "SCHEDULERS"]
