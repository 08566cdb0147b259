"""Learning-rate schedules as pure functions of the iteration (timm `scheduler/` style: one small
file per schedule, no optimizer state): `multigrid_cosine` (the paper's Eq. 1), `cosine_restart`
(BasicSR's CosineAnnealingRestartLR), `warmup`, `scaling` (the linear scaling rule), and
`schedule.LRSchedule`, which composes them for a curriculum and holds the LR option rules."""
from __future__ import annotations

from vsr_accel.schedule.lr.cosine_restart import cosine_restart_lr
from vsr_accel.schedule.lr.multigrid_cosine import multigrid_cosine_lr, stage_cosine_lr
from vsr_accel.schedule.lr.scaling import global_batch, scaled_lr
from vsr_accel.schedule.lr.schedule import DEFAULT_OPTION_KEYS, SCHEDULERS, LRSchedule, check_lr_options
from vsr_accel.schedule.lr.warmup import WARMUP_MODES, warmup_factor

__all__ = ["LRSchedule", "check_lr_options", "multigrid_cosine_lr", "stage_cosine_lr", "cosine_restart_lr",
           "scaled_lr", "global_batch", "warmup_factor", "WARMUP_MODES", "DEFAULT_OPTION_KEYS", "SCHEDULERS"]
