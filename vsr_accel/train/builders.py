"""Options -> the run's curriculum, LR schedule and plan: the one translation that `train.py`,
`experiments/`, `infer.py` and `scripts/` share, so that `--plan`, the ablation runner and the
trainer can never disagree about what a recipe means.

Callers pass what only they know as explicit arguments: the network's crop multiple (from
`models.required_multiple`, which this torch-free core cannot import), and, once the data is
open, its longest clip and smallest LR frame, so that a curriculum the data cannot feed is
refused at start-up instead of failing inside a DataLoader worker.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from vsr_accel.schedule.curriculum import Schedule, Stage, build_schedule
from vsr_accel.schedule.lr import LRSchedule
from vsr_accel.train.options import Options
from vsr_accel.schedule.plan import plan_dict


def build_curriculum(opt: Options, *, crop_multiple: int, max_frames: int | None = None,
                     min_lr_size: tuple[int, int] | None = None) -> Schedule:
    section = opt.dataset_section("train")
    cur = opt.train.curriculum
    return build_schedule(
        cur.type, total_iter=opt.train.total_iter, lr_crop=section["gt_size"] // opt.scale,
        num_frames=section["num_frame"], batch_per_device=section["batch_size_per_gpu"],
        lr_crops=cur.lr_crops, frame_counts=cur.frame_counts, stage_iters=cur.stage_iters,
        stage_lrs=cur.stage_lrs, stage_batches=cur.stage_batches, crop_multiple=crop_multiple,
        max_frames=max_frames, max_lr_crop=min(min_lr_size) if min_lr_size else None,
        stages=None if cur.stages is None else [dataclasses.asdict(s) for s in cur.stages],
        key_prefix="train.curriculum",
        baseline_keys=(f"datasets.train.gt_size {section['gt_size']} (LR crop {section['gt_size'] // opt.scale})",
                       f"datasets.train.num_frame {section['num_frame']}"))


def build_lr_schedule(opt: Options, schedule: Schedule, world_size: int) -> LRSchedule:
    tr = opt.train
    return LRSchedule(schedule, base_lr=tr.optim_g.lr, base_batch=tr.base_batch, world_size=world_size,
                      grad_accum=tr.grad_accum, eta_min=tr.scheduler.eta_min,
                      warmup_iter=max(tr.warmup_iter, 0), warmup=tr.warmup if tr.warmup_iter > 0 else "none",
                      warmup_factor=tr.warmup_factor, scheduler=tr.scheduler.type, periods=tr.scheduler.periods,
                      restart_weights=tr.scheduler.restart_weights)


def plan(opt: Options, *, world_size: int, crop_multiple: int) -> dict[str, Any]:
    """What `train.py --plan` prints: every stage's shape, batch, LRs and relative cost."""
    schedule = build_curriculum(opt, crop_multiple=crop_multiple)
    return plan_dict(schedule, build_lr_schedule(opt, schedule, world_size), scale=opt.scale,
                     world_size=world_size, grad_accum=opt.train.grad_accum)


def describe_stage(stage: Stage) -> str:
    """How errors name a stage (e.g. what did not fit in memory)."""
    return (f"stage {stage.index + 1} (LR crop {stage.lr_crop}, {stage.num_frames} frames, "
            f"{stage.batch_per_device} clips per device)")
