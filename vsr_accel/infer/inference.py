"""Long-video inference, carried out: the model, chunk restore with context, tiling, streaming,
resumable frame output, and the chunked-vs-whole comparison.

`vsr_accel.infer.chunking` plans (which frames each chunk reads and writes, who writes which chunk);
this module executes the plan with `vsr_accel.infer.restore`, the window restore that validation
(`restore_clip`) runs on whole clips. `infer.py` is only its command line.

Torch-only, like all of `vsr_accel/`: frames come from a `FrameStream` and go to a `FrameSink`
(`datasets/video_io.py` gives both, with OpenCV), networks from a `NetworkRegistry` (the
`models` package, passed in by the entry point).
"""
from __future__ import annotations

import contextlib
import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from vsr_accel.core.config import read_yaml
from vsr_accel.core.errors import ConfigError, DataError
from vsr_accel.core.pixels import quantize_like_tensor2img, uint8_to_unit_float
from vsr_accel.core.speed_defaults import FP32_NCHW, SpeedSettings
from vsr_accel.eval.metrics import calculate_psnr
from vsr_accel.infer.chunking import EDVR_TEST_PADDING, Chunk, ForwardBuffer, tile_spans, window_context
from vsr_accel.infer.restore import Restore, restore_frames

# Defaults chosen by measurement (benchmarks/bench_infer_memory.py --fidelity, 128 real frames):
# with a tiny BasicVSR fitted to other frames of the footage, PSNR vs GT of chunked and whole-clip
# output differs by 0.0014 dB at N=64, K=8 (chunked vs whole 61.9 dB), and by 0.034 dB even when
# stressed with N=8 (K=4: 0.050, K=2: 0.061 dB: too close to the 0.05 dB budget); with the demo
# checkpoint the difference is 0.0000 dB at N=64, K=8. N=64 keeps the discarded context at 25%
# extra compute while memory stays bounded by 80 LR frames.
DEFAULT_CHUNK = 64
DEFAULT_CONTEXT = 8


class FrameStream(Protocol):
    """What inference reads: `datasets.video_io.FrameSource` (BGR uint8 (h, w, 3) frames)."""

    num_frames: int

    def open_stream(self) -> tuple[Callable[[], np.ndarray], Callable[[], None], Callable[[], None]]: ...

    def frames(self) -> Iterator[np.ndarray]: ...


class FrameSink(Protocol):
    """Where inference writes: `datasets.video_io.FrameFolder` (one PNG per frame index)."""

    def has_all(self, indices: range) -> bool: ...

    def remove_stale_temps(self, indices: Iterable[int]) -> None: ...

    def write(self, indices: range, frames: torch.Tensor) -> int: ...


class NetworkRegistry(Protocol):
    """What loading needs from `models` (passed in: `vsr_accel/` never imports `models`): its one
    loader, the sliding-window rule, the layer that runs once per output frame (progress) and the
    frame-size multiple."""

    def load_network(self, spec: Mapping[str, Any], checkpoint: Path, *, param_key: str | None) -> torch.nn.Module: ...

    def input_window(self, net: torch.nn.Module) -> int | None: ...

    def output_layer(self, net: torch.nn.Module) -> torch.nn.Module | None: ...

    def required_multiple(self, network: Mapping[str, Any]) -> int: ...


# ----------------------------------------------------------------------------- the model

@dataclass(frozen=True)
class ModelSource:
    spec: dict[str, Any]
    checkpoint: Path
    param_key: str | None


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


def resolve_model_source(*, opt: str | None, network: str | None, network_args: Sequence[str],
                         checkpoint: str | None) -> ModelSource:
    """Network spec and checkpoint from `--network`/`--network-args`/`--checkpoint` and/or a
    BasicSR-style options file (`network_g`, `path.pretrain_network_g`, `path.param_key_g`).
    Command-line values override the options file's."""
    spec: dict[str, Any] = {}
    param_key = None
    if opt:
        options = read_yaml(opt)
        network_g = options.get("network_g")
        if not isinstance(network_g, dict):
            raise ConfigError(f"{opt}: 'network_g' is missing or not a mapping")
        spec = dict(network_g)
        path_section = options.get("path") or {}
        if checkpoint is None and isinstance(path_section, dict) and path_section.get("pretrain_network_g"):
            checkpoint = path_section["pretrain_network_g"]
            param_key = path_section.get("param_key_g")
    if network:
        spec["type"] = network
    spec.update(parse_network_args(network_args))
    if "type" not in spec:
        raise ConfigError("no network given: pass --network TYPE (e.g. BasicVSR) or -opt options.yml")
    if checkpoint is None:
        raise ConfigError("no checkpoint given: pass --checkpoint PATH (or path.pretrain_network_g in -opt)")
    # A full checkpoint carries SpyNet's (and IconVSR's EDVR extractor's) weights; loading their
    # separate pretrained files first is wasted work, and those files need not exist here.
    for pretrained in ("spynet_path", "edvr_path"):
        if pretrained in spec:
            spec[pretrained] = None
    return ModelSource(spec=spec, checkpoint=Path(checkpoint), param_key=param_key)


@dataclass
class LoadedModel:
    net: torch.nn.Module
    window: int | None  # input frames per output frame of a sliding-window network; None: recurrent
    multiple: int  # LR sides are padded up to a multiple of this
    frame_layer: torch.nn.Module | None = None  # runs once per output frame (`models.output_layer`): progress


def load_model(source: ModelSource, device: torch.device, networks: NetworkRegistry) -> LoadedModel:
    """The network of `source` with its weights (the `models` loader: the weights are read first,
    so a bad checkpoint is reported before any network is built), in eval mode on `device`."""
    with warnings.catch_warnings():  # the checkpoint holds SpyNet's (and EDVR's) weights: no pretrained file needed
        warnings.filterwarnings("ignore", message=".*(spynet_path|edvr_path) is not set.*")
        net = networks.load_network(source.spec, source.checkpoint, param_key=source.param_key)
    net.eval().to(device)
    return LoadedModel(net=net, window=networks.input_window(net), multiple=networks.required_multiple(source.spec),
                       frame_layer=networks.output_layer(net))


# ----------------------------------------------------------------------------- restoring frames

def frames_to_tensor(frames: Sequence[np.ndarray]) -> torch.Tensor:
    """BGR uint8 (h, w, 3) frames -> RGB float (t, 3, h, w) in [0, 1], as BasicSR's img2tensor."""
    stacked = torch.from_numpy(np.stack(frames))[..., [2, 1, 0]]
    return uint8_to_unit_float(stacked.permute(0, 3, 1, 2))


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h == 0 and pad_w == 0:
        return x, h, w
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:])
    flat = F.pad(flat, (0, pad_w, 0, pad_h), mode="replicate")
    return flat.reshape(*lead, *flat.shape[-3:]), h, w


def apply_tiled(fn: Restore, x: torch.Tensor, tile: int, overlap: int, multiple: int) -> torch.Tensor:
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
            result = quantize_like_tensor2img(result[..., : ph * scale, : pw * scale]).cpu()
            out[..., ys.keep_start * scale: ys.keep_stop * scale, xs.keep_start * scale: xs.keep_stop * scale] = \
                result[..., (ys.keep_start - ys.start) * scale: (ys.keep_stop - ys.start) * scale,
                       (xs.keep_start - xs.start) * scale: (xs.keep_stop - xs.start) * scale]
    assert out is not None
    return out


class Upscaler:
    """Restores one chunk from its context frames, in uint8; knows recurrent vs sliding-window
    models, tiling, and the speed switches (`speed`: autocast precision and memory layout, as
    `vsr_accel.core.speed_defaults.resolve_speed` decides them for the trainer too; the network is
    put in that memory layout here). The default, fp32 and NCHW, is what validation restores with."""

    def __init__(self, model: LoadedModel, device: torch.device, num_frames: int, *, tile: int = 0,
                 tile_overlap: int = 0, speed: SpeedSettings = FP32_NCHW, padding: str = EDVR_TEST_PADDING):
        self.model = model
        self.device = device
        self.num_frames = num_frames
        self.tile = tile
        self.tile_overlap = tile_overlap
        self.speed = speed
        self.padding = padding
        model.net.to(memory_format=torch.channels_last if speed.channels_last else torch.contiguous_format)

    def context(self, requested: int) -> int:
        return requested if self.model.window is None else window_context(self.model.window, self.padding)

    def _autocast(self):
        if self.speed.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.speed.amp_dtype)

    def _tiled(self, fn: Restore, x: torch.Tensor) -> torch.Tensor:
        return apply_tiled(fn, x, self.tile, self.tile_overlap, self.model.multiple)

    @contextlib.contextmanager
    def _counting_frames(self, chunk: Chunk, frame_size: tuple[int, int],
                         advance: Callable[[float], None] | None) -> Iterator[None]:
        """Calls `advance(n)` as the chunk's output frames finish: the network's `frame_layer` runs
        once per frame of a recurrent network's last pass (context frames' runs are not counted)
        and once per window of a sliding-window one; with spatial tiles each run is 1/tiles of a
        frame."""
        layer = self.model.frame_layer
        if advance is None or layer is None:
            yield
            return
        tiles = len(tile_spans(frame_size[0], self.tile, self.tile_overlap)) * \
            len(tile_spans(frame_size[1], self.tile, self.tile_overlap))
        runs = [0]

        def count(_module, _inputs, _output) -> None:
            position = runs[0] % chunk.ctx_size  # of a recurrent network: the frame among the context frames
            runs[0] += 1
            if self.model.window is not None or chunk.offset <= position < chunk.offset + chunk.size:
                advance(1 / tiles)
        handle = layer.register_forward_hook(count)
        try:
            yield
        finally:
            handle.remove()

    @contextlib.contextmanager
    def _fp32_output(self) -> Iterator[None]:
        """Under autocast, the network's last layer (`frame_layer`) hands on its output in fp32, so
        the residual is added to the x4 upscaled input in fp32: in bf16 that sum would be rounded
        to 8 bits of mantissa, a step of 1/256 at bright pixels, one level of the 8-bit output
        (BasicVSR-M: 55.5 dB vs fp32 with the sum in bf16, 67.9 dB with it in fp32)."""
        layer = self.model.frame_layer
        if self.speed.amp_dtype is None or layer is None:
            yield
            return
        handle = layer.register_forward_hook(lambda _module, _inputs, output: output.float())
        try:
            yield
        finally:
            handle.remove()

    @torch.no_grad()
    def restore(self, chunk: Chunk, frames: Sequence[np.ndarray],
                advance: Callable[[float], None] | None = None) -> torch.Tensor:
        """uint8 RGB (chunk.size, 3, H, W) on the CPU; `advance(frames)` as output frames finish."""
        lq = frames_to_tensor(frames)
        with self._autocast(), self._fp32_output(), self._counting_frames(chunk, lq.shape[-2:], advance):
            return restore_frames(self.model.net, lq, chunk, self.num_frames, self.device, window=self.model.window,
                                  padding=self.padding, channels_last=self.speed.channels_last, apply=self._tiled)


# ----------------------------------------------------------------------------- the run

@dataclass
class RunStats:
    written: int = 0
    skipped_chunks: int = 0
    computed_chunks: int = 0
    computed_frames: int = 0
    peak_buffered: int = 0
    seconds: float = 0.0


class FrameProgress:
    """The progress bar of a run: output frames as they finish (not chunks), with an ETA from the
    run's average rate so far (tqdm's `smoothing=0`: a recurrent network finishes its frames in its
    last pass, in bursts, so a recent rate would swing), and the chunk being restored. Parts of
    frames (spatial tiles) add up; the bar shows whole frames."""

    def __init__(self, total: int, chunks: int, enabled: bool):
        self.chunks = chunks
        self.done = 0.0
        self.bar = tqdm(total=total, unit="frame", disable=not enabled, dynamic_ncols=True, desc="infer",
                        smoothing=0)

    def start_chunk(self, index: int) -> None:
        self.bar.set_postfix_str(f"chunk {index + 1}/{self.chunks}", refresh=False)

    def advance(self, frames: float) -> None:
        self.done += frames
        self._show(math.floor(self.done + 1e-6))

    def finish_chunk(self, done: int) -> None:
        """Exactly `done` frames counted after a chunk, whatever its layer's runs added up to."""
        self.done = float(done)
        self._show(done)

    def _show(self, whole_frames: int) -> None:
        if whole_frames != self.bar.n:
            self.bar.update(whole_frames - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def run_chunks(source: FrameStream, upscaler: Upscaler, chunks: Sequence[Chunk], output: FrameSink,
               progress: bool = False) -> RunStats:
    """Restore `chunks` (ascending) streaming frames through a buffer of at most max ctx_size frames;
    chunks whose frames all exist are skipped without decoding. The progress bar counts the frames
    this run restores, as they finish (`Upscaler.restore`'s `advance`)."""
    stats = RunStats()
    output.remove_stale_temps(i for c in chunks for i in range(c.start, c.stop))  # ours alone: our frames
    todo = [c for c in chunks if not output.has_all(range(c.start, c.stop))]
    stats.skipped_chunks = len(chunks) - len(todo)
    read_next, skip_next, close = source.open_stream()
    buffer = ForwardBuffer(read_next, skip_next)
    bar = FrameProgress(sum(c.size for c in todo), len(todo), enabled=progress)
    start_time = time.perf_counter()
    try:
        for index, chunk in enumerate(todo):
            bar.start_chunk(index)
            frames = buffer.frames(chunk.ctx_start, chunk.ctx_stop)
            restored = upscaler.restore(chunk, frames, advance=bar.advance if progress else None)
            del frames
            stats.written += output.write(range(chunk.start, chunk.stop), restored)
            stats.computed_chunks += 1
            stats.computed_frames += chunk.size
            bar.finish_chunk(stats.computed_frames)
    finally:
        bar.close()
        close()
    stats.peak_buffered = buffer.peak
    stats.seconds = time.perf_counter() - start_time
    return stats


def restore_whole(source: FrameStream, upscaler: Upscaler, chunk: Chunk | None = None) -> list[torch.Tensor]:
    """The unchunked reference, in memory (short clips only): output frames [chunk.start, chunk.stop)
    restored in one piece from input frames [chunk.ctx_start, chunk.ctx_stop); the whole video by
    default."""
    n = source.num_frames
    chunk = chunk or Chunk(0, n, 0, n)
    read_next, skip_next, close = source.open_stream()
    try:
        frames = ForwardBuffer(read_next, skip_next).frames(chunk.ctx_start, chunk.ctx_stop)
    finally:
        close()
    return list(upscaler.restore(chunk, frames))


# ----------------------------------------------------------------------------- fidelity

def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR on 8-bit frames (BasicSR's definition, crop_border=0, all channels)."""
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

