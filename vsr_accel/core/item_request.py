"""What the batch sampler asks a training dataset for, one item at a time: `dataset[request]`.

The sampler (`vsr_accel.schedule.sampler`) decides every batch's shape, because the multigrid
curriculum changes the crop and the clip length between batches; the dataset (`datasets/`)
crops clip `index` to that shape and draws all of the item's randomness (window, crop position,
flips) from `seed`. One type on both sides of the DataLoader, so the request has one set of names.
"""
from __future__ import annotations

from typing import NamedTuple


class ItemRequest(NamedTuple):
    index: int  # which clip, 0 <= index < len(dataset)
    lr_crop: int | tuple[int, int]  # LR patch side, or its (h, w); the sampler asks for squares
    num_frames: int
    seed: int  # the item's randomness: a function of (run seed, global sample number)

    @property
    def crop_hw(self) -> tuple[int, int]:
        """The LR patch as (h, w)."""
        return (self.lr_crop, self.lr_crop) if isinstance(self.lr_crop, int) else tuple(self.lr_crop)
