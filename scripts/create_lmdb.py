#!/usr/bin/env python
"""Pack frame folders into an LMDB with BasicSR's layout (data.mdb, lock.mdb, meta_info.txt).

Keys are the frame paths relative to the input folder, without extension, as BasicSR's
scripts/data_preparation/create_lmdb.py makes them:

  --layout reds / frames   <input>/<clip>/<frame>.png      -> key 000/00000000 (any depth)
  --layout vimeo           <input>/<00001>/<0001>/imN.png  -> key 00001/0001/im1; the septuplets
                           come from --list (Vimeo's sep_trainlist.txt) or the folder tree.
                           All seven frames are stored (recurrent models need every GT frame);
                           --center-only keeps im4 only, like BasicSR's GT_only4th LMDB.

Images are re-encoded as PNG at --compress-level (BasicSR's default 1: fast to decode).

The build resumes, as scripts/create_raw_store.py's: images are committed in batches, build.json
marks the folder as being built, and meta_info.txt is written last, so a folder with it is whole
and an interrupted one is named as half-built (by the datasets too) and finished by running the
same command again. Ctrl-C prints one line (exit 130); running it on a finished LMDB of the same
images does nothing.

  python scripts/create_lmdb.py --input data/REDS/train_sharp --output data/REDS/train_sharp_with_val.lmdb
  python scripts/create_lmdb.py --layout vimeo --input data/vimeo90k/vimeo_septuplet/sequences \\
      --list data/vimeo90k/vimeo_septuplet/sep_trainlist.txt --output data/vimeo90k/vimeo90k_train_GT.lmdb
"""
from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402

from datasets.io import (LMDB_META_NAME, LmdbWriter, human_size, lmdb_state, progress_bar,  # noqa: E402
                         read_lmdb_meta)
from datasets.meta_info import frame_items, vimeo_items  # noqa: E402,F401  (listing shared with create_raw_store)
from vsr_accel.core.errors import DataError, VSRError, report_interrupt  # noqa: E402
from vsr_accel.core.cli import ArgumentParser  # noqa: E402

COMMIT_EVERY = 5000  # images per LMDB transaction (fewer when they add up to 256 MB): what an interrupt loses


@dataclass(frozen=True)
class LmdbSummary:
    path: Path
    images: int
    kept: int      # committed by an earlier, interrupted run
    bytes: int     # data.mdb on disk


def _encode(path: Path, compress_level: int) -> tuple[bytes, tuple[int, ...]]:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"{path}: missing or unreadable image")
    ok, encoded = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, compress_level])
    if not ok:
        raise DataError(f"{path}: cannot be encoded as PNG")
    return encoded.tobytes(), image.shape


def make_lmdb(items: list[tuple[str, Path]], lmdb_path: Path, compress_level: int = 1,
              workers: int | None = None, source: str = "", progress=None) -> LmdbSummary:
    """Write `items` (key, image file) into the LMDB at `lmdb_path` (must end with .lmdb): a new
    one, or the half-built one an interrupted run of the same `source` left, after its committed
    images. Decoding/encoding runs in threads (OpenCV releases the GIL); writes stay in order."""
    lmdb_path = Path(lmdb_path)
    if lmdb_path.suffix != ".lmdb":
        raise DataError(f"{lmdb_path}: the output path must end with .lmdb (BasicSR's convention)")
    workers = workers or min(8, os.cpu_count() or 1)
    chunk = 256  # bounded memory: encode a chunk, write it, go on
    with LmdbWriter(lmdb_path, compress_level=compress_level, source=source, batch=COMMIT_EVERY) as writer:
        kept = len(writer.done)
        done_keys = [entry.key for entry in writer.done]
        if done_keys != [key for key, _ in items[:kept]]:
            raise DataError(f"{lmdb_path}: this half-built LMDB holds other images than the input lists now "
                            f"({kept} committed); finish it with the input it was started from, or remove it")
        if kept:
            print(f"resuming {lmdb_path}: keeping {kept} of {len(items)} images committed earlier", file=sys.stderr)
        todo = items[kept:]
        bar = (progress or progress_bar)(range(len(todo)), desc="pack", unit="image", total=len(todo))
        try:
            with ThreadPoolExecutor(workers) as pool:
                for start in range(0, len(todo), chunk):
                    part = todo[start:start + chunk]
                    for (key, _), (data, shape) in zip(part, pool.map(lambda it: _encode(it[1], compress_level), part)):
                        writer.put_encoded(key, data, shape)
                        if hasattr(bar, "update"):
                            bar.update(1)
        finally:
            if hasattr(bar, "close"):
                bar.close()  # an error line must start on a line of its own
    return LmdbSummary(lmdb_path, len(items), kept, (lmdb_path / "data.mdb").stat().st_size)


def finished_lmdb(output: Path, items: list[tuple[str, Path]]) -> str:
    """The line for a finished LMDB at `output`: nothing to do when it holds exactly `items`' keys;
    otherwise a DataError naming its meta_info.txt (an older create_lmdb.py wrote that file as it
    went, so an LMDB it left half-built looks finished: it lists a part of the images)."""
    meta = output / LMDB_META_NAME
    stored = [entry.key for entry in read_lmdb_meta(output)]
    keys = [key for key, _ in items]
    if stored == keys:
        return f"{output} is complete ({len(stored)} images, the keys the input lists); nothing to do"
    if len(stored) < len(keys) and stored == keys[:len(stored)]:
        raise DataError(f"{meta} lists only {len(stored)} of the {len(keys)} images of the input: a half-built LMDB "
                        "(an older create_lmdb.py wrote meta_info.txt as it went), or one built before the input "
                        "grew; remove it and run again")
    raise DataError(f"{meta}: this finished LMDB holds other images than the input lists; remove it to rebuild, "
                    "or choose another --output")


def interrupted_line(output: Path) -> str:
    if lmdb_state(output) == "half-built":
        return (f"interrupted: {output} is half-built (the images committed so far are kept, {LMDB_META_NAME} is "
                "not written yet); run the same command again to resume")
    return f"interrupted: {output} was not changed"


def build(args: argparse.Namespace) -> int:
    if args.layout == "vimeo":
        items = vimeo_items(args.input, args.list, args.center_only, args.ext)
    else:
        items = frame_items(args.input, args.ext)
    if lmdb_state(args.output) == "complete":
        print(finished_lmdb(args.output, items))
        return 0
    summary = make_lmdb(items, args.output, args.compress_level, args.workers, source=str(Path(args.input).resolve()))
    kept = f", {summary.kept} of them kept from the interrupted run" if summary.kept else ""
    print(f"wrote {summary.images} images{kept} ({human_size(summary.bytes)}) to {summary.path} "
          f"(keys like '{items[0][0]}'; list in {summary.path / LMDB_META_NAME}, written last)")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, type=Path, help="folder of frames (GT or LR)")
    parser.add_argument("--output", required=True, type=Path,
                        help="LMDB folder to create or resume, ending with .lmdb")
    parser.add_argument("--layout", choices=("reds", "frames", "vimeo"), default="reds",
                        help="reds/frames: <clip>/<frame>.png (any depth); vimeo: septuplets (default: reds)")
    parser.add_argument("--list", type=Path, default=None, help="vimeo: septuplet list such as sep_trainlist.txt")
    parser.add_argument("--center-only", action="store_true", help="vimeo: store im4 only (EDVR-style GT)")
    parser.add_argument("--ext", default="png", help="frame file extension (default: png)")
    parser.add_argument("--compress-level", type=int, default=1, choices=range(10), metavar="0-9",
                        help="PNG compression level inside the LMDB (default: 1, as BasicSR)")
    parser.add_argument("--workers", type=int, default=None, help="encoding threads (default: min(8, CPUs))")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of data errors")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return report_interrupt(lambda: build(args), args.debug, lambda: interrupted_line(args.output))


if __name__ == "__main__":
    sys.exit(main())
