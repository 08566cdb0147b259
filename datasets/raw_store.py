"""A crop-addressable frame store ('raw'): lossless uint8 frames in memory-mapped files.

PNG is one deflate stream per frame, so a 32x32 crop costs the decoding of a whole 1280x720
frame (about 25 ms). Here every clip is one uncompressed file, and a crop reads only its own
rows straight from the page cache: its cost follows the crop, not the frame.

Layout (`io_backend: {type: raw}`; the folder name is free, `*.raw` by convention)::

    train_sharp.raw/
        meta.json            written last: a store without it is half-built and is refused
        build.json           what the builder was asked to pack (checked when it resumes)
        clips/000.u8         one clip: frames x 3 x H x W uint8, planar RGB, C order
        clips/000.json       that clip's frame names, size and per-frame CRC-32: written right
                             after the clip file, it marks the clip done (the builder resumes)

Values are the decoded bytes exactly (OpenCV's `imdecode`, as the 'disk' and 'lmdb' backends
decode them), only rearranged: planar RGB instead of interleaved BGR, because the training
samples are (T, 3, h, w) RGB. A crop is then one strided copy with no channel shuffle; with
interleaved storage the HWC -> CHW transpose alone cost 2.5 ms per 64x64x15 sample here, ten
times the copy. `read(key)` gives the interleaved BGR frame back, for whole-clip readers.

Opening a store for training (`datasets.io.open_store`) checks it cheaply (`RawFrames.check_opened`):
meta.json's clip list against its own checksum (a hand edit such as height and width swapped, which
keeps every file's size), every clip file's size against the meta, the records of the sampled
clips against the meta, and the CRC-32 of a few frames (the first one and 3 seeded-random ones):
`OPEN_CHECK_FRAMES` frames read whatever the store's size. `create_raw_store.py --verify all`
checks every frame, against the source too.

The reader keeps nothing big in the object (a pickled dataset carries the folder path only):
`meta.json` is parsed and the clip files are mapped lazily, once per process, and every
DataLoader worker and rank maps the same files, so the page cache holds one copy for all. At
most `max_open_maps` clip files stay mapped per store (each map holds a file descriptor).
"""
from __future__ import annotations

import bisect
import json
import mmap
import os
import random
import resource
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from vsr_accel.core import fsio
from vsr_accel.core.errors import DataError

STORE_FORMAT = "vsr-accel raw frames"
STORE_VERSION = 1
META_NAME = "meta.json"
BUILD_NAME = "build.json"
CLIPS_DIR = "clips"
DATA_SUFFIX = ".u8"
RECORD_SUFFIX = ".json"
LAYOUT = "frame, channel, row, column (planar RGB), uint8, C order"
REBUILD_HINT = "rebuild it with scripts/create_raw_store.py"
OPEN_CHECK_FRAMES = 4  # frames whose CRC-32 is checked when a store is opened: the first + 3 seeded-random
OPEN_CHECK_SEED = 0    # the same frames at every opening: a failure is reproducible


@dataclass(frozen=True)
class RawClip:
    """One clip of a raw store: its frame names (in file order), frame size and checksums."""

    name: str
    frames: tuple[str, ...]
    height: int
    width: int
    crc32: tuple[int, ...] = ()

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.frames), 3, self.height, self.width)

    @property
    def frame_bytes(self) -> int:
        return 3 * self.height * self.width

    @property
    def nbytes(self) -> int:
        return len(self.frames) * self.frame_bytes

    def to_json(self) -> dict:
        return {"name": self.name, "frames": list(self.frames), "height": self.height, "width": self.width,
                "crc32": list(self.crc32)}

    @classmethod
    def from_json(cls, data: dict, where: str) -> "RawClip":
        try:
            clip = cls(name=str(data["name"]), frames=tuple(str(f) for f in data["frames"]),
                       height=int(data["height"]), width=int(data["width"]),
                       crc32=tuple(int(c) for c in data.get("crc32", ())))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{where}: malformed clip record ({exc!r}); {REBUILD_HINT}") from None
        checksums_ok = not clip.crc32 or len(clip.crc32) == len(clip.frames)
        if not clip.frames or clip.height <= 0 or clip.width <= 0 or not checksums_ok:
            raise DataError(f"{where}: clip record '{clip.name}' is inconsistent (frames, size or checksums)")
        return clip


def check_clip_name(name: str) -> str:
    """Clip names become paths inside the store (`00001/0001` -> clips/00001/0001.u8)."""
    parts = PurePosixPath(name).parts
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in name:
        raise DataError(f"clip name {name!r} cannot be stored (expected e.g. '000' or '00001/0001')")
    return name


def clip_data_path(root: Path, name: str) -> Path:
    return Path(root) / CLIPS_DIR / f"{check_clip_name(name)}{DATA_SUFFIX}"


def clip_record_path(root: Path, name: str) -> Path:
    return Path(root) / CLIPS_DIR / f"{check_clip_name(name)}{RECORD_SUFFIX}"


def frame_crc32(frame: np.ndarray) -> int:
    return zlib.crc32(memoryview(np.ascontiguousarray(frame)).cast("B"))


def clips_crc32(clips_json: list) -> int:
    """CRC-32 of meta.json's clip list as written (compact JSON): any edit of a name, size or
    checksum changes it."""
    return zlib.crc32(json.dumps(clips_json, separators=(",", ":")).encode("utf-8"))


def verify_command(root: Path, source: object) -> str:
    """What to run to check a whole store (the one-line errors of an opening check name it)."""
    return f"python scripts/create_raw_store.py --input {source} --output {root} --verify all"


def bgr_to_planar_rgb(frame: np.ndarray) -> np.ndarray:
    """(h, w, 3) BGR (as decoded) -> (3, h, w) RGB, contiguous: the stored form of a frame."""
    return np.ascontiguousarray(np.moveaxis(frame[..., ::-1], -1, 0))


def planar_rgb_to_bgr(planes: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(planes, 0, -1)[..., ::-1])


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------
def store_state(root: Path) -> str:
    """'complete' (meta.json present), 'half-built' (clip files but no meta.json) or 'absent'."""
    root = Path(root)
    if (root / META_NAME).is_file():
        return "complete"
    if (root / BUILD_NAME).is_file() or (root / CLIPS_DIR).is_dir():
        return "half-built"
    return "absent"


def check_raw_store(root: Path) -> Path:
    """The one-line refusal of a folder that is not a finished raw store, naming the file."""
    root = Path(root)
    state = store_state(root)
    if state == "half-built":
        raise DataError(f"{root / META_NAME}: missing, so {root} is a half-built raw store (the builder writes "
                        "meta.json last); run scripts/create_raw_store.py again with the same --input/--output "
                        "to finish it")
    if state == "absent":
        raise DataError(f"{root} is not a raw frame store (no {META_NAME}); build one with scripts/create_raw_store.py")
    return root


def read_meta(root: Path) -> dict:
    path = Path(root) / META_NAME
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); {REBUILD_HINT}") from None
    if not isinstance(meta, dict) or meta.get("format") != STORE_FORMAT:
        raise DataError(f"{path}: not the meta file of a raw frame store (no format '{STORE_FORMAT}')")
    if meta.get("version") != STORE_VERSION or meta.get("dtype") != "uint8" or meta.get("layout") != LAYOUT:
        raise DataError(f"{path}: raw store version {meta.get('version')!r} / layout {meta.get('layout')!r} is not "
                        f"the one this code reads (version {STORE_VERSION}); {REBUILD_HINT}")
    if not isinstance(meta.get("clips"), list) or not meta["clips"]:
        raise DataError(f"{path}: lists no clips; {REBUILD_HINT}")
    return meta


def default_max_open_maps() -> int:
    """Open maps per store: an eighth of the file-descriptor limit (a worker holds two stores,
    plus sockets and shared-memory handles), between 16 and 4096."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        soft = 1024
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 15
    return max(16, min(4096, soft // 8))


@dataclass(frozen=True)
class _IndexedClip:
    clip: RawClip
    position: dict[str, int]  # frame name -> index in the clip file


class RawFrames:
    """Reader of a finished raw store (`open_store("raw", ...)`); see the module docstring.

    Keys are the other backends' (`<clip>/<frame>`): `000/00000012`, `00001/0001/im3`.
    """

    backend = "raw"

    def __init__(self, root: Path, max_open_maps: int | None = None):
        self.root = check_raw_store(Path(root))
        self.max_open_maps = max_open_maps or default_max_open_maps()
        self._index: dict[str, _IndexedClip] | None = None
        self._maps: OrderedDict[str, np.ndarray] = OrderedDict()

    # pickling: the folder only (spawn/forkserver workers rebuild the rest on first use)
    def __getstate__(self) -> dict:
        return {"root": self.root, "max_open_maps": self.max_open_maps}

    def __setstate__(self, state: dict) -> None:
        self.root, self.max_open_maps = state["root"], state["max_open_maps"]
        self._index, self._maps = None, OrderedDict()

    @property
    def location(self) -> str:
        return str(self.root)

    @property
    def index(self) -> dict[str, _IndexedClip]:
        if self._index is None:
            meta = read_meta(self.root)
            where = str(self.root / META_NAME)
            index = {}
            for entry in meta["clips"]:
                clip = RawClip.from_json(entry, where)
                index[clip.name] = _IndexedClip(clip, {name: i for i, name in enumerate(clip.frames)})
            self._index = index
        return self._index

    def clips(self) -> list[RawClip]:
        return [entry.clip for entry in self.index.values()]

    def check_opened(self, frames: int = OPEN_CHECK_FRAMES) -> int:
        """The cheap check of a store being opened for training: `check_meta`, then the records of
        the sampled clips and the CRC-32 of `frames` frames (the first, the rest seeded-random).
        The first problem raises one line naming the store and the command that checks all of
        it. Returns the number of frames read."""
        self.check_meta()
        clips = self.clips()
        pairs = sample_for_open(clips, frames)
        hint = f"check the whole store with: {verify_command(self.root, read_meta(self.root).get('source', '<its input>'))}"
        for name in dict.fromkeys(name for name, _ in pairs):
            _check_against_record(self.root, self.index[name].clip, hint)
        return verify_checksums(self.root, clips, pairs, hint=f"the store is damaged; {hint}")

    def check_meta(self) -> None:
        """meta.json's clip list against its checksum (stores built before it was written have
        none) and every clip file's size against the meta: a stat per clip, no data read."""
        meta = read_meta(self.root)
        where = self.root / META_NAME
        recorded = meta.get("clips_crc32")
        if recorded is not None and recorded != clips_crc32(meta["clips"]):
            raise DataError(f"{where}: its clip list does not match its checksum (edited or damaged: a frame size, name "
                            f"or checksum changed); check the whole store with: "
                            f"{verify_command(self.root, meta.get('source', '<its input>'))}, or {REBUILD_HINT}")
        for clip in self.clips():
            path = clip_data_path(self.root, clip.name)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                raise DataError(f"{path}: raw store file missing ({REBUILD_HINT})") from None
            if size != clip.nbytes:
                what = "truncated" if size < clip.nbytes else "larger than its meta says"
                raise DataError(f"{path}: raw store file {what} ({size} bytes, expected {clip.nbytes} for "
                                f"{len(clip.frames)} frames of {clip.height}x{clip.width}); {REBUILD_HINT}")

    def frames_by_clip(self) -> dict[str, list[str]]:
        """Frame names per clip in store order (what `meta_info.lmdb_frames_by_clip` gives for an LMDB)."""
        return {name: list(entry.clip.frames) for name, entry in self.index.items()}

    def _locate(self, key: str) -> tuple[_IndexedClip, int]:
        clip, _, frame = key.rpartition("/")
        entry = self.index.get(clip)
        position = entry.position.get(frame) if entry is not None else None
        if position is None:
            raise DataError(f"{self.root}: frame '{key}' is not in the raw store ({self.root / META_NAME})")
        return entry, position

    def _frame_positions(self, keys: Sequence[str]) -> tuple[_IndexedClip, list[int] | None]:
        """The first key's clip and every key's frame position, when all keys are frames of that
        clip (one prefix, parsed once: a training item's frames); positions None otherwise."""
        first, _ = self._locate(keys[0])
        prefix = f"{first.clip.name}/"
        cut = len(prefix)
        position = first.position
        try:
            if all(key.startswith(prefix) for key in keys):
                return first, [position[key[cut:]] for key in keys]
        except KeyError:
            pass
        for key in keys:
            self._locate(key)  # a missing frame: raise naming it
        return first, None

    def describe(self, key: str) -> str:
        clip = key.rpartition("/")[0]
        return f"frame '{key}' in {clip_data_path(self.root, clip) if clip else self.root}"

    def has(self, key: str) -> bool:
        clip, _, frame = key.rpartition("/")
        entry = self.index.get(clip)
        return entry is not None and frame in entry.position

    def frame_hw(self, key: str) -> tuple[int, int]:
        """(h, w) from the meta, without touching the frame: lets a reader draw the crop first."""
        clip = self._locate(key)[0].clip
        return clip.height, clip.width

    def clip_array(self, clip: RawClip) -> np.ndarray:
        """The clip file as a read-only (T, 3, H, W) uint8 array over its memory map (opened on
        first use in this process, size checked against the meta)."""
        array = self._maps.get(clip.name)
        if array is not None:
            self._maps.move_to_end(clip.name)
            return array
        array = map_clip_file(clip_data_path(self.root, clip.name), clip)
        self._maps[clip.name] = array
        while len(self._maps) > self.max_open_maps:
            self._maps.popitem(last=False)  # the map closes when its last view goes
        return array

    def read(self, key: str) -> np.ndarray:
        """One whole frame as (h, w, 3) BGR uint8, like the other backends' `read`."""
        entry, position = self._locate(key)
        return planar_rgb_to_bgr(self.clip_array(entry.clip)[position])

    def read_planar(self, key: str) -> np.ndarray:
        """One whole frame as stored: (3, h, w) RGB uint8 (a copy)."""
        entry, position = self._locate(key)
        return np.array(self.clip_array(entry.clip)[position])

    def read_crops(self, keys: Sequence[str], top: int, left: int, crop_hw: tuple[int, int]) -> np.ndarray:
        """(len(keys), 3, h, w) RGB uint8: the same crop of every key's frame, a compact copy."""
        return np.array(self.crop_view(keys, top, left, crop_hw), order="C", copy=True)

    def crop_view(self, keys: Sequence[str], top: int, left: int, crop_hw: tuple[int, int]) -> np.ndarray:
        """(len(keys), 3, h, w) RGB uint8, the same crop of every key's frame, read-only: a
        strided view into the map when the keys are one clip's frames at a constant step (a
        training item's frames, forwards or reversed), else a copy (Vimeo's flipped sequences repeat
        frames). Nothing is read until the caller copies it: `transforms.augment_planar` does
        that while flipping, so a crop crosses memory once. Only rows `top..top+h` are touched."""
        h, w = crop_hw
        first, positions = self._frame_positions(keys)
        if top < 0 or left < 0 or top + h > first.clip.height or left + w > first.clip.width:
            raise DataError(f"{self.describe(keys[0])}: crop {h}x{w} at ({top}, {left}) does not fit the "
                            f"{first.clip.height}x{first.clip.width} frame")
        rows, cols = slice(top, top + h), slice(left, left + w)
        if positions is not None:
            array = self.clip_array(first.clip)
            step = positions[1] - positions[0] if len(positions) > 1 else 1
            if step and all(b - a == step for a, b in zip(positions, positions[1:])):
                stop = positions[-1] + (1 if step > 0 else -1)
                return array[positions[0]:stop if stop >= 0 else None:step, :, rows, cols]
            return array[positions, :, rows, cols]  # fancy index: a compact copy
        out = np.empty((len(keys), 3, h, w), np.uint8)
        for i, key in enumerate(keys):
            entry, position = self._locate(key)
            if (entry.clip.height, entry.clip.width) != (first.clip.height, first.clip.width):
                raise DataError(f"{self.describe(key)} is {entry.clip.height}x{entry.clip.width}, but "
                                f"{self.describe(keys[0])} is {first.clip.height}x{first.clip.width}")
            out[i] = self.clip_array(entry.clip)[position, :, rows, cols]
        return out

    def close(self) -> None:
        """Unmap this process's clip files (the meta index stays; the next read maps again)."""
        self._maps.clear()


def map_clip_file(path: Path, clip: RawClip) -> np.ndarray:
    """Memory-map one clip file read-only; a file of the wrong size (truncated copy, interrupted
    rsync) is refused with one line naming it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise DataError(f"{path}: raw store file missing ({REBUILD_HINT})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot open raw store file ({exc.strerror or exc})") from None
    try:
        size = os.fstat(fd).st_size
        if size != clip.nbytes:
            what = "truncated" if size < clip.nbytes else "larger than its meta says"
            raise DataError(f"{path}: raw store file {what} ({size} bytes, expected {clip.nbytes} for "
                            f"{len(clip.frames)} frames of {clip.height}x{clip.width}); {REBUILD_HINT}")
        mapped = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)  # the map keeps its own descriptor
    return np.frombuffer(mapped, dtype=np.uint8).reshape(clip.shape)


def sample_for_open(clips: Sequence[RawClip], count: int = OPEN_CHECK_FRAMES,
                    seed: int = OPEN_CHECK_SEED) -> list[tuple[str, int]]:
    """(clip, frame index) pairs an opening check reads: the store's first frame and `count - 1`
    distinct others drawn with `seed` over all frames, in store order."""
    starts, total = [], 0
    for clip in clips:
        starts.append(total)
        total += len(clip.frames)
    if total == 0 or count <= 0:
        return []
    picks = [0, *random.Random(seed).sample(range(1, total), min(count, total) - 1)]
    pairs = []
    for flat in sorted(picks):
        i = bisect.bisect_right(starts, flat) - 1
        pairs.append((clips[i].name, flat - starts[i]))
    return pairs


def _check_against_record(root: Path, clip: RawClip, hint: str) -> None:
    """meta.json's entry for `clip` against the record its build wrote (clips/<name>.json)."""
    path = clip_record_path(root, clip.name)
    try:
        record = RawClip.from_json(json.loads(path.read_text(encoding="utf-8")), str(path))
    except FileNotFoundError:
        return  # a store assembled without records (tests, benchmarks): the meta is all there is
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); {hint}") from None
    if record == clip:
        return
    if (record.height, record.width) != (clip.height, clip.width):
        what = f"frames of {clip.height}x{clip.width}, its record {record.height}x{record.width}"
    else:
        what = "other frame names or checksums than its record"
    raise DataError(f"{root / META_NAME}: clip '{clip.name}' has {what} ({path}); {hint}")


def verify_checksums(root: Path, clips: Iterable[RawClip], frames: Iterable[tuple[str, int]] | None = None,
                     hint: str = REBUILD_HINT) -> int:
    """Recompute the CRC-32 of stored frames (all, or the (clip, index) pairs given) against the
    records; the first mismatch raises naming the file and frame, then `hint`. Returns frames checked."""
    by_name = {clip.name: clip for clip in clips}
    pairs = frames if frames is not None else ((c.name, i) for c in by_name.values() for i in range(len(c.frames)))
    arrays: dict[str, np.ndarray] = {}
    checked = 0
    for name, index in pairs:
        clip = by_name[name]
        if name not in arrays:
            arrays.clear()
            arrays[name] = map_clip_file(clip_data_path(root, name), clip)
        if clip.crc32 and frame_crc32(arrays[name][index]) != clip.crc32[index]:
            raise DataError(f"{clip_data_path(root, name)}: frame '{clip.frames[index]}' (number {index}) does not "
                            f"match its checksum (the file is damaged); {hint}")
        checked += 1
    return checked


# ---------------------------------------------------------------------------------------------
# writing (scripts/create_raw_store.py)
# ---------------------------------------------------------------------------------------------
class RawStoreWriter:
    """Builds a store clip by clip, resumably: each clip file is written atomically (temp,
    fsync, rename) and then its record, so a clip with a record is complete; `finish` writes
    meta.json last, which is what makes the store readable."""

    def __init__(self, root: Path, source: str):
        self.root = Path(root)
        self.source = source
        if store_state(self.root) == "absent" and self.root.exists() and any(self.root.iterdir()):
            raise DataError(f"{self.root}: exists and is not a raw store; remove it or choose another --output")
        build = self.root / BUILD_NAME
        if build.is_file():
            try:
                recorded = json.loads(build.read_text(encoding="utf-8")).get("source")
            except ValueError:
                recorded = None
            if recorded != source:
                raise DataError(f"{build}: this store was started from {recorded!r}, not {source!r}; finish it with "
                                "that input, or remove it")
        else:
            fsio.atomic_write_text(build, json.dumps({"format": STORE_FORMAT, "version": STORE_VERSION,
                                                      "source": source}, indent=1) + "\n")

    @property
    def complete(self) -> bool:
        return (self.root / META_NAME).is_file()

    def done_record(self, name: str, frames: Sequence[str]) -> RawClip | None:
        """The record of a clip finished by an earlier run, if its file is whole and it holds
        exactly these frames; None means (re)write it."""
        record = clip_record_path(self.root, name)
        if not record.is_file():
            return None
        try:
            clip = RawClip.from_json(json.loads(record.read_text(encoding="utf-8")), str(record))
        except (ValueError, DataError):
            return None
        data = clip_data_path(self.root, name)
        if clip.frames != tuple(frames) or not data.is_file() or data.stat().st_size != clip.nbytes:
            return None
        return clip

    def write_clip(self, name: str, frames: Iterator[tuple[str, np.ndarray, str]]) -> RawClip:
        """Write one clip from (frame name, BGR uint8 frame, source description) in order."""
        data_path, record_path = clip_data_path(self.root, name), clip_record_path(self.root, name)
        fsio.remove_stale_temps(data_path.parent, [data_path.name, record_path.name])
        record_path.unlink(missing_ok=True)  # a stale record must not vouch for a new file
        names, checksums, size = [], [], None
        with fsio.atomic_writer(data_path) as handle:
            for frame_name, frame, described in frames:
                if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                    raise DataError(f"{described}: expected a colour uint8 frame, got {frame.dtype} {frame.shape}")
                if size is None:
                    size = frame.shape[:2]
                elif frame.shape[:2] != size:
                    raise DataError(f"{described} is {frame.shape[0]}x{frame.shape[1]}, but the first frame of clip "
                                    f"'{name}' is {size[0]}x{size[1]} (one size per clip)")
                planes = bgr_to_planar_rgb(frame)
                handle.write(memoryview(planes).cast("B"))
                names.append(frame_name)
                checksums.append(frame_crc32(planes))
        if size is None:
            data_path.unlink(missing_ok=True)
            raise DataError(f"clip '{name}' has no frames")
        clip = RawClip(name, tuple(names), int(size[0]), int(size[1]), tuple(checksums))
        fsio.atomic_write_text(record_path, json.dumps(clip.to_json()) + "\n")
        return clip

    def finish(self, clips: Sequence[RawClip]) -> Path:
        entries = [c.to_json() for c in clips]
        meta = {"format": STORE_FORMAT, "version": STORE_VERSION, "dtype": "uint8", "layout": LAYOUT,
                "source": self.source, "frames": sum(len(c.frames) for c in clips),
                "bytes": sum(c.nbytes for c in clips), "clips_crc32": clips_crc32(entries), "clips": entries}
        path = self.root / META_NAME
        fsio.atomic_write_text(path, json.dumps(meta, separators=(",", ":")) + "\n")
        return path
