"""BasicVSR++ (Chan et al., CVPR 2022): second-order grid propagation and flow-guided deformable alignment.

Constructor arguments and state_dict keys are BasicSR 1.4.2's (`basicsr/archs/basicvsrpp_arch.py`),
so BasicSR checkpoints load with strict=True and give the same outputs; MMagic's checkpoints load
after `models.convert.convert_mmagic_basicvsrpp` renames their keys.

Where this differs from BasicSR (none of it changes an fp32 forward's numbers where BasicSR runs):
- The deformable alignment is always built. BasicSR adds `deform_align.*` only when CUDA is
  available (its old DCN needed the compiled extension) and otherwise silently skips alignment;
  the module runs on torchvision's `deform_conv2d`, which works on CPU too.
- Any frame size works: BasicSR asserts LR frames of at least 64 px, but our SpyNet runs a
  shorter pyramid on small frames (`models.spynet`), so the curriculum's 32x32 crops train.
  Clips of one frame work too (no flow is needed).
- The mirror-sequence check (Vimeo-90K's flipped clips: SpyNet then runs once) is made for every
  clip; BasicSR's flag, once set by one mirrored clip, stays set for every later clip.
- `cpu_cache_length` offloads features from any accelerator, not only CUDA.
- Mixed precision: under autocast the propagated features, flows, offsets, mask and the
  deformable convolution stay in float32 (see `SecondOrderDeformableAlignment`); the
  convolutions of the trunks, the offset network and the upsampler run in the autocast dtype.
- `set_activation_checkpointing(True)` recomputes each propagation step and each frame's
  upsampling in backward: same values and gradients, much less activation memory.
"""
from __future__ import annotations

import os
import warnings
from typing import Callable, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from models.arch_util import (RecomputesActivations, UntrainedPartWarning, autocast_off, flow_warp,
                              modulated_deform_conv, require)
from models.basicvsr import ConvResidualBlocks
from models.spynet import SpyNet, clip_flows

# Propagation branches in the order they run (second-order grid propagation, paper Fig. 3):
# each one sees the spatial features and the outputs of every branch before it.
BRANCHES = ("backward_1", "forward_1", "backward_2", "forward_2")
# Fixed in BasicSR and MMagic (not a constructor argument): 16 groups over the 2C channels
# [feature n-1, feature n-2], i.e. 8 groups for each of the two warped features.
DEFORMABLE_GROUPS = 16
KERNEL_SIZE = 3


class SecondOrderDeformableAlignment(nn.Module):
    """Flow-guided deformable alignment of the features of frames n-1 and n-2 onto frame n.

    The offset network sees both flow-warped features, the current frame's features and the
    two flows, and predicts offset *residues* bounded by `max_residue_magnitude` (tanh) that are
    added to the flows: the deformable convolution samples around where the optical flow points,
    so it refines flow-based alignment instead of learning it from scratch (paper Eq. 6).

    Precision: the offset network's convolutions follow autocast, but its output is taken to
    float32 before the tanh; the flows are added, the mask is computed and the deformable
    convolution runs in float32 outside autocast (`models.arch_util.modulated_deform_conv`).
    Offsets are sampling positions in pixels, so they are the precision-sensitive part, and
    torchvision has no bf16 CPU kernel for the convolution.

    Parameter names and shapes are BasicSR's (`weight`, `bias`, `conv_offset.{0,2,4,6}.*`).
    """

    def __init__(self, in_channels: int, out_channels: int, deformable_groups: int = DEFORMABLE_GROUPS,
                 max_residue_magnitude: float = 10) -> None:
        super().__init__()
        require(in_channels % deformable_groups == 0 and deformable_groups % 2 == 0, "mid_channels",
                f"{deformable_groups} deformable groups (half per aligned feature) must divide the "
                f"{in_channels} channels of the two features")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.deformable_groups = deformable_groups
        self.max_residue_magnitude = max_residue_magnitude
        self.padding = KERNEL_SIZE // 2
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, KERNEL_SIZE, KERNEL_SIZE))
        self.bias = nn.Parameter(torch.empty(out_channels))
        taps = deformable_groups * KERNEL_SIZE * KERNEL_SIZE
        self.conv_offset = nn.Sequential(
            nn.Conv2d(3 * out_channels + 4, out_channels, 3, 1, 1),
            nn.LeakyReLU(negative_slope=0.1, inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1),
            nn.LeakyReLU(negative_slope=0.1, inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1),
            nn.LeakyReLU(negative_slope=0.1, inplace=True),
            nn.Conv2d(out_channels, 3 * taps, 3, 1, 1),  # per tap: dy, dx and a mask logit
        )
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """BasicSR's init: uniform deformable weights, zero bias, and a zero last offset layer, so
        a fresh module samples exactly where the flows point, with mask 0.5."""
        bound = 1.0 / (self.in_channels * KERNEL_SIZE * KERNEL_SIZE) ** 0.5
        self.weight.uniform_(-bound, bound)
        self.bias.zero_()
        self.conv_offset[-1].weight.zero_()
        self.conv_offset[-1].bias.zero_()

    def forward(self, x: torch.Tensor, cond: torch.Tensor, flow_1: torch.Tensor, flow_2: torch.Tensor) -> torch.Tensor:
        """x: [feature n-1, feature n-2] (b, 2C, h, w); cond: [warped n-1, current, warped n-2]
        (b, 3C, h, w); flows (b, 2, h, w) in pixels, (dx, dy), from frame n to n-1 and n-2."""
        out = self.conv_offset(torch.cat([cond, flow_1, flow_2], dim=1)).float()
        taps = self.deformable_groups * KERNEL_SIZE * KERNEL_SIZE  # (group, kernel tap) pairs
        with autocast_off(x.device):
            residue = self.max_residue_magnitude * torch.tanh(out[:, :2 * taps])  # (dy, dx) per pair
            # The first half of the groups samples feature n-1 around flow_1, the second half
            # feature n-2 around flow_2; deform_conv2d wants (dy, dx), flows are (dx, dy).
            pairs_per_feature = taps // 2
            guide = torch.cat([flow_1.float().flip(1).repeat(1, pairs_per_feature, 1, 1),
                               flow_2.float().flip(1).repeat(1, pairs_per_feature, 1, 1)], dim=1)
            offset = residue + guide
            mask = torch.sigmoid(out[:, 2 * taps:])
        return modulated_deform_conv(x, offset, mask, self.weight, self.bias, padding=self.padding)


class BasicVSRPlusPlus(RecomputesActivations, nn.Module):
    """x4 video SR: (b, t, 3, h, w) in [0, 1] -> (b, t, 3, 4h, 4w); with `is_low_res_input=False`
    the output has the input's size (h, w multiples of 4; BasicVSR++ for deblurring/denoising).

    Four propagation branches (backward, forward, backward, forward) each refine the features
    of the branches before them; every step aligns the features of the two previous frames of
    its branch with `SecondOrderDeformableAlignment`. A reconstruction trunk fuses the spatial
    features and the four branches per frame, upsampled by two pixel-shuffle stages on top of a
    bilinear x4 base.

    When no SpyNet parameter requires grad (`fix_flow`) and the input does not either, flows are
    computed under `torch.no_grad()` (same values; see `models.spynet.clip_flows`).

    Args (BasicSR's):
        mid_channels: feature channels (a multiple of 8: 16 deformable groups over 2x of them).
        num_blocks: residual blocks per propagation branch.
        max_residue_magnitude: bound of the learned offset residues, in pixels.
        is_low_res_input: True for x4 SR; False keeps the input size.
        spynet_path: BasicSR-format pretrained SpyNet weights. None warns: flow then starts at
            zero and is learned from scratch (harmless when a full checkpoint is loaded next).
        cpu_cache_length: clips longer than this keep their features in CPU memory between
            steps when running on an accelerator (saves device memory on long inference clips,
            costs transfers); the output then comes back on the CPU, as in BasicSR.
    """

    recurrent: ClassVar[bool] = True

    def __init__(self, mid_channels: int = 64, num_blocks: int = 7, max_residue_magnitude: float = 10,
                 is_low_res_input: bool = True, spynet_path: str | os.PathLike[str] | None = None,
                 cpu_cache_length: int = 100) -> None:
        super().__init__()
        require(mid_channels >= 8 and mid_channels % 8 == 0, "mid_channels",
                f"must be a positive multiple of 8 (16 deformable groups over 2 x mid_channels), got {mid_channels}")
        require(num_blocks >= 0, "num_blocks", f"must be >= 0, got {num_blocks}")
        require(max_residue_magnitude > 0, "max_residue_magnitude", f"must be > 0, got {max_residue_magnitude}")
        require(cpu_cache_length >= 0, "cpu_cache_length", f"must be >= 0, got {cpu_cache_length}")
        self.mid_channels = mid_channels
        self.is_low_res_input = is_low_res_input
        self.cpu_cache_length = cpu_cache_length

        if not spynet_path:
            warnings.warn(
                "BasicVSRPlusPlus: spynet_path is not set, so SpyNet starts at zero flow and optical flow "
                "is learned from scratch",
                UntrainedPartWarning, stacklevel=2)
        self.spynet = SpyNet(spynet_path)

        if is_low_res_input:
            self.feat_extract = ConvResidualBlocks(3, mid_channels, 5)
        else:  # two stride-2 convolutions bring HR frames to the flow resolution
            self.feat_extract = nn.Sequential(
                nn.Conv2d(3, mid_channels, 3, 2, 1), nn.LeakyReLU(negative_slope=0.1, inplace=True),
                nn.Conv2d(mid_channels, mid_channels, 3, 2, 1), nn.LeakyReLU(negative_slope=0.1, inplace=True),
                ConvResidualBlocks(mid_channels, mid_channels, 5))

        self.deform_align = nn.ModuleDict()
        self.backbone = nn.ModuleDict()
        for position, branch in enumerate(BRANCHES):
            self.deform_align[branch] = SecondOrderDeformableAlignment(
                2 * mid_channels, mid_channels, max_residue_magnitude=max_residue_magnitude)
            # input: current spatial features, every earlier branch's output, the aligned feature
            self.backbone[branch] = ConvResidualBlocks((2 + position) * mid_channels, mid_channels, num_blocks)

        self.reconstruction = ConvResidualBlocks(5 * mid_channels, mid_channels, 5)
        self.upconv1 = nn.Conv2d(mid_channels, mid_channels * 4, 3, 1, 1, bias=True)
        self.upconv2 = nn.Conv2d(mid_channels, 64 * 4, 3, 1, 1, bias=True)
        self.pixel_shuffle = nn.PixelShuffle(2)
        self.conv_hr = nn.Conv2d(64, 64, 3, 1, 1)
        self.conv_last = nn.Conv2d(64, 3, 3, 1, 1)
        self.img_upsample = nn.Upsample(scale_factor=4, mode="bilinear", align_corners=False)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)

    # -- pieces ----------------------------------------------------------------------------------

    @staticmethod
    def is_mirrored(lqs: torch.Tensor) -> bool:
        """True when frame i equals frame t-1-i for every i (an even-length flipped clip). A clip on
        the meta device (--plan's FLOP count) has no values and is taken as not mirrored, which
        counts the larger of the two costs."""
        if lqs.size(1) % 2 or lqs.is_meta:
            return False
        first, second = torch.chunk(lqs, 2, dim=1)
        return torch.equal(first, second.flip(1))

    def compute_flow(self, lqs: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(forward, backward) flows, each (b, t-1, 2, h, w) in float32; (None, None) for t = 1.
        backward[:, i] warps frame i+1 onto frame i, forward[:, i] frame i onto frame i+1."""
        if lqs.size(1) < 2:
            return None, None
        flows_forward, flows_backward = clip_flows(self.spynet, lqs, mirrored=self.is_mirrored(lqs))
        # float32 under autocast too: flows are pixel displacements and become deformable offsets
        return flows_forward.float(), flows_backward.float()

    def step(self, branch: str, feat_current: torch.Tensor, feat_prop: torch.Tensor, feat_n2: torch.Tensor | None,
             flow_n1: torch.Tensor | None, flow_n2: torch.Tensor | None, *earlier: torch.Tensor) -> torch.Tensor:
        """One propagation step of `branch` at one frame.

        feat_prop / feat_n2: this branch's output at the previous / second previous frame it
        visited (zeros / None before that); flow_n1 / flow_n2: flows from this frame to those
        frames' neighbours (None on the branch's first / second frame); `earlier`: the outputs
        of the branches before this one at this frame.
        """
        if flow_n1 is not None:
            cond_n1 = flow_warp(feat_prop, flow_n1.permute(0, 2, 3, 1))
            if flow_n2 is None:  # second frame of the branch: no second-order neighbour yet
                feat_n2 = torch.zeros_like(feat_prop)
                flow_n2 = torch.zeros_like(flow_n1)
                cond_n2 = torch.zeros_like(cond_n1)
            else:
                # chain the flows: frame n -> n-1, then n-1 -> n-2 sampled where the first lands
                flow_n2 = flow_n1 + flow_warp(flow_n2, flow_n1.permute(0, 2, 3, 1))
                cond_n2 = flow_warp(feat_n2, flow_n2.permute(0, 2, 3, 1))
            cond = torch.cat([cond_n1, feat_current, cond_n2], dim=1)
            feat_prop = self.deform_align[branch](torch.cat([feat_prop, feat_n2], dim=1), cond, flow_n1, flow_n2)
        feat = torch.cat([feat_current, *earlier, feat_prop], dim=1)
        return feat_prop + self.backbone[branch](feat)

    def reconstruct(self, lq_frame: torch.Tensor, *features: torch.Tensor) -> torch.Tensor:
        """One output frame from [spatial, backward_1, forward_1, backward_2, forward_2] features."""
        hr = self.reconstruction(torch.cat(features, dim=1))
        hr = self.lrelu(self.pixel_shuffle(self.upconv1(hr)))
        hr = self.lrelu(self.pixel_shuffle(self.upconv2(hr)))
        hr = self.lrelu(self.conv_hr(hr))
        hr = self.conv_last(hr)
        return hr + (self.img_upsample(lq_frame) if self.is_low_res_input else lq_frame)

    # -- forward ---------------------------------------------------------------------------------

    def check_input(self, lqs: torch.Tensor) -> None:
        if lqs.dim() != 5 or lqs.size(2) != 3:
            raise ValueError(f"BasicVSRPlusPlus expects (b, t, 3, h, w) frames, got shape {tuple(lqs.shape)}")
        h, w = lqs.shape[-2:]
        if not self.is_low_res_input and (h % 4 or w % 4):
            raise ValueError(f"BasicVSRPlusPlus with is_low_res_input=False needs frame sides that are "
                             f"multiples of 4, got {h}x{w}")

    def offloads(self, lqs: torch.Tensor) -> bool:
        """Whether this clip's features wait in CPU memory between steps (`cpu_cache_length`)."""
        return lqs.size(1) > self.cpu_cache_length and lqs.device.type != "cpu"

    def forward(self, lqs: torch.Tensor) -> torch.Tensor:
        self.check_input(lqs)
        n, t, c, h, w = lqs.size()
        offload = self.offloads(lqs)
        device = lqs.device

        def store(x: torch.Tensor) -> torch.Tensor:
            return x.cpu() if offload else x

        def fetch(x: torch.Tensor) -> torch.Tensor:
            return x.to(device, non_blocking=True) if offload else x

        if self.is_low_res_input:
            lqs_flow = lqs
        else:  # flow at the features' (quarter) resolution
            lqs_flow = F.interpolate(lqs.view(-1, c, h, w), scale_factor=0.25, mode="bicubic").view(
                n, t, c, h // 4, w // 4)

        if offload:  # one frame at a time, so the whole clip's features never sit on the device
            spatial = [store(self.feat_extract(lqs[:, i, :, :, :])) for i in range(t)]
        else:
            feats = self._maybe_checkpoint(self.checkpoint_propagation, self.feat_extract, lqs.view(-1, c, h, w))
            feats = feats.view(n, t, -1, *feats.shape[-2:])
            spatial = [feats[:, i, :, :, :] for i in range(t)]
        flows_forward, flows_backward = self.compute_flow(lqs_flow)

        branches: dict[str, list[torch.Tensor]] = {}
        for branch in BRANCHES:
            backward = branch.startswith("backward")
            branches[branch] = self._propagate(branch, spatial, branches, flows_backward if backward else flows_forward,
                                               backward, lqs.dtype, store, fetch)

        outputs = []
        for i in range(t):
            features = [fetch(spatial[i]), *(fetch(branches[branch][i]) for branch in BRANCHES)]
            outputs.append(store(self._maybe_checkpoint(self.checkpoint_upsampling, self.reconstruct,
                                                        lqs[:, i, :, :, :], *features)))
        return torch.stack(outputs, dim=1)

    def _propagate(self, branch: str, spatial: list[torch.Tensor], done: dict[str, list[torch.Tensor]],
                   flows: torch.Tensor | None, backward: bool, state_dtype: torch.dtype,
                   store: Callable[[torch.Tensor], torch.Tensor],
                   fetch: Callable[[torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
        """This branch's output at every frame, indexed by frame. The propagated state is kept in
        the input's dtype (float32 under autocast), so rounding does not accumulate along the clip."""
        t = len(spatial)
        order = range(t - 1, -1, -1) if backward else range(t)
        visited: list[torch.Tensor] = []  # outputs in visiting order
        first = fetch(spatial[0])
        feat_prop = first.new_zeros(first.size(0), self.mid_channels, *first.shape[-2:], dtype=state_dtype)
        for i, frame in enumerate(order):
            # backward[:, j] warps frame j+1 onto j; forward[:, j] warps frame j onto j+1
            flow_n1 = flow_n2 = feat_n2 = None
            if i > 0:
                flow_n1 = flows[:, frame if backward else frame - 1, :, :, :]
            if i > 1:
                flow_n2 = flows[:, frame + 1 if backward else frame - 2, :, :, :]
                feat_n2 = fetch(visited[-2])
            earlier = [fetch(done[name][frame]) for name in BRANCHES if name in done]
            feat_prop = self._maybe_checkpoint(self.checkpoint_propagation, self.step, branch, fetch(spatial[frame]),
                                               feat_prop, feat_n2, flow_n1, flow_n2, *earlier)
            visited.append(store(feat_prop))
        return visited[::-1] if backward else visited
