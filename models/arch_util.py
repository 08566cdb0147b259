"""Building blocks shared by BasicVSR, BasicVSR++, IconVSR, SpyNet and EDVR.

Every module here keeps BasicSR 1.4.2's parameter names, shapes, initialisation and arithmetic
order, so BasicSR checkpoints load with strict=True and produce the same numbers.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn import init
from torch.utils.checkpoint import checkpoint

_LOG = logging.getLogger(__name__)


class UntrainedPartWarning(UserWarning):
    """A part of a network (SpyNet, IconVSR's EDVR extractor) starts untrained because no
    pretrained file is given. It matters only when no trained weights of the whole network are
    loaded next, which the network cannot know: `models.load_network` silences it when it loads a
    checkpoint, and lets a trainer report it as one line once it knows it will not resume."""


def autocast_off(device: torch.device) -> contextlib.AbstractContextManager:
    """A float32 region inside autocast. Devices without autocast (the meta device, on which
    benchmarks count FLOPs) get a no-op: there is nothing to switch off."""
    if device.type in ("cpu", "cuda", "xpu", "mps", "hpu"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


class InvalidArgument(ValueError):
    """A constructor argument has an impossible value.

    Carries the argument's name so `models.build_network` can turn it into a ConfigError that
    names the option key (`network_g.<argument>`); direct callers just see a ValueError.
    """

    def __init__(self, argument: str, reason: str) -> None:
        super().__init__(f"{argument}: {reason}")
        self.argument = argument
        self.reason = reason


def require(condition: bool, argument: str, reason: str) -> None:
    """Raise InvalidArgument(argument, reason) unless `condition` holds."""
    if not condition:
        raise InvalidArgument(argument, reason)


@torch.no_grad()
def scaled_kaiming_init(modules: list[nn.Module], scale: float = 1.0, bias_fill: float = 0.0) -> None:
    """Kaiming-normal init scaled down by `scale` (BasicSR's `default_init_weights`).

    Residual branches start at 0.1x so a deep stack of blocks starts close to the identity,
    which is what lets BasicSR train these networks without normalisation layers.
    """
    for module in modules:
        for layer in module.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                init.kaiming_normal_(layer.weight)
                layer.weight.mul_(scale)
                if layer.bias is not None:
                    layer.bias.fill_(bias_fill)


def make_layer(block: Callable[..., nn.Module], num_blocks: int, **block_kwargs: Any) -> nn.Sequential:
    """`num_blocks` fresh copies of `block(**block_kwargs)` in an nn.Sequential (keys `0.`, `1.`, ...)."""
    return nn.Sequential(*(block(**block_kwargs) for _ in range(num_blocks)))


class ResidualBlockNoBN(nn.Module):
    """conv-ReLU-conv residual block without batch norm (BatchNorm hurts SR: it removes the
    per-image intensity range the network has to reproduce)."""

    def __init__(self, num_feat: int = 64, res_scale: float = 1, pytorch_init: bool = False) -> None:
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=True)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        if not pytorch_init:
            scaled_kaiming_init([self.conv1, self.conv2], scale=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.conv2(self.relu(self.conv1(x)))
        return x + residual * self.res_scale


def flow_warp(
    x: torch.Tensor,
    flow: torch.Tensor,
    interp_mode: str = "bilinear",
    padding_mode: str = "zeros",
    align_corners: bool = True,
) -> torch.Tensor:
    """Sample `x` (n, c, h, w) at pixel positions displaced by `flow` (n, h, w, 2) in pixels, (dx, dy).

    The base grid is kept in float32 even under autocast: in fp16, pixel coordinates above 1024
    lose their fractional part, which would quantise the warp on large frames.
    """
    if x.shape[-2:] != flow.shape[1:3]:
        raise ValueError(f"flow_warp: feature size {tuple(x.shape[-2:])} != flow size {tuple(flow.shape[1:3])}")
    h, w = x.shape[-2:]
    rows = torch.arange(0, h, dtype=x.dtype, device=x.device)
    cols = torch.arange(0, w, dtype=x.dtype, device=x.device)
    grid_y, grid_x = torch.meshgrid(rows, cols, indexing="ij")
    base_grid = torch.stack((grid_x, grid_y), 2).float()  # (h, w, 2): x first, as grid_sample wants
    target = base_grid + flow
    # Map pixel positions to [-1, 1]; max(., 1) keeps 1-pixel-wide maps finite.
    target_x = 2.0 * target[:, :, :, 0] / max(w - 1, 1) - 1.0
    target_y = 2.0 * target[:, :, :, 1] / max(h - 1, 1) - 1.0
    # A non-finite flow (a diverging run) would reach grid_sample's integer index casts, which are
    # undefined for NaN/inf and can crash the process on CPU before the trainer's NaN check sees the
    # loss; pushed far outside the frame instead. Finite positions are untouched (BasicSR's outputs).
    normalised = torch.stack((target_x, target_y), dim=3).nan_to_num(nan=-1e4, posinf=1e4, neginf=-1e4)
    return F.grid_sample(x, normalised, mode=interp_mode, padding_mode=padding_mode, align_corners=align_corners)


def modulated_deform_conv(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
) -> torch.Tensor:
    """DCNv2 (`torchvision.ops.deform_conv2d` with a mask), always computed in float32 outside
    autocast; the result comes back in `x`'s dtype.

    Why float32: torchvision has no bf16/fp16 CPU kernel and no CPU autocast rule, so under CPU
    autocast a bf16 feature map makes it raise; on CUDA its autocast rule casts to float32
    anyway. And the offsets are sampling positions in pixels: in bf16 a 20 px displacement is
    resolved to 1/8 px, which the bilinear sampling turns straight into feature error. Without
    autocast on float32 tensors every cast here is a no-op, so BasicSR's numbers are unchanged.
    torchvision is imported on first use, so BasicVSR runs never import it.
    """
    from torchvision.ops import deform_conv2d

    with autocast_off(x.device):
        out = deform_conv2d(x.float(), offset.float(), weight.float(), None if bias is None else bias.float(),
                            stride, padding, dilation, mask.float())
    return out.to(x.dtype)


class DCNv2Pack(nn.Module):
    """Modulated deformable convolution (DCNv2) whose offsets and masks come from a second input.

    Unlike the original DCNv2 pack, which predicts offsets from the features it convolves,
    EDVR predicts them from the concatenation of neighbour and reference features, so
    `forward(x, feat)` convolves `x` with offsets computed from `feat`. The offset convolution
    starts at zero, so a fresh pack behaves like a plain convolution until alignment is learnt.

    Runs on `torchvision.ops.deform_conv2d` (CPU and CUDA, no compiled extension), in float32
    even under autocast (`modulated_deform_conv`). Parameter names match BasicSR's (`weight`,
    `bias`, `conv_offset.*`).
    """

    # BasicSR checks the mean offset magnitude on every call; reading it back forces a
    # host-device sync each time (20 per EDVR forward), which stalls the GPU queue on the small
    # crops the curriculum trains on. Checking every Nth call keeps the diagnostic for free.
    offset_check_interval = 100
    offset_warning_threshold = 50.0

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        deformable_groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        require(in_channels % deformable_groups == 0, "deformable_groups",
                f"must divide the channel count {in_channels}, got {deformable_groups}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = (kernel_size, kernel_size)
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
        self.deformable_groups = deformable_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        # Per deformable group and kernel tap: dy, dx and a modulation logit.
        self.conv_offset = nn.Conv2d(
            in_channels, deformable_groups * 3 * kernel_size * kernel_size, kernel_size,
            stride=stride, padding=padding, dilation=dilation, bias=True)
        self._calls = 0
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        bound = 1.0 / fan_in**0.5
        self.weight.uniform_(-bound, bound)
        if self.bias is not None:
            self.bias.zero_()
        self.conv_offset.weight.zero_()
        self.conv_offset.bias.zero_()

    def forward(self, x: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        # Offsets and mask in float32 (a no-op without autocast): see `modulated_deform_conv`.
        offset_and_mask = self.conv_offset(feat).float()
        offset_a, offset_b, mask_logits = torch.chunk(offset_and_mask, 3, dim=1)
        offset = torch.cat((offset_a, offset_b), dim=1)
        mask = torch.sigmoid(mask_logits)
        self._warn_on_large_offsets(offset)
        return modulated_deform_conv(x, offset, mask, self.weight, self.bias,
                                     stride=self.stride, padding=self.padding, dilation=self.dilation)

    def _warn_on_large_offsets(self, offset: torch.Tensor) -> None:
        """Offsets that blow up are the usual sign of a diverging EDVR; say so, now and then."""
        self._calls += 1
        if (self._calls - 1) % self.offset_check_interval or offset.device.type == "meta":
            return
        mean_abs = float(offset.detach().abs().mean())
        if mean_abs > self.offset_warning_threshold:
            _LOG.warning("DCNv2Pack: offset mean |value| is %.1f, larger than %.0f: alignment is diverging",
                         mean_abs, self.offset_warning_threshold)


def is_frozen(module: nn.Module) -> bool:
    """True when no parameter requires grad (the flow part during `fix_flow`): flows are then
    computed without autograd."""
    return not any(p.requires_grad for p in module.parameters())


class RecomputesActivations:
    """Activation checkpointing for the recurrent networks (BasicVSR, IconVSR, BasicVSR++):
    `set_activation_checkpointing(True)` makes each frame's propagation step (and, with
    `upsampling`, its upsampler) run under non-reentrant `torch.utils.checkpoint`, so autograd
    keeps only the step's inputs and reruns it in backward. Values and gradients are unchanged;
    inference and `torch.no_grad()` are unaffected. The switches are plain attributes, not
    constructor arguments, so the constructors stay BasicSR's."""

    checkpoint_propagation: bool = False
    checkpoint_upsampling: bool = False

    def set_activation_checkpointing(self, enabled: bool, *, upsampling: bool = True) -> None:
        self.checkpoint_propagation = bool(enabled)
        self.checkpoint_upsampling = bool(enabled) and bool(upsampling)

    def _maybe_checkpoint(self, enabled: bool, function: Callable[..., torch.Tensor], *args) -> torch.Tensor:
        if enabled and self.training and torch.is_grad_enabled():
            return checkpoint(function, *args, use_reentrant=False)
        return function(*args)

    def spynet_is_frozen(self) -> bool:
        return is_frozen(self.spynet)
