"""LR frames for the two benchmark degradations, and a GT-tree -> LR-tree writer for both.

- BI: MATLAB bicubic `imresize(gt, 1/4)` (`datasets.matlab_resize`), REDS4 / Vimeo-90K-T / Vid4 BIx4.
- BD: Gaussian blur sigma 1.6 then x4 subsampling, UDM10 / Vimeo-90K-T / Vid4 BDx4, defined by
  the MATLAB script BasicVSR's author points to (github.com/ckkelvinchan/BasicVSR-IconVSR
  BD_degradation.m; the same as RCAN's / RDN's `imresize_BD` for even scales)::

      kernelsize = ceil(sigma * 3) * 2 + 2;                 % 12 for sigma 1.6: an EVEN size
      kernel = fspecial('gaussian', kernelsize, sigma);
      lq = imfilter(gt, kernel, 'replicate');               % correlation, replicate padding
      lq = lq(scale/2:scale:end-scale/2, scale/2:scale:end-scale/2, :);

  In 0-based terms: the 12x12 kernel samples exp(-(x^2+y^2) / (2 sigma^2)) at x, y = -5.5 .. 5.5,
  normalised to sum 1; imfilter puts its centre tap at index floor((12+1)/2) = 6 (1-based), so
  blurred pixel i weighs input pixels i-5 .. i+6 and is centred at i + 0.5; the subsampling keeps
  rows and columns 1, 5, 9, ... (1-based 2:4:end-2), so LR pixel m is centred at HR 4m + 1.5, the
  centre of HR block 4m .. 4m+3, the same grid as MATLAB's bicubic imresize. Values are computed
  in float64 on 0..255, then rounded half away from zero and saturated to uint8 (MATLAB's uint8
  arithmetic; im2double -> imwrite gives the same up to ties).

  The common mistake is another BD: DUF's (BasicSR's `duf_downsample`) uses a 13x13 kernel,
  reflect padding and keeps HR pixels 0, 4, 8, ..., so its LR sits 1.5 HR pixels off the MATLAB
  grid. In MMagic issue #318 a user's DUF-style Vid4 BDx4 gave 20.2 dB with MMagic's BasicVSR BD
  model (27.98 dB with MMagic's data, #948); in #803 UDM10 made with another script scored 27.1
  instead of 40.0 dB, which BasicVSR's author attributes to the pixel shift.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from datasets.matlab_resize import imresize_uint8
from vsr_accel.core.errors import DataError

BD_SIGMA = 1.6


def bd_kernel_size(sigma: float = BD_SIGMA) -> int:
    """`ceil(sigma * 3) * 2 + 2` (12 for sigma 1.6), the even-scale size of BD_degradation.m."""
    return math.ceil(sigma * 3) * 2 + 2


def gaussian_kernel_1d(size: int, sigma: float) -> np.ndarray:
    """The 1-D factor of MATLAB's `fspecial('gaussian', size, sigma)`: samples at
    -(size-1)/2 .. (size-1)/2, normalised. fspecial's 2-D kernel is its outer product, unless
    fspecial zeroes taps below eps * max, which it never does for the sizes BD uses (refused)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    if (np.outer(g, g) < np.finfo(np.float64).eps * g.max() ** 2).any():
        raise ValueError(f"sigma {sigma} with kernel size {size}: fspecial would zero tail taps "
                         "(not a separable kernel; not a BD setting)")
    return g / g.sum()


@lru_cache(maxsize=64)
def bd_matrix(in_length: int, scale: int = 4, sigma: float = BD_SIGMA) -> np.ndarray:
    """(out, in) float64 matrix M with `lr = M @ hr` along one axis: imfilter's correlation with
    replicate padding, then the samples `scale/2 : scale : end - scale/2` (1-based)."""
    if scale < 2 or scale % 2:
        raise ValueError(f"BD subsampling `scale/2:scale:end-scale/2` needs an even scale, got {scale}")
    size = bd_kernel_size(sigma)
    weights = gaussian_kernel_1d(size, sigma)
    centre = (size + 1) // 2 - 1               # imfilter's centre tap, 0-based (5 for size 12)
    kept = np.arange(scale // 2 - 1, in_length - scale // 2, scale)  # 0-based rows of 2:4:end-2
    matrix = np.zeros((len(kept), in_length), dtype=np.float64)
    for tap, weight in enumerate(weights):
        source = np.clip(kept + tap - centre, 0, in_length - 1)   # replicate padding
        np.add.at(matrix, (np.arange(len(kept)), source), weight)
    return matrix


def bd_downsample(image: np.ndarray, scale: int = 4, sigma: float = BD_SIGMA) -> np.ndarray:
    """BD of an (h, w) or (h, w, c) image in float64, not rounded: (h/scale, w/scale[, c])."""
    if image.ndim not in (2, 3):
        raise ValueError(f"expected an (h, w) or (h, w, c) image, got shape {image.shape}")
    h, w = image.shape[:2]
    rows, cols = bd_matrix(h, scale, float(sigma)), bd_matrix(w, scale, float(sigma))
    data = image.astype(np.float64)
    tall = np.tensordot(rows, data, axes=(1, 0))                      # (out_h, w[, c])
    return np.moveaxis(np.tensordot(cols, tall, axes=(1, 1)), 0, 1)   # (out_h, out_w[, c])


def bd_downsample_uint8(image: np.ndarray, scale: int = 4, sigma: float = BD_SIGMA) -> np.ndarray:
    """uint8 in, uint8 out: round half away from zero and saturate, as MATLAB's uint8 imfilter."""
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    return np.clip(np.floor(bd_downsample(image, scale, sigma) + 0.5), 0, 255).astype(np.uint8)


def bicubic_downsample_uint8(image: np.ndarray, scale: int = 4) -> np.ndarray:
    """BI: MATLAB's `imresize(image, 1/scale)` on uint8."""
    return imresize_uint8(image, 1 / scale)


DEGRADATIONS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "BI": bicubic_downsample_uint8,
    "BD": bd_downsample_uint8,
}


def degrade_file(source: Path, target: Path, scale: int, degrade: Callable[[np.ndarray, int], np.ndarray]) -> tuple[int, int]:
    """Write the LR of one GT frame; returns the LR (h, w). GT sizes must be multiples of the
    scale, so that GT = scale x LR exactly (the evaluators compare the two frame for frame)."""
    image = cv2.imread(str(source), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"{source}: missing or unreadable image")
    if image.dtype != "uint8":
        raise DataError(f"{source}: {image.dtype} image; only 8-bit frames are supported")
    h, w = image.shape[:2]
    if h % scale or w % scale:
        raise DataError(f"{source}: {h}x{w} is not a multiple of the scale {scale} (crop the GT first)")
    lr = degrade(image, scale)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(target), lr):
        raise DataError(f"{target}: cannot write image")
    return lr.shape[0], lr.shape[1]


def write_lr_tree(input_root: Path, output_root: Path, degrade: Callable[[np.ndarray, int], np.ndarray],
                  scale: int = 4, workers: int | None = None) -> int:
    """Degrade every PNG under `input_root` into the same relative path under `output_root`;
    returns the number of frames."""
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
        list(pool.map(lambda job: degrade_file(job[0], job[1], scale, degrade), jobs))
    return len(jobs)
