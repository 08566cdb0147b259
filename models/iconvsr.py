"""IconVSR (Chan et al., CVPR 2021): BasicVSR with information refill from keyframes and coupled propagation.

Every `keyframe_stride`-th frame (and the last one) gets features from an EDVR-style extractor
(PCD alignment + TSA fusion over 2 * temporal_padding + 1 frames) that are fused into both
propagation branches, refilling what long-range propagation loses in occluded regions; the
forward branch also sees the backward branch's features (coupled propagation).

Constructor arguments and state_dict keys are BasicSR 1.4.2's (`basicsr/archs/basicvsr_arch.py`,
`IconVSR` and `EDVRFeatureExtractor`), so BasicSR checkpoints load with strict=True and give the
same outputs. The keyframe extractor lives under `edvr.` and SpyNet under `spynet.`, the names
BasicSR's `fix_flow` freezes.

Where this differs from BasicSR (none of it changes the numbers where BasicSR runs):
- Frames of any size >= 2 px (BasicSR's SpyNet needs 33 px; see `models.spynet`). Sides that are
  not multiples of 4 are reflect-padded for the PCD pyramid and cropped back, as in BasicSR.
- Clips shorter than 2 * temporal_padding + 1 frames (and any temporal_padding >= 1): BasicSR
  raises IndexError there; we fold the temporal padding's frame indices back into the clip
  (`temporal_padding_order`), which changes nothing for the clip lengths BasicSR accepts. So the
  Vimeo-90K curriculum's 6-frame stage runs with temporal_padding 3, and so do inference chunks.
- One-frame clips work (no flow).
- `edvr_path` may also be a full EDVR checkpoint with the extractor's configuration (64 channels,
  2 * temporal_padding + 1 frames, 8 deformable groups, 5 extraction blocks, TSA): its
  reconstruction and upsampling layers are left out. Anything else must match exactly.
- With a frozen extractor (fix_flow) and an input that needs no gradient, keyframe features are
  computed under `torch.no_grad()`, as the flows are (same values).
- `set_activation_checkpointing(True)`: same values and gradients, less activation memory.
"""
from __future__ import annotations

import os
import warnings
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from models.arch_util import (RecomputesActivations, ResidualBlockNoBN, UntrainedPartWarning, flow_warp, is_frozen,
                              make_layer, require)
from models.basicvsr import ConvResidualBlocks
from models.edvr import PCDAlignment, TSAFusion, align_to_reference, feature_pyramid
from models.spynet import SpyNet, clip_flows
from vsr_accel.core.checkpoint import load_weights_strict, read_weights

# Fixed in BasicSR's EDVRFeatureExtractor (not constructor arguments).
KEYFRAME_DEFORMABLE_GROUPS = 8
KEYFRAME_EXTRACT_BLOCKS = 5
# The layers of a full EDVR that the extractor does not have (`edvr_path` may be a full EDVR).
EDVR_RECONSTRUCTION_PREFIXES = ("reconstruction.", "upconv1.", "upconv2.", "conv_hr.", "conv_last.")


def reflect_index(index: int, length: int) -> int:
    """Fold a frame index (negative ones count from the end) into [0, length) by mirroring at
    the clip's ends; indices already inside are returned unchanged."""
    if length == 1:
        return 0
    period = 2 * (length - 1)
    folded = index % period
    return folded if folded < length else period - folded


def temporal_padding_order(num_frames: int, padding: int) -> list[int]:
    """Frame indices of the clip padded by `padding` frames at both ends, for the keyframe windows.

    BasicSR's rule, written out for any padding: frames [2p, ..., p+1] before the clip and
    [t-p-2, ..., t-2p-1] after it (p=2: [4, 3] and [-4, -5]; p=3: [6, 5, 4] and [-5, -6, -7]).
    Clips shorter than 2p+1 frames, where BasicSR fails, fold these indices back into the clip.
    """
    before = range(2 * padding, padding, -1)
    after = (num_frames - k for k in range(padding + 2, 2 * padding + 2))
    return ([reflect_index(i, num_frames) for i in before] + list(range(num_frames))
            + [reflect_index(i, num_frames) for i in after])


def keyframe_indices(num_frames: int, stride: int) -> list[int]:
    """Every `stride`-th frame from 0, plus the last frame."""
    keyframes = list(range(0, num_frames, stride))
    if keyframes[-1] != num_frames - 1:
        keyframes.append(num_frames - 1)
    return keyframes


class EDVRFeatureExtractor(nn.Module):
    """EDVR's front end (feature pyramid, PCD alignment, TSA fusion) without its reconstruction:
    (b, num_input_frame, 3, h, w) -> fused features (b, num_feat, h, w) of the centre frame.

    Layer names are EDVR's (`conv_first`, `feature_extraction`, `conv_l2_1`, ..., `pcd_align`,
    `fusion`), so BasicSR's EDVR-for-IconVSR weights load with strict=True.
    """

    def __init__(self, num_input_frame: int, num_feat: int,
                 load_path: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self.center_frame_idx = num_input_frame // 2
        self.conv_first = nn.Conv2d(3, num_feat, 3, 1, 1)
        self.feature_extraction = make_layer(ResidualBlockNoBN, KEYFRAME_EXTRACT_BLOCKS, num_feat=num_feat)
        self.conv_l2_1 = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
        self.conv_l2_2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_l3_1 = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
        self.conv_l3_2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.pcd_align = PCDAlignment(num_feat=num_feat, deformable_groups=KEYFRAME_DEFORMABLE_GROUPS)
        self.fusion = TSAFusion(num_feat=num_feat, num_frame=num_input_frame, center_frame_idx=self.center_frame_idx)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)
        if load_path:
            self.load_pretrained(load_path)

    def load_pretrained(self, path: str | os.PathLike[str]) -> None:
        """BasicSR-format weights (`{'params': ...}`) of this extractor, or of a whole EDVR with
        the same configuration (its reconstruction layers are dropped). Mismatches raise
        CheckpointError naming the file."""
        state = read_weights(path, param_key="params")
        own = self.state_dict()
        if set(own) < set(state):
            extra = set(state) - set(own)
            if all(key.startswith(EDVR_RECONSTRUCTION_PREFIXES) for key in extra):
                state = {key: value for key, value in state.items() if key in own}
        load_weights_strict(self, state, source=str(path))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = x.size()
        feat_l1 = self.feature_extraction(self.lrelu(self.conv_first(x.view(-1, c, h, w))))
        pyramid = feature_pyramid(self, feat_l1, b, t)
        return self.fusion(align_to_reference(self.pcd_align, pyramid, self.center_frame_idx))


class IconVSR(RecomputesActivations, nn.Module):
    """x4 video SR: (b, t, 3, h, w) in [0, 1] -> (b, t, 3, 4h, 4w).

    Args (BasicSR's):
        num_feat: channels of the propagation features (a multiple of 8: the keyframe
            extractor's PCD uses 8 deformable groups).
        num_block: residual blocks per propagation branch.
        keyframe_stride: distance between keyframes.
        temporal_padding: the keyframe extractor sees 2 * temporal_padding + 1 frames
            (BasicSR: 2 on REDS, 3 on Vimeo-90K).
        spynet_path: BasicSR-format pretrained SpyNet weights; None warns (flow learned from scratch).
        edvr_path: pretrained keyframe extractor (or EDVR) weights; None warns (learned from scratch).
    """

    recurrent: ClassVar[bool] = True

    def __init__(self, num_feat: int = 64, num_block: int = 15, keyframe_stride: int = 5, temporal_padding: int = 2,
                 spynet_path: str | os.PathLike[str] | None = None,
                 edvr_path: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        require(num_feat >= 8 and num_feat % KEYFRAME_DEFORMABLE_GROUPS == 0, "num_feat",
                f"must be a positive multiple of {KEYFRAME_DEFORMABLE_GROUPS} (the keyframe extractor's "
                f"deformable groups), got {num_feat}")
        require(num_block >= 0, "num_block", f"must be >= 0, got {num_block}")
        require(keyframe_stride >= 1, "keyframe_stride", f"must be >= 1, got {keyframe_stride}")
        require(temporal_padding >= 1, "temporal_padding", f"must be >= 1, got {temporal_padding}")
        self.num_feat = num_feat
        self.temporal_padding = temporal_padding
        self.keyframe_stride = keyframe_stride

        for name, path, what in (("spynet_path", spynet_path, "SpyNet starts at zero flow and optical flow"),
                                 ("edvr_path", edvr_path, "the keyframe extractor (EDVR)")):
            if not path:
                warnings.warn(f"IconVSR: {name} is not set, so {what} is learned from scratch",
                              UntrainedPartWarning, stacklevel=2)
        self.edvr = EDVRFeatureExtractor(2 * temporal_padding + 1, num_feat, edvr_path)
        self.spynet = SpyNet(spynet_path)

        self.backward_fusion = nn.Conv2d(2 * num_feat, num_feat, 3, 1, 1, bias=True)
        self.backward_trunk = ConvResidualBlocks(num_feat + 3, num_feat, num_block)
        self.forward_fusion = nn.Conv2d(2 * num_feat, num_feat, 3, 1, 1, bias=True)
        self.forward_trunk = ConvResidualBlocks(2 * num_feat + 3, num_feat, num_block)

        self.upconv1 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1, bias=True)
        self.upconv2 = nn.Conv2d(num_feat, 64 * 4, 3, 1, 1, bias=True)
        self.conv_hr = nn.Conv2d(64, 64, 3, 1, 1)
        self.conv_last = nn.Conv2d(64, 3, 3, 1, 1)
        self.pixel_shuffle = nn.PixelShuffle(2)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)

    # -- pieces ----------------------------------------------------------------------------------

    @staticmethod
    def pad_spatial(x: torch.Tensor) -> torch.Tensor:
        """Reflect-pad (b, t, c, h, w) frames on the bottom/right to sides that are multiples of 4
        (the PCD pyramid halves them twice)."""
        n, t, c, h, w = x.size()
        pad_h, pad_w = (-h) % 4, (-w) % 4
        if not pad_h and not pad_w:
            return x
        x = F.pad(x.view(-1, c, h, w), [0, pad_w, 0, pad_h], mode="reflect")
        return x.view(n, t, c, h + pad_h, w + pad_w)

    def keyframe_features(self, x: torch.Tensor, keyframes: list[int]) -> dict[int, torch.Tensor]:
        """Extractor features of each keyframe from its 2p+1-frame window of the padded clip."""
        order = temporal_padding_order(x.size(1), self.temporal_padding)
        window = 2 * self.temporal_padding + 1
        track_grad = torch.is_grad_enabled() and (x.requires_grad or not is_frozen(self.edvr))
        features = {}
        with torch.set_grad_enabled(track_grad):
            for i in keyframes:
                frames = x[:, order[i:i + window]]  # keyframe i sits at the window's centre
                features[i] = self._maybe_checkpoint(self.checkpoint_propagation, self.edvr, frames)
        return features

    def backward_step(self, frame: torch.Tensor, feat_prop: torch.Tensor, flow: torch.Tensor | None,
                      keyframe_feat: torch.Tensor | None) -> torch.Tensor:
        if flow is not None:
            feat_prop = flow_warp(feat_prop, flow.permute(0, 2, 3, 1))
        if keyframe_feat is not None:
            feat_prop = self.backward_fusion(torch.cat([feat_prop, keyframe_feat], dim=1))
        return self.backward_trunk(torch.cat([frame, feat_prop], dim=1))

    def forward_step(self, frame: torch.Tensor, backward_feat: torch.Tensor, feat_prop: torch.Tensor,
                     flow: torch.Tensor | None, keyframe_feat: torch.Tensor | None) -> torch.Tensor:
        if flow is not None:
            feat_prop = flow_warp(feat_prop, flow.permute(0, 2, 3, 1))
        if keyframe_feat is not None:
            feat_prop = self.forward_fusion(torch.cat([feat_prop, keyframe_feat], dim=1))
        return self.forward_trunk(torch.cat([frame, backward_feat, feat_prop], dim=1))

    def upsample(self, feat: torch.Tensor, lr_frame: torch.Tensor) -> torch.Tensor:
        out = self.lrelu(self.pixel_shuffle(self.upconv1(feat)))
        out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.lrelu(self.conv_hr(out))
        out = self.conv_last(out)
        return out + F.interpolate(lr_frame, scale_factor=4, mode="bilinear", align_corners=False)

    # -- forward ---------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.size(2) != 3:
            raise ValueError(f"IconVSR expects (b, t, 3, h, w) frames, got shape {tuple(x.shape)}")
        b, n, _, h_input, w_input = x.size()
        x = self.pad_spatial(x)
        h, w = x.shape[3:]

        keyframes = keyframe_indices(n, self.keyframe_stride)
        flows_forward, flows_backward = clip_flows(self.spynet, x) if n > 1 else (None, None)
        feats_keyframe = self.keyframe_features(x, keyframes)

        backward_feats: list[torch.Tensor] = []
        feat_prop = x.new_zeros(b, self.num_feat, h, w)
        for i in range(n - 1, -1, -1):
            flow = flows_backward[:, i, :, :, :] if i < n - 1 else None
            feat_prop = self._maybe_checkpoint(self.checkpoint_propagation, self.backward_step, x[:, i, :, :, :],
                                               feat_prop, flow, feats_keyframe.get(i))
            backward_feats.insert(0, feat_prop)

        outputs = []
        feat_prop = torch.zeros_like(feat_prop)
        for i in range(n):
            lr_frame = x[:, i, :, :, :]
            flow = flows_forward[:, i - 1, :, :, :] if i > 0 else None
            feat_prop = self._maybe_checkpoint(self.checkpoint_propagation, self.forward_step, lr_frame,
                                               backward_feats[i], feat_prop, flow, feats_keyframe.get(i))
            outputs.append(self._maybe_checkpoint(self.checkpoint_upsampling, self.upsample, feat_prop, lr_frame))
        return torch.stack(outputs, dim=1)[..., :4 * h_input, :4 * w_input]
