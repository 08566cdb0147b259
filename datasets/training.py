"""What the training datasets share: the sampler's item request checked, the item's randomness,
and the item recipe (`TrainingClips`): pick the frames, read their aligned LR/GT crops
(`datasets.crops`), flip them all alike.

The batch sampler decides the shape of each batch (the multigrid curriculum changes crop size
and clip length between batches), so an item is requested as an `ItemRequest` (index, lr_crop,
num_frames, seed), or the plain 4-tuple it is. The dataset keeps no mutable state between items:
all randomness of one item comes from one `numpy.random.Generator` seeded by the request's `seed`,
drawn in one order (frames, crop position, flips), so it is reproducible regardless of worker
scheduling and of the store the frames come from.
"""
from __future__ import annotations

import numbers

import numpy as np
from torch.utils.data import Dataset

from datasets import checks
from datasets.crops import read_aligned_crops, to_sample
from datasets.io import FrameStore
from datasets.transforms import augment_planar, draw_augmentation
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


class TrainingClips(Dataset):
    """The item recipe of REDS and Vimeo-90K training sets. A subclass opens `gt_store` and
    `lq_store`, sets its options with `_set_item_options`, and says which frames an item reads
    (`_item_frames`); `dataset[request]` returns `{"lq": (T,3,h,w), "gt": (T,3,sh,sw), "key": str}`
    uint8 RGB, "gt" the centre frame (3, sh, sw) only with `center_gt_only` (EDVR)."""

    gt_store: FrameStore
    lq_store: FrameStore

    def _set_item_options(self, *, scale: int, random_reverse: bool, use_hflip: bool, use_rot: bool,
                          center_gt_only: bool) -> None:
        self.scale = checks.positive_int("scale", scale)
        self.random_reverse = checks.boolean("random_reverse", random_reverse)
        self.use_hflip = checks.boolean("use_hflip", use_hflip)
        self.use_rot = checks.boolean("use_rot", use_rot)
        self.center_gt_only = checks.boolean("center_gt_only", center_gt_only)

    def _item_frames(self, index: int, num_frames: int, rng: np.random.Generator) -> tuple[list[str], str]:
        """The frame keys of clip `index` an item reads (drawn from `rng`), and the sample's key."""
        raise NotImplementedError

    def __getitem__(self, item: tuple) -> dict:
        request = parse_request(item, len(self))
        if self.center_gt_only:
            check_center_frames(request.num_frames)
        rng = item_rng(request.seed)
        keys, sample_key = self._item_frames(request.index, request.num_frames, rng)
        gt_keys = [keys[len(keys) // 2]] if self.center_gt_only else keys
        lq, gt = read_aligned_crops(lq_store=self.lq_store, gt_store=self.gt_store, lq_keys=keys, gt_keys=gt_keys,
                                    lr_crop=request.crop_hw, scale=self.scale, rng=rng)
        flips = draw_augmentation(rng, self.use_hflip, self.use_rot)
        return to_sample(augment_planar(lq, *flips), augment_planar(gt, *flips), sample_key, self.center_gt_only)
