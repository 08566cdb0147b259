"""Hardware and memory-layout facts the training step's speed switches depend on.

Shared by `train.py` (which picks its defaults from them) and `benchmarks/` (which measured those
defaults), so the step that is benchmarked is the step that trains.
"""
from __future__ import annotations

import torch


def cpu_supports_bf16() -> bool:
    """oneDNN runs bf16 convolutions natively (AVX512-BF16 / AMX); elsewhere it emulates them
    slowly, so bf16 autocast would be a slowdown there."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def channels_last_clip(clip: torch.Tensor) -> torch.Tensor:
    """(b, t, c, h, w) stored so that every frame clip[:, i] is NHWC, like a channels_last model's
    features: each trunk's first convolution then needs no layout conversion."""
    return clip.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
