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
from vsr_accel.infer.chunking import EDVR_TEST_PADDING, PADDING_MODES, plan_chunks, rank_share
from vsr_accel.core.errors import ConfigError, run_guarded
from vsr_accel.infer.inference import (DEFAULT_CHUNK, DEFAULT_CONTEXT, Upscaler, compare_frames, load_model,
                                 resolve_model_source, restore_whole, run_chunks)


def compare_whole(source: FrameSource, upscaler: Upscaler, output: Path, gt: Path | None = None) -> dict[str, float]:
    """Chunked frames (read back from `output`) vs whole-clip inference, and each vs GT."""
    whole = [rgb_to_bgr(f) for f in restore_whole(source, upscaler)]
    chunked = [FrameFolder(output).read(i) for i in range(source.num_frames)]
    gt_frames = list(open_source(gt, "--gt").frames()) if gt is not None else None
    return compare_frames(chunked, whole, gt_frames)


def format_comparison(result: dict[str, float]) -> str:
    lines = [f"chunked vs whole-clip: PSNR {result['chunked_vs_whole_psnr']:.3f} dB (pooled), worst frame "
             f"{result['chunked_vs_whole_worst_frame_psnr']:.3f} dB, {int(result['identical_frames'])} frames identical"]
    if "chunked_vs_gt_psnr" in result:
        lines.append(f"vs GT: chunked {result['chunked_vs_gt_psnr']:.4f} dB, whole-clip "
                     f"{result['whole_vs_gt_psnr']:.4f} dB, difference {result['gt_psnr_difference_db']:+.4f} dB")
    return "\n".join(lines)


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
    from vsr_accel.core.distributed import barrier, init_distributed, shutdown

    check_args(args)
    model_source = resolve_model_source(opt=args.opt, network=args.network, network_args=args.network_args or [],
                                        checkpoint=args.checkpoint)
    device_request = requested_device(args.device)
    source = open_source(Path(args.input))
    output = FrameFolder(Path(args.output))
    ctx = init_distributed(requested_device=device_request)
    try:
        if args.half and ctx.device.type != "cuda":
            raise ConfigError(f"--half needs a CUDA device, this run uses {ctx.device} (drop --half)")
        model = load_model(model_source, ctx.device, models)
        output.prepare()
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
                write_mp4([output.path(i) for i in range(source.num_frames)], Path(args.mp4),
                          args.fps or source.fps or 25.0)
            if args.compare_whole:
                print(format_comparison(compare_whole(source, upscaler, output.folder,
                                                      Path(args.gt) if args.gt else None)))
        barrier(ctx)
    finally:
        shutdown(ctx)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_guarded(lambda: run(args), args.debug,
                       out_of_memory="out of memory during inference; lower --chunk (and --context), restore in "
                                     "spatial tiles (--tile 128), or pass --half on CUDA",
                       disk_full="free some space, then run the same command again (frames already written are "
                                 "kept and skipped)")


if __name__ == "__main__":
    sys.exit(main())
