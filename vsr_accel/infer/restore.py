"""Restoring frames with a network: the one chunk/window restore. Inference writes its frames
with it (`vsr_accel.infer.inference`) and validation scores what it returns (`restore_clip`), so
what training validates is what inference writes: exactly with `infer.py --amp none
--channels-last off`; inference's default autocast (bf16 on CPUs that run it natively) stays
within the PSNR that benchmarks/bench_infer_speed.py reports.

A recurrent network (`window=None`) reads all frames of a chunk and the outputs of its context
frames are dropped; a sliding-window network (EDVR) reads `window` frames around each output
frame, padded at the video's ends like BasicSR's `generate_frame_indices` ('reflection_circle'
is BasicSR's REDS4 test default).
"""
from __future__ import annotations

from typing import Callable

import torch

from vsr_accel.core.speed_defaults import channels_last_clip
from vsr_accel.infer.chunking import EDVR_TEST_PADDING, Chunk, window_positions

Restore = Callable[[torch.Tensor], torch.Tensor]


def restore_frames(net: torch.nn.Module, lq: torch.Tensor, chunk: Chunk, num_frames: int, device: torch.device, *,
                   window: int | None, padding: str = EDVR_TEST_PADDING, channels_last: bool = False,
                   apply: Callable[[Restore, torch.Tensor], torch.Tensor] = lambda fn, x: fn(x)) -> torch.Tensor:
    """Output frames [chunk.start, chunk.stop) of a `num_frames` video from `lq` (t, 3, h, w), its
    input frames [chunk.ctx_start, chunk.ctx_stop).

    A recurrent model (`window=None`) reads all of `lq` and its context outputs are dropped; a
    sliding-window model reads the `window` frames around each output frame, padded at the
    video's ends like BasicSR's `generate_frame_indices`. `apply(fn, frames)` runs the network
    call `fn` (its default runs it once; inference's `apply_tiled` runs it per tile and quantises).
    `channels_last`: every frame goes in NHWC, as a channels_last network wants it (the trainer's
    `channels_last_clip`)."""
    def clip_of(part: torch.Tensor) -> torch.Tensor:
        clip = part.unsqueeze(0).to(device)
        return channels_last_clip(clip) if channels_last else clip

    if window is None:
        def run_clip(part: torch.Tensor) -> torch.Tensor:
            out = net(clip_of(part))[0]
            return out[chunk.offset: chunk.offset + chunk.size].float()
        return apply(run_clip, lq)

    def run_window(part: torch.Tensor) -> torch.Tensor:
        return net(clip_of(part))[0].float()
    return torch.stack([apply(run_window, lq[local]) for local in window_positions(chunk, num_frames, window, padding)])


@torch.no_grad()
def restore_clip(model: torch.nn.Module, lq: torch.Tensor, device: torch.device,
                 window: int | None = None, padding: str = EDVR_TEST_PADDING) -> torch.Tensor:
    """A whole clip, (T,3,h,w) in [0,1] -> (T,3,sh,sw) on the CPU, clamped to [0,1]: one chunk of
    `restore_frames`, in eval mode (the model's mode is restored afterwards)."""
    was_training = model.training
    model.eval()
    try:
        n = lq.shape[0]
        out = restore_frames(model, lq, Chunk(0, n, 0, n), n, device, window=window, padding=padding)
    finally:
        model.train(was_training)
    return out.clamp_(0, 1).cpu()
