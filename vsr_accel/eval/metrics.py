"""PSNR and SSIM with BasicSR 1.4.2's exact definitions, on the 8-bit frames BasicSR reports on
(validation, evaluation and inference's fidelity check all score through here).

Users compare our numbers with tables produced by BasicSR, so the definitions follow
`basicsr/metrics/psnr_ssim.py` to the last digit:

* images on the 0..255 scale, arithmetic in float64, `crop_border` pixels dropped on each edge;
* PSNR = 10 log10(255^2 / MSE) over all remaining pixels and channels, `inf` when MSE is 0;
* SSIM per channel with an 11x11 Gaussian window (sigma 1.5), "valid" region only (no padded
  border enters the mean), C1 = (0.01*255)^2, C2 = (0.03*255)^2, then averaged over channels;
* `test_y_channel` measures the BT.601 luma of MATLAB's `rgb2ycbcr`
  (Y = (65.481 R + 128.553 G + 24.966 B) / 255 + 16 with R, G, B in 0..255). BasicSR rounds
  that luma through float32 twice (its `to_y_channel` casts to float32 and `bgr2ycbcr` returns
  float32); we reproduce that rounding, which makes our Y-PSNR identical to BasicSR's on real
  frames (plain float64 luma drifts by up to ~4e-7 dB).

Channel order: BasicSR's numpy path assumes BGR (OpenCV) images for `test_y_channel`. Our
frames are RGB, so the numpy API takes an explicit `channel_order` instead of guessing.

Quantisation: BasicSR reports metrics on the 8-bit images written by `tensor2img`
(clamp to [0, 1], `(x * 255).round()` in float32). `tensor_to_uint8_image` does the same
(`vsr_accel.core.pixels.quantize_like_tensor2img`), so validation numbers computed on raw network
output equal the numbers reported after saving 8-bit frames. The SSIM uses a separable valid-mode
filter instead of `cv2.filter2D`; the two agree to float64 rounding (~1e-13 on real frames), which
keeps this core free of OpenCV.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from vsr_accel.core.pixels import quantize_like_tensor2img

ChannelOrder = Literal["rgb", "bgr"]

_PEAK = 255.0
_SSIM_C1 = (0.01 * _PEAK) ** 2
_SSIM_C2 = (0.03 * _PEAK) ** 2
_WINDOW_SIZE = 11
_WINDOW_SIGMA = 1.5
# MATLAB rgb2ycbcr luma weights for R, G, B in [0, 1]; output on the 0..255 scale.
_Y_WEIGHTS_RGB = (65.481, 128.553, 24.966)
_Y_OFFSET = 16.0


def gaussian_window_1d(size: int = _WINDOW_SIZE, sigma: float = _WINDOW_SIGMA) -> np.ndarray:
    """The normalised 1-D Gaussian of `cv2.getGaussianKernel(size, sigma)` (float64).

    SSIM's 2-D window is its outer product; computing it here keeps the core free of OpenCV.
    """
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    taps = np.exp(-0.5 / (sigma * sigma) * offsets * offsets)
    return taps / taps.sum()


# --------------------------------------------------------------------------- numpy (reporting)

def calculate_psnr(img: np.ndarray, img2: np.ndarray, crop_border: int, test_y_channel: bool = False,
                   channel_order: ChannelOrder = "rgb") -> float:
    """PSNR in dB of two HWC (or HW) images on the 0..255 scale; `inf` for identical images."""
    a, b = _prepare_pair(img, img2, crop_border, test_y_channel, channel_order, min_side=1)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(_PEAK * _PEAK / mse))


def calculate_ssim(img: np.ndarray, img2: np.ndarray, crop_border: int, test_y_channel: bool = False,
                   channel_order: ChannelOrder = "rgb") -> float:
    """SSIM (mean over channels) of two HWC (or HW) images on the 0..255 scale."""
    a, b = _prepare_pair(img, img2, crop_border, test_y_channel, channel_order, min_side=_WINDOW_SIZE)
    window = gaussian_window_1d()
    per_channel = [_ssim_single_channel(a[..., c], b[..., c], window) for c in range(a.shape[2])]
    return float(np.mean(per_channel))


def _prepare_pair(img: np.ndarray, img2: np.ndarray, crop_border: int, test_y_channel: bool,
                  channel_order: str, min_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate, crop, optionally take luma, and return float64 HWC arrays."""
    img, img2 = np.asarray(img), np.asarray(img2)
    if img.shape != img2.shape:
        raise ValueError(f"image shapes differ: {img.shape} vs {img2.shape}")
    _check_channel_order(channel_order)
    img, img2 = _as_hwc(img), _as_hwc(img2)
    img, img2 = _crop(img, crop_border, min_side), _crop(img2, crop_border, min_side)
    if test_y_channel:
        return _luma_like_basicsr(img, channel_order), _luma_like_basicsr(img2, channel_order)
    return img.astype(np.float64), img2.astype(np.float64)


def _check_channel_order(channel_order: str) -> None:
    if channel_order not in ("rgb", "bgr"):
        raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")


def _as_hwc(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 3):
        raise ValueError(f"expected an HWC image with 1 or 3 channels (or HW), got shape {img.shape}")
    return img


def _crop(img: np.ndarray, crop_border: int, min_side: int) -> np.ndarray:
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    height, width = img.shape[0] - 2 * crop_border, img.shape[1] - 2 * crop_border
    if min(height, width) < min_side:
        raise ValueError(f"image of shape {img.shape} with crop_border={crop_border} leaves "
                         f"{height}x{width} pixels; the metric needs at least {min_side}x{min_side}")
    if crop_border == 0:
        return img
    return img[crop_border:-crop_border, crop_border:-crop_border, :]


def _luma_like_basicsr(img: np.ndarray, channel_order: str) -> np.ndarray:
    """(H, W, 1) float64 luma on the 0..255 scale, rounded through float32 like `to_y_channel`."""
    unit = img.astype(np.float32) / np.float32(255.0)
    if unit.shape[2] == 1:  # BasicSR leaves grey images alone apart from the float32 round trip
        return (unit * np.float32(255.0)).astype(np.float64)
    weights = _Y_WEIGHTS_RGB if channel_order == "rgb" else _Y_WEIGHTS_RGB[::-1]
    luma = np.dot(unit.astype(np.float64), np.asarray(weights, dtype=np.float64)) + _Y_OFFSET
    luma = (luma / 255.0).astype(np.float32) * np.float32(255.0)
    return luma.astype(np.float64)[..., None]


def _valid_filter(img: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable Gaussian filtering keeping only positions where the window fits inside."""
    size = window.shape[0]
    rows_out, cols_out = img.shape[0] - size + 1, img.shape[1] - size + 1
    vertical = sum(window[k] * img[k:k + rows_out, :] for k in range(size))
    return sum(window[k] * vertical[:, k:k + cols_out] for k in range(size))


def _ssim_single_channel(a: np.ndarray, b: np.ndarray, window: np.ndarray) -> float:
    mu_a, mu_b = _valid_filter(a, window), _valid_filter(b, window)
    var_a = _valid_filter(a * a, window) - mu_a * mu_a
    var_b = _valid_filter(b * b, window) - mu_b * mu_b
    cov = _valid_filter(a * b, window) - mu_a * mu_b
    numerator = (2 * mu_a * mu_b + _SSIM_C1) * (2 * cov + _SSIM_C2)
    denominator = (mu_a * mu_a + mu_b * mu_b + _SSIM_C1) * (var_a + var_b + _SSIM_C2)
    return float(np.mean(numerator / denominator))


def tensor_to_uint8_image(t: torch.Tensor) -> np.ndarray:
    """(3, H, W) RGB tensor in [0, 1] -> (H, W, 3) uint8 RGB array, rounded like `tensor2img`."""
    if t.dim() != 3 or t.shape[0] != 3:
        raise ValueError(f"expected an RGB tensor of shape (3, H, W), got {tuple(t.shape)}")
    return quantize_like_tensor2img(t.cpu()).permute(1, 2, 0).contiguous().numpy()


__all__ = [
    "calculate_psnr",
    "calculate_ssim",
    "gaussian_window_1d",
    "tensor_to_uint8_image",
]
