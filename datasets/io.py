"""Frame storage: image folders ('disk'), BasicSR-layout LMDBs ('lmdb') and raw stores ('raw').

A frame is addressed by a *key*: its path relative to the root, without extension
(`000/00000000` for REDS, `00001/0001/im1` for Vimeo-90K). On disk the file is
`<root>/<key>.<ext>`; in an LMDB the key is the LMDB key and the value the encoded PNG.

BasicSR's LMDB layout::

    name.lmdb/
        data.mdb, lock.mdb     standard LMDB files
        meta_info.txt          one line per image: `<key>.png (h,w,c) <compress_level>`

`read(key)` gives a whole frame as BGR uint8 (OpenCV's order). PNG is decoded whole (the
format is a single deflate stream, so a crop cannot be decoded alone); what the 'disk' and
'lmdb' stores can and do save is decoding only the frames an item samples. The 'raw'
store (`datasets.raw_store`) reads a crop without the rest of its frame: stores that can say a
frame's size without reading it (`frame_hw`) let the training datasets draw the crop first and
ask for just that crop (`read_crops`).
"""
from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from datasets.checks import OptionPathError, existing_dir
from datasets.raw_store import RawFrames
from vsr_accel.core import fsio
from vsr_accel.core.errors import DataError

LMDB_META_NAME = "meta_info.txt"
LMDB_BUILD_NAME = "build.json"          # present while scripts/create_lmdb.py builds the LMDB
LMDB_PROGRESS_NAME = "meta_info.partial"  # the meta lines of the images committed so far (resume)
LMDB_BUILD_FORMAT = "vsr-accel lmdb build"
_LMDB_META_LINE = re.compile(r"^(?P<name>\S+)\s+\((?P<h>\d+),\s*(?P<w>\d+),\s*(?P<c>\d+)\)\s+(?P<level>-?\d+)\s*$")


def decode_image(data: bytes, culprit: str) -> np.ndarray:
    """Encoded image bytes -> BGR uint8 (h, w, 3). `culprit` (a path or LMDB key) names the
    source in the error, because a corrupt file deep inside a dataset is otherwise unfindable."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise DataError(f"{culprit}: cannot decode image (corrupt, truncated or not an image)")
    return image


def bgr_uint8_to_rgb_float(frames: np.ndarray) -> np.ndarray:
    """(..., h, w, 3) BGR uint8 -> (..., 3, h, w) RGB float32 in [0, 1], the same values as
    BasicSR's `img.astype(np.float32) / 255.` followed by its BGR->RGB conversion."""
    rgb = np.ascontiguousarray(np.moveaxis(frames[..., ::-1], -1, -3))
    return rgb.astype(np.float32) / np.float32(255.0)


class DiskFrames:
    """Frames stored as `<root>/<key>.<ext>` files."""

    backend = "disk"

    def __init__(self, root: Path, ext: str = "png"):
        self.root = Path(root)
        self.ext = ext

    @property
    def location(self) -> str:
        return str(self.root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.{self.ext}"

    def describe(self, key: str) -> str:
        return str(self.path(key))

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def frame_hw(self, key: str) -> None:
        """Unknown until the frame is decoded (see RawFrames.frame_hw)."""
        return None

    def read(self, key: str) -> np.ndarray:
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise DataError(f"{path}: frame not found") from None
        except OSError as exc:
            raise DataError(f"{path}: cannot read frame ({exc.strerror or exc})") from None
        return decode_image(data, str(path))

    def close(self) -> None:
        """Nothing to release; present so both stores can be used the same way."""


# One read-only environment per LMDB and process, shared by every LmdbFrames on that path:
# py-lmdb refuses to open the same files twice in one process. Keyed by the resolved path.
_OPEN_ENVS: dict[str, tuple[int, object]] = {}


def _shared_environment(path: Path):
    import lmdb  # imported here so disk-only users never need the module

    key = str(path.resolve())
    entry = _OPEN_ENVS.get(key)
    if entry is not None and entry[0] != os.getpid():
        # Inherited through fork (a DataLoader worker started after the parent read frames).
        # LMDB environments must not be used after fork, and py-lmdb refuses a second open
        # while the inherited one exists; closing a read-only, lock-free environment in the
        # child only unmaps it here, the parent's stays valid. Then open our own.
        entry[1].close()
        entry = None
    if entry is None:
        try:
            env = lmdb.open(key, readonly=True, lock=False, readahead=False, meminit=False, max_readers=512)
        except lmdb.Error as exc:
            raise DataError(f"{path}: cannot open LMDB ({exc})") from None
        entry = _OPEN_ENVS[key] = (os.getpid(), env)
    return entry[1]


class LmdbFrames:
    """Frames in a BasicSR-layout LMDB.

    The LMDB environment is opened lazily, once per process, and is never an attribute: a
    pickled dataset (spawn/forkserver DataLoader workers) carries only the path, and a forked
    worker replaces the environment it inherited with its own (see `_shared_environment`).
    """

    backend = "lmdb"

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def location(self) -> str:
        return str(self.path)

    def describe(self, key: str) -> str:
        return f"key '{key}' in {self.path}"

    def get_bytes(self, key: str) -> bytes | None:
        with _shared_environment(self.path).begin(write=False, buffers=False) as txn:
            return txn.get(key.encode("ascii"))

    def has(self, key: str) -> bool:
        return self.get_bytes(key) is not None

    def frame_hw(self, key: str) -> None:
        """Unknown until the frame is decoded (meta_info.txt may be stale; the PNG decides)."""
        return None

    def read(self, key: str) -> np.ndarray:
        data = self.get_bytes(key)
        if data is None:
            raise DataError(f"{self.path}: key '{key}' not found in the LMDB")
        return decode_image(data, self.describe(key))

    def is_open(self) -> bool:
        entry = _OPEN_ENVS.get(str(self.path.resolve()))
        return entry is not None and entry[0] == os.getpid()

    def close(self) -> None:
        """Close this process's environment for the path (the datasets do so after their
        start-up checks); the next read reopens it."""
        entry = _OPEN_ENVS.pop(str(self.path.resolve()), None)
        if entry is not None and entry[0] == os.getpid():
            entry[1].close()


FrameStore = DiskFrames | LmdbFrames | RawFrames


@dataclass(frozen=True)
class LmdbEntry:
    key: str
    shape: tuple[int, int, int]
    compress_level: int


def check_lmdb_folder(path: Path, option_key: str) -> None:
    """An LMDB root must hold data.mdb and BasicSR's meta_info.txt; say which one is missing, and
    name an LMDB whose build was interrupted as such."""
    if lmdb_state(path) == "half-built":
        raise OptionPathError(option_key, f"{path} is a half-built LMDB (its build was interrupted: "
                                          f"{LMDB_BUILD_NAME} is there, {LMDB_META_NAME} not yet); run "
                                          "scripts/create_lmdb.py again with the same --input/--output to finish it")
    if not (path / "data.mdb").is_file():
        raise OptionPathError(option_key, f"{path} is not an LMDB (no data.mdb)")
    if not (path / LMDB_META_NAME).is_file():
        raise OptionPathError(option_key, f"{path} has no {LMDB_META_NAME} (BasicSR's LMDB layout lists every "
                                          "key there; rebuild it with scripts/create_lmdb.py)")


def read_lmdb_meta(path: Path) -> Iterator[LmdbEntry]:
    """Entries of `<lmdb>/meta_info.txt`, in file order."""
    meta = Path(path) / LMDB_META_NAME
    with open(meta, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            match = _LMDB_META_LINE.match(line.strip())
            if match is None:
                raise DataError(f"{meta}:{number}: expected '<key>.png (h,w,c) <compress_level>', got {line.strip()!r}")
            name = match["name"]
            key = name.rsplit(".", 1)[0] if "." in name.rsplit("/", 1)[-1] else name
            shape = (int(match["h"]), int(match["w"]), int(match["c"]))
            yield LmdbEntry(key=key, shape=shape, compress_level=int(match["level"]))


def format_lmdb_meta_line(key: str, shape: tuple[int, ...], compress_level: int) -> str:
    h, w = shape[:2]
    c = shape[2] if len(shape) > 2 else 1
    return f"{key}.png ({h},{w},{c}) {compress_level}\n"


def lmdb_state(path: Path) -> str:
    """'complete' (meta_info.txt, no build record), 'half-built' (a create_lmdb.py build record:
    interrupted or running), 'absent' (no folder, or an empty one) or 'other' (anything else)."""
    path = Path(path)
    if (path / LMDB_BUILD_NAME).is_file():
        return "half-built"
    if (path / LMDB_META_NAME).is_file() and (path / "data.mdb").is_file():
        return "complete"
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return "absent"
    return "other"


class LmdbWriter:
    """Writes encoded PNGs into a BasicSR-layout LMDB (used by scripts/create_lmdb.py), resumably.

    As the raw store's writer: `build.json` marks the folder as being built, images are committed
    in batches and each batch's meta lines are then appended to `meta_info.partial`, and
    meta_info.txt is written last (atomically, by `close()`), so a folder with meta_info.txt is
    whole. Leaving the `with` block by an exception (Ctrl-C, a bad frame) commits nothing more and
    writes no meta_info.txt; a writer opened again on that folder (same `source` and level)
    resumes after the committed images (`done`). The map size grows on demand, so no size
    estimate is needed up front; commits are batched (by count and bytes) because one transaction
    per image is slow.
    """

    def __init__(self, path: Path, compress_level: int = 1, batch: int = 5000, map_size: int = 1 << 30,
                 source: str = "", batch_bytes: int = 256 << 20):
        import lmdb

        self.path = Path(path)
        self.compress_level = compress_level
        self.batch, self.batch_bytes = batch, batch_bytes
        self._lmdb = lmdb
        state = lmdb_state(self.path)
        if state == "complete":
            raise DataError(f"{self.path}: already exists (a finished LMDB); remove it or choose another output path")
        if state == "other":
            raise DataError(f"{self.path}: already exists and is not an LMDB that scripts/create_lmdb.py was building "
                            f"(no {LMDB_BUILD_NAME}); remove it or choose another output path")
        build = {"format": LMDB_BUILD_FORMAT, "source": source, "compress_level": compress_level}
        progress = self.path / LMDB_PROGRESS_NAME
        if state == "half-built":
            self._check_build_record(build)
            self.done = self._read_progress(progress)
            if self.done and not (self.path / "data.mdb").is_file():
                raise DataError(f"{self.path}: half-built, but its data.mdb is gone; remove the folder and build it again")
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            fsio.atomic_write_text(progress, "")
            fsio.atomic_write_text(self.path / LMDB_BUILD_NAME, json.dumps(build, indent=1) + "\n")
            self.done = []
        self._env = lmdb.open(str(self.path), map_size=map_size)
        self._progress = open(progress, "a", encoding="utf-8")
        self._pending: list[tuple[bytes, bytes, str]] = []
        self._pending_bytes = 0
        self.count = len(self.done)
        self.bytes_written = 0

    def _check_build_record(self, wanted: dict) -> None:
        record = self.path / LMDB_BUILD_NAME
        try:
            found = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            found = None
        if not isinstance(found, dict) or found.get("format") != LMDB_BUILD_FORMAT:
            raise DataError(f"{record}: unreadable build record; remove {self.path} and build it again")
        for key, what in (("source", "input"), ("compress_level", "--compress-level")):
            if found.get(key) != wanted[key]:
                raise DataError(f"{record}: this LMDB was started with {what} {found.get(key)!r}, not {wanted[key]!r}; "
                                "finish it with that, or remove it")

    @staticmethod
    def _read_progress(progress: Path) -> list[LmdbEntry]:
        """Entries committed by the interrupted run; a torn last line (a kill while appending) is
        cut off, and its images are simply written again."""
        try:
            text = progress.read_bytes().decode("utf-8", errors="replace")
        except FileNotFoundError:
            text = ""
        whole = text[:text.rfind("\n") + 1]
        if whole != text:
            fsio.atomic_write_text(progress, whole)
        entries = []
        for line in whole.splitlines():
            match = _LMDB_META_LINE.match(line.strip())
            if match is None:
                break
            name = match["name"]
            entries.append(LmdbEntry(name.rsplit(".", 1)[0], (int(match["h"]), int(match["w"]), int(match["c"])),
                                     int(match["level"])))
        return entries

    def put_encoded(self, key: str, data: bytes, shape: tuple[int, ...]) -> None:
        try:
            key_bytes = key.encode("ascii")
        except UnicodeEncodeError:
            raise DataError(f"{self.path}: key '{key}' is not ASCII (LMDB keys follow BasicSR: ASCII only)") from None
        self._pending.append((key_bytes, data, format_lmdb_meta_line(key, shape, self.compress_level)))
        self._pending_bytes += len(data)
        self.count += 1
        self.bytes_written += len(data)
        if len(self._pending) >= self.batch or self._pending_bytes >= self.batch_bytes:
            self._commit()

    def _commit(self) -> None:
        if not self._pending:
            return
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    for key_bytes, data, _ in self._pending:
                        txn.put(key_bytes, data)
                break
            except self._lmdb.MapFullError:
                self._env.set_mapsize(self._env.info()["map_size"] * 2)
        # after the commit: a line vouches for a stored image (a kill in between re-puts the batch)
        self._progress.write("".join(line for _, _, line in self._pending))
        self._progress.flush()
        os.fsync(self._progress.fileno())
        self._pending.clear()
        self._pending_bytes = 0

    def close(self) -> None:
        """Commit the rest and write meta_info.txt (last); the LMDB is then finished."""
        self._commit()
        self._env.close()
        self._progress.close()
        progress = self.path / LMDB_PROGRESS_NAME
        fsio.atomic_write_bytes(self.path / LMDB_META_NAME, progress.read_bytes())
        (self.path / LMDB_BUILD_NAME).unlink()
        progress.unlink()
        fsio.fsync_dir(self.path)

    def abort(self) -> None:
        """Stop without committing the pending batch or writing meta_info.txt (resumable)."""
        self._pending.clear()
        self._env.close()
        self._progress.close()

    def __enter__(self) -> "LmdbWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def human_size(size: float) -> str:
    """Bytes in decimal units with three significant figures: '512 B', '3.3 MB', '75.0 GB', '350 GB'."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 999.5 or unit == "TB":
            break
        size /= 1000
    if unit == "B":
        return f"{int(size)} B"
    return f"{size:.1f} {unit}" if abs(size) < 99.95 else f"{size:.0f} {unit}"


def progress_bar(items, **kwargs):
    """The converters' progress bar on stderr (tqdm, pinned in requirements.txt; none without it)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, file=sys.stderr, dynamic_ncols=True, **kwargs)


def png_size(path: Path) -> tuple[int, int] | None:
    """(height, width) from a PNG's IHDR chunk without decoding; None if not a PNG."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(24)
    except OSError:
        return None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")


def open_store(backend: str, option_key: str, root: object, ext: str = "png") -> FrameStore:
    """Check the root an option points at (folder, LMDB with its meta_info.txt, or finished raw
    store, spot-checked: `RawFrames.check_opened`) and wrap it. `ext` is the frame-file extension of the 'disk' backend only."""
    path = existing_dir(option_key, root)
    if backend == "lmdb":
        check_lmdb_folder(path, option_key)
        return LmdbFrames(path)
    if backend == "raw":
        try:
            store = RawFrames(path)
            store.check_opened()  # a few frames: damage and a meta edited by hand stop here, not in training
            return store
        except DataError as exc:
            raise OptionPathError(option_key, str(exc)) from None
    return DiskFrames(path, ext)


def open_stores(backend: str, dataroot_gt: object, dataroot_lq: object,
                ext: str = "png") -> tuple[FrameStore, FrameStore]:
    """A dataset's GT and LR stores (`datasets.<phase>.dataroot_gt` / `dataroot_lq`), both on one
    backend: how every training and test set opens its frames."""
    return open_store(backend, "dataroot_gt", dataroot_gt, ext), open_store(backend, "dataroot_lq", dataroot_lq, ext)


def check_keys_exist(store: FrameStore, keys: list[str], listed_by: str) -> None:
    """Start-up check that a few keys a meta-info source promises are really stored."""
    for key in keys:
        if not store.has(key):
            raise DataError(f"{listed_by} lists frame '{key}', but {store.describe(key)} does not exist")
