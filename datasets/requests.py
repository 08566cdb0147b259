"""What the training datasets share: checking the sampler's item request and the item's
randomness (reading the aligned LR/GT crops is `datasets.crops`).

The batch sampler decides the shape of each batch (the multigrid curriculum changes crop size
and clip length between batches), so an item is requested as an `ItemRequest` (index, lr_crop,
num_frames, seed), or the plain 4-tuple it is. The dataset keeps no mutable state between items:
all randomness of one item comes from one `numpy.random.Generator` seeded by the request's `seed`,
so it is reproducible regardless of worker scheduling.
"""
from __future__ import annotations

import numbers

import numpy as np

from vsr_accel.core.errors import ConfigError
from vsr_accel.core.item_request import ItemRequest


def parse_request(item: object, length: int) -> ItemRequest:
    """Validate `(index, lr_crop, num_frames, seed)`; `lr_crop` is an int or an (h, w) pair."""
    if not isinstance(item, tuple) or len(item) != 4:
        raise TypeError("training datasets are indexed with (index, lr_crop, num_frames, seed) from the batch "
                        f"sampler, got {item!r}")
    index, lr_crop, num_frames, seed = item
    index = int(index)
    if not 0 <= index < length:
        raise IndexError(f"clip index {index} out of range for a dataset of {length} clips")
    if isinstance(lr_crop, numbers.Integral):
        crop_hw = (int(lr_crop), int(lr_crop))
    else:
        crop_hw = tuple(int(v) for v in lr_crop)
    if len(crop_hw) != 2 or min(crop_hw) <= 0 or int(num_frames) <= 0:
        raise ValueError(f"invalid item request {item!r}: lr_crop and num_frames must be positive")
    return ItemRequest(index, crop_hw, int(num_frames), int(seed))


def item_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def check_center_frames(num_frames: int) -> None:
    if num_frames % 2 == 0:
        raise ConfigError(f"center_gt_only (EDVR) needs an odd number of frames per clip, got {num_frames}")
