"""Inference speed of infer.py's speed switches, and what they do to the output.

    # frames/s of fp32 NCHW (--amp none --channels-last off) vs infer.py's defaults, and each switch
    # alone; real footage at the issue's 176x144 LR, BasicVSR-M; then PSNR of each vs fp32
    python benchmarks/bench_infer_speed.py
    # ... the same with one intra-op thread (a core shared with other work)
    taskset -c 1 env OMP_NUM_THREADS=1 python benchmarks/bench_infer_speed.py --threads 1

What is timed is what `infer.py` runs: the network through `models` and
`vsr_accel.infer.inference.load_model`, an `Upscaler` with the speed settings
`vsr_accel.core.speed_defaults.resolve_speed` gives (the trainer's rule), and `run_chunks` from a
folder of LR PNGs to a fresh folder of restored PNGs (decoding, the network, quantising, PNG
writing), with infer.py's default chunk and context. Configurations are timed interleaved (A, B,
A, B, ..., the order reversed every other round) and every ratio comes from this one run.

Fidelity: each configuration's frames are compared with the fp32 NCHW frames (PSNR pooled over the
frames, and the worst frame), and each with the GT (the footage before bicubic downscaling).
BasicVSR-M's random weights say little about a trained network (its output is close to the
bilinear base), so the comparison is repeated with a tiny BasicVSR first fitted to other frames of
the same footage (`--fit-steps`; bench_infer_memory.py's fitting), a network whose residual matters.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import models  # noqa: E402
from benchmarks._common import THREADS, Report, interleaved, machine_description, spread  # noqa: E402
from benchmarks.bench_infer_memory import TRAIN_FRAMES, bicubic_down, decode, fit_tiny, footage  # noqa: E402
from datasets.video_io import FrameFolder, open_source  # noqa: E402
from vsr_accel.core.speed_defaults import SpeedSettings, resolve_speed  # noqa: E402
from vsr_accel.infer.chunking import plan_chunks  # noqa: E402
from vsr_accel.infer.inference import (DEFAULT_CHUNK, DEFAULT_CONTEXT, ModelSource, Upscaler,  # noqa: E402
                                       compare_frames, load_model, parse_network_args, psnr_uint8, run_chunks)

# name -> infer.py's flags (--amp, --channels-last); the first is the baseline, the last infer.py's default
CONFIGS = {
    "fp32, NCHW (--amp none --channels-last off)": ("none", "off"),
    "bf16 autocast, NCHW (--amp bf16 --channels-last off)": ("bf16", "off"),
    "fp32, channels_last (--amp none --channels-last on)": ("none", "on"),
    "default (--amp auto --channels-last auto)": ("auto", "auto"),
}
BASELINE, DEFAULT = list(CONFIGS)[0], list(CONFIGS)[-1]
CHANNELS_LAST = {"auto": None, "on": True, "off": False}  # infer.py's --channels-last values
TINY = {"type": "BasicVSR", "num_feat": 8, "num_block": 1}


def settings(name: str) -> SpeedSettings:
    amp, layout = CONFIGS[name]
    return resolve_speed(amp, CHANNELS_LAST[layout], torch.device("cpu"))


def write_clip(folder: Path, frames: int, width: int, height: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """LR PNGs of the first `frames` frames of bikes.mp4 (GT at 4x, bicubic down); (GT, the last
    frames for fitting)."""
    decoded = decode(footage(), 250)
    hr = [cv2.resize(f, (width * 4, height * 4), interpolation=cv2.INTER_AREA) for f in decoded]
    gt, train_hr = hr[:frames], hr[-TRAIN_FRAMES:]
    folder.mkdir(parents=True)
    for i, frame in enumerate(bicubic_down(gt, width, height)):
        cv2.imwrite(str(folder / f"{i:08d}.png"), frame)
    return gt, train_hr


def checkpoint_of(spec: dict, path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = models.build_network({**spec, "spynet_path": None})
    torch.save({"params": net.state_dict()}, path)
    return path


def upscaler(spec: dict, checkpoint: Path, num_frames: int, speed: SpeedSettings) -> Upscaler:
    """As infer.py builds it (one network instance per configuration: the Upscaler sets its layout)."""
    model = load_model(ModelSource(spec={**spec, "spynet_path": None}, checkpoint=checkpoint, param_key=None),
                       torch.device("cpu"), models)
    return Upscaler(model, torch.device("cpu"), num_frames, speed=speed)


class Restorer:
    """One configuration's `run_chunks` into a fresh output folder per call; keeps the last folder."""

    def __init__(self, lr: Path, up: Upscaler, work: Path, tag: str):
        self.source = open_source(lr)
        self.up = up
        self.chunks = plan_chunks(self.source.num_frames, DEFAULT_CHUNK, up.context(DEFAULT_CONTEXT))
        self.work, self.tag, self.calls = work, tag, 0
        self.last: Path | None = None

    def __call__(self) -> None:
        if self.last is not None:
            shutil.rmtree(self.last)
        self.calls += 1
        self.last = self.work / f"{self.tag}_{self.calls}"
        stats = run_chunks(self.source, self.up, self.chunks, FrameFolder(self.last))
        assert stats.written == self.source.num_frames

    def frames(self) -> list[np.ndarray]:
        assert self.last is not None
        return [cv2.imread(str(p)) for p in sorted(self.last.glob("*.png"))]


def fidelity_rows(label: str, outputs: dict[str, list[np.ndarray]], gt: Sequence[np.ndarray]) -> list[list]:
    reference = outputs[BASELINE]
    reference_vs_gt = float(np.mean([psnr_uint8(a, b) for a, b in zip(reference, gt)]))
    rows = []
    for name, frames in outputs.items():
        vs_gt = float(np.mean([psnr_uint8(a, b) for a, b in zip(frames, gt)]))
        if name == BASELINE:
            rows.append([label, name, "-", "-", f"{vs_gt:.4f}", "-"])
            continue
        result = compare_frames(frames, reference)
        rows.append([label, name, f"{result['chunked_vs_whole_psnr']:.2f}",
                     f"{result['chunked_vs_whole_worst_frame_psnr']:.2f}", f"{vs_gt:.4f}",
                     f"{vs_gt - reference_vs_gt:+.4f}"])
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=8, help="frames of the clip (one chunk at infer.py's default)")
    p.add_argument("--width", type=int, default=176, help="LR width (issue 20: a 176x144 clip)")
    p.add_argument("--height", type=int, default=144)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=THREADS)
    p.add_argument("--network", default="BasicVSRM", help="the timed network's type (random weights)")
    p.add_argument("--network-args", nargs="*", default=[], metavar="KEY=VALUE", help="e.g. num_feat=8 num_block=1")
    p.add_argument("--fit-steps", type=int, default=300, help="steps fitting the tiny BasicVSR (0: skip it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="bench_infer_speed")
    p.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    spec = {"type": args.network, **parse_network_args(args.network_args)}

    report = Report(args.name, f"Inference speed switches ({args.network}, CPU)")
    report.add(f"{args.frames} frames of bikes.mp4 at {args.width}x{args.height} LR (x4 out), {args.network} "
               f"{ {k: v for k, v in spec.items() if k != 'type'} or ''} random weights (seed {args.seed}), "
               f"chunk {DEFAULT_CHUNK} / context {DEFAULT_CONTEXT} (infer.py's defaults), {args.threads} thread(s); "
               f"default here = {settings(DEFAULT).describe()} ({machine_description()['cpu']}).")
    with tempfile.TemporaryDirectory(prefix="bench_infer_speed_") as tmp:
        work = Path(tmp)
        gt, train_hr = write_clip(work / "lr", args.frames, args.width, args.height)
        checkpoint = checkpoint_of(spec, work / "net.pth", args.seed)
        restorers = {name: Restorer(work / "lr", upscaler(spec, checkpoint, args.frames, settings(name)), work,
                                    f"c{i}") for i, name in enumerate(CONFIGS)}
        times = interleaved(restorers, rounds=args.rounds)
        base, base_cpu = times.median(BASELINE), times.cpu_median(BASELINE)
        rows = [[name, settings(name).describe(), f"{times.median(name):.2f}", spread(times.wall[name]),
                 f"{args.frames / times.median(name):.3f}", f"**{base / times.median(name):.2f}x**",
                 f"{base_cpu / times.cpu_median(name):.2f}x"] for name in CONFIGS]
        report.table(["configuration", "settings", "median s per run", "min-max", "frames/s", "speed vs fp32 NCHW",
                      "CPU-time ratio"], rows,
                     caption=f"Median wall-clock seconds of `run_chunks` over {args.frames} frames, {args.rounds} "
                             f"interleaved rounds after one warm-up run each; speed = fp32 NCHW's median time / "
                             f"this configuration's (CPU-time ratio: the same from the process's CPU seconds).")
        report.data["timing"] = {name: {"wall": times.wall[name], "cpu": times.cpu[name],
                                        "frames_per_s": args.frames / times.median(name),
                                        "speed_vs_fp32": base / times.median(name)} for name in CONFIGS}
        fidelity = fidelity_rows(args.network, {name: r.frames() for name, r in restorers.items()}, gt)

        if args.fit_steps:
            fitted = work / "tiny_fitted.pth"
            fit_tiny(fitted, train_hr, args.width, args.height, args.fit_steps, args.seed)
            outputs = {}
            for i, name in enumerate(CONFIGS):
                restorer = Restorer(work / "lr", upscaler(TINY, fitted, args.frames, settings(name)), work, f"t{i}")
                restorer()
                outputs[name] = restorer.frames()
            fidelity += fidelity_rows(f"tiny BasicVSR fitted {args.fit_steps} steps", outputs, gt)
    bicubic = [cv2.resize(f, (args.width * 4, args.height * 4), interpolation=cv2.INTER_CUBIC)
               for f in bicubic_down(gt, args.width, args.height)]
    report.table(["network", "configuration", "PSNR vs fp32 NCHW (dB, pooled)", "worst frame (dB)",
                  "PSNR vs GT (dB)", "vs GT, difference to fp32 (dB)"], fidelity,
                 caption=f"Output of each configuration vs fp32 NCHW's (8-bit frames, all channels), and vs GT "
                         f"(bicubic upscaling: {np.mean([psnr_uint8(a, b) for a, b in zip(bicubic, gt)]):.4f} dB).")
    report.data["fidelity"] = fidelity
    report.write(*([args.out] if args.out else []))
    return 0


if __name__ == "__main__":
    sys.exit(main())
