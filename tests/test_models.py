"""Networks: BasicSR-identical keys and numbers, small-crop SpyNet, frozen flow, registry errors."""
from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

import models
from models import build_network, is_recurrent, network_arguments, required_multiple
from models.arch_util import DCNv2Pack, flow_warp
from models.basicvsr import BasicVSR
from models.edvr import EDVR
from models.spynet import SpyNet, pyramid_levels
from tests.basicsr_ref import load
from tests.model_helpers import key_shapes, perturb
from vsr_accel.core.checkpoint import load_weights_strict, read_weights
from vsr_accel.core.errors import CheckpointError, ConfigError

# BasicSR's own modules warn about distutils and meshgrid on current torch; not our concern here.
pytestmark = [pytest.mark.filterwarnings("ignore:distutils Version classes:DeprecationWarning",
                                         "ignore:torch.meshgrid:UserWarning"),
              pytest.mark.usefixtures("single_thread")]

SMALL_BASICVSR = {"num_feat": 8, "num_block": 1}
SMALL_EDVR = {"num_feat": 8, "num_frame": 3, "deformable_groups": 2, "num_extract_block": 1,
              "num_reconstruct_block": 1}


@pytest.fixture(autouse=True)
def _quiet_spynet_warning():
    """Most tests build BasicVSR without SpyNet weights on purpose; one test checks the warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="BasicVSR: spynet_path")
        yield


def save_basicsr_checkpoint(module: nn.Module, path: Path) -> Path:
    torch.save({"params": module.state_dict()}, path)
    return path


# ---------------------------------------------------------------------------------------------
# Keys and shapes equal BasicSR's


def test_state_dict_keys_and_shapes_equal_basicsr():
    ref_vsr = load("archs.basicvsr_arch")
    ref_edvr = load("archs.edvr_arch")
    with torch.device("meta"):  # full-size networks without paying for their initialisation
        pairs = [
            (build_network({"type": "BasicVSR"}), ref_vsr.BasicVSR()),
            (build_network({"type": "BasicVSRM"}), ref_vsr.BasicVSR(num_feat=64, num_block=7)),
            (build_network({"type": "EDVR"}), ref_edvr.EDVR()),
            (build_network({"type": "EDVRM"}),
             ref_edvr.EDVR(num_feat=64, num_frame=5, deformable_groups=8, num_extract_block=5,
                           num_reconstruct_block=10, center_frame_idx=None, hr_in=False,
                           with_predeblur=False, with_tsa=True)),
            (EDVR(with_predeblur=True, hr_in=True, with_tsa=False),
             ref_edvr.EDVR(with_predeblur=True, hr_in=True, with_tsa=False)),
        ]
    for ours, ref in pairs:
        assert key_shapes(ours) == key_shapes(ref), type(ref).__name__
    # Spot-check the names users grep for in checkpoints.
    basicvsr_keys = dict(key_shapes(pairs[0][0]))
    assert basicvsr_keys["spynet.basic_module.0.basic_module.0.weight"] == (32, 8, 7, 7)
    assert basicvsr_keys["backward_trunk.main.2.0.conv1.weight"] == (64, 64, 3, 3)
    assert "backward_trunk.main.2.14.conv2.bias" in basicvsr_keys
    assert "backward_trunk.main.2.7.conv1.weight" not in dict(key_shapes(pairs[1][0]))
    assert dict(key_shapes(pairs[3][0]))["pcd_align.dcn_pack.l3.conv_offset.weight"] == (216, 64, 3, 3)


def test_constructor_arguments_equal_basicsr():
    ref_vsr = load("archs.basicvsr_arch")
    ref_edvr = load("archs.edvr_arch")

    def arguments(cls):
        return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items() if name != "self"}

    # BasicSR's arguments, in its order and with its defaults; then ours, whose defaults give BasicSR's network
    ours, theirs = arguments(BasicVSR), arguments(ref_vsr.BasicVSR)
    assert list(ours.items())[:len(theirs)] == list(theirs.items())
    assert dict(list(ours.items())[len(theirs):]) == {"upsample_feat": 64, "kaiming_init": False}  # = BasicSR's
    assert arguments(EDVR) == arguments(ref_edvr.EDVR)
    assert network_arguments("BasicVSRM") == ["num_feat", "num_block", "spynet_path", "upsample_feat", "kaiming_init"]
    assert network_arguments("EDVRM") == list(arguments(ref_edvr.EDVR))


# ---------------------------------------------------------------------------------------------
# Same numbers as BasicSR, weights going through a real BasicSR-format checkpoint file


@pytest.fixture(scope="module")
def basicvsr_pair(tmp_path_factory):
    ref = perturb(load("archs.basicvsr_arch").BasicVSR(**SMALL_BASICVSR)).eval()
    path = save_basicsr_checkpoint(ref, tmp_path_factory.mktemp("ckpt") / "basicvsr.pth")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="BasicVSR: spynet_path")
        ours = BasicVSR(**SMALL_BASICVSR).eval()
    load_weights_strict(ours, read_weights(path, param_key="params"), source=str(path))
    return ref, ours


@pytest.mark.parametrize("size", [(33, 33), (48, 40), (64, 64)])
def test_basicvsr_output_identical_to_basicsr(basicvsr_pair, size):
    ref, ours = basicvsr_pair
    x = torch.rand(1, 2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ref(x)
        actual = ours(x)
    assert actual.shape == (1, 2, 3, 4 * size[0], 4 * size[1])
    assert torch.equal(actual, expected)


def test_basicsr_spynet_fails_at_32px_where_ours_works(basicvsr_pair):
    """Why we differ from BasicSR: its 6-level pyramid of a 32 px crop starts from a 0x0 flow."""
    ref, ours = basicvsr_pair
    x = torch.rand(1, 2, 3, 32, 32)
    with torch.no_grad(), pytest.raises(RuntimeError):
        ref(x)
    with torch.no_grad():
        assert ours(x).shape == (1, 2, 3, 128, 128)


EDVR_VARIANTS = {
    "tsa": {},
    "no_tsa": {"with_tsa": False},
    "predeblur": {"with_predeblur": True, "center_frame_idx": 0},
}


@pytest.mark.parametrize(("variant", "size"), [("tsa", 32), ("tsa", 48), ("no_tsa", 32), ("predeblur", 32)])
def test_edvr_output_identical_to_basicsr(tmp_path, variant, size):
    kwargs = {**SMALL_EDVR, **EDVR_VARIANTS[variant]}
    ref = perturb(load("archs.edvr_arch").EDVR(**kwargs)).eval()
    path = save_basicsr_checkpoint(ref, tmp_path / "edvr.pth")
    ours = EDVR(**kwargs).eval()
    load_weights_strict(ours, read_weights(path, param_key="params"), source=str(path))
    x = torch.rand(1, 3, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = ref(x)
        actual = ours(x)
    assert actual.shape == (1, 3, 4 * size, 4 * size)
    assert torch.equal(actual, expected)


def test_edvr_hr_in_keeps_input_size():
    net = EDVR(**SMALL_EDVR, hr_in=True, with_predeblur=True).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 3, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_edvr_rejects_wrong_frame_count_and_size():
    net = EDVR(**SMALL_EDVR)
    with pytest.raises(ValueError, match="num_frame=3"):
        net(torch.rand(1, 5, 3, 32, 32))
    with pytest.raises(ValueError, match="multiples of 4"):
        net(torch.rand(1, 3, 3, 30, 32))


def test_fresh_dcn_pack_is_a_half_masked_plain_convolution():
    """Zero-initialised offsets (as BasicSR): a new pack samples the regular grid with mask 0.5."""
    pack = DCNv2Pack(8, 8, 3, padding=1, deformable_groups=2)
    with torch.no_grad():
        pack.bias.normal_()
    x, feat = torch.rand(2, 8, 12, 12), torch.rand(2, 8, 12, 12)
    expected = F.conv2d(x, pack.weight, None, padding=1) * 0.5 + pack.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(pack(x, feat), expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Small crops: any size, cost proportional to area


# 48x40 and 64x64 (t=2) shapes are checked by the comparison with BasicSR above.
@pytest.mark.parametrize(("h", "w", "t"), [(16, 16, 7), (32, 32, 5), (20, 36, 2), (32, 32, 1)])
def test_basicvsr_forward_shapes(h, w, t):
    net = BasicVSR(**SMALL_BASICVSR).eval()
    with torch.no_grad():
        out = net(torch.rand(1, t, 3, h, w))
    assert out.shape == (1, t, 3, 4 * h, 4 * w)
    assert torch.isfinite(out).all()


def test_flow_warp_survives_non_finite_flow_and_keeps_finite_positions():
    """A diverging run's NaN/inf flow must reach the trainer's NaN check, not crash grid_sample."""
    torch.manual_seed(0)
    x = torch.rand(1, 2, 6, 7, requires_grad=True)
    flow = torch.randn(1, 6, 7, 2)
    expected = flow_warp(x, flow)
    bad = flow.clone()
    bad[0, 1, 2] = float("nan")
    bad[0, 3, 4, 0] = float("inf")
    bad[0, 4, 5, 1] = float("-inf")
    warped = flow_warp(x, bad.requires_grad_())
    warped.sum().backward()
    assert torch.isfinite(warped).all() and torch.isfinite(x.grad).all()
    untouched = torch.ones(6, 7, dtype=torch.bool)
    untouched[1, 2] = untouched[3, 4] = untouched[4, 5] = False
    assert torch.equal(warped[0][:, untouched], expected[0][:, untouched])
    assert warped[0, :, 1, 2].abs().max() == 0  # far outside the frame: zero padding


def test_pyramid_levels_keep_basicsr_from_33px():
    assert [pyramid_levels(s, s) for s in (2, 3, 16, 17, 32, 33, 64, 500)] == [1, 2, 4, 5, 5, 6, 6, 6]
    assert pyramid_levels(32, 200) == 5  # the shorter side decides


def spynet_flops(net: SpyNet, size: int) -> int:
    x = torch.rand(1, 3, size, size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x, x)
    return counter.get_total_flops()


def test_spynet_cost_is_proportional_to_crop_area():
    net = SpyNet()
    flops = {size: spynet_flops(net, size) for size in (16, 32, 48, 64)}
    assert 0.2 <= flops[32] / flops[64] <= 0.3
    assert 0.2 <= flops[16] / flops[32] <= 0.3
    assert flops[48] == flops[64]  # from 33 px on: BasicSR's path, padding to a multiple of 32


def test_small_inputs_skip_the_coarsest_spynet_module():
    """Module k keeps its scale (1/2**(5-k) of the frame): a 32 px input never uses module 0."""
    net = perturb(SpyNet(), seed=3).eval()
    small, large = torch.rand(2, 1, 3, 32, 32), torch.rand(2, 1, 3, 33, 33)
    with torch.no_grad():
        before = [net(pair[0], pair[1]) for pair in (small, large)]
        net.basic_module[0].basic_module[0].weight.mul_(3.0)
        after = [net(pair[0], pair[1]) for pair in (small, large)]
    assert torch.equal(before[0], after[0])
    assert not torch.equal(before[1], after[1])


# ---------------------------------------------------------------------------------------------
# Frozen SpyNet: flows without autograd, same output


def test_frozen_spynet_computes_flow_without_autograd():
    torch.manual_seed(0)
    net = perturb(BasicVSR(**SMALL_BASICVSR), seed=4)
    flow_requires_grad: list[bool] = []
    grad_mode_in_spynet: list[bool] = []
    net.spynet.register_forward_hook(lambda module, args, out: flow_requires_grad.append(out.requires_grad))
    net.spynet.register_forward_pre_hook(lambda module, args: grad_mode_in_spynet.append(torch.is_grad_enabled()))
    x = torch.rand(1, 3, 3, 24, 24)

    trainable = net(x)
    net.spynet.requires_grad_(False)
    frozen = net(x)
    frozen.mean().backward()

    assert flow_requires_grad == [True, True, False, False]
    # Frozen weights alone already keep autograd from recording; no_grad also skips its bookkeeping.
    assert grad_mode_in_spynet == [True, True, False, False]
    assert torch.equal(trainable, frozen)
    assert frozen.requires_grad
    assert net.forward_trunk.main[0].weight.grad is not None
    assert all(p.grad is None for p in net.spynet.parameters())


def test_frozen_spynet_keeps_input_gradients():
    net = BasicVSR(**SMALL_BASICVSR)
    net.spynet.requires_grad_(False)
    seen: list[bool] = []
    net.spynet.register_forward_hook(lambda module, args, out: seen.append(out.requires_grad))
    x = torch.rand(1, 2, 3, 16, 16, requires_grad=True)
    net(x).sum().backward()
    assert seen == [True, True]  # the flow path still carries d(output)/d(input)
    assert x.grad is not None


# ---------------------------------------------------------------------------------------------
# SpyNet weights


def test_spynet_path_none_warns_random_init():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        BasicVSR(**SMALL_BASICVSR)
    assert any("SpyNet starts at zero flow" in str(w.message) for w in caught)


def test_spynet_path_missing_raises_checkpoint_error(tmp_path):
    missing = tmp_path / "no_such_spynet.pth"
    with pytest.raises(CheckpointError, match="no_such_spynet.pth"):
        build_network({"type": "BasicVSRM", "num_block": 1, "spynet_path": str(missing)})
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pth"):
        BasicVSR(**SMALL_BASICVSR, spynet_path=str(garbage))


def test_spynet_weights_load_from_basicsr_file(tmp_path):
    ref = perturb(load("archs.spynet_arch").SpyNet(), seed=5)
    # BasicSR's pretrained SpyNet file holds the convolutions only (no mean/std buffers).
    weights = {k: v for k, v in ref.state_dict().items() if k.startswith("basic_module.")}
    path = tmp_path / "spynet.pth"
    torch.save({"params": weights}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # given weights: no random-init warning
        net = BasicVSR(**SMALL_BASICVSR, spynet_path=str(path))
    for key, value in weights.items():
        assert torch.equal(net.spynet.state_dict()[key], value)
    x, y = torch.rand(1, 3, 40, 36), torch.rand(1, 3, 40, 36)
    with torch.no_grad():
        assert torch.equal(net.spynet(x, y), ref(x, y))


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    path = save_basicsr_checkpoint(EDVR(**SMALL_EDVR), tmp_path / "edvr.pth")
    with pytest.raises(CheckpointError, match="edvr.pth.*BasicVSR"):
        load_weights_strict(BasicVSR(**SMALL_BASICVSR), read_weights(path), source=str(path))


# ---------------------------------------------------------------------------------------------
# Registry


def test_presets_apply_defaults_and_accept_overrides():
    vsr_m = build_network({"type": "BasicVSRM", "num_block": 1})
    assert isinstance(vsr_m, BasicVSR) and vsr_m.num_feat == 64 and len(vsr_m.forward_trunk.main[2]) == 1
    edvr_m = build_network({"type": "EDVRM", "num_extract_block": 1, "num_reconstruct_block": 1})
    assert isinstance(edvr_m, EDVR) and edvr_m.center_frame_idx == 2 and edvr_m.num_frame == 5
    assert len(edvr_m.reconstruction) == 1


def test_unknown_network_type_suggests_closest():
    with pytest.raises(ConfigError, match=r"network_g\.type: unknown network 'BasicVSR-M' \(did you mean 'BasicVSRM'\?"):
        build_network({"type": "BasicVSR-M"})
    with pytest.raises(ConfigError, match=r"did you mean 'EDVRM'\?.*known: BasicVSR, BasicVSRM, BasicVSRPlusPlus, EDVR, EDVRM, IconVSR"):
        network_arguments("edvrm")
    with pytest.raises(ConfigError, match=r"network_g\.type: missing"):
        build_network({"num_feat": 8})


def test_unknown_argument_suggests_closest():
    with pytest.raises(ConfigError, match=r"network_g\.num_blocks: unknown argument for BasicVSR "
                                          r"\(did you mean 'num_block'\?"):
        build_network({"type": "BasicVSR", "num_blocks": 2})
    with pytest.raises(ConfigError, match=r"network_d\.deformable_group: .*did you mean 'deformable_groups'"):
        build_network({"type": "EDVRM", "deformable_group": 8}, key="network_d")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"num_feat": "64"}, r"network_g\.num_feat: expected an integer, got '64'"),
    ({"num_feat": True}, r"network_g\.num_feat: expected an integer"),
    ({"with_tsa": "yes"}, r"network_g\.with_tsa: expected true/false"),
    ({"num_feat": 12, "deformable_groups": 8}, r"network_g\.deformable_groups: must be >= 1 and divide num_feat"),
    ({"num_frame": 5, "center_frame_idx": 5}, r"network_g\.center_frame_idx: must be in \[0, num_frame=5\)"),
])
def test_bad_argument_values_raise_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        build_network({"type": "EDVR", "num_extract_block": 1, "num_reconstruct_block": 1, **kwargs})


def test_spynet_path_type_is_checked():
    with pytest.raises(ConfigError, match=r"network_g\.spynet_path: expected a string or a path or null"):
        build_network({"type": "BasicVSR", "spynet_path": 3})


def test_is_recurrent_and_required_multiple():
    vsr = BasicVSR(**SMALL_BASICVSR)
    assert is_recurrent(vsr) is True
    assert is_recurrent(nn.DataParallel(vsr)) is True
    assert is_recurrent(EDVR(**SMALL_EDVR)) is False
    with pytest.raises(TypeError):
        is_recurrent(nn.Conv2d(3, 3, 1))
    assert required_multiple("BasicVSR") == required_multiple("BasicVSRM") == 1
    assert required_multiple("EDVR") == required_multiple("EDVRM") == 4
    assert required_multiple({"type": "EDVR", "hr_in": True}) == 16
    with pytest.raises(ConfigError, match="unknown network"):
        required_multiple("RealBasicVSR")


def test_registry_is_an_explicit_dict():
    assert sorted(models.NETWORKS) == ["BasicVSR", "BasicVSRM", "BasicVSRPlusPlus", "EDVR", "EDVRM", "IconVSR"]


def test_untrained_spynet_starts_at_zero_flow_and_learns():
    """Without pretrained weights the flow is exactly zero (identity warps) until trained."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = build_network({"type": "BasicVSR", "num_feat": 4, "num_block": 1})
    x = torch.rand(1, 3, 3, 32, 32)
    forward, backward = net.get_flow(x)
    assert torch.count_nonzero(forward) == 0 and torch.count_nonzero(backward) == 0
    net(x).mean().backward()
    head = net.spynet.basic_module[-1].basic_module[-1]
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("spec, frames, runs", [
    ({"type": "BasicVSR", **SMALL_BASICVSR}, 4, [0, 1, 2, 3]),
    ({"type": "BasicVSRM", "num_feat": 8, "num_block": 1}, 4, [0, 1, 2, 3]),
    ({"type": "BasicVSRPlusPlus", "mid_channels": 8, "num_blocks": 1}, 4, [0, 1, 2, 3]),
    ({"type": "IconVSR", "num_feat": 8, "num_block": 1, "keyframe_stride": 2}, 4, [0, 1, 2, 3]),
    ({"type": "EDVR", **SMALL_EDVR}, 3, [0]),
    ({"type": "EDVRM", **SMALL_EDVR}, 3, [0]),
])
def test_output_layer_runs_once_per_output_frame_in_frame_order(spec, frames, runs):
    """infer.py's progress counts the runs of `models.output_layer` as finished frames: each
    recurrent network runs it once per frame of its last pass, in frame order (each run's output is
    that frame's residual); a sliding-window network once per call (its one output frame)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = build_network(spec).eval()
    seen: list[torch.Tensor] = []
    handle = models.output_layer(net).register_forward_hook(lambda _m, _i, out: seen.append(out.clone()))
    x = torch.rand(1, frames, 3, 16, 16)
    with torch.no_grad():
        out = net(x)
    handle.remove()
    assert len(seen) == len(runs)
    if models.is_recurrent(net):  # run i made frame i: output i is run i's residual over frame i's bilinear x4
        for i, residual in zip(runs, seen):
            base = F.interpolate(x[:, i], scale_factor=4, mode="bilinear", align_corners=False)
            torch.testing.assert_close(residual + base, out[:, i])
    assert models.output_layer(nn.Conv2d(3, 3, 1)) is None
