"""Vimeo-90K septuplets (`<root>/<00001>/<0001>/im1..im7.png`) for training.

Frame keys follow BasicSR: `00001/0001/im1` (the LMDB key, and the path without extension).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from datasets import checks
from datasets.io import FrameStore, check_keys_exist, open_stores
from datasets.meta_info import clips_from_lmdb, clips_from_raw_store, read_clip_meta
from datasets.training import TrainingClips
from vsr_accel.core.errors import DataError

SEPTUPLET = tuple(range(1, 8))  # im1 .. im7
CENTER = 4


def septuplet_key(clip: str, frame: int) -> str:
    return f"{clip}/im{frame}"


def list_septuplets(backend: str, meta_info_file: Any, lq_store: FrameStore) -> tuple[list[str], str]:
    """Septuplet names (`00001/0001`) from a meta-info / `sep_*list.txt` file, else from the LQ
    root (LQ always has all seven frames; BasicSR's GT LMDB may hold only im4)."""
    if meta_info_file is not None:
        path = checks.existing_file("meta_info_file", meta_info_file)
        return [clip.name for clip in read_clip_meta(path)], str(path)
    root = Path(lq_store.location)
    if backend == "lmdb":
        return [clip.name for clip in clips_from_lmdb(root)], f"{root}/meta_info.txt"
    if backend == "raw":
        return [clip.name for clip in clips_from_raw_store(lq_store)], f"{root}/meta.json"
    names = [f"{outer.name}/{inner.name}" for outer in sorted(p for p in root.iterdir() if p.is_dir())
             for inner in sorted(p for p in outer.iterdir() if p.is_dir())]
    if not names:
        raise DataError(f"{root}: no septuplet folders (expected <root>/00001/0001/im1.png)")
    return names, str(root)


def check_septuplets(clips: list[str], source: str, lq_store: FrameStore, gt_store: FrameStore,
                     gt_frames: tuple[int, ...]) -> None:
    """A few septuplets must exist in both roots; a GT store with only im4 (BasicSR's
    `vimeo90k_train_GT_only4th.lmdb`) is named as such, since recurrent models need all seven."""
    try:
        for clip in checks.spread(clips):
            check_keys_exist(lq_store, [septuplet_key(clip, 1), septuplet_key(clip, 7)], source)
            first_gt = septuplet_key(clip, gt_frames[0])
            if not gt_store.has(first_gt) and gt_store.has(septuplet_key(clip, CENTER)):
                raise DataError(f"{gt_store.location} holds only the centre frame (im4) of '{clip}': recurrent "
                                "training needs all seven GT frames (rebuild the GT LMDB with "
                                "scripts/create_lmdb.py --layout vimeo), or set center_gt_only for EDVR")
            check_keys_exist(gt_store, [septuplet_key(clip, f) for f in (gt_frames[0], gt_frames[-1])], source)
    finally:
        lq_store.close()
        gt_store.close()


class Vimeo90KRecurrentDataset(TrainingClips):
    """Vimeo-90K training septuplets with aligned LR/GT crops (BasicSR's Vimeo90KRecurrentDataset).

    Indexed like `REDSRecurrentDataset` (see `datasets.training`); samples are uint8 RGB like
    its. For `num_frames` T:

    - with `flip_sequence` (default): T consecutive frames of the septuplet followed by its
      reverse (1..7,7..1: BasicSR's `flip_sequence`, which always returns all 14), at a uniform
      start among the 15 - T that fit. The paper (supplementary A) flips and concatenates to
      reach 14 frames and samples every temporal stage as a random segment of the sequence, so
      its 6- and 10-frame stages see every segment, including those across the turn (5,6,7,7,6,5);
      T = 14 is the whole sequence;
    - without it: T consecutive frames of the septuplet at a uniform start (T <= 7);
    - with `center_gt_only` (EDVR): the T frames centred on im4, as BasicSR's
      Vimeo90KDataset, so a GT store with only im4 suffices.

    `random_reverse` reverses the septuplet before this, per item (BasicSR flips a list shared
    by all items instead). `max_frames` is 14 with `flip_sequence`, else 7. `interval_list` is
    accepted only as [1], so BasicSR option files (which carry it) load unchanged.
    """

    def __init__(self, *, dataroot_gt: str | Path, dataroot_lq: str | Path, meta_info_file: str | Path | None = None,
                 io_backend: str | dict = "disk", scale: int = 4, random_reverse: bool = False,
                 use_hflip: bool = True, use_rot: bool = True, flip_sequence: bool = True,
                 filename_ext: str = "png", center_gt_only: bool = False,
                 interval_list: tuple[int, ...] | list[int] = (1,)):
        backend = checks.io_backend_type(io_backend)
        if checks.positive_int_list("interval_list", interval_list) != (1,):
            raise checks.OptionValueError("interval_list", f"Vimeo-90K septuplets are read at interval 1, "
                                                           f"got {list(interval_list)}")
        self._set_item_options(scale=scale, random_reverse=random_reverse, use_hflip=use_hflip, use_rot=use_rot,
                               center_gt_only=center_gt_only)
        self.flip_sequence = checks.boolean("flip_sequence", flip_sequence)
        ext = checks.file_extension("filename_ext", filename_ext)
        self.gt_store, self.lq_store = open_stores(backend, dataroot_gt, dataroot_lq, ext)
        self.clips, source = list_septuplets(backend, meta_info_file, self.lq_store)
        gt_frames = (CENTER,) if self.center_gt_only else SEPTUPLET
        check_septuplets(self.clips, source, self.lq_store, self.gt_store, gt_frames)

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def max_frames(self) -> int:
        if self.center_gt_only:
            return len(SEPTUPLET)
        return 2 * len(SEPTUPLET) if self.flip_sequence else len(SEPTUPLET)

    @property
    def min_lr_size(self) -> tuple[int, int] | None:
        return None  # Vimeo-90K frames are 256x448 (LR 64x112), but a custom set may differ

    def _item_frames(self, index: int, num_frames: int, rng: np.random.Generator) -> tuple[list[str], str]:
        clip = self.clips[index]
        if num_frames > self.max_frames:
            raise DataError(f"septuplet '{clip}' in {self.lq_store.location} gives at most {self.max_frames} frames "
                            f"(flip_sequence={self.flip_sequence}), fewer than the {num_frames} requested")
        return [septuplet_key(clip, f) for f in self._frames(rng, num_frames)], clip

    def _frames(self, rng: np.random.Generator, num_frames: int) -> list[int]:
        order = list(SEPTUPLET)
        if self.random_reverse and rng.random() < 0.5:
            order.reverse()
        if self.center_gt_only:
            half = num_frames // 2
            return order[CENTER - 1 - half:CENTER + half]
        sequence = flip_concat(order) if self.flip_sequence else order
        start = int(rng.integers(0, len(sequence) - num_frames + 1))
        return sequence[start:start + num_frames]


def flip_concat(frames: list[int]) -> list[int]:
    """7 frames -> 14: the sequence then its reverse (the paper's supplementary A)."""
    return frames + frames[::-1]
