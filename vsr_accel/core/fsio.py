"""One atomic write for every file the project produces (checkpoints, frames, records, stores).

A write goes to a hidden temp file in the target's folder (same file system, so the rename is
atomic), is flushed and fsync'd, renamed over the target, and the folder is fsync'd so the new
name survives a power cut. A kill at any point leaves either the old file or the whole new one,
plus at most a stray `.<name>.<random>.tmp` that `remove_stale_temps` clears.

The temp file is created with `os.open(..., 0o666)`, so the result has the mode a plain
`open()` would give under the current umask; `tempfile.mkstemp`'s 0600 would survive the rename
and hide a team's checkpoints and frames from each other.
"""
from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

TEMP_NAME = re.compile(r"^\..+\.[^.]+\.tmp$")
"""Temp files of `atomic_writer` (`.<name>.<8 hex>.tmp`; also the older mkstemp-named ones); only a
killed write leaves one."""


def temp_path_for(path: Path) -> Path:
    return path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"


@contextmanager
def atomic_writer(path: str | Path, before_rename: Callable[[], None] | None = None,
                  sync_dir: bool = True) -> Iterator[BinaryIO]:
    """`with atomic_writer(p) as f: f.write(...)`: `p` appears complete or not at all.

    `before_rename` runs after the data is durable and before the rename (the fault-injection
    point of the crash tests). `sync_dir=False` leaves the folder's fsync to a caller that
    renames many files and syncs once (`fsync_dir`). On any exception the temp file is removed
    and the target is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if before_rename is not None:
            before_rename()
        os.replace(tmp, path)
        if sync_dir:
            fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes, sync_dir: bool = True) -> None:
    with atomic_writer(path, sync_dir=sync_dir) as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str, sync_dir: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), sync_dir=sync_dir)


def fsync_dir(folder: str | Path) -> None:
    """Make renames inside `folder` durable (POSIX); a no-op where folders cannot be opened or
    fsync'd (some network file systems)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def stale_temps(folder: str | Path, names: Iterable[str] | None = None) -> list[Path]:
    """Temp files of killed writes in `folder` (of the given target names only, if given)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    wanted = None if names is None else set(names)
    found = []
    for entry in folder.iterdir():
        if not TEMP_NAME.match(entry.name) or not entry.is_file():
            continue
        target = entry.name[1:].rsplit(".", 2)[0]  # ".{name}.{hex}.tmp" -> name
        if wanted is None or target in wanted:
            found.append(entry)
    return sorted(found)


def remove_stale_temps(folder: str | Path, names: Iterable[str] | None = None) -> list[Path]:
    """Delete the temp files of killed writes; returns what was removed. Call it only while
    nothing else writes into `folder` (at start-up, on the writing rank)."""
    stale = stale_temps(folder, names)
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
