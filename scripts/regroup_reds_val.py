#!/usr/bin/env python
"""Regroup REDS as BasicSR does: validation clips 000-029 join the training folder as 240-269.

BasicSR trains on train_sharp (clips 000-269 after this step) and picks the held-out clips at
load time: val_partition 'REDS4' removes 000, 011, 015, 020 (the usual test set), 'official'
removes 240-269 (the original validation set). For each pair below that exists under
--reds-root, `val/<NNN>` is copied to `train/<NNN + 240>`:

  train_sharp                <- val_sharp
  train_sharp_bicubic/X4     <- val_sharp_bicubic/X4

BasicSR's regroup_reds_dataset.py copies (`cp -r`); --move moves instead, saving the disk space
of a second copy. A target that already holds as many frames as its source is skipped, so the
script can be re-run.

  python scripts/regroup_reds_val.py --reds-root data/REDS
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vsr_accel.core.errors import DataError, VSRError  # noqa: E402
from vsr_accel.core.cli import ArgumentParser  # noqa: E402

FOLDER_PAIRS = (("train_sharp", "val_sharp"), ("train_sharp_bicubic/X4", "val_sharp_bicubic/X4"))
OFFSET = 240


def regroup(train_dir: Path, val_dir: Path, move: bool = False, offset: int = OFFSET) -> list[tuple[Path, Path, str]]:
    """Copy/move every `val_dir/<NNN>` to `train_dir/<NNN + offset>`; returns (source, target,
    action) for each clip, action being 'copied', 'moved' or 'skipped'."""
    clips = sorted(p for p in val_dir.iterdir() if p.is_dir())
    if not clips:
        raise DataError(f"{val_dir}: no clip folders to regroup")
    bad = next((p for p in clips if not p.name.isdigit()), None)
    if bad is not None:
        raise DataError(f"{bad}: REDS clip folders are numbered (000-029)")
    train_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for source in clips:
        target = train_dir / f"{int(source.name) + offset:03d}"
        if target.exists():
            if _count_files(target) != _count_files(source):
                raise DataError(f"{target}: already exists with a different number of frames than {source}")
            done.append((source, target, "skipped"))
            continue
        if move:
            shutil.move(str(source), str(target))
        else:
            shutil.copytree(source, target)
        done.append((source, target, "moved" if move else "copied"))
    return done


def _count_files(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reds-root", required=True, type=Path, help="folder holding train_sharp, val_sharp, ...")
    parser.add_argument("--move", action="store_true", help="move the clips instead of copying them")
    args = parser.parse_args(argv)
    try:
        pairs = [(args.reds_root / t, args.reds_root / v) for t, v in FOLDER_PAIRS if (args.reds_root / v).is_dir()]
        if not pairs:
            raise DataError(f"{args.reds_root}: none of {', '.join(v for _, v in FOLDER_PAIRS)} found")
        for train_dir, val_dir in pairs:
            results = regroup(train_dir, val_dir, move=args.move)
            counts = {a: sum(1 for *_, b in results if b == a) for a in ("copied", "moved", "skipped")}
            summary = ", ".join(f"{n} {a}" for a, n in counts.items() if n)
            print(f"{val_dir} -> {train_dir}: clips {results[0][1].name}-{results[-1][1].name} ({summary})")
    except VSRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
