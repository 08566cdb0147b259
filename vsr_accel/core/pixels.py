"""The one conversion pair between 8-bit frames and the network's float32 in [0, 1].

Into the network: uint8 -> float32 `x / 255`, bit for bit numpy's `x.astype(np.float32) / 255`
(what BasicSR's `img2tensor` path computes). Out of it: float -> uint8 with BasicSR's `tensor2img`
arithmetic. Training batches, inference frames, scores and saved frames all convert here, so a
number computed on a frame never depends on which room converted it.
"""
from __future__ import annotations

import torch

_UNIT_TABLES: dict[torch.device, torch.Tensor] = {}


def _unit_table(device: torch.device) -> torch.Tensor:
    table = _UNIT_TABLES.get(device)
    if table is None:
        # correctly rounded k / 255 in float32 for every byte k (CPU true division, the values of
        # numpy's astype(float32) / 255; checked by the tests)
        host = torch.arange(256, dtype=torch.float32).div_(255.0)
        table = _UNIT_TABLES[device] = host.to(device)
    return table


def uint8_to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 `x / 255`, bit for bit what numpy's `x.astype(np.float32) / 255` gives.

    On the CPU that is `x.float() / 255` (a true division). CUDA's division by a Python scalar
    multiplies by the reciprocal instead (ATen's div_true_kernel_cuda), which differs from the
    true quotient in 126 of the 256 byte values; so elsewhere it is a lookup in a 256-entry table
    of the CPU's quotients, exact on any device."""
    if images.device.type == "cpu":
        return images.to(torch.float32).div_(255.0)
    return _unit_table(images.device)[images.to(torch.int32)]


def quantize_like_tensor2img(x: torch.Tensor) -> torch.Tensor:
    """Float in [0, 1] -> uint8, BasicSR's `tensor2img` arithmetic: clamp and scale by 255 in
    float32, round half-to-even (numpy `round`). Truncating instead (a plain uint8 cast) would
    bias every frame dark by half a level. The one quantiser of scores, saved frames and inference."""
    return (x.detach().to(torch.float32).clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
