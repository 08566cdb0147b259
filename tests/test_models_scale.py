"""`models.check_scale`: the options' `scale` against the registered network's factor, named before
any data is read (BasicVSR is x4: `scale: 2` used to end in a size error or a traceback)."""
from __future__ import annotations

import contextlib

import pytest
import torch

from models import NETWORKS, build_network, check_scale, upscale_factor
from vsr_accel.core.errors import ConfigError


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_every_registered_network_is_x4_on_lr_input(network):
    assert upscale_factor(network) == 4
    check_scale(4, network)
    check_scale(4, {"type": network})


def test_hr_input_keeps_the_size():
    assert upscale_factor({"type": "EDVR", "hr_in": True}) == 1
    assert upscale_factor({"type": "EDVRM", "hr_in": True}) == 1
    assert upscale_factor({"type": "BasicVSRPlusPlus", "is_low_res_input": False}) == 1
    check_scale(1, {"type": "BasicVSRPlusPlus", "is_low_res_input": False})
    with pytest.raises(ConfigError, match=r"^scale: 4, but network_g.type EDVR keeps the input size with these "
                                          r"arguments \(set scale: 1,"):
        check_scale(4, {"type": "EDVR", "hr_in": True})


@pytest.mark.parametrize("scale", [2, 3, 1, "4", None])
def test_another_scale_is_named(scale):
    with pytest.raises(ConfigError) as info:
        check_scale(scale, {"type": "BasicVSR", "num_feat": 16})
    message = str(info.value)
    assert message.startswith(f"scale: {scale!r}, but network_g.type BasicVSR upsamples x4 (set scale: 4")
    assert "\n" not in message


def test_unknown_network_is_named_by_the_registry():
    with pytest.raises(ConfigError, match=r"network_g.type: unknown network 'BasicVSRR' \(did you mean 'BasicVSR'"):
        check_scale(4, "BasicVSRR")


@pytest.mark.parametrize("spec", [{"type": "BasicVSR", "num_feat": 8, "num_block": 1},
                                  {"type": "BasicVSRPlusPlus", "mid_channels": 8, "num_blocks": 1,
                                   "is_low_res_input": False},
                                  {"type": "EDVR", "num_feat": 8, "num_reconstruct_block": 1, "num_extract_block": 1,
                                   "num_frame": 3, "center_frame_idx": 1, "hr_in": True, "with_predeblur": True}])
def test_the_factor_is_what_the_network_does(spec):
    torch.manual_seed(0)
    with pytest.warns(UserWarning) if spec["type"] != "EDVR" else contextlib.nullcontext():  # SpyNet from zero
        network = build_network(spec).eval()
    side = 16
    with torch.no_grad():
        out = network(torch.rand(1, 3, 3, side, side))
    assert out.shape[-1] == side * upscale_factor(spec)

