"""The training step per curriculum stage on one device (GPU when present), per speed setting.

    python benchmarks/bench_device.py                     # BasicVSR-M, the six REDS stages, on CUDA if present
    python benchmarks/bench_device.py --batch 8 --out benchmarks/results/gpu
    python benchmarks/bench_device.py --tiny --device cpu --out /tmp/x   # seconds on a CPU (the test runs this)

It times `vsr_accel.train.step.TrainStep` (the step train.py runs, built by benchmarks/_common.make_step)
at every stage shape of the paper's REDS curriculum (32&7 ... 64&15) under fp32, bf16 autocast,
bf16 + channels_last, and (on the first and last stage only: compiling every shape takes
minutes) bf16 + channels_last + torch.compile. Each timing synchronises the device before and
after, so it is the step's real duration, not the host's queueing time. It prints samples/s,
achieved TFLOP/s (from the FLOP counter: forward + backward) and the measured multigrid speedup
at equal iterations next to its FLOP bound; these replace the assumed sustained throughputs of
benchmarks/bench_data.py (V100-class 12 TFLOP/s fp32, H100-class 300 TFLOP/s bf16) once a GPU
has run it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import (BASICVSR_M, Report, StepOptions, build_model, clip_batch, make_step,  # noqa: E402
                                training_flops)
from vsr_accel.schedule.curriculum import build_schedule  # noqa: E402
from vsr_accel.train.meter import synchronize  # noqa: E402

TINY = {"type": "BasicVSR", "num_feat": 4, "num_block": 1}
CONFIGS = {
    "fp32": StepOptions(adam="fused"),
    "bf16": StepOptions(amp="bf16", adam="fused"),
    "bf16 + channels_last": StepOptions(amp="bf16", channels_last=True, adam="fused"),
    "bf16 + channels_last + compile": StepOptions(amp="bf16", channels_last=True, adam="fused", compile=True),
}


def time_step(step, lq: torch.Tensor, gt: torch.Tensor, device: torch.device, warmup: int, repeats: int) -> float:
    """Median seconds of one step, device-synchronised around each."""
    x, y = step.prepare(lq.to(device), gt.to(device))
    for _ in range(warmup):
        step(x, y)
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        step(x, y)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=4, help="clips per step")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--tiny", action="store_true", help="a 4-channel BasicVSR on quarter-size shapes (CPU smoke run)")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    spec = TINY if args.tiny else BASICVSR_M
    crop, frames = (16, 3) if args.tiny else (64, 15)
    if args.tiny:  # two small stages, one thread, fp32 only (bf16 is emulated, slowly, on most CPUs)
        torch.set_num_threads(1)
        args.batch = 1
    schedule = build_schedule("multigrid", total_iter=600, lr_crop=crop, num_frames=frames, batch_per_device=args.batch,
                              lr_crops=[crop // 2, crop] if args.tiny else None, frame_counts=[frames] if args.tiny else None)
    shapes = [(s.lr_crop, s.num_frames) for s in schedule.stages]
    configs = {k: v for k, v in CONFIGS.items() if not (args.no_compile and v.compile)
               and not (args.tiny and k != "fp32")}
    report = Report("bench_device", f"Training step per stage on {device} ({'tiny BasicVSR' if args.tiny else 'BasicVSR-M'})")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    report.add(f"Device: {name}; batch {args.batch}; median of {args.repeats} device-synchronised steps after "
               f"{args.warmup} warm-up step(s); step = vsr_accel.train.step.TrainStep (train.py's).")
    rows, seconds = [], {}
    for label, options in configs.items():
        for index, (c, f) in enumerate(shapes):
            if options.compile and index not in (0, len(shapes) - 1):
                continue
            lq, gt = clip_batch(args.batch, f, c)
            step = make_step(build_model(spec, device=device), options)
            first = time.perf_counter()
            s = time_step(step, lq, gt, device, args.warmup, args.repeats)
            flops = training_flops(spec, args.batch, f, c)
            seconds[(label, c, f)] = s
            rows.append([label, f"{c}&{f}", f"{s * 1e3:.1f}", f"{args.batch / s:.1f}", f"{flops / s / 1e12:.2f}",
                         f"{time.perf_counter() - first:.0f}"])
            print(f"  {label} {c}&{f}: {s * 1e3:.1f} ms", file=sys.stderr, flush=True)
    report.table(["setting", "stage", "ms/step", "samples/s", "TFLOP/s", "s incl. warm-up/compile"], rows)
    bound = schedule.total_iter * training_flops(spec, args.batch, frames, crop) / sum(
        st.iters * training_flops(spec, args.batch, st.num_frames, st.lr_crop) for st in schedule.stages)
    lines = []
    for label in configs:
        if all((label, c, f) in seconds for c, f in shapes):
            measured = schedule.total_iter * seconds[(label, crop, frames)] / sum(
                st.iters * seconds[(label, st.lr_crop, st.num_frames)] for st in schedule.stages)
            lines.append(f"{label}: measured multigrid speedup at equal iterations {measured:.2f}x "
                         f"(FLOP bound {bound:.2f}x, {measured / bound:.2f} of it)")
            report.data.setdefault("speedup", {})[label] = measured
    report.add("\n".join(f"- {line}" for line in lines))
    report.data.update(device=name, batch=args.batch, bound=bound,
                       seconds={f"{k[0]}|{k[1]}&{k[2]}": v for k, v in seconds.items()})
    if args.out is not None:
        report.write(args.out)
    else:
        report.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
