"""Clip lists: BasicSR meta-info files, frame folders, LMDB key lists and raw stores; and the
(key, file) listings of frame trees that scripts/create_lmdb.py and create_raw_store.py pack.

A clip meta-info line is `<clip> <num_frames> (<h>,<w>,<c>)`, e.g. `000 100 (720,1280,3)` for
REDS or `00001/0001 7 (256,448,3)` for Vimeo-90K; the shape is the GT frame shape. Vimeo's own
list files (`sep_trainlist.txt`: one `00001/0001` per line) are accepted too: the count and the
shape are then unknown. Unlike BasicSR, which assumes 100 frames per REDS clip, the frame count
is read per clip, so shorter clips (the demo's) work.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from datasets.io import png_size, read_lmdb_meta
from datasets.raw_store import RawFrames
from vsr_accel.core.errors import DataError

_SHAPE = re.compile(r"^\((\d+),\s*(\d+),\s*(\d+)\)$")


@dataclass(frozen=True)
class ClipInfo:
    name: str
    num_frames: int | None  # None when the list file does not say
    gt_shape: tuple[int, int, int] | None = None  # (h, w, c) of the GT frames, when known


def read_clip_meta(path: Path) -> list[ClipInfo]:
    clips: list[ClipInfo] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            parts = line.split()
            if not parts:
                continue
            clips.append(_parse_clip_line(parts, f"{path}:{number}"))
    if not clips:
        raise DataError(f"{path}: meta-info file lists no clips")
    return clips


def _parse_clip_line(parts: list[str], where: str) -> ClipInfo:
    name, count, shape = parts[0], None, None
    if len(parts) >= 2:
        if not parts[1].isdigit() or int(parts[1]) <= 0:
            raise DataError(f"{where}: expected '<clip> <num_frames> (h,w,c)', got {' '.join(parts)!r}")
        count = int(parts[1])
    if len(parts) >= 3:
        match = _SHAPE.match("".join(parts[2:]))
        if match is None:
            raise DataError(f"{where}: expected a shape like (720,1280,3), got {' '.join(parts[2:])!r}")
        shape = (int(match[1]), int(match[2]), int(match[3]))
    return ClipInfo(name=name, num_frames=count, gt_shape=shape)


def format_clip_meta(clips: Iterable[ClipInfo]) -> str:
    lines = []
    for clip in clips:
        h, w, c = clip.gt_shape or (0, 0, 0)
        lines.append(f"{clip.name} {clip.num_frames} ({h},{w},{c})\n")
    return "".join(lines)


def frame_files(folder: Path, ext: str) -> list[Path]:
    """The frames of one clip folder, sorted by name (zero-padded numbers sort correctly)."""
    return sorted(p for p in folder.iterdir() if p.suffix == f".{ext}" and p.is_file())


def scan_clip_folders(root: Path, ext: str) -> list[ClipInfo]:
    """Clips of a `<root>/<clip>/<frame>.<ext>` tree, with frame counts; GT shape read from the
    first frame's PNG header (no decoding)."""
    clips = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = frame_files(folder, ext)
        if not files:
            raise DataError(f"{folder}: clip folder has no .{ext} frames")
        size = png_size(files[0])
        clips.append(ClipInfo(folder.name, len(files), (*size, 3) if size else None))
    if not clips:
        raise DataError(f"{root}: no clip folders (expected <root>/<clip>/<frame>.{ext})")
    return clips


def lmdb_frames_by_clip(path: Path) -> dict[str, list[str]]:
    """Group an LMDB's keys by clip: the key minus its last component (`000/00000012` -> clip
    `000`, frame `00000012`; `00001/0001/im3` -> `00001/0001`, `im3`), in meta_info.txt order."""
    frames: dict[str, list[str]] = {}
    for entry in read_lmdb_meta(path):
        if "/" not in entry.key:
            raise DataError(f"{path}: key '{entry.key}' has no clip folder (expected e.g. 000/00000000)")
        clip, frame = entry.key.rsplit("/", 1)
        frames.setdefault(clip, []).append(frame)
    if not frames:
        raise DataError(f"{path}: the LMDB's meta_info.txt lists no keys")
    return frames


def clips_from_lmdb(path: Path) -> list[ClipInfo]:
    """Clips of an LMDB with their frame counts and GT shapes (from its meta_info.txt)."""
    counts: dict[str, int] = {}
    shapes: dict[str, tuple[int, int, int]] = {}
    for entry in read_lmdb_meta(path):
        if "/" not in entry.key:
            raise DataError(f"{path}: key '{entry.key}' has no clip folder (expected e.g. 000/00000000)")
        clip = entry.key.rsplit("/", 1)[0]
        counts[clip] = counts.get(clip, 0) + 1
        shapes.setdefault(clip, entry.shape)
    if not counts:
        raise DataError(f"{path}: the LMDB's meta_info.txt lists no keys")
    return [ClipInfo(name, count, shapes[name]) for name, count in counts.items()]


def store_frames_by_clip(store) -> dict[str, list[str]]:
    """Frame names per clip of an LMDB or raw store, in store order (whole-clip test sets list
    their frames this way; a folder tree is listed from its folders instead)."""
    if isinstance(store, RawFrames):
        return store.frames_by_clip()
    return lmdb_frames_by_clip(Path(store.location))


def clips_from_raw_store(store: RawFrames) -> list[ClipInfo]:
    """Clips of a raw store with their frame counts and frame shapes (from its meta.json)."""
    return [ClipInfo(clip.name, len(clip.frames), (clip.height, clip.width, 3)) for clip in store.clips()]


def frame_items(root: Path, ext: str = "png") -> list[tuple[str, Path]]:
    """(key, file) for every `.ext` file under `root`, sorted by key."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: input folder does not exist")
    files = sorted(root.rglob(f"*.{ext}"))
    if not files:
        raise DataError(f"{root}: no .{ext} files found")
    return [(path.relative_to(root).with_suffix("").as_posix(), path) for path in files]


def vimeo_items(root: Path, list_file: Path | None = None, center_only: bool = False,
                ext: str = "png") -> list[tuple[str, Path]]:
    """(key, file) for Vimeo-90K septuplets `00001/0001/im1..7`, from a list file or the tree."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: input folder does not exist")
    if list_file is not None:
        if not Path(list_file).is_file():
            raise DataError(f"{list_file}: septuplet list not found")
        septuplets = [line.split()[0] for line in Path(list_file).read_text().splitlines() if line.strip()]
    else:
        septuplets = [f"{a.name}/{b.name}" for a in sorted(p for p in root.iterdir() if p.is_dir())
                      for b in sorted(p for p in a.iterdir() if p.is_dir())]
    if not septuplets:
        raise DataError(f"{list_file or root}: no septuplets found")
    frames = (4,) if center_only else range(1, 8)
    return [(f"{name}/im{i}", root / name / f"im{i}.{ext}") for name in septuplets for i in frames]
