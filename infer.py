"""Super-resolve a long video with bounded memory, on one device or clip-parallel across ranks.

Recurrent models (BasicVSR, BasicVSR-M, IconVSR, BasicVSR++) read the whole clip in both directions, so
feeding a long video at once makes memory grow with its length. We process it in temporal chunks of
`--chunk` output frames, each fed with `--context` extra frames on both sides (clamped at the
video's ends) whose outputs are discarded; peak memory then depends on chunk + 2*context and
the frame size only. Sliding-window models (EDVR, EDVR-M) are chunked the same way, with the
context their window needs (padding at the video's ends follows BasicSR's
`generate_frame_indices`; default 'reflection_circle', BasicSR's EDVR test setting).

Frames are decoded as a stream through a window of at most chunk + 2*context frames and
written one PNG per frame (`%08d.png`, 0-based frame index), each atomically (temp file,
fsync, rename). A restarted run skips every chunk whose frames all exist already. The progress
bar counts frames as they finish, with an ETA; the start line says how many chunks there are.

`--start S --frames F` restores frames S..S+F-1 only (try a few frames of a long video first),
named by their index in the video. Their chunks read context frames from outside the range, as
they would in a whole run, and a frame equals the whole run's when its chunk is the same chunk
in both: with S and F multiples of --chunk (or F running to the video's end) every frame does
(see `vsr_accel.infer.chunking.plan_chunks`); sliding-window networks' frames always do.

Speed: `--amp` and `--channels-last` are the trainer's `train.amp` / `train.channels_last`, with
the same defaults (`auto`: bf16 autocast where the CPU runs bf16 natively, channels_last where it
has AVX-512; fp32 and NCHW on CUDA); `--amp none --channels-last off` restores in fp32.

Launch:

    # one process (CPU or one GPU); no torch.distributed call is made
    python infer.py --input clip.mp4 --output results/clip \\
        --checkpoint experiments/demo_cpu/models/net_g_300.pth \\
        --network BasicVSR --network-args num_feat=16 num_block=2 upsample_feat=16 --mp4 results/clip.mp4

    # network from a BasicSR-style options file (its `network_g`; `path.pretrain_network_g`
    # is used when --checkpoint is not given): the demo's held-out clip, after `make demo`
    python infer.py -opt options/demo_cpu.yml --checkpoint experiments/demo_cpu/models/net_g_300.pth \\
        --input data/demo/val_sharp_bicubic/X4/000 --output results/demo_000

    # clip-parallel on R processes (GPUs, or CPU with gloo): rank r writes a contiguous
    # share of the chunks; output is identical to the one-process run
    python -m torch.distributed.run --nproc_per_node=R infer.py --input clip.mp4 \\
        --output results/clip --checkpoint net.pth --network BasicVSR

    # fidelity check on a short clip: also run whole-clip inference and print PSNRs
    python infer.py ... --compare-whole --gt gt_frames/

    # try one chunk's worth from frame 640 first: whole chunks of the default grid (64 frames),
    # so these are the values a whole run writes (and a whole run into the same --output skips them)
    python infer.py ... --start 640 --frames 64 --mp4 results/try.mp4

Exit status 2 with a one-line message for user mistakes (bad input, checkpoint, options,
output folder) and a full disk, 3 for out of memory; `--debug` shows the traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import torch

import models
from datasets.video_io import FrameFolder, FrameSource, open_source, rgb_to_bgr, write_mp4
from vsr_accel.core.errors import ConfigError, run_guarded
from vsr_accel.core.speed_defaults import AMP_CHOICES, SpeedSettings, resolve_speed
from vsr_accel.infer.chunking import EDVR_TEST_PADDING, PADDING_MODES, Chunk, plan_chunks, rank_share
from vsr_accel.infer.inference import (DEFAULT_CHUNK, DEFAULT_CONTEXT, Upscaler, compare_frames, load_model,
                                       resolve_model_source, restore_whole, run_chunks)
from vsr_accel.core.cli import ArgumentParser

CHANNELS_LAST = {"auto": None, "on": True, "off": False}  # -> train.channels_last's ~ / true / false


def compare_whole(source: FrameSource, upscaler: Upscaler, output: Path, gt: Path | None = None,
                  whole_chunk: Chunk | None = None) -> dict[str, float]:
    """Chunked frames (read back from `output`) vs the same frames restored in one piece
    (`whole_chunk`: the restored range with its context; default the whole video), and each vs GT
    (the GT of the whole video, or of the range alone)."""
    chunk = whole_chunk or Chunk(0, source.num_frames, 0, source.num_frames)
    whole = [rgb_to_bgr(f) for f in restore_whole(source, upscaler, chunk)]
    chunked = [FrameFolder(output).read(i) for i in range(chunk.start, chunk.stop)]
    gt_frames = list(open_source(gt, "--gt").frames()) if gt is not None else None
    if gt_frames is not None and len(gt_frames) == source.num_frames != chunk.size:
        gt_frames = gt_frames[chunk.start:chunk.stop]
    return compare_frames(chunked, whole, gt_frames)


def format_comparison(result: dict[str, float]) -> str:
    lines = [f"chunked vs whole-clip: PSNR {result['chunked_vs_whole_psnr']:.3f} dB (pooled), worst frame "
             f"{result['chunked_vs_whole_worst_frame_psnr']:.3f} dB, {int(result['identical_frames'])} frames identical"]
    if "chunked_vs_gt_psnr" in result:
        lines.append(f"vs GT: chunked {result['chunked_vs_gt_psnr']:.4f} dB, whole-clip "
                     f"{result['whole_vs_gt_psnr']:.4f} dB, difference {result['gt_psnr_difference_db']:+.4f} dB")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="video file (anything OpenCV decodes) or folder of frames")
    parser.add_argument("--output", required=True, help="folder for the restored frames (%%08d.png by frame index)")
    parser.add_argument("--mp4", help="also encode the restored frames into this mp4 (after all frames exist)")
    parser.add_argument("--fps", type=float, help="frame rate for --mp4 (default: the input video's, else 25)")
    parser.add_argument("--checkpoint", help="weights: BasicSR .pth (params_ema preferred, else params), "
                        "a bare state_dict, or a vsr-accel training state (<iter>.state)")
    parser.add_argument("--network", help=f"network type: {', '.join(models.NETWORKS)}")
    parser.add_argument("--network-args", nargs="*", metavar="KEY=VALUE",
                        help="network arguments as key=value items or one JSON object")
    parser.add_argument("-opt", "--opt", help="BasicSR-style options file: its network_g (and "
                        "path.pretrain_network_g when --checkpoint is not given)")
    parser.add_argument("--start", type=int, default=0, help="first frame to restore (0-based index in the video)")
    parser.add_argument("--frames", type=int, help="how many frames to restore from --start (default: to the end)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: this rank's GPU if any, else CPU)")
    parser.add_argument("--amp", choices=AMP_CHOICES,
                        help="autocast precision, as the trainer's train.amp (default auto: bf16 on CPUs that run "
                             "it natively, else fp32; none: fp32)")
    parser.add_argument("--channels-last", choices=tuple(CHANNELS_LAST), default="auto",
                        help="NHWC memory layout, as the trainer's train.channels_last (default auto: on for CPUs "
                             "with AVX-512)")
    parser.add_argument("--half", nargs="?", const="fp16", choices=("fp16", "bf16"),
                        help="CUDA: the same as --amp fp16 (or --amp bf16), kept for older commands")
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
    if args.start < 0:
        raise ConfigError(f"--start must be >= 0, got {args.start}")
    if args.frames is not None and args.frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {args.frames}")
    if args.half and args.amp not in (None, args.half):
        raise ConfigError(f"--half {args.half} and --amp {args.amp} ask for different precisions: pass --amp only")


def frame_range(args: argparse.Namespace, num_frames: int, input_path: str) -> tuple[int, int, str]:
    """[start, stop) from --start/--frames, and a note when --frames runs past the video's end."""
    if args.start >= num_frames:
        raise ConfigError(f"--start {args.start}: {input_path} has {num_frames} frames (0-{num_frames - 1})")
    stop = num_frames if args.frames is None else min(args.start + args.frames, num_frames)
    note = "" if args.frames is None or args.start + args.frames <= num_frames else \
        f"; --frames {args.frames} runs past the video's end"
    return args.start, stop, note


def speed_settings(args: argparse.Namespace, device: torch.device) -> SpeedSettings:
    """The trainer's rule for `amp` / `channels_last` (`vsr_accel.core.speed_defaults.resolve_speed`)."""
    if args.half and device.type != "cuda":
        raise ConfigError(f"--half needs a CUDA device, this run uses {device} (on CPU: --amp bf16, the default "
                          f"where the CPU runs bf16 natively)")
    return resolve_speed(args.half or args.amp or "auto", CHANNELS_LAST[args.channels_last], device)


def start_line(args: argparse.Namespace, first: int, stop: int, num_frames: int, note: str, chunks: list[Chunk],
               context: int, world_size: int, network: str, device: torch.device, speed: SpeedSettings) -> str:
    ranks = f" over {world_size} processes" if world_size > 1 else ""
    return (f"infer: frames {first}-{stop - 1} of {args.input} ({stop - first} of {num_frames}{note}) in "
            f"{len(chunks)} chunk{'s' if len(chunks) != 1 else ''} of up to {args.chunk} frames (+{context} context "
            f"frames each side){ranks}; {network} on {device}, {speed.describe()}")


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
    from vsr_accel.core.distributed import barrier, init_distributed, shutdown

    check_args(args)
    model_source = resolve_model_source(opt=args.opt, network=args.network, network_args=args.network_args or [],
                                        checkpoint=args.checkpoint)
    device_request = requested_device(args.device)
    source = open_source(Path(args.input))
    first, stop, note = frame_range(args, source.num_frames, args.input)
    output = FrameFolder(Path(args.output))
    ctx = init_distributed(requested_device=device_request)
    try:
        speed = speed_settings(args, ctx.device)
        model = load_model(model_source, ctx.device, models)
        output.prepare()
        upscaler = Upscaler(model, ctx.device, source.num_frames, tile=args.tile, tile_overlap=args.tile_overlap,
                            speed=speed, padding=args.padding)
        context = upscaler.context(args.context)
        chunks = plan_chunks(source.num_frames, args.chunk, context, first, stop)
        if ctx.is_main:
            print(start_line(args, first, stop, source.num_frames, note, chunks, context, ctx.world_size,
                             model_source.spec["type"], ctx.device, speed), file=sys.stderr, flush=True)
        share = rank_share(chunks, ctx.rank, ctx.world_size)
        stats = run_chunks(source, upscaler, share, output, progress=ctx.is_main and not args.no_progress)
        rate = stats.computed_frames / stats.seconds if stats.seconds > 0 else 0.0
        print(f"rank {ctx.rank}: {len(share)} chunks ({stats.computed_chunks} computed, {stats.skipped_chunks} "
              f"already done), {stats.written} frames written, {rate:.2f} frames/s, "
              f"at most {stats.peak_buffered} LR frames buffered", file=sys.stderr)
        barrier(ctx)
        if ctx.is_main:
            summary = f"restored frames {first}-{stop - 1} into {output.folder}"
            if args.mp4:
                summary += "; " + str(write_mp4([output.path(i) for i in range(first, stop)], Path(args.mp4),
                                                args.fps or source.fps or 25.0))
            if args.compare_whole:
                whole = plan_chunks(source.num_frames, stop - first, context, first, stop)[0]
                print(format_comparison(compare_whole(source, upscaler, output.folder,
                                                      Path(args.gt) if args.gt else None, whole)))
            print(summary)
        barrier(ctx)
    finally:
        shutdown(ctx)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_guarded(lambda: run(args), args.debug,
                       out_of_memory="out of memory during inference; lower --chunk (and --context), restore in "
                                     "spatial tiles (--tile 128), or pass --amp fp16 on CUDA",
                       disk_full="free some space, then run the same command again (frames already written are "
                                 "kept and skipped)")


if __name__ == "__main__":
    sys.exit(main())
