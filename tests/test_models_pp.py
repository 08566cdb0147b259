"""BasicVSR++ and IconVSR: BasicSR-identical keys and numbers, MMagic keys, small crops, mixed
precision, activation checkpointing, their recipes' plans and long-video inference."""
from __future__ import annotations

import copy
import inspect
import json
import warnings
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import pytest
import torch
from torch import nn

import infer
import models
import train
from models import build_network, is_recurrent, network_arguments, required_multiple
from models.basicvsrpp import BasicVSRPlusPlus
from models.convert import convert_mmagic_basicvsrpp, is_mmagic_state, to_basicsr_keys
from models.edvr import EDVR
from vsr_accel.train.step import flow_parameter_names
from models.iconvsr import IconVSR, keyframe_indices, reflect_index, temporal_padding_order
from tests.basicsr_ref import load
from tests.model_helpers import key_shapes, mmagic_key, perturb
from vsr_accel.core.checkpoint import load_weights_strict, read_weights
from vsr_accel.core.errors import CheckpointError, ConfigError

# BasicSR's modules warn about distutils, meshgrid and missing CUDA; our constructors about
# missing pretrained SpyNet / EDVR weights (on purpose in these tests).
pytestmark = [pytest.mark.filterwarnings(
    "ignore:distutils Version classes:DeprecationWarning", "ignore:torch.meshgrid:UserWarning",
    "ignore:.*(spynet|edvr)_path is not set:UserWarning"), pytest.mark.usefixtures("single_thread")]

REPO = Path(__file__).resolve().parents[1]
TINY_PP = {"mid_channels": 8, "num_blocks": 1}
TINY_ICON = {"num_feat": 8, "num_block": 1, "keyframe_stride": 2}
TOLERANCE = 1e-5  # the bound; the comparisons below have measured exactly 0 on this CPU


def reference_basicvsrpp(**kwargs) -> nn.Module:
    """BasicSR's BasicVSRPlusPlus *with* its alignment: BasicSR builds `deform_align` only when
    CUDA is available (a leftover of its compiled DCN); the module itself runs torchvision's
    deform_conv2d, which works on CPU."""
    with mock.patch("torch.cuda.is_available", return_value=True):
        return load("archs.basicvsrpp_arch").BasicVSRPlusPlus(**kwargs)


def reference_basicvsrpp_forward(ref: nn.Module, lqs: torch.Tensor) -> torch.Tensor:
    """BasicSR's BasicVSRPlusPlus.forward minus its `>= 64 px` assertion, driving BasicSR's own
    feat_extract / compute_flow / propagate / upsample (its SpyNet runs from 33 px)."""
    n, t, c, h, w = lqs.size()
    ref.cpu_cache = False
    ref.check_if_mirror_extended(lqs)
    spatial = ref.feat_extract(lqs.view(-1, c, h, w))
    spatial = spatial.view(n, t, -1, *spatial.shape[-2:])
    feats = {"spatial": [spatial[:, i] for i in range(t)]}
    flows_forward, flows_backward = ref.compute_flow(lqs)
    for module in ("backward_1", "forward_1", "backward_2", "forward_2"):
        feats[module] = []
        flows = flows_backward if module.startswith("backward") else flows_forward
        feats = ref.propagate(feats, flows, module)
    return ref.upsample(lqs, feats)


def through_file(source: nn.Module, target: nn.Module, path: Path) -> nn.Module:
    """Move weights as users do: a BasicSR-format checkpoint file, read back and loaded strictly."""
    torch.save({"params": source.state_dict()}, path)
    load_weights_strict(target, read_weights(path, param_key="params"), source=str(path))
    return target


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return float((a - b).abs().max())


def clip(t: int, size: int, seed: int) -> torch.Tensor:
    return torch.rand(1, t, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------
# Keys, shapes and constructor arguments equal BasicSR's


def test_state_dict_keys_and_shapes_equal_basicsr():
    ref_vsr = load("archs.basicvsr_arch")
    with torch.device("meta"):
        pairs = [
            (build_network({"type": "BasicVSRPlusPlus"}), reference_basicvsrpp()),
            (BasicVSRPlusPlus(is_low_res_input=False), reference_basicvsrpp(is_low_res_input=False)),
            (build_network({"type": "IconVSR"}), ref_vsr.IconVSR()),
            (IconVSR(num_block=30, temporal_padding=3), ref_vsr.IconVSR(num_block=30, temporal_padding=3)),
        ]
    for ours, ref in pairs:
        assert key_shapes(ours) == key_shapes(ref), type(ref).__name__
    pp_keys = dict(key_shapes(pairs[0][0]))
    assert pp_keys["deform_align.forward_2.conv_offset.6.weight"] == (27 * 16, 64, 3, 3)
    assert pp_keys["deform_align.backward_1.weight"] == (64, 128, 3, 3)
    assert pp_keys["backbone.forward_2.main.0.weight"] == (64, 5 * 64, 3, 3)
    assert "backbone.backward_1.main.2.6.conv2.bias" in pp_keys
    icon_keys = dict(key_shapes(pairs[3][0]))
    assert icon_keys["edvr.fusion.feat_fusion.weight"] == (64, 7 * 64, 1, 1)  # 2 * 3 + 1 frames
    assert icon_keys["edvr.pcd_align.dcn_pack.l1.conv_offset.weight"] == (8 * 27, 64, 3, 3)


def test_constructor_arguments_equal_basicsr():
    def arguments(cls):
        return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items() if name != "self"}

    assert arguments(BasicVSRPlusPlus) == arguments(load("archs.basicvsrpp_arch").BasicVSRPlusPlus)
    assert arguments(IconVSR) == arguments(load("archs.basicvsr_arch").IconVSR)
    assert network_arguments("IconVSR") == ["num_feat", "num_block", "keyframe_stride", "temporal_padding",
                                            "spynet_path", "edvr_path"]


# ---------------------------------------------------------------------------------------------
# Same numbers as BasicSR, in both loading directions, through real checkpoint files

# 48 px runs by default; 64 px (where BasicSR's own forward runs unmodified) is marked slow:
# SpyNet's 6-level pyramid at 64 px dominates these tiny networks' cost.
SIZES = [48, pytest.param(64, marks=pytest.mark.slow)]


@pytest.mark.parametrize("direction", ["basicsr_to_ours", "ours_to_basicsr"])
@pytest.mark.parametrize("size", SIZES)
def test_basicvsrpp_output_matches_basicsr(tmp_path, size, direction):
    if direction == "basicsr_to_ours":
        ref = perturb(reference_basicvsrpp(**TINY_PP), seed=1)
        ours = through_file(ref, BasicVSRPlusPlus(**TINY_PP), tmp_path / "basicvsrpp.pth")
    else:
        ours = perturb(BasicVSRPlusPlus(**TINY_PP), seed=2)
        ref = through_file(ours, reference_basicvsrpp(**TINY_PP), tmp_path / "basicvsrpp.pth")
    x = clip(3, size, seed=3)  # 3 frames: the third one exercises the second-order terms
    with torch.no_grad():
        expected = reference_basicvsrpp_forward(ref.eval(), x) if size < 64 else ref.eval()(x)
        actual = ours.eval()(x)
        if size == 64:  # where BasicSR's forward runs, the 48 px harness reproduces it exactly
            assert torch.equal(reference_basicvsrpp_forward(ref, x), expected)
    assert actual.shape == (1, 3, 3, 4 * size, 4 * size)
    assert max_abs_diff(actual, expected) <= TOLERANCE


@pytest.mark.parametrize("direction", ["basicsr_to_ours", "ours_to_basicsr"])
@pytest.mark.parametrize("size", SIZES)
def test_iconvsr_output_matches_basicsr(tmp_path, size, direction):
    ref_cls = load("archs.basicvsr_arch").IconVSR
    if direction == "basicsr_to_ours":
        ref = perturb(ref_cls(**TINY_ICON), seed=4)
        ours = through_file(ref, IconVSR(**TINY_ICON), tmp_path / "iconvsr.pth")
    else:
        ours = perturb(IconVSR(**TINY_ICON), seed=5)
        ref = through_file(ours, ref_cls(**TINY_ICON), tmp_path / "iconvsr.pth")
    x = clip(5, size, seed=6)  # BasicSR's temporal padding needs >= 5 frames; keyframes 0, 2, 4
    with torch.no_grad():
        expected = ref.eval()(x)
        actual = ours.eval()(x)
    assert actual.shape == (1, 5, 3, 4 * size, 4 * size)
    assert max_abs_diff(actual, expected) <= TOLERANCE


@pytest.mark.slow
def test_iconvsr_matches_basicsr_on_sides_that_need_padding():
    """50x46 is reflect-padded to 52x48 for the PCD pyramid and cropped back, as in BasicSR."""
    ref = perturb(load("archs.basicvsr_arch").IconVSR(**TINY_ICON), seed=7).eval()
    ours = IconVSR(**TINY_ICON).eval()
    ours.load_state_dict(ref.state_dict())
    x = torch.rand(1, 5, 3, 50, 46, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        assert max_abs_diff(ours(x), ref(x)) <= TOLERANCE


def test_basicsr_refuses_small_crops_where_ours_run():
    """Why we differ: BasicSR's BasicVSR++ asserts >= 64 px (its SpyNet breaks below 33 px) and
    its IconVSR indexes past the end of clips shorter than 2 * temporal_padding + 1."""
    ref_pp = reference_basicvsrpp(**TINY_PP).eval()
    ref_icon = load("archs.basicvsr_arch").IconVSR(**TINY_ICON).eval()
    with torch.no_grad():
        with pytest.raises(AssertionError, match="at least 64"):
            ref_pp(clip(3, 32, seed=0))
        with pytest.raises(IndexError):
            ref_icon(clip(3, 36, seed=0))
        pp = BasicVSRPlusPlus(**TINY_PP).eval()
        icon = IconVSR(**TINY_ICON).eval()
        for t, size in [(3, 32), (2, 16), (1, 12)]:
            for net in (pp, icon):
                out = net(clip(t, size, seed=t))
                assert out.shape == (1, t, 3, 4 * size, 4 * size) and torch.isfinite(out).all()


def test_is_low_res_input_false_keeps_the_size_and_needs_multiples_of_4():
    net = BasicVSRPlusPlus(**TINY_PP, is_low_res_input=False).eval()
    with torch.no_grad():
        assert net(clip(3, 32, seed=0)).shape == (1, 3, 3, 32, 32)
    with pytest.raises(ValueError, match="multiples of 4"):
        net(torch.rand(1, 2, 3, 30, 32))
    assert required_multiple({"type": "BasicVSRPlusPlus", "is_low_res_input": False}) == 4


def test_mirrored_clip_runs_spynet_once_with_the_same_result():
    net = perturb(BasicVSRPlusPlus(**TINY_PP), seed=9).eval()
    half = clip(2, 16, seed=10)
    mirrored = torch.cat([half, half.flip(1)], dim=1)  # frames 0 1 1 0
    calls: list[int] = []
    net.spynet.register_forward_hook(lambda module, args, out: calls.append(args[0].size(0)))
    with torch.no_grad():
        fast = net(mirrored)
        with mock.patch.object(BasicVSRPlusPlus, "is_mirrored", staticmethod(lambda lqs: False)):
            full = net(mirrored)
        net(torch.cat([half, half], dim=1))  # 0 1 0 1: not mirrored
    assert calls == [3, 3, 3, 3, 3]  # once for the mirrored clip, twice for each other run
    torch.testing.assert_close(fast, full, rtol=0, atol=1e-6)


def test_feature_offloading_path_gives_the_same_output():
    """`cpu_cache_length` only offloads from an accelerator; forced on here, the CPU run takes the
    same per-frame path (a no-op copy to the CPU) and must agree with the batched one."""
    net = perturb(BasicVSRPlusPlus(**TINY_PP), seed=22).eval()
    x = clip(3, 12, seed=23)
    with torch.no_grad():
        batched = net(x)
        with mock.patch.object(BasicVSRPlusPlus, "offloads", lambda self, lqs: True):
            offloaded = net(x)
    torch.testing.assert_close(offloaded, batched, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# MMagic checkpoints


def test_mmagic_keyed_checkpoint_loads_strictly_and_gives_identical_outputs(tmp_path):
    ours = perturb(BasicVSRPlusPlus(**TINY_PP), seed=11).eval()
    mmagic_state = {mmagic_key(key): value.clone() for key, value in ours.state_dict().items()}
    mmagic_state["step_counter"] = torch.tensor([600000.0])  # the restorer's fix_iter counter
    # spot checks against names read in MMagic's source and published files
    assert mmagic_state["generator.spynet.basic_module.5.basic_module.4.conv.weight"].shape == (2, 16, 7, 7)
    assert mmagic_state["generator.upsample2.upsample_conv.weight"].shape == (64 * 4, 8, 3, 3)
    assert mmagic_state["generator.deform_align.forward_2.conv_offset.6.weight"].shape == (432, 8, 3, 3)
    assert "generator.feat_extract.main.2.4.conv2.bias" in mmagic_state
    path = tmp_path / "basicvsr_plusplus_mmagic.pth"
    torch.save({"meta": {"iter": 600000, "mmedit_version": "0.x"}, "state_dict": mmagic_state}, path)

    state = read_weights(path, param_key="state_dict")
    assert is_mmagic_state(state)
    with pytest.raises(CheckpointError, match="weights do not fit BasicVSRPlusPlus"):
        load_weights_strict(BasicVSRPlusPlus(**TINY_PP), state, source=str(path))
    loaded = BasicVSRPlusPlus(**TINY_PP).eval()
    load_weights_strict(loaded, to_basicsr_keys("BasicVSRPlusPlus", state), source=str(path))
    x = clip(3, 20, seed=12)
    with torch.no_grad():
        assert torch.equal(loaded(x), ours(x))

    # a bare generator state (no prefix) and one without SpyNet's constant buffers convert too
    bare = {key[len("generator."):]: value for key, value in mmagic_state.items()
            if key.startswith("generator.") and not key.endswith(("spynet.mean", "spynet.std"))}
    converted = convert_mmagic_basicvsrpp(bare)
    assert converted.keys() == ours.state_dict().keys()
    assert all(torch.equal(converted[key], value) for key, value in ours.state_dict().items())


def test_basicsr_states_pass_through_the_converter_unchanged():
    state = BasicVSRPlusPlus(**TINY_PP).state_dict()
    assert not is_mmagic_state(state)
    assert to_basicsr_keys("BasicVSRPlusPlus", state).keys() == state.keys()
    icon_state = IconVSR(**TINY_ICON).state_dict()
    assert to_basicsr_keys("IconVSR", icon_state).keys() == icon_state.keys()


# ---------------------------------------------------------------------------------------------
# Mixed precision


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_forward_runs_and_stays_close_to_fp32(dtype):
    """bf16 is emulated on this CPU (no AVX512-BF16/AMX), so the clips are tiny. The offsets,
    mask and deformable convolutions must run in float32 (torchvision has no bf16 CPU kernel);
    IconVSR's keyframe extractor (EDVR's DCNv2Pack) too."""
    pp = perturb(BasicVSRPlusPlus(**TINY_PP), seed=13).eval()
    icon = perturb(IconVSR(**TINY_ICON), seed=14).eval()
    seen: list[torch.dtype] = []
    import torchvision.ops

    original = torchvision.ops.deform_conv2d

    def recording(x, offset, *args, **kwargs):
        seen.extend([x.dtype, offset.dtype])
        return original(x, offset, *args, **kwargs)

    for net, x in ((pp, clip(3, 8, seed=15)), (icon, clip(5, 8, seed=16))):
        with torch.no_grad():
            reference = net(x)
            with mock.patch("torchvision.ops.deform_conv2d", recording), torch.autocast("cpu", dtype=dtype):
                low = net(x)
        assert low.dtype == torch.float32 and torch.isfinite(low).all()
        # measured on the 2-core Xeon: bf16 4.8e-4 / 7.0e-4, fp16 5.3e-5 / 5.1e-5 (BasicVSR++ / IconVSR)
        assert max_abs_diff(low, reference) < 5e-3
    assert seen and set(seen) == {torch.float32}


# ---------------------------------------------------------------------------------------------
# Activation checkpointing


def forward_backward(model: nn.Module, lq: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    out = model(lq)
    torch.sqrt((out - 0.5) ** 2 + 1e-12).mean().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def count_calls(module: nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize(("make", "frames", "trunk", "upsampler"), [
    (lambda: BasicVSRPlusPlus(**TINY_PP), 3, lambda m: m.backbone["forward_2"], lambda m: m.upconv2),
    (lambda: IconVSR(**TINY_ICON), 3, lambda m: m.forward_trunk, lambda m: m.upconv2),  # keyframes 0, 2
])
def test_checkpointing_gives_identical_outputs_and_gradients(make, frames, trunk, upsampler):
    torch.manual_seed(0)
    plain = perturb(make(), seed=17).train()
    ckpt = copy.deepcopy(plain)
    keys = list(ckpt.state_dict())
    ckpt.set_activation_checkpointing(True)
    assert list(ckpt.state_dict()) == keys
    lq = clip(frames, 12, seed=18)
    trunk_calls, upsample_calls = count_calls(trunk(ckpt)), count_calls(upsampler(ckpt))

    out_plain, grads_plain = forward_backward(plain, lq)
    out_ckpt, grads_ckpt = forward_backward(ckpt, lq)

    torch.testing.assert_close(out_ckpt, out_plain, rtol=0, atol=0)
    assert grads_ckpt.keys() == grads_plain.keys()
    assert any(name.startswith("spynet.") for name in grads_plain)
    assert any("conv_offset" in name and grad.abs().sum() > 0 for name, grad in grads_plain.items())
    for name, grad in grads_plain.items():
        torch.testing.assert_close(grads_ckpt[name], grad, rtol=1e-6, atol=1e-9, msg=name)
    # every frame's step and upsampler ran once in forward and once more in backward
    assert trunk_calls[0] == 2 * frames and upsample_calls[0] == 2 * frames

    ckpt.eval()
    with torch.no_grad():  # inference is unaffected
        torch.testing.assert_close(ckpt(lq), out_plain, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# IconVSR specifics: temporal padding, keyframes, the flow part, EDVR weights


def basicsr_padding_order(num_frames: int, padding: int) -> list[int]:
    """BasicSR's get_keyframe_feature, as index lists (it supports padding 2 and 3 only)."""
    before, after = {2: ([4, 3], [-4, -5]), 3: ([6, 5, 4], [-5, -6, -7])}[padding]
    return [i % num_frames for i in before] + list(range(num_frames)) + [i % num_frames for i in after]


def test_temporal_padding_equals_basicsr_and_folds_short_clips_into_range():
    for padding in (2, 3):
        for frames in range(2 * padding + 1, 16):
            assert temporal_padding_order(frames, padding) == basicsr_padding_order(frames, padding)
    for frames in range(1, 7):
        assert all(0 <= i < frames for i in temporal_padding_order(frames, 3))
    assert temporal_padding_order(3, 2) == [0, 1, 0, 1, 2, 1, 2]
    assert [reflect_index(i, 4) for i in (-2, -1, 0, 3, 4, 5, 6, 7)] == [2, 1, 0, 3, 2, 1, 0, 1]
    assert keyframe_indices(14, 5) == [0, 5, 10, 13] and keyframe_indices(10, 5) == [0, 5, 9]
    assert keyframe_indices(1, 5) == [0]


def test_flow_part_names_fit_train_py_and_basicsr():
    """The trainer's fix_flow (vsr_accel.train.step.flow_parameter_names) freezes exactly what BasicSR's
    VideoRecurrentModel freezes: names containing 'spynet' or 'edvr'."""
    net = IconVSR(**TINY_ICON)
    ours = {n for n, _ in net.named_parameters() if n.startswith(("spynet.", "edvr."))}
    basicsr = {n for n, _ in net.named_parameters() if "spynet" in n or "edvr" in n}
    assert ours == basicsr
    count = sum(1 for _ in net.spynet.parameters()) + sum(1 for _ in net.edvr.parameters())
    assert len(ours) == count
    assert flow_parameter_names(net) == [n for n, _ in net.named_parameters() if n in ours]
    pp = BasicVSRPlusPlus(**TINY_PP)
    assert set(flow_parameter_names(pp)) == {n for n, _ in pp.named_parameters() if n.startswith("spynet.")}


def test_frozen_flow_part_runs_without_autograd_and_keeps_the_output():
    net = perturb(IconVSR(**TINY_ICON), seed=19)
    x = clip(5, 12, seed=20)
    trainable = net(x)
    grad_modes: list[bool] = []
    net.edvr.register_forward_pre_hook(lambda module, args: grad_modes.append(torch.is_grad_enabled()))
    net.spynet.register_forward_pre_hook(lambda module, args: grad_modes.append(torch.is_grad_enabled()))
    for name, param in net.named_parameters():
        if name.startswith(("spynet.", "edvr.")):
            param.requires_grad_(False)
    frozen = net(x)
    frozen.mean().backward()
    assert grad_modes and not any(grad_modes)
    assert torch.equal(trainable, frozen)
    assert net.forward_trunk.main[0].weight.grad is not None
    assert all(p.grad is None for p in net.edvr.parameters())


def test_edvr_path_loads_the_extractor_or_a_full_edvr_and_names_bad_files(tmp_path):
    edvr = perturb(EDVR(num_feat=8, num_frame=5, deformable_groups=8, num_extract_block=5, num_reconstruct_block=1))
    full = tmp_path / "edvr_full.pth"
    torch.save({"params": edvr.state_dict()}, full)
    net = IconVSR(**TINY_ICON, edvr_path=str(full))
    for key, value in net.edvr.state_dict().items():
        assert torch.equal(value, edvr.state_dict()[key]), key
    extractor_only = tmp_path / "edvr_for_iconvsr.pth"
    torch.save({"params": net.edvr.state_dict()}, extractor_only)
    assert torch.equal(IconVSR(**TINY_ICON, edvr_path=str(extractor_only)).edvr.conv_first.weight,
                       edvr.conv_first.weight)

    wrong = tmp_path / "edvr_3_frames.pth"
    torch.save({"params": EDVR(num_feat=8, num_frame=3, deformable_groups=8).state_dict()}, wrong)
    with pytest.raises(CheckpointError, match="edvr_3_frames.pth"):
        IconVSR(**TINY_ICON, edvr_path=str(wrong))
    with pytest.raises(CheckpointError, match="no_such_edvr.pth"):
        build_network({"type": "IconVSR", **TINY_ICON, "edvr_path": str(tmp_path / "no_such_edvr.pth")})


# ---------------------------------------------------------------------------------------------
# Registry


def test_registry_builds_both_with_basicsr_names_and_reports_bad_values():
    assert {"BasicVSRPlusPlus", "IconVSR"} <= set(models.NETWORKS)
    pp = build_network({"type": "BasicVSRPlusPlus", **TINY_PP})
    icon = build_network({"type": "IconVSR", **TINY_ICON})
    assert isinstance(pp, BasicVSRPlusPlus) and isinstance(icon, IconVSR)
    assert is_recurrent(pp) and is_recurrent(icon)
    assert required_multiple("BasicVSRPlusPlus") == required_multiple("IconVSR") == 1
    assert required_multiple({"type": "EDVR", "hr_in": True}) == 16  # unchanged
    with pytest.raises(ConfigError, match=r"network_g\.mid_channels: must be a positive multiple of 8"):
        build_network({"type": "BasicVSRPlusPlus", "mid_channels": 12})
    with pytest.raises(ConfigError, match=r"network_g\.num_feat: must be a positive multiple of 8"):
        build_network({"type": "IconVSR", "num_feat": 20})
    with pytest.raises(ConfigError, match=r"network_g\.num_block: .*did you mean 'num_blocks'"):
        build_network({"type": "BasicVSRPlusPlus", "num_block": 7})
    with pytest.raises(ConfigError, match=r"network_g\.temporal_padding: must be >= 1"):
        build_network({"type": "IconVSR", "temporal_padding": 0})


def test_spynet_path_none_warns_for_both():
    for spec, pattern in (({"type": "BasicVSRPlusPlus", **TINY_PP}, "BasicVSRPlusPlus: spynet_path is not set"),
                          ({"type": "IconVSR", **TINY_ICON}, "IconVSR: edvr_path is not set")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            build_network(spec)
        assert any(pattern in str(w.message) for w in caught), pattern


# ---------------------------------------------------------------------------------------------
# Recipes: every new options file prints its plan

RECIPES = {
    # file: (devices the recipe is written for, [(LR crop, frames)], global batch, peak LR, iterations)
    "basicvsrpp_reds_baseline.yml": (8, [(64, 30)], 8, 1e-4, 600_000),
    "basicvsrpp_reds_multigrid.yml": (8, [(c, f) for c in (32, 64) for f in (15, 22, 30)], 32, 4e-4, 150_000),
    "basicvsrpp_vimeo_baseline.yml": (4, [(64, 14)], 8, 1e-4, 300_000),
    "basicvsrpp_vimeo_multigrid.yml": (8, [(c, f) for c in (32, 64) for f in (6, 10, 14)], 32, 4e-4, 75_000),
    "iconvsr_reds_baseline.yml": (2, [(64, 15)], 8, 2e-4, 300_000),
    "iconvsr_reds_multigrid.yml": (8, [(c, f) for c in (32, 64) for f in (7, 11, 15)], 32, 8e-4, 75_000),
    "iconvsr_vimeo_baseline.yml": (2, [(64, 14)], 8, 2e-4, 300_000),
    "iconvsr_vimeo_multigrid.yml": (8, [(c, f) for c in (32, 64) for f in (6, 10, 14)], 32, 8e-4, 75_000),
}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_prints_its_plan(name, capsys):
    devices, shapes, batch, lr, iters = RECIPES[name]
    path = REPO / "options" / name
    assert train.main(["-opt", str(path), "--plan", "--json", "--world-size", str(devices)]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [(s["lr_crop"], s["frames"]) for s in plan["stages"]] == shapes
    assert all(s["global_batch"] == batch and s["lr_peak"] == pytest.approx(lr) for s in plan["stages"])
    assert plan["total_iter"] == iters
    assert plan["warmup_iter"] == (5000 if len(shapes) > 1 else 0)
    assert len(plan["lr_restarts"]) == len(shapes) - 1
    assert train.main(["-opt", str(path), "--plan", "--world-size", str(devices)]) == 0
    assert "speedup bound" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# Long-video inference (infer.py's command line)


def write_frames(folder: Path, count: int, size: tuple[int, int] = (20, 24), seed: int = 0) -> Path:
    """Smooth texture drifting by 1 px per frame, as BGR PNGs (what infer.py reads)."""
    rng = np.random.default_rng(seed)
    h, w = size
    base = cv2.resize(rng.random((4, 4, 3)).astype(np.float32), (w + count, h + count), interpolation=cv2.INTER_CUBIC)
    folder.mkdir(parents=True)
    for i in range(count):
        frame = np.clip(base[i:i + h, i:i + w] * 255, 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"{i:04d}.png"), frame)
    return folder


def read_frames(folder: Path) -> list[np.ndarray]:
    return [cv2.imread(str(path), cv2.IMREAD_UNCHANGED) for path in sorted(folder.glob("*.png"))]


@pytest.mark.parametrize(("network", "spec"), [("BasicVSRPlusPlus", TINY_PP), ("IconVSR", TINY_ICON)])
def test_infer_runs_both_models_whole_and_chunked(tmp_path, network, spec):
    lr_dir = write_frames(tmp_path / "lr", 5)
    net = perturb(build_network({"type": network, **spec}), seed=21).eval()
    checkpoint = tmp_path / f"{network}.pth"
    torch.save({"params": net.state_dict()}, checkpoint)
    common = ["--checkpoint", str(checkpoint), "--network", network, "--network-args",
              *(f"{k}={v}" for k, v in spec.items()), "--device", "cpu", "--no-progress",
              "--amp", "none", "--channels-last", "off"]  # fp32, as the model's own call below

    # one chunk holding the whole clip: exactly the model's own output, quantised
    assert infer.main(["--input", str(lr_dir), "--output", str(tmp_path / "whole"), "--chunk", "5",
                       "--context", "0", *common]) == 0
    frames = read_frames(lr_dir)
    lq = torch.from_numpy(np.stack(frames))[..., [2, 1, 0]].permute(0, 3, 1, 2).float().div(255)
    with torch.no_grad():
        expected = (net(lq[None])[0].clamp(0, 1) * 255).round().to(torch.uint8)
    whole = read_frames(tmp_path / "whole")
    assert len(whole) == 5
    got = torch.from_numpy(np.stack(whole))[..., [2, 1, 0]].permute(0, 3, 1, 2)
    assert torch.equal(got, expected)

    # chunks of 2 with 1 frame of context: the last chunk sees 2 frames (IconVSR's short-clip path)
    assert infer.main(["--input", str(lr_dir), "--output", str(tmp_path / "chunked"), "--chunk", "2",
                       "--context", "1", *common]) == 0
    chunked = read_frames(tmp_path / "chunked")
    assert len(chunked) == 5 and all(f.shape == (80, 96, 3) for f in chunked)
    assert np.abs(np.stack(chunked).astype(int) - np.stack(whole).astype(int)).mean() < 8


def test_mmagic_checkpoint_loads_where_models_are_loaded(tmp_path):
    """The loader hook: an MMagic-format BasicVSR++ file ({'state_dict': {'generator.' ...}})
    restores exactly like the BasicSR-format file in infer.py, and initialises train.py's model."""
    net = perturb(BasicVSRPlusPlus(**TINY_PP), seed=23).eval()
    basicsr_file, mmagic_file = tmp_path / "basicsr.pth", tmp_path / "mmagic.pth"
    torch.save({"params": net.state_dict()}, basicsr_file)
    torch.save({"meta": {}, "state_dict": {mmagic_key(k): v for k, v in net.state_dict().items()}}, mmagic_file)
    lr_dir = write_frames(tmp_path / "lr", 3)
    outputs = {}
    for name, checkpoint in (("basicsr", basicsr_file), ("mmagic", mmagic_file)):
        assert infer.main(["--input", str(lr_dir), "--output", str(tmp_path / name), "--checkpoint", str(checkpoint),
                           "--network", "BasicVSRPlusPlus", "--network-args",
                           *(f"{k}={v}" for k, v in TINY_PP.items()), "--device", "cpu", "--no-progress"]) == 0
        outputs[name] = np.stack(read_frames(tmp_path / name))
    assert np.array_equal(outputs["basicsr"], outputs["mmagic"])

    from tests.conftest import make_reds_like, tiny_options, write_options
    from vsr_accel.train.options import load_options

    data = make_reds_like(tmp_path / "reds", {"000": 6})
    options = tiny_options(data, tmp_path / "exp")
    options["network_g"] = {"type": "BasicVSRPlusPlus", **TINY_PP}
    options["path"].update(pretrain_network_g=str(mmagic_file), param_key_g=None)
    opt = load_options(write_options(tmp_path / "o.yml", options))
    model = models.load_network(opt.network_g, opt.path.pretrain_network_g, param_key=opt.path.param_key_g,
                                strict=opt.path.strict_load_g)  # what train.py loads
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("network, spec", [("BasicVSRPlusPlus", TINY_PP), ("IconVSR", TINY_ICON)])
def test_flops_are_countable_on_the_meta_device(network, spec):
    """The benchmarks count training FLOPs on the meta device (shapes only): the float32
    regions around the deformable convolutions must not need autocast there."""
    from benchmarks._common import training_flops

    small, large = (training_flops({"type": network, **spec}, 1, 3, crop) for crop in (16, 32))
    assert 3.5 < large / small < 4.5
