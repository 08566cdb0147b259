"""BasicVSR (Chan et al., CVPR 2021): bidirectional recurrent propagation with SpyNet alignment.

Constructor arguments and state_dict keys are BasicSR 1.4.2's, so `params`/`params_ema` from
BasicSR checkpoints load with strict=True and give the same outputs.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from models.arch_util import (RecomputesActivations, ResidualBlockNoBN, UntrainedPartWarning, flow_warp, make_layer,
                              require, scaled_kaiming_init)
from models.spynet import SpyNet

# BasicVSR-M. The paper (Lin et al.) trains a "medium" BasicVSR but gives no sizes, and it
# reports each model's speed-up relative to its own baseline, not a speed ratio between them.
# BasicVSR uses 64 channels and 15 residual blocks per propagation branch; "M" here keeps the
# 64 channels (so the fixed 64-channel upsampler, SpyNet and BasicSR's init are unchanged) and
# halves the depth to 7 blocks. The trunks dominate the cost, so this is roughly half
# BasicVSR's compute per frame, a plausible "medium" size. This is our choice, not the authors'.
BASICVSR_M_DEFAULTS: dict[str, Any] = {"num_feat": 64, "num_block": 7}


class ConvResidualBlocks(nn.Module):
    """conv + LeakyReLU + `num_block` residual blocks: one propagation branch's trunk."""

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 64, num_block: int = 15) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(num_in_ch, num_out_ch, 3, 1, 1, bias=True),
            nn.LeakyReLU(negative_slope=0.1, inplace=True),
            make_layer(ResidualBlockNoBN, num_block, num_feat=num_out_ch),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.main(features)


class BasicVSR(RecomputesActivations, nn.Module):
    """x4 video SR: (b, t, 3, h, w) in [0, 1] -> (b, t, 3, 4h, 4w).

    A backward and a forward recurrent branch carry features across the whole clip, each
    warping its hidden state to the current frame with SpyNet flow; both are fused per frame
    and upsampled by two pixel-shuffle stages on top of a bilinear x4 base.

    Frames of any size >= 2 px work: SpyNet runs a shorter pyramid on frames of 32 px and
    less (see `models.spynet.SpyNet`), so the 32x32 crops of the multigrid curriculum train at
    a quarter of a 64x64 crop's cost; from 33 px on the numbers are BasicSR's.

    `set_activation_checkpointing(True)` (`models.arch_util.RecomputesActivations`) trades
    compute for memory when training on long clips: at x4 the upsampler works on 16x the pixels
    of the trunks, so it holds most of the activation memory; for a 64x64x15 BasicVSR-M step,
    checkpointing the trunks alone saves ~35%, trunks and upsampler ~80%, for ~30% more step time
    (benchmarks/bench_memory.py, bench_step.py --sweep). It changes no value.

    When no SpyNet parameter requires grad (the `fix_flow` phase of training) and the input
    does not either, flows are computed under `torch.no_grad()`: same values. (Autograd would
    record no graph there anyway, since nothing requires grad; no_grad makes that explicit
    and skips autograd's per-op checks. An input that requires grad keeps its flow gradients.)

    Args:
        num_feat: channels of the propagation features.
        num_block: residual blocks per propagation branch.
        spynet_path: BasicSR-format pretrained SpyNet weights. None warns: flow is then
            learned from scratch (harmless when a full BasicVSR checkpoint is loaded next).
        upsample_feat: channels of the upsampler after its first pixel shuffle (`upconv2`,
            `conv_hr`, `conv_last`). BasicSR and MMagic fix 64 (the default); at small widths those
            layers, which run at 2x and 4x the LR size, cost most of a step, so the CPU accuracy
            proxy (options/proxy_basicvsr.yml) narrows them with the rest of the network.
        kaiming_init: Kaiming-normal init of the layers outside the residual blocks (each trunk's
            input convolution, the fusion and the upsampler; the last convolution scaled x0.1)
            instead of PyTorch's default, which BasicSR keeps. The default shrinks the signal at
            every one of those seven layers, so a fresh network starts at a saddle whose output is
            the bilinear base, and leaves it after a random number of iterations: a few hundred at
            LR 2e-3 (pilots on the CPU proxy: 100 to over 300 depending on the seed). Against
            BasicSR's 300k iterations that is noise; against a CPU proxy's 720 it would be the
            result. Off by default (BasicSR's numbers); the proxy turns it on.
    """

    recurrent: ClassVar[bool] = True

    def __init__(self, num_feat: int = 64, num_block: int = 15,
                 spynet_path: str | os.PathLike[str] | None = None, upsample_feat: int = 64,
                 kaiming_init: bool = False) -> None:
        super().__init__()
        require(num_feat >= 1, "num_feat", f"must be >= 1, got {num_feat}")
        require(num_block >= 0, "num_block", f"must be >= 0, got {num_block}")
        require(upsample_feat >= 1, "upsample_feat", f"must be >= 1, got {upsample_feat}")
        self.num_feat = num_feat

        if not spynet_path:
            warnings.warn(
                "BasicVSR: spynet_path is not set, so SpyNet starts at zero flow and optical flow "
                "is learned from scratch",
                UntrainedPartWarning, stacklevel=2)
        self.spynet = SpyNet(spynet_path)

        self.backward_trunk = ConvResidualBlocks(num_feat + 3, num_feat, num_block)
        self.forward_trunk = ConvResidualBlocks(num_feat + 3, num_feat, num_block)

        self.fusion = nn.Conv2d(num_feat * 2, num_feat, 1, 1, 0, bias=True)
        self.upconv1 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1, bias=True)
        self.upconv2 = nn.Conv2d(num_feat, upsample_feat * 4, 3, 1, 1, bias=True)
        self.conv_hr = nn.Conv2d(upsample_feat, upsample_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(upsample_feat, 3, 3, 1, 1)
        self.pixel_shuffle = nn.PixelShuffle(2)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)
        if kaiming_init:
            scaled_kaiming_init([self.backward_trunk.main[0], self.forward_trunk.main[0], self.fusion, self.upconv1,
                                 self.upconv2, self.conv_hr])
            scaled_kaiming_init([self.conv_last], scale=0.1)

    def get_flow(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(forward, backward) flows, each (b, t-1, 2, h, w): forward[:, i] warps frame i onto
        frame i+1, backward[:, i] warps frame i+1 onto frame i."""
        b, t, c, h, w = x.size()
        earlier = x[:, :-1, :, :, :].reshape(-1, c, h, w)
        later = x[:, 1:, :, :, :].reshape(-1, c, h, w)
        track_grad = torch.is_grad_enabled() and (x.requires_grad or not self.spynet_is_frozen())
        with torch.set_grad_enabled(track_grad):
            flows_backward = self.spynet(earlier, later).view(b, t - 1, 2, h, w)
            flows_forward = self.spynet(later, earlier).view(b, t - 1, 2, h, w)
        return flows_forward, flows_backward

    @staticmethod
    def propagate(trunk: nn.Module, frame: torch.Tensor, hidden: torch.Tensor,
                  flow: torch.Tensor | None) -> torch.Tensor:
        """One recurrent step: warp the hidden state onto `frame` (flow (b, 2, h, w), None for
        the first frame of a branch) and run the branch's trunk on [frame, hidden]."""
        if flow is not None:
            hidden = flow_warp(hidden, flow.permute(0, 2, 3, 1))
        return trunk(torch.cat([frame, hidden], dim=1))

    def reconstruct(self, backward_feature: torch.Tensor, forward_feature: torch.Tensor,
                    lr_frame: torch.Tensor) -> torch.Tensor:
        return self.upsample(torch.cat([backward_feature, forward_feature], dim=1), lr_frame)

    def upsample(self, fused_input: torch.Tensor, lr_frame: torch.Tensor) -> torch.Tensor:
        out = self.lrelu(self.fusion(fused_input))
        out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
        out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.lrelu(self.conv_hr(out))
        out = self.conv_last(out)
        out += F.interpolate(lr_frame, scale_factor=4, mode="bilinear", align_corners=False)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.size(2) != 3:
            raise ValueError(f"BasicVSR expects (b, t, 3, h, w) frames, got shape {tuple(x.shape)}")
        b, t, _, h, w = x.size()
        if t > 1:
            flows_forward, flows_backward = self.get_flow(x)

        # Backward branch: from the last frame to the first.
        backward_features: list[torch.Tensor] = []
        hidden = x.new_zeros(b, self.num_feat, h, w)
        for i in range(t - 1, -1, -1):
            flow = flows_backward[:, i, :, :, :] if i < t - 1 else None
            hidden = self._maybe_checkpoint(self.checkpoint_propagation, self.propagate, self.backward_trunk,
                                            x[:, i, :, :, :], hidden, flow)
            backward_features.insert(0, hidden)

        # Forward branch, fused with the backward features and upsampled frame by frame.
        outputs: list[torch.Tensor] = []
        hidden = torch.zeros_like(hidden)
        for i in range(t):
            lr_frame = x[:, i, :, :, :]
            flow = flows_forward[:, i - 1, :, :, :] if i > 0 else None
            hidden = self._maybe_checkpoint(self.checkpoint_propagation, self.propagate, self.forward_trunk,
                                            lr_frame, hidden, flow)
            outputs.append(self._maybe_checkpoint(self.checkpoint_upsampling, self.reconstruct,
                                                  backward_features[i], hidden, lr_frame))
        return torch.stack(outputs, dim=1)


def basicvsr_m(**overrides: Any) -> BasicVSR:
    """BasicVSR-M: BasicVSR with `BASICVSR_M_DEFAULTS` (64 channels, 7 blocks per branch; see
    the note on that constant for why), any argument overridable."""
    return BasicVSR(**{**BASICVSR_M_DEFAULTS, **overrides})
