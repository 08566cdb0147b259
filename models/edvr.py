"""EDVR (Wang et al., CVPRW 2019): sliding-window video SR with PCD alignment and TSA fusion.

Constructor arguments and state_dict keys are BasicSR 1.4.2's (`pcd_align.*`, `fusion.*`,
`reconstruction.*`, `upconv1`, ...), so BasicSR checkpoints load with strict=True and give the
same outputs. Deformable convolution runs on torchvision (no compiled extension needed).
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from models.arch_util import DCNv2Pack, ResidualBlockNoBN, make_layer, require

# EDVR-M, BasicSR's "medium" EDVR (options/train/EDVR/train_EDVR_M_x4_SR_REDS.yml): the
# configuration the paper trains. center_frame_idx=None means the middle frame (2).
EDVR_M_DEFAULTS: dict[str, Any] = {
    "num_feat": 64,
    "num_frame": 5,
    "deformable_groups": 8,
    "num_extract_block": 5,
    "num_reconstruct_block": 10,
    "center_frame_idx": None,
    "hr_in": False,
    "with_predeblur": False,
    "with_tsa": True,
}

LEVELS = (3, 2, 1)  # PCD pyramid, coarse to fine: l3 is 1/4 size, l2 1/2, l1 full size


class PCDAlignment(nn.Module):
    """Pyramid, Cascading and Deformable alignment of a neighbour frame's features to the
    reference frame's: offsets are estimated coarse to fine (so large motion is caught at low
    resolution), then refined once more by a cascaded deformable conv at full resolution."""

    def __init__(self, num_feat: int = 64, deformable_groups: int = 8) -> None:
        super().__init__()
        self.offset_conv1 = nn.ModuleDict()
        self.offset_conv2 = nn.ModuleDict()
        self.offset_conv3 = nn.ModuleDict()
        self.dcn_pack = nn.ModuleDict()
        self.feat_conv = nn.ModuleDict()
        for i in LEVELS:
            level = f"l{i}"
            self.offset_conv1[level] = nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1)
            if i == 3:
                self.offset_conv2[level] = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            else:  # finer levels also see the upsampled offsets from the level below
                self.offset_conv2[level] = nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1)
                self.offset_conv3[level] = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.dcn_pack[level] = DCNv2Pack(num_feat, num_feat, 3, padding=1, deformable_groups=deformable_groups)
            if i < 3:
                self.feat_conv[level] = nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1)

        self.cas_offset_conv1 = nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1)
        self.cas_offset_conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.cas_dcnpack = DCNv2Pack(num_feat, num_feat, 3, padding=1, deformable_groups=deformable_groups)

        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)

    def forward(self, nbr_feat_l: list[torch.Tensor], ref_feat_l: list[torch.Tensor]) -> torch.Tensor:
        """Both lists hold (L1, L2, L3) features, each (b, c, h/2**k, w/2**k); returns (b, c, h, w)."""
        upsampled_offset: torch.Tensor | None = None
        upsampled_feat: torch.Tensor | None = None
        for i in LEVELS:
            level = f"l{i}"
            offset = self.lrelu(self.offset_conv1[level](torch.cat([nbr_feat_l[i - 1], ref_feat_l[i - 1]], dim=1)))
            if i == 3:
                offset = self.lrelu(self.offset_conv2[level](offset))
            else:
                offset = self.lrelu(self.offset_conv2[level](torch.cat([offset, upsampled_offset], dim=1)))
                offset = self.lrelu(self.offset_conv3[level](offset))

            feat = self.dcn_pack[level](nbr_feat_l[i - 1], offset)
            if i < 3:
                feat = self.feat_conv[level](torch.cat([feat, upsampled_feat], dim=1))
            if i > 1:
                feat = self.lrelu(feat)
                # Offsets are in pixels of their level: doubling the grid doubles them.
                upsampled_offset = self.upsample(offset) * 2
                upsampled_feat = self.upsample(feat)

        offset = torch.cat([feat, ref_feat_l[0]], dim=1)
        offset = self.lrelu(self.cas_offset_conv2(self.lrelu(self.cas_offset_conv1(offset))))
        return self.lrelu(self.cas_dcnpack(feat, offset))


def feature_pyramid(owner: nn.Module, feat_l1: torch.Tensor, b: int, t: int
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Level-1 features (b*t, c, h, w) -> the PCD pyramid (L1, L2, L3), each (b, t, c, h/2**k, w/2**k).

    Uses `owner`'s `conv_l2_1`, `conv_l2_2`, `conv_l3_1`, `conv_l3_2` and `lrelu`: EDVR and
    IconVSR's keyframe extractor (`models.iconvsr.EDVRFeatureExtractor`) share these BasicSR
    layer names, so one function serves both and their keys stay BasicSR's.
    """
    h, w = feat_l1.shape[-2:]
    feat_l2 = owner.lrelu(owner.conv_l2_2(owner.lrelu(owner.conv_l2_1(feat_l1))))
    feat_l3 = owner.lrelu(owner.conv_l3_2(owner.lrelu(owner.conv_l3_1(feat_l2))))
    return (feat_l1.view(b, t, -1, h, w),
            feat_l2.view(b, t, -1, h // 2, w // 2),
            feat_l3.view(b, t, -1, h // 4, w // 4))


def align_to_reference(pcd_align: PCDAlignment, pyramid: tuple[torch.Tensor, ...], center: int) -> torch.Tensor:
    """Every frame's features PCD-aligned to frame `center`'s: (b, t, c, h, w)."""
    t = pyramid[0].size(1)
    ref_feat_l = [level[:, center, :, :, :].clone() for level in pyramid]
    aligned = [pcd_align([level[:, i, :, :, :].clone() for level in pyramid], ref_feat_l) for i in range(t)]
    return torch.stack(aligned, dim=1)


class TSAFusion(nn.Module):
    """Temporal and Spatial Attention fusion of the aligned frames into one feature map.

    Temporal: each frame is weighted per pixel by its similarity to the reference frame, so
    badly aligned regions count less. Spatial: a 3-level attention pyramid modulates the fused
    features (multiplicative and additive, SFT-like).
    """

    def __init__(self, num_feat: int = 64, num_frame: int = 5, center_frame_idx: int = 2) -> None:
        super().__init__()
        self.center_frame_idx = center_frame_idx
        self.temporal_attn1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.temporal_attn2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.feat_fusion = nn.Conv2d(num_frame * num_feat, num_feat, 1, 1)

        self.max_pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.avg_pool = nn.AvgPool2d(3, stride=2, padding=1)
        self.spatial_attn1 = nn.Conv2d(num_frame * num_feat, num_feat, 1)
        self.spatial_attn2 = nn.Conv2d(num_feat * 2, num_feat, 1)
        self.spatial_attn3 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.spatial_attn4 = nn.Conv2d(num_feat, num_feat, 1)
        self.spatial_attn5 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.spatial_attn_l1 = nn.Conv2d(num_feat, num_feat, 1)
        self.spatial_attn_l2 = nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1)
        self.spatial_attn_l3 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.spatial_attn_add1 = nn.Conv2d(num_feat, num_feat, 1)
        self.spatial_attn_add2 = nn.Conv2d(num_feat, num_feat, 1)

        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)

    def temporal_weights(self, aligned_feat: torch.Tensor) -> torch.Tensor:
        """Per-pixel sigmoid(similarity to the reference), broadcast over channels: (b, t*c, h, w)."""
        b, t, c, h, w = aligned_feat.size()
        embedding_ref = self.temporal_attn1(aligned_feat[:, self.center_frame_idx, :, :, :].clone())
        embedding = self.temporal_attn2(aligned_feat.view(-1, c, h, w)).view(b, t, -1, h, w)
        correlations = [torch.sum(embedding[:, i, :, :, :] * embedding_ref, 1).unsqueeze(1) for i in range(t)]
        weights = torch.sigmoid(torch.cat(correlations, dim=1))  # (b, t, h, w)
        return weights.unsqueeze(2).expand(b, t, c, h, w).contiguous().view(b, -1, h, w)

    def forward(self, aligned_feat: torch.Tensor) -> torch.Tensor:
        """(b, t, c, h, w) aligned features -> (b, c, h, w)."""
        b, t, c, h, w = aligned_feat.size()
        aligned_feat = aligned_feat.view(b, -1, h, w) * self.temporal_weights(aligned_feat)
        feat = self.lrelu(self.feat_fusion(aligned_feat))

        attn = self.lrelu(self.spatial_attn1(aligned_feat))
        attn = self.lrelu(self.spatial_attn2(torch.cat([self.max_pool(attn), self.avg_pool(attn)], dim=1)))
        attn_level = self.lrelu(self.spatial_attn_l1(attn))
        attn_level = torch.cat([self.max_pool(attn_level), self.avg_pool(attn_level)], dim=1)
        attn_level = self.lrelu(self.spatial_attn_l2(attn_level))
        attn_level = self.upsample(self.lrelu(self.spatial_attn_l3(attn_level)))

        attn = self.lrelu(self.spatial_attn3(attn)) + attn_level
        attn = self.lrelu(self.spatial_attn4(attn))
        attn = self.spatial_attn5(self.upsample(attn))
        attn_add = self.spatial_attn_add2(self.lrelu(self.spatial_attn_add1(attn)))
        attn = torch.sigmoid(attn)
        # sigmoid starts near 0.5, so the factor 2 makes the modulation start near identity.
        return feat * attn * 2 + attn_add


class PredeblurModule(nn.Module):
    """Feature extractor with a small U-shaped deblurring stage, for blurry inputs (EDVR's
    deblurring track); with `hr_in` it also brings HR frames down to LR size by strided convs."""

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, hr_in: bool = False) -> None:
        super().__init__()
        self.hr_in = hr_in
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        if hr_in:
            self.stride_conv_hr1 = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
            self.stride_conv_hr2 = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
        self.stride_conv_l2 = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
        self.stride_conv_l3 = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
        self.resblock_l3 = ResidualBlockNoBN(num_feat=num_feat)
        self.resblock_l2_1 = ResidualBlockNoBN(num_feat=num_feat)
        self.resblock_l2_2 = ResidualBlockNoBN(num_feat=num_feat)
        self.resblock_l1 = nn.ModuleList([ResidualBlockNoBN(num_feat=num_feat) for _ in range(5)])
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat_l1 = self.lrelu(self.conv_first(x))
        if self.hr_in:
            feat_l1 = self.lrelu(self.stride_conv_hr1(feat_l1))
            feat_l1 = self.lrelu(self.stride_conv_hr2(feat_l1))
        feat_l2 = self.lrelu(self.stride_conv_l2(feat_l1))
        feat_l3 = self.lrelu(self.stride_conv_l3(feat_l2))

        feat_l3 = self.upsample(self.resblock_l3(feat_l3))
        feat_l2 = self.resblock_l2_1(feat_l2) + feat_l3
        feat_l2 = self.upsample(self.resblock_l2_2(feat_l2))
        for block in self.resblock_l1[:2]:
            feat_l1 = block(feat_l1)
        feat_l1 = feat_l1 + feat_l2
        for block in self.resblock_l1[2:]:
            feat_l1 = block(feat_l1)
        return feat_l1


class EDVR(nn.Module):
    """x4 sliding-window video SR: (b, num_frame, 3, h, w) -> (b, 3, 4h, 4w), the centre frame.

    h and w must be multiples of 4 (the PCD pyramid halves them twice), 16 with `hr_in`
    (then the output has the input's size). Arguments are BasicSR's; `center_frame_idx=None`
    means `num_frame // 2`.
    """

    recurrent: ClassVar[bool] = False

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_frame: int = 5,
        deformable_groups: int = 8,
        num_extract_block: int = 5,
        num_reconstruct_block: int = 10,
        center_frame_idx: int | None = None,
        hr_in: bool = False,
        with_predeblur: bool = False,
        with_tsa: bool = True,
    ) -> None:
        super().__init__()
        require(num_feat >= 1, "num_feat", f"must be >= 1, got {num_feat}")
        require(num_frame >= 1, "num_frame", f"must be >= 1, got {num_frame}")
        require(num_extract_block >= 0, "num_extract_block", f"must be >= 0, got {num_extract_block}")
        require(num_reconstruct_block >= 0, "num_reconstruct_block", f"must be >= 0, got {num_reconstruct_block}")
        require(deformable_groups >= 1 and num_feat % deformable_groups == 0, "deformable_groups",
                f"must be >= 1 and divide num_feat ({num_feat}), got {deformable_groups}")
        require(num_out_ch == 3, "num_out_ch", f"must be 3 (the output adds the RGB input frame), got {num_out_ch}")
        self.center_frame_idx = num_frame // 2 if center_frame_idx is None else center_frame_idx
        require(0 <= self.center_frame_idx < num_frame, "center_frame_idx",
                f"must be in [0, num_frame={num_frame}), got {center_frame_idx}")
        self.num_frame = num_frame
        self.hr_in = hr_in
        self.with_predeblur = with_predeblur
        self.with_tsa = with_tsa

        if with_predeblur:
            self.predeblur = PredeblurModule(num_feat=num_feat, hr_in=hr_in)
            self.conv_1x1 = nn.Conv2d(num_feat, num_feat, 1, 1)
        else:
            self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)

        self.feature_extraction = make_layer(ResidualBlockNoBN, num_extract_block, num_feat=num_feat)
        self.conv_l2_1 = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
        self.conv_l2_2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_l3_1 = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
        self.conv_l3_2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)

        self.pcd_align = PCDAlignment(num_feat=num_feat, deformable_groups=deformable_groups)
        if with_tsa:
            self.fusion = TSAFusion(num_feat=num_feat, num_frame=num_frame, center_frame_idx=self.center_frame_idx)
        else:
            self.fusion = nn.Conv2d(num_frame * num_feat, num_feat, 1, 1)

        self.reconstruction = make_layer(ResidualBlockNoBN, num_reconstruct_block, num_feat=num_feat)
        self.upconv1 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
        self.upconv2 = nn.Conv2d(num_feat, 64 * 4, 3, 1, 1)
        self.pixel_shuffle = nn.PixelShuffle(2)
        self.conv_hr = nn.Conv2d(64, 64, 3, 1, 1)
        self.conv_last = nn.Conv2d(64, 3, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)

    def check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 5:
            raise ValueError(f"EDVR expects (b, t, c, h, w) frames, got shape {tuple(x.shape)}")
        t, h, w = x.size(1), x.size(3), x.size(4)
        if t != self.num_frame:
            raise ValueError(f"EDVR was built for num_frame={self.num_frame} input frames, got {t}")
        multiple = 16 if self.hr_in else 4
        if h % multiple or w % multiple:
            raise ValueError(f"EDVR needs frame sides that are multiples of {multiple}, got {h}x{w}")

    def extract_pyramid(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-frame features at full, 1/2 and 1/4 size, each (b, t, c, h', w')."""
        b, t, c, h, w = x.size()
        if self.with_predeblur:
            feat_l1 = self.conv_1x1(self.predeblur(x.view(-1, c, h, w)))
        else:
            feat_l1 = self.lrelu(self.conv_first(x.view(-1, c, h, w)))
        return feature_pyramid(self, self.feature_extraction(feat_l1), b, t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        b = x.size(0)
        x_center = x[:, self.center_frame_idx, :, :, :].contiguous()
        pyramid = self.extract_pyramid(x)
        h, w = pyramid[0].shape[-2:]

        aligned_feat = align_to_reference(self.pcd_align, pyramid, self.center_frame_idx)
        if not self.with_tsa:
            aligned_feat = aligned_feat.view(b, -1, h, w)
        feat = self.fusion(aligned_feat)

        out = self.reconstruction(feat)
        out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
        out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.lrelu(self.conv_hr(out))
        out = self.conv_last(out)
        if self.hr_in:
            out += x_center
        else:
            out += F.interpolate(x_center, scale_factor=4, mode="bilinear", align_corners=False)
        return out


def edvr_m(**overrides: Any) -> EDVR:
    """EDVR-M (`EDVR_M_DEFAULTS`, BasicSR's medium EDVR), any argument overridable."""
    return EDVR(**{**EDVR_M_DEFAULTS, **overrides})
