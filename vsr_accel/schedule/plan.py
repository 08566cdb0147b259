"""The run plan that `train.py --plan` prints (and `--plan --json` dumps): every stage's shape,
batch, LR range and relative cost, so a user can check a recipe before spending GPU hours."""
from __future__ import annotations

from typing import Any

from vsr_accel.schedule.curriculum import Schedule
from vsr_accel.schedule.lr import LRSchedule


def plan_dict(schedule: Schedule, lr_schedule: LRSchedule, *, scale: int, world_size: int,
              grad_accum: int) -> dict[str, Any]:
    """JSON-ready description of the run. `lr_start`/`lr_end` are the LRs actually used at the
    stage's first/last iteration (warmup included); `lr_peak` is the restart value before warmup."""
    stages = []
    for stage in schedule.stages:
        stages.append({
            "index": stage.index,
            "start_iter": stage.start_iter,
            "iters": stage.iters,
            "lr_crop": stage.lr_crop,
            "gt_crop": stage.lr_crop * scale,
            "frames": stage.num_frames,
            "batch_per_device": stage.batch_per_device,
            "global_batch": lr_schedule.global_batch(stage),
            "lr_peak": lr_schedule.peak_lr(stage),
            "lr_start": lr_schedule.lr_at(stage.start_iter),
            "lr_end": lr_schedule.lr_at(stage.end_iter - 1),
            "relative_compute": schedule.compute_per_iter(stage),
        })
    return {
        "kind": schedule.kind,
        "total_iter": schedule.total_iter,
        "baseline": {"lr_crop": schedule.lr_crop, "gt_crop": schedule.lr_crop * scale,
                     "frames": schedule.num_frames, "batch_per_device": schedule.batch_per_device},
        "world_size": world_size,
        "grad_accum": grad_accum,
        "warmup_iter": lr_schedule.warmup_iters,
        "scheduler": lr_schedule.scheduler,
        "lr_restarts": lr_schedule.restart_iters,
        "stages": stages,
        "compute_ratio": schedule.compute_ratio(),
    }


def format_plan(plan: dict[str, Any]) -> str:
    """A readable table of `plan_dict`'s output plus the speedup line."""
    flops, timed = "parameters" in plan, "est_seconds" in plan
    header = ("stage", "iters", "start", "LR crop", "GT crop", "frames", "batch/dev", "global",
              "LR peak", "LR start", "LR end", "compute") + (("GFLOP/sample",) if flops else ()) \
        + (("est. time",) if timed else ())
    rows = [header]
    for stage in plan["stages"]:
        rows.append((
            str(stage["index"] + 1), str(stage["iters"]), str(stage["start_iter"]), str(stage["lr_crop"]),
            str(stage["gt_crop"]), str(stage["frames"]), str(stage["batch_per_device"]), str(stage["global_batch"]),
            f"{stage['lr_peak']:.3g}", f"{stage['lr_start']:.3g}", f"{stage['lr_end']:.3g}",
            f"{stage['relative_compute']:.3f}",
        ) + ((f"{stage['gflops_per_sample']:.1f}",) if flops else ())
          + ((hours_minutes(stage["est_seconds"]),) if timed else ()))
    widths = [max(len(row[col]) for row in rows) for col in range(len(header))]
    lines = [f"curriculum '{plan['kind']}': {len(plan['stages'])} stage(s), {plan['total_iter']} iterations, "
             f"{plan['world_size']} device(s) x {plan['grad_accum']} accumulation step(s)"]
    for position, row in enumerate(rows):
        lines.append("  ".join(cell.rjust(width) for cell, width in zip(row, widths)))
        if position == 0:
            lines.append("  ".join("-" * width for width in widths))
    base = plan["baseline"]
    restarts = plan["lr_restarts"]
    lines.append(f"LR: {plan['scheduler']}, " + (f"restarts at iterations {', '.join(map(str, restarts))}"
                                                   if restarts else "one cosine over the run, no restarts"))
    if plan["warmup_iter"]:
        lines.append(f"warmup over the first {plan['warmup_iter']} iterations (LR start of stage 1 includes it)")
    lines.append(f"compute per iteration relative to the baseline {base['lr_crop']}x{base['lr_crop']} LR crop, "
                 f"{base['frames']} frames, batch {base['batch_per_device']}/device")
    lines.append(f"speedup bound from the curriculum at equal iterations: {plan['compute_ratio']:.2f}x "
                 "(FLOP-proportional; wall-clock also depends on data loading and GPU utilisation)")
    if flops:
        lines.append(f"network: {plan['parameters'] / 1e6:.2f} M parameters; GFLOP/sample: one forward pass over one "
                     "training clip (a training step is about 3x that per sample)")
    if timed:
        lines.append(f"estimated training time: {hours_minutes(plan['est_seconds'])} at {plan['sec_per_iter']:g} s "
                     "per baseline-shape iteration (--sec-per-iter), each stage in proportion to its compute")
    if "devices_note" in plan:
        lines.append(f"note: {plan['devices_note']}")
    return "\n".join(lines)


def hours_minutes(seconds: float) -> str:
    """'2 h 05 min', '7 min', '40 s'."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"
