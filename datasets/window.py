"""What the training datasets share: the sampler's item request and per-item randomness
(reading the aligned LR/GT crop is `datasets.crops`).

The batch sampler decides the shape of each batch (the multigrid curriculum changes crop size
and clip length between batches), so an item is requested as `(index, lr_crop, num_frames)`
or `(index, lr_crop, num_frames, seed)`. The dataset keeps no mutable state between items:
all randomness of one item comes from one `numpy.random.Generator`, seeded by the request's
`seed` when given (reproducible regardless of worker scheduling), else by one draw from numpy's
global RNG (which torch's DataLoader seeds differently in every worker).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from vsr_accel.core.errors import ConfigError


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
