"""What the training datasets share: the sampler's item request, per-item randomness, and
reading an aligned LR/GT crop from a window of frames.

The batch sampler decides the shape of each batch (the multigrid curriculum changes crop size
and clip length between batches), so an item is requested as `(index, lr_crop, num_frames)`
or `(index, lr_crop, num_frames, seed)`. The dataset keeps no mutable state between items:
all randomness of one item comes from one `numpy.random.Generator`, seeded by the request's
`seed` when given (reproducible regardless of worker scheduling), else by one draw from numpy's
global RNG (which torch's DataLoader seeds differently in every worker).
"""
from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from datasets.io import FrameStore, bgr_uint8_to_rgb_float
from datasets.transforms import crop, random_crop_origin
from vsr_accel.errors import ConfigError, DataError


@dataclass(frozen=True)
class ItemRequest:
    index: int
    lr_crop: tuple[int, int]  # (h, w) of the LR patch
    num_frames: int
    seed: int | None = None


def parse_request(item: object, length: int) -> ItemRequest:
    """Validate `(index, lr_crop, num_frames[, seed])`; `lr_crop` is an int or an (h, w) pair."""
    if not isinstance(item, tuple) or len(item) not in (3, 4):
        raise TypeError("training datasets are indexed with (index, lr_crop, num_frames[, seed]) from the "
                        f"batch sampler, got {item!r}")
    index, lr_crop, num_frames = item[:3]
    seed = item[3] if len(item) == 4 else None
    index = int(index)
    if not 0 <= index < length:
        raise IndexError(f"clip index {index} out of range for a dataset of {length} clips")
    if isinstance(lr_crop, numbers.Integral):
        crop_hw = (int(lr_crop), int(lr_crop))
    else:
        crop_hw = tuple(int(v) for v in lr_crop)
    if len(crop_hw) != 2 or min(crop_hw) <= 0 or int(num_frames) <= 0:
        raise ValueError(f"invalid item request {item!r}: lr_crop and num_frames must be positive")
    return ItemRequest(index, crop_hw, int(num_frames), None if seed is None else int(seed))


def item_rng(seed: int | None) -> np.random.Generator:
    if seed is None:
        seed = int(np.random.randint(0, 2**63 - 1, dtype=np.int64))
    return np.random.default_rng(seed)


def check_center_frames(num_frames: int) -> None:
    if num_frames % 2 == 0:
        raise ConfigError(f"center_gt_only (EDVR) needs an odd number of frames per clip, got {num_frames}")


def read_aligned_window(*, lq_store: FrameStore, gt_store: FrameStore, lq_keys: Sequence[str],
                        gt_keys: Sequence[str], lr_crop: tuple[int, int], scale: int,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Read the frames of one window and crop each as soon as it is decoded, so only one full
    frame is held at a time. Returns BGR uint8 stacks: LR (T, h, w, 3) and GT (len(gt_keys),
    scale*h, scale*w, 3); the GT crop starts at scale * the LR crop's origin.

    `gt_keys` may be a subset of the window (EDVR's centre frame); the first GT key must then be
    one of the LR keys' frames. Keys may repeat (Vimeo's flipped sequences): each distinct frame
    is decoded once.
    """
    lq_cache: dict[str, np.ndarray] = {}
    first = lq_store.read(lq_keys[0])
    frame_hw = first.shape[:2]
    if lr_crop[0] > frame_hw[0] or lr_crop[1] > frame_hw[1]:
        raise DataError(f"{lq_store.describe(lq_keys[0])}: LR frame is {frame_hw[0]}x{frame_hw[1]}, smaller than "
                        f"the requested LR crop {lr_crop[0]}x{lr_crop[1]}")
    top, left = random_crop_origin(rng, frame_hw, lr_crop)
    gt_crop = (lr_crop[0] * scale, lr_crop[1] * scale)

    def lq_patch(key: str, frame: np.ndarray | None = None) -> np.ndarray:
        if key not in lq_cache:
            frame = lq_store.read(key) if frame is None else frame
            if frame.shape[:2] != frame_hw:
                raise DataError(f"{lq_store.describe(key)}: LR frame is {frame.shape[0]}x{frame.shape[1]}, but "
                                f"{lq_store.describe(lq_keys[0])} is {frame_hw[0]}x{frame_hw[1]} (one size per clip)")
            lq_cache[key] = crop(frame, top, left, lr_crop)
        return lq_cache[key]

    lq_patch(lq_keys[0], first)
    lq = np.stack([lq_patch(key) for key in lq_keys])

    gt_cache: dict[str, np.ndarray] = {}
    for key in gt_keys:
        if key in gt_cache:
            continue
        frame = gt_store.read(key)
        expected = (frame_hw[0] * scale, frame_hw[1] * scale)
        if frame.shape[:2] != expected:
            lq_key = key if key in lq_cache else lq_keys[0]  # both stores use the same keys
            raise DataError(f"{gt_store.describe(key)} is {frame.shape[0]}x{frame.shape[1]} but its LR frame "
                            f"{lq_store.describe(lq_key)} is {frame_hw[0]}x{frame_hw[1]}: GT must be "
                            f"{scale}x the LR size ({expected[0]}x{expected[1]})")
        gt_cache[key] = crop(frame, top * scale, left * scale, gt_crop)
    gt = np.stack([gt_cache[key] for key in gt_keys])
    return lq, gt


def to_sample(lq: np.ndarray, gt: np.ndarray, key: str, center_gt_only: bool) -> dict:
    """BGR uint8 stacks -> the training sample: RGB float32 tensors (T, 3, h, w) / (T, 3, H, W),
    or GT (3, H, W) for EDVR's centre-frame target."""
    lq_t = torch.from_numpy(bgr_uint8_to_rgb_float(lq))
    gt_t = torch.from_numpy(bgr_uint8_to_rgb_float(gt))
    return {"lq": lq_t, "gt": gt_t[0] if center_gt_only else gt_t, "key": key}
