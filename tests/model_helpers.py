"""What the model tests share: parameter noise (so zero-initialised layers matter in a parity
check) and a state dict's keys with their shapes."""
from __future__ import annotations

import torch
from torch import nn


def perturb(module: nn.Module, seed: int = 0, scale: float = 0.02, offset_scale: float = 0.05) -> nn.Module:
    """Add noise to every parameter, so zero-initialised ones (biases, DCN offset convs) matter too."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            param.add_(noise * (offset_scale if "conv_offset" in name else scale))
    return module


def key_shapes(module: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(key, tuple(value.shape)) for key, value in module.state_dict().items()]
