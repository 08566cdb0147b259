"""The flow and propagation probes (vsr_accel.eval.probes) on tiny models, and the guard
(vsr_accel.train.health): train.py flagging a forced flow divergence and a dead propagation while
staying silent on a healthy run."""
from __future__ import annotations

import json

import pytest
import torch

import models
import train
from models.spynet import SpyNet
from tests.conftest import load_script, tiny_options, write_options
from vsr_accel.eval.probes import FlowStats, flow_magnitude, probe, propagation_gap
from vsr_accel.train.health import FLOW_DIVERGED, PROPAGATION_DEAD, FlowWatch

pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_basicvsr(**kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return models.build_network({"type": "BasicVSR", "num_feat": 4, "num_block": 1, **kwargs}).eval()


def push_flow_out(spynet: SpyNet, px: float = 500.0) -> SpyNet:
    """A broken flow network: every level adds `px` to both components, so every warp leaves the frame."""
    with torch.no_grad():
        for level in spynet.basic_module:
            level.basic_module[-1].bias.fill_(px)
    return spynet


def diverged_spynet_file(path) -> str:
    state = {k: v for k, v in push_flow_out(SpyNet(None)).state_dict().items() if k not in ("mean", "std")}
    torch.save({"params": state}, path)
    return str(path)


def restore_with(model):
    return lambda lq: model(lq[None])[0].clamp(0, 1)


def test_flow_magnitude_reads_the_flow_network_and_skips_models_without_one():
    model = tiny_basicvsr()
    clip = torch.rand(2, 4, 3, 20, 24)
    stats = flow_magnitude(model, clip)
    assert stats.mean_px == pytest.approx(0.0, abs=1e-6) and stats.frame_px == 20  # zero-flow heads
    push_flow_out(model.spynet, 50.0)
    stats = flow_magnitude(model, clip)
    assert stats.mean_px > 20 and stats.max_px >= stats.mean_px and stats.exceeds_frame
    edvr = models.build_network({"type": "EDVR", "num_feat": 8, "num_frame": 3, "num_extract_block": 1,
                                 "num_reconstruct_block": 1, "deformable_groups": 1})
    assert flow_magnitude(edvr, clip) is None
    assert flow_magnitude(model, clip[:, :1]) is None  # one frame: no flow


def test_flow_watch_needs_a_sustained_divergence():
    watch = FlowWatch(patience=2)
    out, inside = FlowStats(40.0, 90.0, 16), FlowStats(0.5, 3.0, 16)
    assert [watch.update(s) for s in (out, inside, out, out, None)] == [False, False, False, True, False]
    assert watch.update(out) is False  # reported once, then every 10 windows while it lasts
    assert [watch.update(out) for _ in range(10)].count(True) == 1


def test_propagation_gap_is_zero_exactly_when_the_flow_leaves_the_frame():
    model = tiny_basicvsr()
    clip = torch.rand(4, 3, 16, 20)
    with torch.no_grad():
        assert propagation_gap(restore_with(model), clip) > 1e-4
        push_flow_out(model.spynet)
        assert propagation_gap(restore_with(model), clip) == 0.0
        result = probe(model, restore_with(model), clip, torch.device("cpu"), frames=3)
    assert result.frames == 3 and result.max_abs_diff_vs_per_frame == 0.0 and result.flow_mean_px > 16


def health_options(tiny_reds, tmp_path, **health):
    opt = tiny_options(tiny_reds, tmp_path / "exp", total_iter=6, curriculum={"type": "none"}, fix_flow=100,
                       health={"flow_patience": 2, "probe_frames": 3, **health})
    opt["val"]["val_freq"] = 3
    opt["logger"]["print_freq"] = 1
    return opt


def test_trainer_flags_a_diverged_flow_and_a_dead_propagation(tiny_reds, tmp_path, capsys):
    opt = health_options(tiny_reds, tmp_path)
    opt["network_g"]["spynet_path"] = diverged_spynet_file(tmp_path / "broken_spynet.pth")
    assert train.main(["-opt", write_options(tmp_path / "o.yml", opt)]) == 0
    out = capsys.readouterr().out
    warning = next(line for line in out.splitlines() if FLOW_DIVERGED in line)
    assert "at iteration 2 " in warning and "LR crop 24" in warning  # the second window in a row
    assert "fix_flow" in warning and "flow_lr_mul" in warning and "spynet_path" in warning
    assert "warning:" in warning
    dead = [line for line in out.splitlines() if PROPAGATION_DEAD in line]
    assert len(dead) == 2 and "at iteration 3" in dead[0]  # both validations
    log = (tmp_path / "exp" / "tiny" / "train.log").read_text()
    assert FLOW_DIVERGED in log and PROPAGATION_DEAD in log and "flow " in log


def test_trainer_can_stop_on_a_diverged_flow(tiny_reds, tmp_path, capsys):
    opt = health_options(tiny_reds, tmp_path, on_failure="stop")
    opt["network_g"]["spynet_path"] = diverged_spynet_file(tmp_path / "broken_spynet.pth")
    assert train.main(["-opt", write_options(tmp_path / "o.yml", opt)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and FLOW_DIVERGED in err[0] and "iteration 2" in err[0]
    assert not list((tmp_path / "exp" / "tiny" / "models").glob("net_g_*"))  # nothing saved after it


def test_trainer_can_stop_on_a_dead_propagation(tiny_reds, tmp_path, capsys):
    # the flow is far out from the start, but the flow check waits for 100 windows: the probe decides
    opt = health_options(tiny_reds, tmp_path, on_failure="stop", flow_patience=100)
    opt["network_g"]["spynet_path"] = diverged_spynet_file(tmp_path / "broken_spynet.pth")
    assert train.main(["-opt", write_options(tmp_path / "o.yml", opt)]) == 2
    err = capsys.readouterr().err
    assert PROPAGATION_DEAD in err and "iteration 3" in err and err.count("\n") == 1


def test_a_healthy_run_is_not_flagged(tiny_reds, tmp_path, capsys):
    opt = health_options(tiny_reds, tmp_path, on_failure="stop")
    assert train.main(["-opt", write_options(tmp_path / "o.yml", opt)]) == 0
    out = capsys.readouterr().out
    assert FLOW_DIVERGED not in out and PROPAGATION_DEAD not in out
    assert "flow 0.00 px mean" in out and "propagation @ 6: max |whole clip - frame by frame|" in out


def test_health_options_are_checked_and_do_not_change_the_results_hash(tiny_reds, tmp_path, capsys):
    from vsr_accel.train.options import load_options
    base = tiny_options(tiny_reds, tmp_path / "exp")
    a = load_options(write_options(tmp_path / "a.yml", base))
    b = load_options(write_options(tmp_path / "b.yml", {**base, "train": {**base["train"],
                                                                           "health": {"on_failure": "stop"}}}))
    assert a.results_hash() == b.results_hash()
    bad = {**base, "train": {**base["train"], "health": {"on_failure": "ignore"}}}
    assert train.main(["-opt", write_options(tmp_path / "c.yml", bad)]) == 2
    assert "train.health.on_failure" in capsys.readouterr().err


def test_evaluate_probe_writes_propagation(tiny_reds, tmp_path):
    opt = tiny_options(tiny_reds, tmp_path / "exp", total_iter=2, curriculum={"type": "none"})
    path = write_options(tmp_path / "o.yml", opt)
    assert train.main(["-opt", path]) == 0
    evaluate = load_script("evaluate")
    out = tmp_path / "eval.json"
    assert evaluate.main(["-opt", path, "--probe", "--probe-frames", "4", "--json", str(out)]) == 0
    probed = json.loads(out.read_text())["propagation"]
    assert probed["frames"] == 4 and probed["max_abs_diff_vs_per_frame"] > 1e-4
    assert 0 <= probed["flow_mean_px"] <= probed["flow_max_px"] < 24
    assert probed["psnr_gain_vs_per_frame"] == pytest.approx(probed["psnr_whole"] - probed["psnr_per_frame"])
    assert probed["psnr_whole"] > 10 and probed["psnr_per_frame"] > 10
