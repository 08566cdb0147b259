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

from datasets.io import LmdbWriter  # noqa: E402
from datasets.meta_info import frame_items, vimeo_items  # noqa: E402,F401  (listing shared with create_raw_store)
from vsr_accel.errors import DataError, VSRError  # noqa: E402


@dataclass(frozen=True)
class LmdbSummary:
    path: Path
    images: int
    bytes: int


def _encode(path: Path, compress_level: int) -> tuple[bytes, tuple[int, ...]]:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"{path}: missing or unreadable image")
    ok, encoded = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, compress_level])
    if not ok:
        raise DataError(f"{path}: cannot be encoded as PNG")
    return encoded.tobytes(), image.shape


def make_lmdb(items: list[tuple[str, Path]], lmdb_path: Path, compress_level: int = 1,
              workers: int | None = None) -> LmdbSummary:
    """Write `items` (key, image file) into a new LMDB at `lmdb_path` (must end with .lmdb).
    Decoding/encoding runs in threads (OpenCV releases the GIL); writes stay in order."""
    lmdb_path = Path(lmdb_path)
    if lmdb_path.suffix != ".lmdb":
        raise DataError(f"{lmdb_path}: the output path must end with .lmdb (BasicSR's convention)")
    workers = workers or min(8, os.cpu_count() or 1)
    chunk = 256  # bounded memory: encode a chunk, write it, go on
    with LmdbWriter(lmdb_path, compress_level=compress_level) as writer, ThreadPoolExecutor(workers) as pool:
        for start in range(0, len(items), chunk):
            part = items[start:start + chunk]
            for (key, _), (data, shape) in zip(part, pool.map(lambda it: _encode(it[1], compress_level), part)):
                writer.put_encoded(key, data, shape)
    return LmdbSummary(lmdb_path, writer.count, writer.bytes_written)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, type=Path, help="folder of frames (GT or LR)")
    parser.add_argument("--output", required=True, type=Path, help="new LMDB folder, ending with .lmdb")
    parser.add_argument("--layout", choices=("reds", "frames", "vimeo"), default="reds",
                        help="reds/frames: <clip>/<frame>.png (any depth); vimeo: septuplets (default: reds)")
    parser.add_argument("--list", type=Path, default=None, help="vimeo: septuplet list such as sep_trainlist.txt")
    parser.add_argument("--center-only", action="store_true", help="vimeo: store im4 only (EDVR-style GT)")
    parser.add_argument("--ext", default="png", help="frame file extension (default: png)")
    parser.add_argument("--compress-level", type=int, default=1, choices=range(10), metavar="0-9",
                        help="PNG compression level inside the LMDB (default: 1, as BasicSR)")
    parser.add_argument("--workers", type=int, default=None, help="encoding threads (default: min(8, CPUs))")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.layout == "vimeo":
            items = vimeo_items(args.input, args.list, args.center_only, args.ext)
        else:
            items = frame_items(args.input, args.ext)
        summary = make_lmdb(items, args.output, args.compress_level, args.workers)
    except VSRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {summary.images} images ({summary.bytes / 2**20:.1f} MiB of PNG) to {summary.path} "
          f"(keys like '{items[0][0]}'; list in {summary.path / 'meta_info.txt'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
