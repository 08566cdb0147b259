#!/usr/bin/env python
"""Make LR frames from GT frames with MATLAB-compatible bicubic downsampling (the 'BI' degradation
of REDS and Vimeo-90K benchmarks).

Every .png under --input is resized by 1/--scale with `datasets.matlab_resize` (MATLAB's
imresize with antialiasing, uint8 rounding as MATLAB) and written to the same relative path
under --output, so `<gt>/<clip>/<frame>.png` becomes `<lr>/<clip>/<frame>.png`. GT sizes must be
multiples of the scale (the LR must be exactly 1/scale; crop the GT first otherwise).

  python scripts/generate_bicubic_lr.py --input data/vimeo90k/vimeo_septuplet/sequences --output data/vimeo90k/BIx4

The blur-downsampled 'BD' frames (UDM10, Vid4 and Vimeo-90K-T BDx4) come from
scripts/generate_bd_lr.py.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# Frames are processed in a thread pool; a multi-threaded BLAS inside each thread oversubscribes
# the CPU (3-4x slower on 2 cores). Must be set before numpy loads.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from datasets.degradations import bicubic_downsample_uint8, write_lr_tree  # noqa: E402
from vsr_accel.errors import VSRError  # noqa: E402


def generate_lr_tree(input_root: Path, output_root: Path, scale: int = 4, workers: int | None = None) -> int:
    """Downsample every PNG under `input_root` into `output_root`; returns the number of frames."""
    return write_lr_tree(input_root, output_root, bicubic_downsample_uint8, scale, workers)


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
