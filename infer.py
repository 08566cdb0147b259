"""Super-resolve a long video with bounded memory, on one device or clip-parallel across ranks.

Recurrent models (BasicVSR, BasicVSR-M) read the whole clip in both directions, so feeding a
long video at once makes memory grow with its length. We process it in temporal chunks of
`--chunk` output frames, each fed with `--context` extra frames on both sides (clamped at the
video's ends) whose outputs are discarded; peak memory then depends on chunk + 2*context and
the frame size only. Sliding-window models (EDVR, EDVR-M) are chunked the same way, with the
context their window needs (padding at the video's ends follows BasicSR's
`generate_frame_indices`; default 'reflection_circle', BasicSR's EDVR test setting).

Frames are decoded as a stream through a window of at most chunk + 2*context frames and
written one PNG per frame (`%08d.png`, 0-based frame index), each atomically (temp file,
fsync, rename). A restarted run skips every chunk whose frames all exist already.

Launch:

    # one process (CPU or one GPU); no torch.distributed call is made
    python infer.py --input clip.mp4 --output results/clip \\
        --checkpoint experiments/demo_cpu/models/net_g_latest.pth \\
        --network BasicVSR --network-args num_feat=64 num_block=15 --mp4 results/clip.mp4

    # network from a BasicSR-style options file (its `network_g`; `path.pretrain_network_g`
    # is used when --checkpoint is not given)
    python infer.py -opt options/demo_cpu.yml --input frames/ --output results/clip

    # clip-parallel on R processes (GPUs, or CPU with gloo): rank r writes a contiguous
    # share of the chunks; output is identical to the one-process run
    python -m torch.distributed.run --nproc_per_node=R infer.py --input clip.mp4 \\
        --output results/clip --checkpoint net.pth --network BasicVSR

    # fidelity check on a short clip: also run whole-clip inference and print PSNRs
    python infer.py ... --compare-whole --gt gt_frames/

Exit status 2 with a one-line message for user mistakes (bad input, checkpoint, options,
output folder); `--debug` shows the traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import yaml

from models import build_network, is_recurrent, required_multiple
from vsr_accel.checkpoint import PARAM_KEYS, load_weights_strict, read_training_state, read_weights
from vsr_accel.chunking import (EDVR_TEST_PADDING, PADDING_MODES, Chunk, SlidingWindow, atomic_write_bytes,
                                fsync_dir, plan_chunks, rank_share, temp_files_for, tile_spans, window_context,
                                window_indices)
from vsr_accel.errors import CheckpointError, ConfigError, DataError, report_user_errors

# Defaults chosen by measurement (benchmarks/bench_infer_memory.py --fidelity, 128 real frames):
# with a tiny BasicVSR fitted to other frames of the footage, PSNR vs GT of chunked and whole-clip
# output differs by 0.0014 dB at N=64, K=8 (chunked vs whole 61.9 dB), and by 0.034 dB even when
# stressed with N=8 (K=4: 0.050, K=2: 0.061 dB: too close to the 0.05 dB budget); with the demo
# checkpoint the difference is 0.0000 dB at N=64, K=8. N=64 keeps the discarded context at 25%
# extra compute while memory stays bounded by 80 LR frames.
DEFAULT_CHUNK = 64
DEFAULT_CONTEXT = 8
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
FRAME_NAME = "{:08d}.png"


# ----------------------------------------------------------------------------- frame sources

def read_image(path: Path) -> np.ndarray:
    frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if frame is None:
        raise DataError(f"{path}: cannot be read as an image")
    return frame


class FrameSource:
    """A video file or a folder of images, read forward as a stream of BGR uint8 frames."""

    num_frames: int
    fps: float | None
    path: Path

    def open_stream(self) -> tuple[Callable[[], np.ndarray], Callable[[], None], Callable[[], None]]:
        """(read_next, skip_next, close) for one forward pass from frame 0."""
        raise NotImplementedError

    def frames(self) -> Iterator[np.ndarray]:
        read_next, _, close = self.open_stream()
        try:
            for _ in range(self.num_frames):
                yield read_next()
        finally:
            close()


class FolderSource(FrameSource):
    def __init__(self, folder: Path):
        self.path = folder
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.files:
            raise DataError(f"{folder}: no image frames ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        self.num_frames = len(self.files)
        self.fps = None

    def open_stream(self):
        position = [0]

        def read_next() -> np.ndarray:
            path = self.files[position[0]]
            position[0] += 1
            return read_image(path)

        def skip_next() -> None:
            position[0] += 1

        return read_next, skip_next, lambda: None


class VideoSource(FrameSource):
    """Frames are counted by decoding once: container frame counts are estimates (variable
    frame rate, damaged tails), and every rank must agree exactly on the chunk plan."""

    def __init__(self, path: Path):
        self.path = path
        capture = self._capture()
        try:
            self.fps = capture.get(cv2.CAP_PROP_FPS) or None
            count = 0
            while capture.grab():
                count += 1
        finally:
            capture.release()
        if count == 0:
            raise DataError(f"{path}: the video has no decodable frames")
        self.num_frames = count

    def _capture(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            capture.release()
            raise DataError(f"{self.path}: cannot be opened as a video (unknown format or damaged file)")
        return capture

    def open_stream(self):
        capture = self._capture()
        position = [0]

        def read_next() -> np.ndarray:
            ok, frame = capture.read()
            if not ok:
                raise DataError(f"{self.path}: frame {position[0]} cannot be decoded")
            position[0] += 1
            return frame

        def skip_next() -> None:
            # Seeking (CAP_PROP_POS_FRAMES) is not frame-exact for every codec; grabbing is.
            if not capture.grab():
                raise DataError(f"{self.path}: frame {position[0]} cannot be decoded")
            position[0] += 1

        return read_next, skip_next, capture.release


def open_source(path: Path, what: str = "--input") -> FrameSource:
    if not path.exists():
        raise DataError(f"{path}: {what} not found")
    if path.is_dir():
        return FolderSource(path)
    return VideoSource(path)


# ----------------------------------------------------------------------------- model

def parse_network_args(items: Sequence[str]) -> dict[str, Any]:
    """`--network-args` as one JSON object or `key=value` items (values parsed as YAML scalars)."""
    if len(items) == 1 and items[0].lstrip().startswith("{"):
        try:
            parsed = json.loads(items[0])
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--network-args: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(parsed, dict):
            raise ConfigError("--network-args: JSON must be an object")
        return parsed
    args: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--network-args: expected key=value, got {item!r}")
        try:
            args[key] = yaml.safe_load(raw) if raw else None
        except yaml.YAMLError:
            args[key] = raw
    return args


def read_options_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: options file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of options at the top level")
    return data


@dataclass(frozen=True)
class ModelSource:
    spec: dict[str, Any]
    checkpoint: Path
    param_key: str | None


def resolve_model_source(args: argparse.Namespace) -> ModelSource:
    """Network spec and checkpoint from --network/--network-args/--checkpoint and/or -opt.
    Command-line values override the options file's."""
    spec: dict[str, Any] = {}
    checkpoint = args.checkpoint
    param_key = None
    if args.opt:
        options = read_options_file(Path(args.opt))
        network_g = options.get("network_g")
        if not isinstance(network_g, dict):
            raise ConfigError(f"{args.opt}: 'network_g' is missing or not a mapping")
        spec = dict(network_g)
        path_section = options.get("path") or {}
        if checkpoint is None and isinstance(path_section, dict) and path_section.get("pretrain_network_g"):
            checkpoint = path_section["pretrain_network_g"]
            param_key = path_section.get("param_key_g")
    if args.network:
        spec["type"] = args.network
    spec.update(parse_network_args(args.network_args or []))
    if "type" not in spec:
        raise ConfigError("no network given: pass --network TYPE (e.g. BasicVSR) or -opt options.yml")
    if checkpoint is None:
        raise ConfigError("no checkpoint given: pass --checkpoint PATH (or path.pretrain_network_g in -opt)")
    # A full checkpoint carries SpyNet's weights; loading a separate SpyNet file first is wasted work.
    if "spynet_path" in spec:
        spec["spynet_path"] = None
    return ModelSource(spec=spec, checkpoint=Path(checkpoint), param_key=param_key)


def read_inference_weights(path: Path, param_key: str | None) -> dict[str, torch.Tensor]:
    """Weights from a BasicSR file (`params_ema` preferred over `params` unless `param_key` says
    otherwise), a bare state_dict, or a vsr-accel training state (`<iter>.state`, whose
    `network` entry holds the same `params`/`params_ema` pair)."""
    try:
        return read_weights(path, param_key=param_key)
    except CheckpointError as not_weights:
        try:
            state = read_training_state(path)
        except CheckpointError:
            raise not_weights from None
    network = state.get("network")
    if not isinstance(network, dict):
        raise CheckpointError(f"{path}: training state has no 'network' weights")
    key = param_key or next((k for k in PARAM_KEYS if isinstance(network.get(k), dict)), None)
    weights = network.get(key) if key else None
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(f"{path}: training state has no '{key or 'params'}' weights under 'network'")
    return {k[7:] if k.startswith("module.") else k: v for k, v in weights.items()}


@dataclass
class LoadedModel:
    net: torch.nn.Module
    recurrent: bool
    window: int  # input frames per output frame for sliding-window models; 0 for recurrent ones
    multiple: int  # LR sides are padded up to a multiple of this


def load_model(source: ModelSource, device: torch.device) -> LoadedModel:
    state = read_inference_weights(source.checkpoint, source.param_key)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*spynet_path is not set.*")
        net = build_network(source.spec)
    load_weights_strict(net, state, str(source.checkpoint))
    net.eval().to(device)
    recurrent = is_recurrent(net)
    window = 0 if recurrent else int(getattr(net, "num_frame", source.spec.get("num_frame", 5)))
    return LoadedModel(net=net, recurrent=recurrent, window=window, multiple=required_multiple(source.spec))


# ----------------------------------------------------------------------------- tensors

def frames_to_tensor(frames: Sequence[np.ndarray]) -> torch.Tensor:
    """BGR uint8 (h, w, 3) frames -> RGB float (t, 3, h, w) in [0, 1], as BasicSR's img2tensor."""
    stacked = torch.from_numpy(np.stack(frames))[..., [2, 1, 0]]
    return stacked.permute(0, 3, 1, 2).float().div_(255.0)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Float in [0, 1] -> uint8 exactly as BasicSR's tensor2img (clamp, *255, round half-even)."""
    return (x.float().clamp(0, 1) * 255.0).round().to(torch.uint8)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h == 0 and pad_w == 0:
        return x, h, w
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:])
    flat = F.pad(flat, (0, pad_w, 0, pad_h), mode="replicate")
    return flat.reshape(*lead, *flat.shape[-3:]), h, w


def apply_tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int, overlap: int,
                multiple: int) -> torch.Tensor:
    """Run `fn` ((..., 3, h, w) -> (..., 3, s*h, s*w)) over overlapping spatial tiles of `x` and
    assemble the uint8 result on the CPU; each output pixel comes from the tile whose centre is
    nearest. With tile=0 this is one call on the whole frame."""
    h, w = x.shape[-2:]
    out: torch.Tensor | None = None
    scale = 0
    for ys in tile_spans(h, tile, overlap):
        for xs in tile_spans(w, tile, overlap):
            part, ph, pw = pad_to_multiple(x[..., ys.start:ys.stop, xs.start:xs.stop], multiple)
            result = fn(part)
            if out is None:
                scale = result.shape[-1] // part.shape[-1]
                out = torch.empty((*result.shape[:-2], h * scale, w * scale), dtype=torch.uint8)
            result = quantize(result[..., : ph * scale, : pw * scale]).cpu()
            out[..., ys.keep_start * scale: ys.keep_stop * scale, xs.keep_start * scale: xs.keep_stop * scale] = \
                result[..., (ys.keep_start - ys.start) * scale: (ys.keep_stop - ys.start) * scale,
                       (xs.keep_start - xs.start) * scale: (xs.keep_stop - xs.start) * scale]
    assert out is not None
    return out


class Upscaler:
    """Restores one chunk from its context frames; knows recurrent vs sliding-window models."""

    def __init__(self, model: LoadedModel, device: torch.device, num_frames: int, *, tile: int = 0,
                 tile_overlap: int = 0, half: str | None = None, padding: str = EDVR_TEST_PADDING):
        self.model = model
        self.device = device
        self.num_frames = num_frames
        self.tile = tile
        self.tile_overlap = tile_overlap
        self.half_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, None: None}[half]
        self.padding = padding

    def context(self, requested: int) -> int:
        return requested if self.model.recurrent else window_context(self.model.window, self.padding)

    def _autocast(self):
        if self.half_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.half_dtype)

    @torch.no_grad()
    def restore(self, chunk: Chunk, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """uint8 RGB (chunk.size, 3, H, W) on the CPU."""
        lq = frames_to_tensor(frames)
        net = self.model.net
        with self._autocast():
            if self.model.recurrent:
                def run(part: torch.Tensor) -> torch.Tensor:
                    out = net(part.unsqueeze(0).to(self.device))[0]
                    return out[chunk.offset: chunk.offset + chunk.size].float()
                return apply_tiled(run, lq, self.tile, self.tile_overlap, self.model.multiple)

            def run_window(part: torch.Tensor) -> torch.Tensor:
                return net(part.unsqueeze(0).to(self.device))[0].float()
            outputs = []
            for center in range(chunk.start, chunk.stop):
                local = [i - chunk.ctx_start
                         for i in window_indices(center, self.num_frames, self.model.window, self.padding)]
                assert all(0 <= i < chunk.ctx_size for i in local), (center, chunk)  # plan gives enough context
                outputs.append(apply_tiled(run_window, lq[local], self.tile, self.tile_overlap, self.model.multiple))
            return torch.stack(outputs)


# ----------------------------------------------------------------------------- output

def encode_png(frame_rgb: torch.Tensor) -> bytes:
    bgr = np.ascontiguousarray(frame_rgb.permute(1, 2, 0).numpy()[..., ::-1])
    ok, buffer = cv2.imencode(".png", bgr)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buffer.tobytes()


def prepare_output(folder: Path) -> None:
    """Create the output folder and prove we can write into it, before any compute is spent."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{folder}: output folder cannot be created ({exc.strerror or exc})") from None
    if not folder.is_dir():
        raise DataError(f"{folder}: output path exists and is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise DataError(f"{folder}: output folder is not writable ({exc.strerror or exc})") from None


def frame_path(folder: Path, index: int) -> Path:
    return folder / FRAME_NAME.format(index)


def chunk_done(folder: Path, chunk: Chunk) -> bool:
    return all(frame_path(folder, i).is_file() for i in range(chunk.start, chunk.stop))


def write_mp4(folder: Path, num_frames: int, target: Path, fps: float) -> None:
    """Encode the PNGs into an mp4 (OpenCV's 'mp4v'), written under a temp name and renamed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    first = read_image(frame_path(folder, 0))
    height, width = first.shape[:2]
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp{target.suffix or '.mp4'}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise DataError(f"{target}: OpenCV cannot open an mp4 writer here")
    try:
        for i in range(num_frames):
            writer.write(first if i == 0 else read_image(frame_path(folder, i)))
    finally:
        writer.release()
    os.replace(tmp, target)


# ----------------------------------------------------------------------------- the run

@dataclass
class RunStats:
    written: int = 0
    skipped_chunks: int = 0
    computed_chunks: int = 0
    peak_buffered: int = 0
    seconds: float = 0.0


def run_chunks(source: FrameSource, upscaler: Upscaler, chunks: Sequence[Chunk], output: Path,
               progress: bool = False) -> RunStats:
    """Restore `chunks` (ascending) streaming frames through a window of at most max ctx_size."""
    from tqdm import tqdm

    stats = RunStats()
    names = [FRAME_NAME.format(i) for c in chunks for i in range(c.start, c.stop)]
    for stale in temp_files_for(output, names):  # left by a killed run; ours alone (our frames)
        stale.unlink(missing_ok=True)
    read_next, skip_next, close = source.open_stream()
    window = SlidingWindow(read_next, skip_next)
    bar = tqdm(total=sum(c.size for c in chunks), unit="frame", disable=not progress, dynamic_ncols=True,
               desc="infer")
    start_time = time.perf_counter()
    try:
        for chunk in chunks:
            if chunk_done(output, chunk):
                stats.skipped_chunks += 1
                bar.update(chunk.size)
                continue
            frames = window.window(chunk.ctx_start, chunk.ctx_stop)
            restored = upscaler.restore(chunk, frames)
            del frames
            for i, frame in zip(range(chunk.start, chunk.stop), restored):
                target = frame_path(output, i)
                if not target.is_file():
                    atomic_write_bytes(target, encode_png(frame))
                    stats.written += 1
            fsync_dir(output)
            stats.computed_chunks += 1
            bar.update(chunk.size)
    finally:
        bar.close()
        close()
    stats.peak_buffered = window.peak
    stats.seconds = time.perf_counter() - start_time
    return stats


def restore_whole(source: FrameSource, upscaler: Upscaler) -> list[torch.Tensor]:
    """Whole-clip inference in memory (the unchunked reference): short clips only."""
    n = source.num_frames
    frames = list(source.frames())
    restored = upscaler.restore(Chunk(0, n, 0, n), frames)
    return list(restored)


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR on 8-bit frames (BasicSR's definition, crop_border=0, all channels)."""
    from vsr_accel.metrics import calculate_psnr

    return calculate_psnr(a, b, crop_border=0)


def compare_frames(chunked: Sequence[np.ndarray], whole: Sequence[np.ndarray],
                   gt: Sequence[np.ndarray] | None = None) -> dict[str, float]:
    """PSNRs on uint8 frames: chunked vs whole-clip (pooled over all frames, and the worst frame),
    and, given GT, the mean per-frame PSNR of each vs GT (BasicSR's clip average)."""
    if len(chunked) != len(whole):
        raise ValueError(f"{len(chunked)} chunked frames vs {len(whole)} whole-clip frames")
    pooled_mse = float(np.mean([np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
                                for a, b in zip(chunked, whole)]))
    per_frame = [psnr_uint8(a, b) for a, b in zip(chunked, whole)]
    result = {
        "chunked_vs_whole_psnr": math.inf if pooled_mse == 0 else 10 * math.log10(255.0 ** 2 / pooled_mse),
        "chunked_vs_whole_worst_frame_psnr": min(per_frame),
        "identical_frames": float(sum(math.isinf(p) for p in per_frame)),
    }
    if gt is not None:
        if len(gt) != len(whole):
            raise DataError(f"--gt: {len(gt)} GT frames for {len(whole)} restored frames")
        for i, (frame, target) in enumerate(zip(whole, gt)):
            if frame.shape != target.shape:
                raise DataError(f"--gt: GT frame {i} is {target.shape[1]}x{target.shape[0]}, "
                                f"output is {frame.shape[1]}x{frame.shape[0]}")
        result["chunked_vs_gt_psnr"] = float(np.mean([psnr_uint8(a, b) for a, b in zip(chunked, gt)]))
        result["whole_vs_gt_psnr"] = float(np.mean([psnr_uint8(a, b) for a, b in zip(whole, gt)]))
        result["gt_psnr_difference_db"] = result["whole_vs_gt_psnr"] - result["chunked_vs_gt_psnr"]
    return result


def compare_whole(source: FrameSource, upscaler: Upscaler, output: Path, gt: Path | None = None) -> dict[str, float]:
    """Chunked frames (read back from `output`) vs whole-clip inference, and each vs GT."""
    whole = [np.ascontiguousarray(f.permute(1, 2, 0).numpy()[..., ::-1]) for f in restore_whole(source, upscaler)]
    chunked = [read_image(frame_path(output, i)) for i in range(source.num_frames)]
    gt_frames = list(open_source(gt, "--gt").frames()) if gt is not None else None
    return compare_frames(chunked, whole, gt_frames)


def format_comparison(result: dict[str, float]) -> str:
    lines = [f"chunked vs whole-clip: PSNR {result['chunked_vs_whole_psnr']:.3f} dB (pooled), worst frame "
             f"{result['chunked_vs_whole_worst_frame_psnr']:.3f} dB, {int(result['identical_frames'])} frames identical"]
    if "chunked_vs_gt_psnr" in result:
        lines.append(f"vs GT: chunked {result['chunked_vs_gt_psnr']:.4f} dB, whole-clip "
                     f"{result['whole_vs_gt_psnr']:.4f} dB, difference {result['gt_psnr_difference_db']:+.4f} dB")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="video file (anything OpenCV decodes) or folder of frames")
    parser.add_argument("--output", required=True, help="folder for the restored frames (%%08d.png by frame index)")
    parser.add_argument("--mp4", help="also encode the restored frames into this mp4 (after all frames exist)")
    parser.add_argument("--fps", type=float, help="frame rate for --mp4 (default: the input video's, else 25)")
    parser.add_argument("--checkpoint", help="weights: BasicSR .pth (params_ema preferred, else params), "
                        "a bare state_dict, or a vsr-accel training state (<iter>.state)")
    parser.add_argument("--network", help="network type: BasicVSR, BasicVSRM, EDVR, EDVRM")
    parser.add_argument("--network-args", nargs="*", metavar="KEY=VALUE",
                        help="network arguments as key=value items or one JSON object")
    parser.add_argument("-opt", "--opt", help="BasicSR-style options file: its network_g (and "
                        "path.pretrain_network_g when --checkpoint is not given)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: this rank's GPU if any, else CPU)")
    parser.add_argument("--half", nargs="?", const="fp16", choices=("fp16", "bf16"),
                        help="autocast in half precision (CUDA only); default fp16")
    parser.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="output frames per chunk (N)")
    parser.add_argument("--context", type=int, default=DEFAULT_CONTEXT,
                        help="context frames on each side of a chunk, outputs discarded (K; recurrent models)")
    parser.add_argument("--padding", default=EDVR_TEST_PADDING, choices=PADDING_MODES,
                        help="sliding-window (EDVR) padding at the video's ends (BasicSR test default)")
    parser.add_argument("--tile", type=int, default=0, help="spatial tile side in LR pixels (0: whole frames)")
    parser.add_argument("--tile-overlap", type=int, default=16, help="overlap of neighbouring tiles (LR pixels)")
    parser.add_argument("--compare-whole", action="store_true",
                        help="also run whole-clip inference (short clips: holds the clip in memory) and print PSNRs")
    parser.add_argument("--gt", help="GT frames (folder or video) for --compare-whole")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    return parser


def check_args(args: argparse.Namespace) -> None:
    if args.chunk < 1:
        raise ConfigError(f"--chunk must be >= 1, got {args.chunk}")
    if args.context < 0:
        raise ConfigError(f"--context must be >= 0, got {args.context}")
    if args.tile < 0 or (args.tile and not 0 <= args.tile_overlap < args.tile):
        raise ConfigError(f"--tile-overlap must be in [0, --tile), got tile={args.tile} overlap={args.tile_overlap}")
    if args.gt and not args.compare_whole:
        raise ConfigError("--gt is only used with --compare-whole")


def requested_device(device: str | None) -> str | None:
    """Validate --device; a bare 'cuda' lets each rank take its own GPU."""
    if device is None:
        return None
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"--device: {device!r} is not a device (try cpu, cuda, cuda:0)") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: CUDA is not available on this machine")
        return None if parsed.index is None else device
    return device


def run(args: argparse.Namespace) -> int:
    from vsr_accel.distributed import barrier, init_distributed, shutdown

    check_args(args)
    model_source = resolve_model_source(args)
    device_request = requested_device(args.device)
    source = open_source(Path(args.input))
    output = Path(args.output)
    ctx = init_distributed(requested_device=device_request)
    try:
        if args.half and ctx.device.type != "cuda":
            raise ConfigError(f"--half needs a CUDA device, this run uses {ctx.device} (drop --half)")
        model = load_model(model_source, ctx.device)
        prepare_output(output)
        upscaler = Upscaler(model, ctx.device, source.num_frames, tile=args.tile, tile_overlap=args.tile_overlap,
                            half=args.half, padding=args.padding)
        chunks = plan_chunks(source.num_frames, args.chunk, upscaler.context(args.context))
        share = rank_share(chunks, ctx.rank, ctx.world_size)
        stats = run_chunks(source, upscaler, share, output, progress=ctx.is_main and not args.no_progress)
        rate = sum(c.size for c in share) / stats.seconds if stats.seconds > 0 else 0.0
        print(f"rank {ctx.rank}: {len(share)} chunks ({stats.computed_chunks} computed, {stats.skipped_chunks} "
              f"already done), {stats.written} frames written, {rate:.2f} frames/s, "
              f"at most {stats.peak_buffered} LR frames buffered", file=sys.stderr)
        barrier(ctx)
        if ctx.is_main:
            if args.mp4:
                write_mp4(output, source.num_frames, Path(args.mp4), args.fps or source.fps or 25.0)
            if args.compare_whole:
                print(format_comparison(compare_whole(source, upscaler, output, Path(args.gt) if args.gt else None)))
        barrier(ctx)
    finally:
        shutdown(ctx)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return report_user_errors(lambda: run(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())
