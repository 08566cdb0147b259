"""SpyNet optical flow (Ranjan & Black, 2017), as used by BasicVSR for alignment.

State-dict keys match BasicSR 1.4.2 (`basic_module.<level>.basic_module.<layer>.*`, buffers
`mean`/`std`), so BasicSR's pretrained `spynet_sintel_final-3d2a1287.pth` loads unchanged.
"""
from __future__ import annotations

import math
import os

import torch
from torch import nn
from torch.nn import functional as F

from models.arch_util import flow_warp, is_frozen
from vsr_accel.core.checkpoint import load_weights_strict, read_weights

NUM_LEVELS = 6
# Inputs whose shorter side exceeds this take BasicSR's path unchanged (6 levels, sides padded
# to a multiple of 32, so every side is >= 64 and the coarsest level is >= 2 px).
FULL_PYRAMID_MIN_SIDE = 2 ** (NUM_LEVELS - 1) + 1  # 33


class SpyNetLevel(nn.Module):
    """One pyramid level: predicts a flow residual from (reference, warped support, upsampled flow)."""

    def __init__(self) -> None:
        super().__init__()
        channels = (8, 32, 64, 32, 16, 2)  # 3 + 3 image channels + 2 flow channels in
        layers: list[nn.Module] = []
        for index, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:])):
            layers.append(nn.Conv2d(c_in, c_out, kernel_size=7, stride=1, padding=3))
            if index < len(channels) - 2:
                layers.append(nn.ReLU(inplace=False))
        self.basic_module = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.basic_module(x)


def pyramid_levels(height: int, width: int) -> int:
    """How many pyramid levels an input of this size gets.

    BasicSR always builds 6 levels on a frame padded to a multiple of 32. Below 33 px that
    pyramid bottoms out at 1 px and its zero initial flow (half the coarsest size) is 0x0, so
    BasicSR crashes on the 32x32 crops of the multigrid curriculum. We drop the coarsest levels
    instead: with L levels the frame is padded to a multiple of 2**(L-1) and the coarsest level
    is >= 2 px, exactly BasicSR's invariant one scale down. L = ceil(log2(shorter side)), capped
    at 6, so every input of 33 px or more keeps BasicSR's 6 levels and its exact numbers.
    """
    shorter = min(height, width)
    if shorter < 2:
        raise ValueError(f"SpyNet needs frames of at least 2x2 pixels, got {height}x{width}")
    return min(NUM_LEVELS, (shorter - 1).bit_length())


class SpyNet(nn.Module):
    """Coarse-to-fine flow estimator: each level refines the 2x-upsampled flow of the level below.

    Small inputs (shorter side <= 32 px) run fewer levels, skipping the *coarsest* modules, so
    module k always works at 1/2**(5-k) of the (padded) frame as in the pretrained model, and
    the cost stays proportional to the frame area (a 32x32 input costs ~1/4 of a 64x64 one,
    where resizing it up to 64 would cost the same as 64x64 and waste the curriculum's
    speed-up). The largest displacement the pyramid can resolve shrinks with it, which is
    harmless: it stays larger than the crop. Inputs of 33 px or more follow BasicSR's code path
    and give identical results.

    Args:
        load_path: BasicSR-format SpyNet weights (`{'params': state_dict}`); None leaves the
            network untrained, starting at zero flow (BasicVSR then warns). Given but unreadable raises
            CheckpointError naming the file.
    """

    def __init__(self, load_path: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self.basic_module = nn.ModuleList([SpyNetLevel() for _ in range(NUM_LEVELS)])
        if load_path:
            # Pretrained files hold only the convolutions; the ImageNet normalisation buffers
            # are registered afterwards, as in BasicSR, so the strict load fits them. They are
            # constants, so a file that does carry them (cut out of a BasicVSR) is fine too.
            state = read_weights(load_path, param_key="params")
            state = {name: value for name, value in state.items() if name not in ("mean", "std")}
            load_weights_strict(self, state, source=str(load_path))
        else:
            self.zero_flow_heads()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    @torch.no_grad()
    def zero_flow_heads(self) -> None:
        """Start an untrained SpyNet at zero flow (identity warps) instead of random flow.

        Randomly initialised levels predict large random flows, and warping propagated features
        by them scrambles BasicVSR's alignment from the first step; a network trained without a
        pretrained SpyNet (our CPU demo: none can be downloaded) then spends its first hundreds of
        steps unlearning them. With the last convolution of each level zeroed, the flow is exactly
        zero until gradients move it: the zeroed convolution gets gradients at once, the layers
        before it as soon as it is non-zero.
        Pretrained weights, when given, replace all of this."""
        for level in self.basic_module:
            last = level.basic_module[-1]
            last.weight.zero_()
            last.bias.zero_()

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.mean) / self.std

    def estimate(self, ref: torch.Tensor, supp: torch.Tensor, levels: int,
                 level_flows: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Flow from `ref` to `supp` on frames whose sides are multiples of 2**(levels-1).
        `level_flows`, when given, receives every level's flow, coarsest first (the multi-scale
        loss of scripts/pretrain_spynet.py supervises each level, as SpyNet was trained)."""
        ref_pyramid = [self.normalise(ref)]
        supp_pyramid = [self.normalise(supp)]
        for _ in range(levels - 1):
            ref_pyramid.insert(0, F.avg_pool2d(ref_pyramid[0], kernel_size=2, stride=2, count_include_pad=False))
            supp_pyramid.insert(0, F.avg_pool2d(supp_pyramid[0], kernel_size=2, stride=2, count_include_pad=False))

        coarsest = ref_pyramid[0]
        flow = coarsest.new_zeros([coarsest.size(0), 2, coarsest.size(2) // 2, coarsest.size(3) // 2])
        first_module = NUM_LEVELS - levels  # small inputs skip the coarsest modules
        for level, (ref_level, supp_level) in enumerate(zip(ref_pyramid, supp_pyramid)):
            # Upsampling doubles the grid, so flow vectors (in pixels) double too.
            upsampled = F.interpolate(flow, scale_factor=2, mode="bilinear", align_corners=True) * 2.0
            if upsampled.size(2) != ref_level.size(2):
                upsampled = F.pad(upsampled, pad=[0, 0, 0, 1], mode="replicate")
            if upsampled.size(3) != ref_level.size(3):
                upsampled = F.pad(upsampled, pad=[0, 1, 0, 0], mode="replicate")
            warped = flow_warp(supp_level, upsampled.permute(0, 2, 3, 1), interp_mode="bilinear",
                               padding_mode="border")
            module = self.basic_module[first_module + level]
            flow = module(torch.cat([ref_level, warped, upsampled], 1)) + upsampled
            if level_flows is not None:
                level_flows.append(flow)
        return flow

    def forward(self, ref: torch.Tensor, supp: torch.Tensor) -> torch.Tensor:
        """Flow (n, 2, h, w) in pixels that warps `supp` onto `ref`; inputs are RGB in [0, 1]."""
        if ref.shape != supp.shape:
            raise ValueError(f"SpyNet: ref {tuple(ref.shape)} and supp {tuple(supp.shape)} differ in shape")
        h, w = ref.shape[-2:]
        levels = pyramid_levels(h, w)
        multiple = 2 ** (levels - 1)
        h_padded = math.ceil(h / multiple) * multiple
        w_padded = math.ceil(w / multiple) * multiple
        ref = F.interpolate(ref, size=(h_padded, w_padded), mode="bilinear", align_corners=False)
        supp = F.interpolate(supp, size=(h_padded, w_padded), mode="bilinear", align_corners=False)

        flow = F.interpolate(self.estimate(ref, supp, levels), size=(h, w), mode="bilinear", align_corners=False)
        # Resizing the frame rescaled the motion; bring it back to input pixels.
        flow[:, 0, :, :] *= float(w) / float(w_padded)
        flow[:, 1, :, :] *= float(h) / float(h_padded)
        return flow


def clip_flows(spynet: SpyNet, frames: torch.Tensor, *, mirrored: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(forward, backward) flows between neighbours of a (b, t, 3, h, w) clip, t >= 2, each
    (b, t-1, 2, h, w): backward[:, i] warps frame i+1 onto frame i, forward[:, i] warps frame i
    onto frame i+1 (BasicSR's `flows_backward` / `flows_forward`).

    `mirrored`: the clip is its own time reversal (Vimeo-90K's flipped septuplets), so the
    forward flows are the backward ones reversed and SpyNet runs once instead of twice.

    With a frozen SpyNet and an input that needs no gradient the flows are computed under
    `torch.no_grad()`: the same values, without autograd's bookkeeping (nothing would be
    recorded anyway). An input that requires grad keeps its flow gradients.
    """
    b, t, c, h, w = frames.size()
    earlier = frames[:, :-1, :, :, :].reshape(-1, c, h, w)
    later = frames[:, 1:, :, :, :].reshape(-1, c, h, w)
    track_grad = torch.is_grad_enabled() and (frames.requires_grad or not is_frozen(spynet))
    with torch.set_grad_enabled(track_grad):
        flows_backward = spynet(earlier, later).view(b, t - 1, 2, h, w)
        if mirrored:
            flows_forward = flows_backward.flip(1)
        else:
            flows_forward = spynet(later, earlier).view(b, t - 1, 2, h, w)
    return flows_forward, flows_backward
