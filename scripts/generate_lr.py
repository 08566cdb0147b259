#!/usr/bin/env python
"""Make LR frames from GT frames with one of the two degradations VSR benchmarks use.

  --kind bi   MATLAB-compatible bicubic downsampling, the 'BI' of the REDS and Vimeo-90K
              benchmarks: `datasets.matlab_resize` (MATLAB's imresize with antialiasing, uint8
              rounding as MATLAB).
  --kind bd   Gaussian blur sigma 1.6, then x4 subsampling, the 'BD' of the UDM10, Vid4 and
              Vimeo-90K-T BDx4 benchmarks, exactly as BasicVSR's MATLAB script BD_degradation.m
              defines it (`datasets.degradations`): a 12x12 kernel (ceil(3 sigma) * 2 + 2) from
              fspecial('gaussian'), imfilter with 'replicate' padding, keep rows/columns
              2:4:end-2 (1-based; 0-based 1, 5, 9, ...: LR pixel m is centred on HR 4m + 1.5, the
              same grid as MATLAB's bicubic imresize), round half away from zero to uint8.

Every .png under --input is written to the same relative path under --output, so
`<gt>/<clip>/<frame>.png` becomes `<lr>/<clip>/<frame>.png`. GT sizes must be multiples of the
scale (the LR must be exactly 1/scale; crop the GT first otherwise).

  python scripts/generate_lr.py --kind bi --input data/vimeo90k/vimeo_septuplet/sequences --output data/vimeo90k/BIx4
  python scripts/generate_lr.py --kind bd --input data/Vid4/GT --output data/Vid4/BDx4
  python scripts/generate_lr.py --kind bd --input data/vimeo90k/vimeo_septuplet/sequences \
      --output data/vimeo90k/BDx4
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

from datasets.degradations import (BD_SIGMA, bd_downsample_uint8, bd_kernel_size,  # noqa: E402
                                   bicubic_downsample_uint8, write_lr_tree)
from vsr_accel.core.errors import VSRError  # noqa: E402
from vsr_accel.core.cli import ArgumentParser  # noqa: E402

KINDS = ("bi", "bd")


def generate_lr_tree(input_root: Path, output_root: Path, kind: str, scale: int = 4, sigma: float = BD_SIGMA,
                     workers: int | None = None) -> int:
    """Degrade every PNG under `input_root` into `output_root` (`kind` 'bi' or 'bd'; `sigma` is
    BD's); returns the number of frames."""
    if kind == "bi":
        return write_lr_tree(input_root, output_root, bicubic_downsample_uint8, scale, workers)

    def degrade(image, factor: int):
        return bd_downsample_uint8(image, factor, sigma)

    return write_lr_tree(input_root, output_root, degrade, scale, workers)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", required=True, choices=KINDS,
                        help="bi: MATLAB bicubic; bd: Gaussian blur + subsampling")
    parser.add_argument("--input", required=True, type=Path, help="GT frame folder (searched recursively)")
    parser.add_argument("--output", required=True, type=Path, help="LR frame folder (same relative paths)")
    parser.add_argument("--scale", type=int, default=4, help="downsampling factor, even for bd (default: 4)")
    parser.add_argument("--sigma", type=float, default=None, help=f"bd: Gaussian sigma (default: {BD_SIGMA})")
    parser.add_argument("--workers", type=int, default=None, help="threads (default: min(8, CPUs))")
    args = parser.parse_args(argv)
    if args.kind == "bi":
        if args.scale < 1:
            parser.error("--scale must be a positive integer")
        if args.sigma is not None:
            parser.error("--sigma is only used with --kind bd")
    else:
        if args.scale < 2 or args.scale % 2:
            parser.error("--scale must be an even integer (BD keeps pixels scale/2:scale:end-scale/2)")
        if args.sigma is not None and not args.sigma > 0:
            parser.error("--sigma must be positive")
    sigma = BD_SIGMA if args.sigma is None else args.sigma
    try:
        count = generate_lr_tree(args.input, args.output, args.kind, args.scale, sigma, args.workers)
    except VSRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.kind == "bi":
        print(f"wrote {count} MATLAB-bicubic x{args.scale} LR frames to {args.output}")
    else:
        size = bd_kernel_size(sigma)
        print(f"wrote {count} BD x{args.scale} LR frames (Gaussian sigma {sigma:g}, {size}x{size} kernel) "
              f"to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
