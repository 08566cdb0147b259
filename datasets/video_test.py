"""Whole-clip test/validation datasets: recurrent models see every frame of a clip at once.

`dataset[i]` -> `{"lq": (T,3,h,w), "gt": (T,3,sh,sw), "clip": str, "frame_names": [str]}`,
float32 RGB in [0, 1]; frame names are file names without extension, so outputs can be saved
under the same names.

The usual layouts (BasicSR's option files and MMagic's dataset docs; `datasets.test_sets` lists
them with each set's scoring protocol):

    REDS4/GT/000/00000000.png        REDS4/sharp_bicubic/000/00000000.png       100 frames, 720x1280
    Vid4/GT/calendar/00000000.png    Vid4/BIx4/..., Vid4/BDx4/...               41/34/49/47 frames,
                                                                                576x720, 576x704, 480x720
    UDM10/GT/archpeople/0000.png     UDM10/BDx4/...                             10 clips
    vimeo90k/vimeo_septuplet/sequences/00001/0266/im1.png  vimeo90k/BIx4/00001/0266/im1.png

Vid4 and UDM10 need no type of their own (BasicSR reads both with VideoRecurrentTestDataset):
clips of different lengths and sizes are read clip by clip, and `meta_info_file` is optional.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from datasets import checks
from datasets.io import FrameStore, bgr_uint8_to_rgb_float, check_keys_exist, open_stores
from datasets.meta_info import ClipInfo, frame_files, read_clip_meta, store_frames_by_clip
from datasets.vimeo import SEPTUPLET, check_septuplets, list_septuplets, septuplet_key
from vsr_accel.core.errors import DataError


def read_clip_pair(lq_store: FrameStore, gt_store: FrameStore, keys: list[str],
                   scale: int) -> tuple[np.ndarray, np.ndarray]:
    """All frames of a clip as BGR uint8 stacks, checking one LR size per clip and GT = scale x LR."""
    lq_frames, gt_frames = [], []
    for key in keys:
        lq, gt = lq_store.read(key), gt_store.read(key)
        if lq_frames and lq.shape != lq_frames[0].shape:
            raise DataError(f"{lq_store.describe(key)}: LR frame is {lq.shape[0]}x{lq.shape[1]}, but "
                            f"{lq_store.describe(keys[0])} is {lq_frames[0].shape[0]}x{lq_frames[0].shape[1]} "
                            "(one size per clip)")
        if gt.shape[:2] != (lq.shape[0] * scale, lq.shape[1] * scale):
            raise DataError(f"{gt_store.describe(key)} is {gt.shape[0]}x{gt.shape[1]} but its LR frame "
                            f"{lq_store.describe(key)} is {lq.shape[0]}x{lq.shape[1]}: GT must be {scale}x the LR "
                            f"size ({lq.shape[0] * scale}x{lq.shape[1] * scale})")
        lq_frames.append(lq)
        gt_frames.append(gt)
    return np.stack(lq_frames), np.stack(gt_frames)


def _as_sample(lq: np.ndarray, gt: np.ndarray, clip: str, names: list[str]) -> dict:
    return {"lq": torch.from_numpy(bgr_uint8_to_rgb_float(lq)), "gt": torch.from_numpy(bgr_uint8_to_rgb_float(gt)),
            "clip": clip, "frame_names": list(names)}


class VideoRecurrentTestDataset(Dataset):
    """Frame-folder test sets (REDS4, Vid4, UDM10, the demo's held-out clip): `<root>/<clip>/<frame>.png`
    for LQ and GT, or two LMDBs with keys `<clip>/<frame>` (BasicSR's VideoRecurrentTestDataset).

    Clips are the lines of `meta_info_file` (first token), else the LQ root's sub-folders (disk)
    or the LQ LMDB's clips. LQ and GT must hold the same frame names, checked at construction
    (listing folders only), and as many frames as a meta-info line says (`calendar 41
    (576,720,3)`, MMagic's meta_info_Vid4_GT.txt), so a partly unpacked download is caught before
    anything is scored; images are decoded and their sizes checked when a clip is loaded (each
    clip may have its own size: Vid4's city is 704 wide, the others 720).
    `cache_data` keeps decoded uint8 clips in memory after their first load (per process:
    REDS4 takes about 1.2 GB), for repeated validation.
    """

    def __init__(self, *, dataroot_gt: str | Path, dataroot_lq: str | Path, meta_info_file: str | Path | None = None,
                 io_backend: str | dict = "disk", scale: int = 4, filename_ext: str = "png", cache_data: bool = False):
        backend = checks.io_backend_type(io_backend)
        self.scale = checks.positive_int("scale", scale)
        self.cache_data = checks.boolean("cache_data", cache_data)
        ext = checks.file_extension("filename_ext", filename_ext)
        self.gt_store, self.lq_store = open_stores(backend, dataroot_gt, dataroot_lq, ext)
        listed, source = self._listed_clips(meta_info_file)
        names = [clip.name for clip in listed] if listed is not None else None
        if backend in ("lmdb", "raw"):
            index = "meta_info.txt" if backend == "lmdb" else "meta.json"
            self.frames = self._frames_from_store(names, source or f"{self.lq_store.location}/{index}")
        else:
            self.frames = {clip: self._frames_from_folders(clip, ext) for clip in names or self._lq_folders()}
            self._check_listed_counts(listed or [], source)
        self.clips = list(self.frames)
        self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _listed_clips(self, meta_info_file: Any) -> tuple[list[ClipInfo] | None, str | None]:
        """Clips listed by the meta-info file (and its path), or (None, None) to scan."""
        if meta_info_file is None:
            return None, None
        path = checks.existing_file("meta_info_file", meta_info_file)
        return read_clip_meta(path), str(path)

    def _check_listed_counts(self, listed: list[ClipInfo], source: str | None) -> None:
        for clip in listed:
            found = len(self.frames[clip.name])
            if clip.num_frames is not None and clip.num_frames != found:
                folder = Path(self.lq_store.location) / clip.name
                raise DataError(f"{source} lists {clip.num_frames} frames for clip '{clip.name}', but {folder} "
                                f"holds {found}")

    def _lq_folders(self) -> list[str]:
        root = Path(self.lq_store.location)
        names = sorted(p.name for p in root.iterdir() if p.is_dir())
        if not names:
            raise DataError(f"{root}: no clip folders (expected <root>/<clip>/<frame>.png)")
        return names

    def _frames_from_folders(self, clip: str, ext: str) -> list[str]:
        lq_dir, gt_dir = Path(self.lq_store.location) / clip, Path(self.gt_store.location) / clip
        for folder in (lq_dir, gt_dir):
            if not folder.is_dir():
                raise DataError(f"{folder}: clip folder not found")
        lq_names = [p.stem for p in frame_files(lq_dir, ext)]
        gt_names = [p.stem for p in frame_files(gt_dir, ext)]
        if not lq_names:
            raise DataError(f"{lq_dir}: clip folder has no .{ext} frames")
        if lq_names != gt_names:
            only_lq = sorted(set(lq_names) - set(gt_names))
            only_gt = sorted(set(gt_names) - set(lq_names))
            culprit = gt_dir / f"{only_lq[0]}.{ext}" if only_lq else lq_dir / f"{only_gt[0]}.{ext}"
            raise DataError(f"{culprit}: missing ({len(lq_names)} LQ vs {len(gt_names)} GT frames in clip '{clip}')")
        return lq_names

    def _frames_from_store(self, names: list[str] | None, source: str) -> dict[str, list[str]]:
        available = store_frames_by_clip(self.lq_store)
        chosen = names if names is not None else list(available)
        try:
            frames = {}
            for clip in chosen:
                if clip not in available:
                    raise DataError(f"{source} lists clip '{clip}', which {self.lq_store.location} does not hold")
                frames[clip] = available[clip]
                keys = [f"{clip}/{frames[clip][0]}", f"{clip}/{frames[clip][-1]}"]
                check_keys_exist(self.gt_store, keys, source)
            return frames
        finally:
            self.gt_store.close()
            self.lq_store.close()

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        clip = self.clips[index]
        names = self.frames[clip]
        if clip in self._cache:
            lq, gt = self._cache[clip]
        else:
            lq, gt = read_clip_pair(self.lq_store, self.gt_store, [f"{clip}/{n}" for n in names], self.scale)
            if self.cache_data:
                self._cache[clip] = (lq, gt)
        return _as_sample(lq, gt, clip, names)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_cache"] = {}  # never ship decoded clips to workers
        return state


class Vimeo90KTestDataset(Dataset):
    """Vimeo-90K-T: each septuplet is one clip, `{"lq": (7,3,h,w), "gt": (7,3,sh,sw),
    "clip": "00001/0266", "frame_names": ["im1", ..., "im7"]}`.

    For comparable numbers, Vimeo-90K-T is scored on the centre frame (im4) only, on the Y
    channel, for recurrent models averaging the output with that of the reversed clip: BasicSR's
    options/test/BasicVSR/test_BasicVSR_Vimeo90K_BIx4.yml (`val.center_frame_only: true`,
    `val.flip_seq: true`, `test_y_channel: true`; its VideoTestVimeo90KDataset loads only im4 as
    GT) and MMagic's basicvsr_test_config.py (`gt=['im4.png']`, MirrorSequence, `convert_to='Y'`).
    Those are evaluation options (`vsr_accel.eval.evaluation.evaluate`), not this dataset's: it returns
    all seven GT frames, and the evaluator picks im4.

    `cache_data` is accepted for BasicSR's option files; like BasicSR, only `false` (the decoded
    test set would take about 20 GB).
    """

    def __init__(self, *, dataroot_gt: str | Path, dataroot_lq: str | Path, meta_info_file: str | Path | None = None,
                 io_backend: str | dict = "disk", scale: int = 4, filename_ext: str = "png", cache_data: bool = False):
        backend = checks.io_backend_type(io_backend)
        self.scale = checks.positive_int("scale", scale)
        if checks.boolean("cache_data", cache_data):
            raise checks.OptionValueError("cache_data", "caching is not supported for Vimeo-90K-T (about 20 GB "
                                                        "decoded; BasicSR refuses it too): set false")
        ext = checks.file_extension("filename_ext", filename_ext)
        self.gt_store, self.lq_store = open_stores(backend, dataroot_gt, dataroot_lq, ext)
        self.clips, source = list_septuplets(backend, meta_info_file, self.lq_store)
        check_septuplets(self.clips, source, self.lq_store, self.gt_store, SEPTUPLET)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        clip = self.clips[index]
        keys = [septuplet_key(clip, f) for f in SEPTUPLET]
        lq, gt = read_clip_pair(self.lq_store, self.gt_store, keys, self.scale)
        return _as_sample(lq, gt, clip, [f"im{f}" for f in SEPTUPLET])
