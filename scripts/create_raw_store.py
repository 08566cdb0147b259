#!/usr/bin/env python
"""Pack frame folders or a BasicSR LMDB into a raw frame store (`io_backend: {type: raw}`).

A raw store keeps every clip as one uncompressed uint8 file that the training datasets
memory-map and crop without decoding (see datasets/raw_store.py): the cost of a sample follows
its crop, instead of one whole PNG decode per frame. It is big (REDS GT: 75 GB for the 270
train+val clips), and built once:

  python scripts/create_raw_store.py --input data/REDS/train_sharp --output data/REDS/train_sharp.raw
  python scripts/create_raw_store.py --input data/REDS/train_sharp_with_val.lmdb \\
      --output data/REDS/train_sharp_with_val.raw                         # from a BasicSR LMDB
  python scripts/create_raw_store.py --input data/vimeo90k/vimeo_septuplet/sequences \\
      --list data/vimeo90k/vimeo_septuplet/sep_trainlist.txt --output data/vimeo90k/vimeo90k_train_GT.raw

Input: a folder tree `<input>/<clip>/<frame>.png` (clips at any depth: a frame's clip is its
key minus the last component, `000/00000012` -> clip `000`, `00001/0001/im3` -> `00001/0001`),
or an LMDB folder with BasicSR's meta_info.txt (recognised by its data.mdb). `--list` (Vimeo's
sep_trainlist.txt, or any meta-info file: first token per line) keeps only the listed clips.

Frames are decoded exactly as the 'disk' and 'lmdb' backends decode them (OpenCV, colour), so
all three backends give bit-identical samples. The build resumes: a clip is written atomically
and then recorded, finished clips are kept when the command is run again, and meta.json is
written last, after a sample of frames (`--verify`, default 64; `all`) was compared bit for
bit with the source, so a half-built or unverified store is never read. Running it on a
finished store only verifies. A corrupt source frame, a damaged store file or a mismatch ends
with one `error:` line naming the file (exit 2); Ctrl-C with one line (exit 130).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from datasets.io import (DiskFrames, LmdbFrames, check_lmdb_folder, decode_image, human_size, png_size,  # noqa: E402
                         progress_bar, read_lmdb_meta)
from datasets.meta_info import frame_files, read_clip_meta  # noqa: E402
from datasets.raw_store import (RawClip, RawFrames, RawStoreWriter, bgr_to_planar_rgb, clip_data_path,  # noqa: E402
                                map_clip_file, read_meta, store_state, verify_checksums)
from vsr_accel.core.errors import DataError, report_interrupt  # noqa: E402
from vsr_accel.core.cli import ArgumentParser  # noqa: E402

DEFAULT_VERIFY = 64


@dataclass(frozen=True)
class SourceClip:
    name: str
    frames: tuple[str, ...]
    frame_hw: tuple[int, int] | None  # from a PNG header or the LMDB meta (for the size estimate)

    def key(self, frame: str) -> str:
        return f"{self.name}/{frame}"


@dataclass
class Source:
    """What to pack: a frame store to read from and its clips, in order."""

    store: DiskFrames | LmdbFrames
    clips: list[SourceClip]
    description: str


def _split_key(key: str, where: str) -> tuple[str, str]:
    if "/" not in key:
        raise DataError(f"{where}: frame '{key}' has no clip folder (expected <clip>/<frame>, e.g. 000/00000000)")
    clip, frame = key.rsplit("/", 1)
    return clip, frame


def list_listed(list_file: Path | None) -> list[str] | None:
    if list_file is None:
        return None
    if not Path(list_file).is_file():
        raise DataError(f"{list_file}: clip list not found")
    return [clip.name for clip in read_clip_meta(Path(list_file))]


def folder_source(root: Path, ext: str, listed: list[str] | None) -> Source:
    if not root.is_dir():
        raise DataError(f"{root}: input folder does not exist")
    clips: list[SourceClip] = []
    if listed is not None:
        for name in listed:
            folder = root / name
            files = frame_files(folder, ext) if folder.is_dir() else []
            if not files:
                raise DataError(f"{folder}: listed clip has no .{ext} frames")
            clips.append(SourceClip(name, tuple(p.stem for p in files), png_size(files[0])))
    else:
        grouped: dict[str, list[Path]] = {}
        for path in sorted(root.rglob(f"*.{ext}")):
            clip, _ = _split_key(path.relative_to(root).with_suffix("").as_posix(), str(root))
            grouped.setdefault(clip, []).append(path)
        if not grouped:
            raise DataError(f"{root}: no .{ext} files found (expected <input>/<clip>/<frame>.{ext})")
        clips = [SourceClip(name, tuple(p.stem for p in files), png_size(files[0])) for name, files in grouped.items()]
    return Source(DiskFrames(root, ext), clips, str(root.resolve()))


def lmdb_source(root: Path, listed: list[str] | None) -> Source:
    check_lmdb_folder(root, "--input")
    grouped: dict[str, list[str]] = {}
    shapes: dict[str, tuple[int, int]] = {}
    for entry in read_lmdb_meta(root):
        clip, frame = _split_key(entry.key, str(root / "meta_info.txt"))
        grouped.setdefault(clip, []).append(frame)
        shapes.setdefault(clip, entry.shape[:2])
    if not grouped:
        raise DataError(f"{root}/meta_info.txt lists no keys")
    names = listed if listed is not None else list(grouped)
    missing = next((n for n in names if n not in grouped), None)
    if missing is not None:
        raise DataError(f"{root}/meta_info.txt has no frames of listed clip '{missing}'")
    clips = [SourceClip(n, tuple(grouped[n]), shapes[n]) for n in names]
    return Source(LmdbFrames(root), clips, str(root.resolve()))


def open_source(path: Path, ext: str, list_file: Path | None) -> Source:
    listed = list_listed(list_file)
    if (path / "data.mdb").is_file():
        return lmdb_source(path, listed)
    return folder_source(path, ext, listed)


def estimated_bytes(clips: Sequence[SourceClip]) -> int | None:
    """Bytes the clips will take (frame sizes from PNG headers / the LMDB meta); None if unknown."""
    if any(c.frame_hw is None for c in clips):
        return None
    return sum(len(c.frames) * 3 * c.frame_hw[0] * c.frame_hw[1] for c in clips)


def check_free_space(output: Path, needed: int | None) -> None:
    if needed is None:
        return
    probe = output if output.exists() else output.parent
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed > free:
        raise DataError(f"{output}: the clips left to pack need {human_size(needed)}, only {human_size(free)} "
                        f"are free on {probe}")


def decoded_frames(source: Source, clip: SourceClip, pool: ThreadPoolExecutor,
                   window: int = 8) -> Iterator[tuple[str, np.ndarray, str]]:
    """(frame name, BGR frame, source description) in order, decoding up to `window` frames
    ahead in threads (OpenCV releases the GIL) while the writer works on earlier ones."""
    keys = [clip.key(f) for f in clip.frames]
    pending = [_start_decoding(source.store, key, pool) for key in keys[:window]]
    for i, key in enumerate(keys):
        frame = pending[i].result()
        if i + window < len(keys):
            pending.append(_start_decoding(source.store, keys[i + window], pool))
        pending[i] = None  # type: ignore[call-overload]
        yield clip.frames[i], frame, source.store.describe(key)


def _start_decoding(store: DiskFrames | LmdbFrames, key: str, pool: ThreadPoolExecutor) -> Future:
    """Files are read and decoded in a thread; LMDB values are fetched here (one environment,
    one thread) and only decoded in the pool."""
    if isinstance(store, LmdbFrames):
        data = store.get_bytes(key)
        if data is None:
            raise DataError(f"{store.path}: key '{key}' not found in the LMDB")
        return pool.submit(decode_image, data, store.describe(key))
    return pool.submit(store.read, key)


def sample_frames(clips: Sequence[RawClip], count: int | None) -> list[tuple[str, int]]:
    """(clip, frame index) pairs to verify: all (count None), else `count` evenly spread over
    the whole store, first and last frame included."""
    pairs = [(c.name, i) for c in clips for i in range(len(c.frames))]
    if count is None or count >= len(pairs):
        return pairs
    if count <= 0:
        return []
    if count == 1:
        return [pairs[0]]
    step = (len(pairs) - 1) / (count - 1)
    return [pairs[round(i * step)] for i in range(count)]


def verify_against_source(root: Path, source: Source, clips: Sequence[RawClip], count: int | None,
                          progress) -> int:
    """Compare stored frames bit for bit with freshly decoded source frames, after checking
    their checksums; the first difference raises naming both files."""
    pairs = sample_frames(clips, count)
    verify_checksums(root, clips, pairs)
    by_name = {c.name: c for c in clips}
    arrays: dict[str, np.ndarray] = {}
    bar = progress(pairs, desc="verify", unit="frame")
    try:
        _compare(root, source, by_name, arrays, bar)
    finally:
        _close(bar)
    return len(pairs)


def _compare(root: Path, source: Source, by_name: dict[str, RawClip], arrays: dict[str, np.ndarray], pairs) -> None:
    for name, index in pairs:
        clip = by_name[name]
        if name not in arrays:
            arrays.clear()
            arrays[name] = map_clip_file(clip_data_path(root, name), clip)
        key = f"{name}/{clip.frames[index]}"
        expected = bgr_to_planar_rgb(source.store.read(key))
        stored = arrays[name][index]
        if expected.shape != stored.shape or not np.array_equal(expected, stored):
            raise DataError(f"{clip_data_path(root, name)}: frame '{clip.frames[index]}' differs from its source "
                            f"{source.store.describe(key)}; rebuild the store (remove {root})")


def build(args: argparse.Namespace) -> int:
    source = open_source(args.input, args.ext, args.list)
    writer = RawStoreWriter(args.output, source.description)
    progress = progress_bar
    verify_count = None if args.verify == "all" else int(args.verify)
    total_frames = sum(len(c.frames) for c in source.clips)

    if writer.complete:
        stored = RawFrames(args.output).clips()
        if [(c.name, c.frames) for c in stored] != [(c.name, c.frames) for c in source.clips]:
            raise DataError(f"{args.output / 'meta.json'}: this finished store holds other clips or frames than "
                            f"{args.input}; remove it to rebuild")
        checked = verify_against_source(args.output, source, stored, verify_count, progress)
        print(f"{args.output} is complete ({len(stored)} clips, {total_frames} frames); verified {checked} frames "
              "against the source: identical")
        return 0

    done: list[RawClip | None] = [writer.done_record(c.name, c.frames) for c in source.clips]
    check_free_space(args.output, estimated_bytes([c for c, d in zip(source.clips, done) if d is None]))
    kept = sum(d is not None for d in done)
    if kept:
        print(f"resuming {args.output}: keeping {kept} of {len(source.clips)} clips finished earlier", file=sys.stderr)
    todo_frames = sum(len(c.frames) for c, d in zip(source.clips, done) if d is None)
    workers = args.workers or min(8, os.cpu_count() or 1)
    bar = progress(range(todo_frames), desc="pack", unit="frame", total=todo_frames)
    try:
        with ThreadPoolExecutor(workers) as pool:
            for i, clip in enumerate(source.clips):
                if done[i] is None:
                    done[i] = writer.write_clip(clip.name, _counting(decoded_frames(source, clip, pool), bar))
    finally:
        _close(bar)  # an error line must start on a line of its own
    clips = [d for d in done if d is not None]
    checked = verify_against_source(args.output, source, clips, verify_count, progress)
    meta = writer.finish(clips)
    read_meta(args.output)  # what the datasets will read back
    size = sum(c.nbytes for c in clips)
    print(f"wrote {len(clips)} clips, {total_frames} frames ({human_size(size)}) to {args.output}; "
          f"verified {checked} frames against the source; {meta.name} written last")
    print(f"use it with  io_backend: {{type: raw}}  and  dataroot_*: {args.output}")
    return 0


def _counting(frames: Iterator, bar) -> Iterator:
    for item in frames:
        yield item
        if hasattr(bar, "update"):
            bar.update(1)


def _close(bar) -> None:
    if hasattr(bar, "close"):
        bar.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, type=Path, help="frame folder tree, or a BasicSR LMDB folder")
    parser.add_argument("--output", required=True, type=Path, help="store folder to create or resume (e.g. X.raw)")
    parser.add_argument("--list", type=Path, default=None,
                        help="pack only these clips (first token per line: sep_trainlist.txt, meta_info files)")
    parser.add_argument("--ext", default="png", help="frame file extension of a folder input (default: png)")
    parser.add_argument("--verify", default=str(DEFAULT_VERIFY), metavar="N|all",
                        help=f"frames compared bit for bit with the source (default {DEFAULT_VERIFY}; 'all'; 0: none)")
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default: min(8, CPUs))")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of data errors")
    args = parser.parse_args(argv)
    if args.verify != "all" and not (args.verify.isdigit()):
        parser.error(f"--verify: expected a frame count or 'all', got {args.verify!r}")
    return args


def interrupted_line(output: Path) -> str:
    state = store_state(output)
    if state == "half-built":
        return (f"interrupted: {output} is half-built (finished clips are kept, meta.json is not written yet); "
                "run the same command again to resume")
    return f"interrupted: {output} was not changed" + (" (it is complete)" if state == "complete" else "")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return report_interrupt(lambda: build(args), args.debug, lambda: interrupted_line(args.output))


if __name__ == "__main__":
    sys.exit(main())
