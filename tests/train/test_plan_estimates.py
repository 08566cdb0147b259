"""`train.py --plan` before a run (issue 20, item 11): parameters and FLOPs per sample of every
stage, a time estimate from a measured rate, and a note when the LRs are planned for one device
only because no --world-size was given."""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import models
import train
from tests.conftest import tiny_options, write_options
from vsr_accel.train import builders
from vsr_accel.train.options import load_options


@pytest.fixture
def opt(tiny_reds, tmp_path):
    options = tiny_options(tiny_reds, tmp_path / "exp", base_batch=4)
    return load_options(write_options(tmp_path / "o.yml", options))


def test_the_plan_counts_the_networks_parameters_and_flops_per_stage_shape(opt):
    plan = builders.build_plan(opt, world_size=1, crop_multiple=1, network=models.meta_network(opt.network_g))
    real = models.build_network(opt.network_g)
    assert plan["parameters"] == sum(p.numel() for p in real.parameters())
    for stage in plan["stages"]:  # the meta count equals a real forward's
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            real(torch.rand(1, stage["frames"], 3, stage["lr_crop"], stage["lr_crop"]))
        assert stage["gflops_per_sample"] * 1e9 == pytest.approx(counter.get_total_flops())
    shapes = {(s["frames"], s["lr_crop"]): s["gflops_per_sample"] for s in plan["stages"]}
    assert shapes[(5, 24)] > shapes[(3, 24)] > shapes[(3, 16)]


def test_a_measured_rate_gives_each_stage_its_share_of_the_time(opt):
    plan = builders.build_plan(opt, world_size=1, crop_multiple=1, sec_per_iter=2.0)
    expected = [s["iters"] * s["relative_compute"] * 2.0 for s in plan["stages"]]
    assert [s["est_seconds"] for s in plan["stages"]] == pytest.approx(expected)
    assert plan["est_seconds"] == pytest.approx(sum(expected)) and plan["est_seconds"] < 2.0 * opt.train.total_iter


def test_without_world_size_the_plan_says_the_lrs_are_one_devices(opt, capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert train.main(["-opt", opt.source, "--plan", "--sec-per-iter", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "note: planned for 1 device(s) because --world-size was not given" in out
    assert "x 2/4 (linear scaling from train.base_batch" in out and "--world-size N" in out
    assert "GFLOP/sample" in out and "estimated training time" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in rows] == ["1", "2", "3", "4"]  # stages count from 1, as in the log
    assert train.main(["-opt", opt.source, "--plan", "--world-size", "2"]) == 0
    assert "note: planned" not in capsys.readouterr().out
