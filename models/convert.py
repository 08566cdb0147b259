"""State-dict key conversion for weights published by MMagic (formerly MMEditing).

Most published BasicVSR++ weights are MMagic's. Their files hold `{'meta': ..., 'state_dict': {...}}`
whose keys name the whole MMagic model (`generator.` + the network), and two parts of the network
are named differently from BasicSR's. `convert_mmagic_basicvsrpp` renames them to BasicSR's keys,
which `models.basicvsrpp.BasicVSRPlusPlus` loads with strict=True; the tensors are unchanged, and
so are the numbers (the layers compute the same functions; see tests/test_models_pp.py).

Rules, each from MMagic's source (github.com/open-mmlab/mmagic, commit 0a560bb):
1. `generator.` prefix: `mmagic/models/base_models/base_edit_model.py` builds the network as
   `self.generator`; the restorer `mmagic/models/editors/basicvsr/basicvsr.py` also registers a
   `step_counter` buffer (its fix_iter counter), which is not part of the network and is dropped,
   as is anything else outside `generator.`.
2. SpyNet convolutions: `SPyNetBasicModule` (`mmagic/models/editors/basicvsr/basicvsr_net.py`) is
   a Sequential of five mmcv `ConvModule`s, whose convolution is their `.conv` child and whose
   activation has no parameters: `spynet.basic_module.L.basic_module.M.conv.*`. BasicSR's
   `BasicModule` (`basicsr/archs/spynet_arch.py`) interleaves Conv2d and ReLU in one Sequential,
   so convolution M sits at index 2M: `spynet.basic_module.L.basic_module.<2M>.*`.
3. Upsampler: `BasicVSRPlusPlusNet` (`mmagic/models/editors/basicvsr_plusplus_net/
   basicvsr_plusplus_net.py`) uses `upsample1/2 = PixelShufflePack(...)`
   (`mmagic/models/archs/upsample.py`: a conv `upsample_conv` then pixel_shuffle(2));
   BasicSR has the same conv as `upconv1/2` followed by its `pixel_shuffle`.
4. Everything else already has BasicSR's names: `feat_extract.main.*` and `backbone.*` /
   `reconstruction.*` (MMagic's `ResidualBlocksWithInputConv.main` = BasicSR's
   `ConvResidualBlocks.main`, residual blocks `conv1`/`conv2`), `deform_align.<branch>.weight/
   bias/conv_offset.{0,2,4,6}.*` (mmcv's ModulatedDeformConv2d names), `conv_hr`, `conv_last`,
   and SpyNet's `mean`/`std` buffers (filled in with their constant values if a file lacks them).
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch

MMAGIC_PREFIX = "generator."
_SPYNET_CONV = re.compile(r"^spynet\.basic_module\.(\d+)\.basic_module\.(\d+)\.conv\.(weight|bias)$")
_UPSAMPLE_CONV = re.compile(r"^upsample([12])\.upsample_conv\.(weight|bias)$")
# SpyNet's ImageNet normalisation (constants, the same in BasicSR and MMagic).
_SPYNET_BUFFERS = {"spynet.mean": (0.485, 0.456, 0.406), "spynet.std": (0.229, 0.224, 0.225)}


def is_mmagic_state(state: Mapping[str, torch.Tensor]) -> bool:
    """True when the keys are MMagic's: the `generator.` prefix, or (for a generator state
    dict saved on its own) MMagic's SpyNet or upsampler names."""
    return any(key.startswith(MMAGIC_PREFIX) or _SPYNET_CONV.match(key) or _UPSAMPLE_CONV.match(key)
               for key in state)


def mmagic_network_key(key: str) -> str:
    """One MMagic BasicVSR++ network key (without `generator.`) -> BasicSR's (rules 2-4)."""
    spynet = _SPYNET_CONV.match(key)
    if spynet:
        level, conv, kind = spynet.groups()
        return f"spynet.basic_module.{level}.basic_module.{2 * int(conv)}.{kind}"
    upsample = _UPSAMPLE_CONV.match(key)
    if upsample:
        index, kind = upsample.groups()
        return f"upconv{index}.{kind}"
    return key


def convert_mmagic_basicvsrpp(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An MMagic BasicVSR++ `state_dict` (whole model, `generator.`-prefixed, or the generator's
    own) -> BasicSR `BasicVSRPlusPlus` keys. Keys the rules do not cover pass through unchanged,
    so a strict load then names them instead of this function guessing."""
    if any(key.startswith(MMAGIC_PREFIX) for key in state):
        state = {key[len(MMAGIC_PREFIX):]: value for key, value in state.items() if key.startswith(MMAGIC_PREFIX)}
    converted = {mmagic_network_key(key): value for key, value in state.items()}
    for key, values in _SPYNET_BUFFERS.items():
        if key not in converted:
            converted[key] = torch.tensor(values).view(1, 3, 1, 1)
    return converted


CONVERTERS = {"BasicVSRPlusPlus": convert_mmagic_basicvsrpp}
"""Network types whose MMagic checkpoints `to_basicsr_keys` can convert."""


def to_basicsr_keys(network_type: str, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The loader hook: `state` with BasicSR's keys for `network_type`. MMagic-keyed states of a
    network in `CONVERTERS` are converted; anything else comes back unchanged (a BasicSR or
    vsr-accel checkpoint, or a network we cannot convert, which the strict load then reports)."""
    converter = CONVERTERS.get(network_type)
    if converter is not None and is_mmagic_state(state):
        return converter(state)
    return dict(state)
