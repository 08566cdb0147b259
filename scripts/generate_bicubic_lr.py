#!/usr/bin/env python
"""Make LR frames from GT frames with MATLAB-compatible bicubic downsampling (the 'BI' degradation
of REDS and Vimeo-90K benchmarks).

Every .png under --input is resized by 1/--scale with `datasets.matlab_resize` (MATLAB's
imresize with antialiasing, uint8 rounding as MATLAB) and written to the same relative path
under --output, so `<gt>/<clip>/<frame>.png` becomes `<lr>/<clip>/<frame>.png`. GT sizes must be
multiples of the scale (the LR must be exactly 1/scale; crop the GT first otherwise).

  python scripts/generate_bicubic_lr.py --input datasets/vimeo/GT --output datasets/vimeo/BIx4
"""
from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# Frames are processed in a thread pool; a multi-threaded BLAS inside each thread oversubscribes
# the CPU (3-4x slower on 2 cores). Must be set before numpy loads.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import cv2  # noqa: E402

from datasets.matlab_resize import imresize_uint8  # noqa: E402
from vsr_accel.errors import DataError, VSRError  # noqa: E402


def downsample_file(source: Path, target: Path, scale: int) -> tuple[int, int]:
    """Write the bicubic LR of one GT frame; returns the LR (h, w)."""
    image = cv2.imread(str(source), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"{source}: missing or unreadable image")
    if image.dtype != "uint8":
        raise DataError(f"{source}: {image.dtype} image; only 8-bit frames are supported")
    h, w = image.shape[:2]
    if h % scale or w % scale:
        raise DataError(f"{source}: {h}x{w} is not a multiple of the scale {scale} (crop the GT first)")
    lr = imresize_uint8(image, 1 / scale)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(target), lr):
        raise DataError(f"{target}: cannot write image")
    return lr.shape[0], lr.shape[1]


def generate_lr_tree(input_root: Path, output_root: Path, scale: int = 4, workers: int | None = None) -> int:
    """Downsample every PNG under `input_root` into `output_root`; returns the number of frames."""
    input_root, output_root = Path(input_root), Path(output_root)
    if not input_root.is_dir():
        raise DataError(f"{input_root}: input folder does not exist")
    if output_root.resolve() == input_root.resolve():
        raise DataError(f"{output_root}: output must differ from the input folder")
    sources = sorted(input_root.rglob("*.png"))
    if not sources:
        raise DataError(f"{input_root}: no .png files found")
    jobs = [(src, output_root / src.relative_to(input_root)) for src in sources]
    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(lambda job: downsample_file(job[0], job[1], scale), jobs))
    return len(jobs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, type=Path, help="GT frame folder (searched recursively)")
    parser.add_argument("--output", required=True, type=Path, help="LR frame folder (same relative paths)")
    parser.add_argument("--scale", type=int, default=4, help="downsampling factor (default: 4)")
    parser.add_argument("--workers", type=int, default=None, help="threads (default: min(8, CPUs))")
    args = parser.parse_args(argv)
    if args.scale < 1:
        parser.error("--scale must be a positive integer")
    try:
        count = generate_lr_tree(args.input, args.output, args.scale, args.workers)
    except VSRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {count} MATLAB-bicubic x{args.scale} LR frames to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
