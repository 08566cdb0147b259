"""REDS (and any `<root>/<clip>/<frame>.png` set) for training recurrent VSR models."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from datasets import checks
from datasets.io import check_keys_exist, open_stores
from datasets.meta_info import ClipInfo, clips_from_lmdb, clips_from_raw_store, read_clip_meta, scan_clip_folders
from datasets.training import TrainingClips
from vsr_accel.core.errors import DataError

# REDS4 = four clips of the original training set used for testing (EDVR, BasicVSR). 'official'
# = REDS's validation clips 000-029, renamed 240-269 by scripts/regroup_reds_val.py.
VAL_PARTITIONS = {
    "REDS4": ("000", "011", "015", "020"),
    "official": tuple(f"{i:03d}" for i in range(240, 270)),
}


class REDSRecurrentDataset(TrainingClips):
    """Random runs of frames of REDS clips with aligned LR/GT crops (BasicSR's REDSRecurrentDataset).

    `dataset[(index, lr_crop, num_frames, seed)]` (an `ItemRequest`) picks clip `index` (0 <= index
    < len), an interval from `interval_list` among those for which the frames fit, a uniform start
    frame, optionally reverses time, crops `lr_crop` at a uniform position (GT: `scale` x, same place)
    and applies one flip/rotation to all frames. Returns `{"lq": (T,3,h,w), "gt": (T,3,sh,sw),
    "key": "<clip>/<start frame>"}`, uint8 RGB (the device-side prefetcher makes them float32 in
    [0, 1]); with `center_gt_only` (EDVR) "gt" is the centre frame (3, sh, sw) and only that GT
    frame is read. See `datasets.training` for how randomness is drawn; the draws do not depend on
    `io_backend` ('disk', 'lmdb' or 'raw'), so one seed gives the same sample from each.

    Differences from BasicSR, on purpose: the frame count is read per clip from the meta info
    (BasicSR hard-codes 100), and the start frame is uniform over all valid starts (BasicSR
    draws a frame key and redraws when the frames overrun the clip, and bounds the start by
    `100 - num_frame * interval`, one frame stricter for interval > 1).

    `meta_info_file` lines are `<clip> <num_frames> (h,w,c)`; without one the clips are the GT
    root's sub-folders (disk), the GT LMDB's keys or the GT raw store's clips. `val_partition` removes REDS4 / official
    clips from training (or, with `test_mode`, keeps only them); None keeps every clip.
    `dataroot_flow` exists only so BasicSR option files load; optical-flow inputs are not used.
    """

    def __init__(self, *, dataroot_gt: str | Path, dataroot_lq: str | Path, meta_info_file: str | Path | None = None,
                 io_backend: str | dict = "disk", scale: int = 4, val_partition: str | None = "REDS4",
                 test_mode: bool = False, interval_list: tuple[int, ...] | list[int] = (1,),
                 random_reverse: bool = False, use_hflip: bool = True, use_rot: bool = True,
                 filename_tmpl: str = "08d", filename_ext: str = "png", center_gt_only: bool = False,
                 dataroot_flow: str | None = None):
        if dataroot_flow is not None:
            raise checks.OptionValueError("dataroot_flow", "optical-flow inputs are not supported; leave it empty (~)")
        backend = checks.io_backend_type(io_backend)
        self.interval_list = checks.positive_int_list("interval_list", interval_list)
        self._set_item_options(scale=scale, random_reverse=random_reverse, use_hflip=use_hflip, use_rot=use_rot,
                               center_gt_only=center_gt_only)
        self.filename_tmpl = checks.filename_template("filename_tmpl", filename_tmpl)
        ext = checks.file_extension("filename_ext", filename_ext)
        checks.choice("val_partition", val_partition, (*VAL_PARTITIONS, None))
        test_mode = checks.boolean("test_mode", test_mode)
        if test_mode and val_partition is None:
            raise checks.OptionValueError("test_mode", "needs val_partition 'REDS4' or 'official'")

        self.gt_store, self.lq_store = open_stores(backend, dataroot_gt, dataroot_lq, ext)
        clips, source = self._list_clips(backend, meta_info_file, ext)
        self.clips = _apply_partition(clips, val_partition, test_mode, source)
        self._check_clips_exist(source)

    def _list_clips(self, backend: str, meta_info_file: Any, ext: str) -> tuple[list[ClipInfo], str]:
        if meta_info_file is not None:
            path = checks.existing_file("meta_info_file", meta_info_file)
            clips = read_clip_meta(path)
            missing = next((c for c in clips if c.num_frames is None), None)
            if missing is not None:
                raise DataError(f"{path}: clip '{missing.name}' has no frame count "
                                "(expected '<clip> <num_frames> (h,w,c)')")
            return clips, str(path)
        root = Path(self.gt_store.location)
        if backend == "lmdb":
            return clips_from_lmdb(root), f"{root}/meta_info.txt"
        if backend == "raw":
            return clips_from_raw_store(self.gt_store), f"{root}/meta.json"
        return scan_clip_folders(root, ext), str(root)

    def _check_clips_exist(self, source: str) -> None:
        """The first and last frame of a few clips, in both roots: catches a meta-info file that
        belongs to another dataset or a half-copied folder without reading every image."""
        try:
            for clip in checks.spread(self.clips):
                keys = [self.frame_key(clip.name, 0), self.frame_key(clip.name, clip.num_frames - 1)]
                check_keys_exist(self.gt_store, keys, source)
                check_keys_exist(self.lq_store, keys, source)
        finally:
            self.gt_store.close()
            self.lq_store.close()

    def frame_key(self, clip: str, frame: int) -> str:
        return f"{clip}/{format(frame, self.filename_tmpl)}"

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def max_frames(self) -> int:
        """Most frames (at interval 1) that every clip can provide."""
        return min(clip.num_frames for clip in self.clips)

    @property
    def min_lr_size(self) -> tuple[int, int] | None:
        """Smallest LR frame (h, w) over clips, from the meta info's GT shapes; None if unknown."""
        if any(clip.gt_shape is None for clip in self.clips):
            return None
        return (min(c.gt_shape[0] for c in self.clips) // self.scale,
                min(c.gt_shape[1] for c in self.clips) // self.scale)

    def _item_frames(self, index: int, num_frames: int, rng: np.random.Generator) -> tuple[list[str], str]:
        clip = self.clips[index]
        frames = self._pick_frames(rng, clip, num_frames)
        return [self.frame_key(clip.name, f) for f in frames], self.frame_key(clip.name, min(frames))

    def _pick_frames(self, rng: np.random.Generator, clip: ClipInfo, num_frames: int) -> list[int]:
        fitting = [i for i in self.interval_list if (num_frames - 1) * i < clip.num_frames]
        if not fitting:
            raise DataError(f"clip '{clip.name}' in {self.lq_store.location} has {clip.num_frames} frames, "
                            f"fewer than the {num_frames} requested")
        interval = fitting[int(rng.integers(0, len(fitting)))]  # = rng.choice(fitting), 3x cheaper: same draw
        start = int(rng.integers(0, clip.num_frames - (num_frames - 1) * interval))
        frames = list(range(start, start + num_frames * interval, interval))
        if self.random_reverse and rng.random() < 0.5:
            frames.reverse()
        return frames


def _apply_partition(clips: list[ClipInfo], partition: str | None, test_mode: bool, source: str) -> list[ClipInfo]:
    if partition is None:
        return clips
    held_out = set(VAL_PARTITIONS[partition])
    kept = [c for c in clips if (c.name in held_out) == test_mode]
    if not kept and test_mode:
        examples = ", ".join(VAL_PARTITIONS[partition][:4])
        raise DataError(f"{source}: lists none of the {partition} clips ({examples}, ...)")
    if not kept:
        raise DataError(f"{source}: no clips left for training after removing the {partition} clips")
    return kept
