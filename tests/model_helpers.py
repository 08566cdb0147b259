"""What the model tests share: parameter noise (so zero-initialised layers matter in a parity
check), a state dict's keys with their shapes, MMagic's names for BasicVSR++ keys, and a tiny
BasicVSR whose flow network moves."""
from __future__ import annotations

import re
import warnings

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


def mmagic_key(basicsr_key: str) -> str:
    """Our BasicSR key -> the key MMagic's published BasicVSR++ files use, written from MMagic's
    source independently of models/convert.py (the inverse of its rules):
    - `generator.`: mmagic/models/base_models/base_edit_model.py holds the net as self.generator;
    - SpyNet: SPyNetBasicModule (mmagic/models/editors/basicvsr/basicvsr_net.py) = 5 ConvModules,
      each conv at `.conv`, where BasicSR interleaves Conv2d/ReLU (conv k at index 2k);
    - upsampler: PixelShufflePack (mmagic/models/archs/upsample.py) `upsample1/2.upsample_conv`."""
    spynet = re.fullmatch(r"spynet\.basic_module\.(\d)\.basic_module\.([02468])\.(weight|bias)", basicsr_key)
    if spynet:
        level, index, kind = spynet.groups()
        return f"generator.spynet.basic_module.{level}.basic_module.{int(index) // 2}.conv.{kind}"
    upconv = re.fullmatch(r"upconv([12])\.(weight|bias)", basicsr_key)
    if upconv:
        return f"generator.upsample{upconv.group(1)}.upsample_conv.{upconv.group(2)}"
    return f"generator.{basicsr_key}"


def tiny_basicvsr_with_flow(seed: int = 0) -> nn.Module:
    """A 4-channel BasicVSR in train mode, its weights jittered so that SpyNet predicts a non-zero
    flow (then its gradients, and its LR group, matter)."""
    import models

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = models.build_network({"type": "BasicVSR", "num_feat": 4, "num_block": 1})
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.add_(torch.randn_like(param) * (0.002 if "spynet" in name else 0.02))
    return model.train()
