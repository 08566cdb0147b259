#!/usr/bin/env python
"""The real motion of a dataset's LR clips, measured without any learned network (OpenCV's
Farneback optical flow between consecutive frames), to read a flow network's magnitudes against.

    python scripts/footage_motion.py --lq data/proxy/train_sharp_bicubic/X4 --lq data/proxy/val_sharp_bicubic/X4

A healthy SpyNet inside BasicVSR predicts flows of the same order as these numbers; one whose
mean |flow| is far outside the clips' range (thousands of pixels, or exactly zero on moving
footage) is broken (vsr_accel.train.health, `result.json`'s `propagation`). Prints per clip the mean,
95th percentile and max |flow| in LR pixels, and the range of the clip means; `--json` writes them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from vsr_accel.core.errors import DataError, report_user_errors  # noqa: E402
from vsr_accel.core.fsio import atomic_write_text  # noqa: E402
from vsr_accel.core.cli import ArgumentParser  # noqa: E402

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def clip_motion(frames: list[Path]) -> dict[str, float]:
    """Farneback |flow| statistics (LR pixels) over every consecutive pair of a clip."""
    def grey(path: Path) -> np.ndarray:
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise DataError(f"{path}: cannot read this image")
        return image

    magnitudes = []
    previous = grey(frames[0])
    for path in frames[1:]:
        current = grey(path)
        flow = cv2.calcOpticalFlowFarneback(previous, current, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        magnitudes.append(np.linalg.norm(flow, axis=2))
        previous = current
    m = np.stack(magnitudes)
    return {"frames": len(frames), "height": int(m.shape[1]), "width": int(m.shape[2]), "mean_px": float(m.mean()),
            "p95_px": float(np.percentile(m, 95)), "max_px": float(m.max())}


def folder_motion(root: Path) -> dict[str, dict[str, float]]:
    if not root.is_dir():
        raise DataError(f"{root}: not a folder of clip folders")
    clips = {}
    for clip in sorted(p for p in root.iterdir() if p.is_dir()):
        frames = sorted(p for p in clip.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if len(frames) >= 2:
            clips[f"{root}/{clip.name}"] = clip_motion(frames)
    if not clips:
        raise DataError(f"{root}: no clip folder with two or more frames")
    return clips


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lq", type=Path, action="append", required=True, metavar="FOLDER",
                   help="a folder of LR clip folders (repeatable)")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    p.add_argument("--debug", action="store_true")
    args = p.parse_args(argv)
    return report_user_errors(lambda: run(args), args.debug)


def run(args: argparse.Namespace) -> int:
    clips: dict[str, dict[str, float]] = {}
    for folder in args.lq:
        clips.update(folder_motion(folder))
    print("| clip | LR size | mean |flow| (px) | 95th percentile | max |")
    print("|---|---|---:|---:|---:|")
    for name, row in clips.items():
        print(f"| {name} | {row['width']}x{row['height']} | {row['mean_px']:.2f} | {row['p95_px']:.2f} | "
              f"{row['max_px']:.1f} |")
    means = [row["mean_px"] for row in clips.values()]
    summary = {"clip_mean_px_min": min(means), "clip_mean_px_max": max(means),
               "p95_px_max": max(row["p95_px"] for row in clips.values()),
               "max_px": max(row["max_px"] for row in clips.values())}
    print(f"\nclip means {summary['clip_mean_px_min']:.2f}-{summary['clip_mean_px_max']:.2f} px; largest 95th "
          f"percentile {summary['p95_px_max']:.2f} px; largest |flow| {summary['max_px']:.1f} px (Farneback)")
    if args.json:
        atomic_write_text(args.json, json.dumps({"method": "OpenCV Farneback (0.5, 3, 15, 3, 5, 1.2)",
                                                 "clips": clips, **summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
