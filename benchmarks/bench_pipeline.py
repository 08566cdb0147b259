"""The data pipeline as a training run sees it: loader throughput with several workers per backend,
and the data wait of a short train.py run (what benchmarks/gpu_check.sh runs on a GPU machine).

    python benchmarks/bench_pipeline.py --workers 4 8 14 --iters 200 --out benchmarks/results/gpu
    python benchmarks/bench_pipeline.py --tiny --out /tmp/x        # seconds on a CPU (the test runs this)

1. Loader throughput: REDS-sized frames of real footage (benchmarks/bench_data.make_stores:
   1280x720 GT, 320x180 LR, as PNG folders, a BasicSR LMDB and a raw store), the trainer's
   DataLoader (REDSRecurrentDataset + MultigridBatchSampler, pinned memory on CUDA), clips per
   second of wall-clock time at 32&7 and 64&15, per backend and worker count.
2. Data wait in training: `train.py` itself, BasicVSR-M with the multigrid curriculum over
   `--iters` iterations (all six REDS stages) on the same frames, per backend; the share of each
   log window spent waiting for data and the samples/s, from its train.log, and the final
   clocks (training time with and without data loading).
"""
from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import REPO, Report  # noqa: E402
from benchmarks.bench_data import FULL, TINY, Mode, make_stores  # noqa: E402
from datasets import REDSRecurrentDataset  # noqa: E402
from vsr_accel.schedule.curriculum import build_schedule  # noqa: E402
from vsr_accel.schedule.sampler import MultigridBatchSampler  # noqa: E402
from vsr_accel.train.builders import make_loader  # noqa: E402

LOG_LINE = re.compile(r"iter +(\d+)/\d+ \| loss \S+ \| lr \S+ \| ([\d.]+) samples/s \| data wait ([\d.]+)% \| "
                      r"stage (\d+) \(LR crop (\d+), (\d+) frames\)")
DONE_LINE = re.compile(r"done: \d+ iterations in ([\d.]+) s of training \(([\d.]+) s excluding data loading\)")


def loader_rate(dataset, crop: int, frames: int, batch: int, workers: int, batches: int, pin: bool) -> float:
    """Clips per second of the trainer's DataLoader alone, after its first two batches."""
    schedule = build_schedule("none", total_iter=batches + 2, lr_crop=crop, num_frames=frames, batch_per_device=batch)
    sampler = MultigridBatchSampler(schedule, len(dataset), seed=0)
    loader = make_loader(dataset, sampler, workers=workers, pin_memory=pin, persistent_workers=False,
                         prefetch_factor=4)
    iterator = iter(loader)
    next(iterator), next(iterator)
    start = time.perf_counter()
    count = sum(1 for _ in iterator)
    return count * batch / (time.perf_counter() - start)


def train_options(spec: dict, root: Path, backend: str, iters: int, batch: int, workers: int, network: dict) -> dict:
    """A train.py options file: BasicVSR-M (or the tiny net), multigrid over all six stages."""
    crops, frames = ([16], [3]) if network.get("num_feat", 64) < 16 else ([32, 64], [7, 11, 15])
    section = {"type": "REDSRecurrentDataset", **{k: str(v) if isinstance(v, Path) else v for k, v in spec.items()},
               "gt_size": crops[-1] * 4, "num_frame": frames[-1], "batch_size_per_gpu": batch,
               "num_worker_per_gpu": workers}
    return {"name": f"pipeline_{backend}", "scale": 4, "manual_seed": 0, "network_g": network,
            "datasets": {"train": section}, "path": {"experiments_root": str(root / "runs")},
            "train": {"total_iter": iters, "warmup_iter": -1, "optim_g": {"type": "Adam", "lr": 2e-4},
                      "curriculum": {"type": "multigrid", "lr_crops": crops, "frame_counts": frames}},
            "logger": {"print_freq": max(1, iters // 20), "save_checkpoint_freq": iters, "use_tb_logger": False}}


def train_run(options: dict, root: Path, device: str, amp: str) -> dict:
    """Run train.py on `options`; its log's windows and final clocks."""
    path = root / f"{options['name']}.yml"
    path.write_text(yaml.safe_dump(options))
    command = [sys.executable, str(REPO / "train.py"), "-opt", str(path), "--device", device, "--set", f"train.amp={amp}"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"train.py failed ({done.returncode}): {done.stderr[-2000:]}")
    log = (Path(options["path"]["experiments_root"]) / options["name"] / "train.log").read_text()
    windows = [dict(zip(("iter", "samples_per_s", "wait_pct", "stage", "crop", "frames"), map(float, m.groups())))
               for m in LOG_LINE.finditer(log)]
    clocks = DONE_LINE.search(log)
    return {"windows": windows, "process_seconds": time.perf_counter() - started,
            "wall_seconds": float(clocks.group(1)), "train_seconds": float(clocks.group(2))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workers", type=int, nargs="+", default=[4, 8])
    p.add_argument("--batch", type=int, default=8, help="clips per batch (per GPU)")
    p.add_argument("--iters", type=int, default=200, help="iterations of the train.py run")
    p.add_argument("--clips", type=int, default=8, help="REDS-sized clips of 16 frames to write")
    p.add_argument("--amp", default="bf16", help="train.amp of the train.py run (bf16 on a GPU)")
    p.add_argument("--tiny", action="store_true", help="small frames, a tiny network, a few iterations (CPU smoke run)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    mode = TINY if args.tiny else Mode(**{**FULL.__dict__, "clips": args.clips})
    network = mode.network if args.tiny else {"type": "BasicVSRM"}
    if args.tiny:
        args.workers, args.batch, args.iters, args.amp = [0], 1, 2, "none"
    backends = ["folders", "raw"] + (["lmdb"] if importlib.util.find_spec("lmdb") else [])
    shapes = [(16, 3)] if args.tiny else [(32, 7), (64, 15)]
    report = Report("bench_pipeline", f"Data pipeline on {args.device}: loader throughput and train.py data wait")
    with tempfile.TemporaryDirectory(prefix="vsr_bench_pipeline_") as tmp:
        root = Path(tmp)
        specs = make_stores(root, mode)
        h, w = mode.gt_hw
        report.add(f"{mode.clips} clips x {mode.frames} frames of real footage, GT {w}x{h}; backends: "
                   f"{', '.join(backends)}; batch {args.batch}; device {args.device}.")
        loader_rows = []
        for backend in backends:
            dataset = REDSRecurrentDataset(**specs[backend])
            for workers in args.workers:
                rates = [loader_rate(dataset, c, f, args.batch, workers, 2 if args.tiny else 12,
                                     pin=args.device.startswith("cuda")) for c, f in shapes]
                loader_rows.append([backend, workers, *(f"{r:.1f}" for r in rates)])
                print(f"  loader {backend} x{workers}: {rates}", file=sys.stderr, flush=True)
        report.table(["backend", "workers", *(f"clips/s at {c}&{f}" for c, f in shapes)], loader_rows,
                     caption="Loader alone (wall clock, after two batches).")
        runs = {}
        for backend in ("raw",) if args.tiny else ("raw", "folders"):
            options = train_options(specs[backend], root, backend, args.iters, args.batch, max(args.workers), network)
            runs[backend] = result = train_run(options, root, args.device, args.amp)
            waits = [wd["wait_pct"] for wd in result["windows"]]
            print(f"  train.py {backend}: wait {waits}", file=sys.stderr, flush=True)
        rows = []
        for backend, result in runs.items():
            for wd in result["windows"]:
                rows.append([backend, int(wd["iter"]), f"{int(wd['crop'])}&{int(wd['frames'])}",
                             f"{wd['samples_per_s']:.1f}", f"{wd['wait_pct']:.1f}%"])
        report.table(["backend", "iteration", "stage", "samples/s", "data wait"], rows,
                     caption=f"train.py, {network['type']}, multigrid over {args.iters} iterations, "
                             f"{max(args.workers)} workers, amp {args.amp}: each log window.")
        report.add("\n".join(f"- {b}: training {r['wall_seconds']:.1f} s with data loading, {r['train_seconds']:.1f} s "
                             f"without ({r['process_seconds']:.0f} s for the whole process)" for b, r in runs.items()))
        report.data.update(loader=loader_rows, runs=runs)
    report.write(args.out) if args.out else report.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
