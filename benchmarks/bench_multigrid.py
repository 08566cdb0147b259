"""Multigrid speedup at equal iterations, measured on this machine, beside the FLOP bound.

    python benchmarks/bench_multigrid.py                      # default REDS schedule: 32/64 x 7/11/15, BasicVSR-M
    python benchmarks/bench_multigrid.py --rounds 3 --batch 2
    python benchmarks/bench_multigrid.py --step unoptimised   # fp32, NCHW, BasicSR's Adam kernel

The paper's speedup comes from running most iterations on smaller shapes. For a curriculum of
stages s with n_s iterations each, the speedup over the baseline at the same total number of
iterations is  sum_s(n_s) * cost(baseline) / sum_s(n_s * cost(s)).  Three versions of cost:

- pixels x frames x batch (`Schedule.compute_ratio`, 2.18x for the default REDS schedule),
- training FLOPs (forward + backward) counted by `torch.utils.flop_counter` for each stage shape
  (on the meta device, so no arithmetic is done): the bound this script checks against; it
  differs from the pixel ratio because SpyNet runs on frame *pairs* (t - 1 per clip),
- measured seconds of our training step at each stage shape (median of interleaved rounds).

Measured / FLOP bound near 1 means small shapes run as efficiently (FLOP/s) as the baseline
one; the target is >= 0.9. The baseline shape (64x64x15 for REDS) is also the last stage's
shape, so its time is measured once and used for both.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import (BASICVSR_M, OPTIMISED, UNOPTIMISED, Report, build_model, make_step,  # noqa: E402
                                clip_batch, interleaved, setup, spread, training_flops)
from vsr_accel.schedule.curriculum import Schedule, build_schedule  # noqa: E402

TARGET = 0.9


def reds_schedule(batch: int, total_iter: int = 300_000) -> Schedule:
    """The paper's REDS multigrid for BasicVSR: baseline 64x64 LR crops, 15 frames."""
    return build_schedule("multigrid", total_iter=total_iter, lr_crop=64, num_frames=15, batch_per_device=batch)


def speedup(schedule: Schedule, cost: dict[tuple[int, int, int], float]) -> float:
    """Baseline cost x total_iter / curriculum cost, `cost` keyed by (crop, frames, batch)."""
    baseline = cost[(schedule.lr_crop, schedule.num_frames, schedule.batch_per_device)]
    curriculum = sum(s.iters * cost[(s.lr_crop, s.num_frames, s.batch_per_device)] for s in schedule.stages)
    return schedule.total_iter * baseline / curriculum


def shapes_of(schedule: Schedule) -> list[tuple[int, int, int]]:
    shapes = [(s.lr_crop, s.num_frames, s.batch_per_device) for s in schedule.stages]
    baseline = (schedule.lr_crop, schedule.num_frames, schedule.batch_per_device)
    return list(dict.fromkeys([*shapes, baseline]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=1, help="clips per step (the same in every stage)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--step", choices=("optimised", "unoptimised"), default="optimised",
                   help="our default training step (train.py's defaults) or everything off")
    p.add_argument("--name", default="bench_multigrid")
    args = p.parse_args(argv)
    setup()
    options = OPTIMISED if args.step == "optimised" else UNOPTIMISED
    schedule = reds_schedule(args.batch)
    report = Report(args.name, "Multigrid speedup at equal iterations (BasicVSR-M, CPU)")
    report.add(f"Schedule: {schedule.describe()} ({schedule.kind}, {len(schedule.stages)} equal stages), "
               f"baseline {schedule.lr_crop}&{schedule.num_frames}, batch {args.batch}. Step: {options.label()}.")

    shapes = shapes_of(schedule)
    flops = {shape: float(training_flops(BASICVSR_M, shape[2], shape[1], shape[0])) for shape in shapes}

    step = make_step(build_model(), options)
    inputs = {}
    for crop, frames, batch in shapes:
        lq, gt = clip_batch(batch, frames, crop)
        inputs[(crop, frames, batch)] = step.prepare(lq, gt)
    runs = {f"{c}&{f}": (lambda x=inputs[(c, f, b)]: step(*x)) for c, f, b in shapes}
    times = interleaved(runs, rounds=args.rounds, warmup=args.warmup)
    seconds = {shape: times.median(f"{shape[0]}&{shape[1]}") for shape in shapes}
    cpu_seconds = {shape: times.cpu_median(f"{shape[0]}&{shape[1]}") for shape in shapes}

    base_shape = (schedule.lr_crop, schedule.num_frames, schedule.batch_per_device)
    rows = []
    for shape in shapes:
        label = f"{shape[0]}&{shape[1]}"
        rows.append([label, f"{flops[shape] / 1e9:.0f}", f"{flops[shape] / flops[base_shape]:.3f}",
                     f"{seconds[shape]:.2f}", spread(times.wall[label]), f"{seconds[shape] / seconds[base_shape]:.3f}",
                     f"{flops[shape] / seconds[shape] / 1e9:.0f}"])
    report.table(["stage (crop&frames)", "train GFLOP/step", "FLOPs vs baseline", "median s/step", "min-max",
                   "time vs baseline", "GFLOP/s"], rows,
                 caption=f"Per stage shape: {args.rounds} interleaved rounds after {args.warmup} warm-up step(s).")

    pixel_bound = schedule.compute_ratio()
    flop_bound = speedup(schedule, flops)
    measured = speedup(schedule, seconds)
    measured_cpu = speedup(schedule, cpu_seconds)
    report.table(["pixel x frame bound", "FLOP bound", "measured speedup", "measured / FLOP bound", "target",
                  "same from CPU time"],
                 [[f"{pixel_bound:.3f}x", f"{flop_bound:.3f}x", f"**{measured:.3f}x**", f"**{measured / flop_bound:.3f}**",
                   f">= {TARGET}", f"{measured_cpu:.3f}x ({measured_cpu / flop_bound:.3f})"]],
                 caption="Speedup of the multigrid curriculum over the baseline at equal iterations (from median "
                         "wall-clock seconds per step; last column from the process's CPU seconds, which other users "
                         "of the machine disturb less).")
    report.data.update({"schedule": schedule.describe(), "batch": args.batch, "step": options.label(),
                        "flops": {f"{c}&{f}": flops[(c, f, b)] for c, f, b in shapes},
                        "wall": times.wall, "cpu": times.cpu, "pixel_bound": pixel_bound, "flop_bound": flop_bound, "measured": measured})
    report.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
