"""Reading the aligned LR/GT crops of one training item's frames, as planar RGB uint8.

This is what `REDSRecurrentDataset` and `Vimeo90KRecurrentDataset` do per item once
`datasets.training` has parsed the request and seeded its generator: learn the LR frame size,
draw the crop origin, read the crops, and wrap them as the sample. Samples are uint8; the
division by 255 happens on the device (`vsr_accel.train.prefetch.DevicePrefetcher`), which gives
exactly the float32 values numpy's `astype(float32) / 255` gave before.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from datasets.io import FrameStore
from datasets.transforms import crop, random_crop_origin
from vsr_accel.core.errors import DataError


def read_aligned_crops(*, lq_store: FrameStore, gt_store: FrameStore, lq_keys: Sequence[str],
                       gt_keys: Sequence[str], lr_crop: tuple[int, int], scale: int,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Read the aligned LR/GT crops of an item's frames as planar RGB uint8 stacks: LR (T, 3, h, w)
    and GT (len(gt_keys), 3, scale*h, scale*w); the GT crop starts at scale * the LR crop's origin.

    The crop origin is drawn from the LR frame size. A raw store knows it from its meta, so the
    crop is drawn before anything is read and only the crop rows are copied; disk/LMDB stores
    decode the first LR frame to learn it (the draws are the same either way, so one seed gives
    the same sample from every backend). Decoded frames are cropped one at a time, so only one
    full frame is held at once.

    `gt_keys` may be a subset of the frames (EDVR's centre frame). Keys may repeat (Vimeo's
    flipped sequences): each distinct frame is decoded once.
    """
    first_key = lq_keys[0]
    lq_hw = lq_store.frame_hw(first_key)
    decoded: dict[str, np.ndarray] = {}
    if lq_hw is None:
        decoded[first_key] = lq_store.read(first_key)
        lq_hw = decoded[first_key].shape[:2]
    if lr_crop[0] > lq_hw[0] or lr_crop[1] > lq_hw[1]:
        raise DataError(f"{lq_store.describe(first_key)}: LR frame is {lq_hw[0]}x{lq_hw[1]}, smaller than "
                        f"the requested LR crop {lr_crop[0]}x{lr_crop[1]}")
    top, left = random_crop_origin(rng, lq_hw, lr_crop)

    def lr_size_error(key: str, hw: tuple[int, int]) -> DataError:
        return DataError(f"{lq_store.describe(key)}: LR frame is {hw[0]}x{hw[1]}, but "
                         f"{lq_store.describe(first_key)} is {lq_hw[0]}x{lq_hw[1]} (one size per clip)")

    def gt_size_error(key: str, hw: tuple[int, int]) -> DataError:
        lq_key = key if key in lq_keys else first_key  # both stores use the same keys
        return DataError(f"{gt_store.describe(key)} is {hw[0]}x{hw[1]} but its LR frame "
                         f"{lq_store.describe(lq_key)} is {lq_hw[0]}x{lq_hw[1]}: GT must be "
                         f"{scale}x the LR size ({lq_hw[0] * scale}x{lq_hw[1] * scale})")

    lq = crop_stack(lq_store, lq_keys, (top, left), lr_crop, lq_hw, lr_size_error, decoded)
    gt_hw = (lq_hw[0] * scale, lq_hw[1] * scale)
    gt = crop_stack(gt_store, gt_keys, (top * scale, left * scale), (lr_crop[0] * scale, lr_crop[1] * scale),
                    gt_hw, gt_size_error)
    return lq, gt


def crop_stack(store: FrameStore, keys: Sequence[str], origin: tuple[int, int], crop_hw: tuple[int, int],
               frame_hw: tuple[int, int], size_error, decoded: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """(len(keys), 3, h, w) RGB uint8: the crop at `origin` of each key's frame, every frame
    checked to be `frame_hw` (else `size_error(key, hw)` is raised). From a raw store this is a
    read-only view into its map (`RawFrames.crop_view`): pass it through
    `transforms.augment_planar`, which always returns a fresh array."""
    top, left = origin
    hw = store.frame_hw(keys[0])
    if hw is not None:  # crop-addressable (raw): one clip's frames share one size
        if tuple(hw) != tuple(frame_hw):
            raise size_error(keys[0], hw)
        return store.crop_view(keys, top, left, crop_hw)  # read when augment_planar copies it
    out = np.empty((len(keys), 3, *crop_hw), np.uint8)
    seen: dict[str, int] = {}
    for i, key in enumerate(keys):
        if key in seen:
            out[i] = out[seen[key]]
            continue
        frame = decoded.pop(key) if decoded and key in decoded else store.read(key)
        if frame.shape[:2] != tuple(frame_hw):
            raise size_error(key, frame.shape[:2])
        out[i] = np.moveaxis(crop(frame, top, left, crop_hw)[..., ::-1], -1, 0)  # BGR (h, w, 3) -> RGB (3, h, w)
        seen[key] = i
    return out


def to_sample(lq: np.ndarray, gt: np.ndarray, key: str, center_gt_only: bool) -> dict:
    """Planar RGB uint8 stacks -> the training sample: uint8 tensors (T, 3, h, w) / (T, 3, H, W),
    or GT (3, H, W) for EDVR's centre-frame target. The division by 255 happens after the copy
    to the device (`vsr_accel.train.prefetch.DevicePrefetcher`): a quarter of the bytes through the
    DataLoader's shared memory, pinned memory and PCIe."""
    lq_t = torch.from_numpy(np.ascontiguousarray(lq))
    gt_t = torch.from_numpy(np.ascontiguousarray(gt))
    return {"lq": lq_t, "gt": gt_t[0] if center_gt_only else gt_t, "key": key}
