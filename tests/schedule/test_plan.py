"""`train.py --plan`: the per-stage table and the speedup bound."""
from __future__ import annotations

import json
import math

import pytest

from tests.conftest import REPO
from vsr_accel.schedule.curriculum import build_schedule
from vsr_accel.schedule.lr import LRSchedule
from vsr_accel.schedule.plan import format_plan, plan_dict


@pytest.fixture
def reds_plan():
    schedule = build_schedule("multigrid", 300_000, 64, 15, 4)
    lr = LRSchedule(schedule, base_lr=2e-4, base_batch=16, world_size=4, grad_accum=4, eta_min=1e-7,
                    warmup_iter=5000)
    return plan_dict(schedule, lr, scale=4, world_size=4, grad_accum=4)


def test_plan_lists_every_stage_with_its_shape_batch_lr_and_cost(reds_plan):
    stages = reds_plan["stages"]
    assert [(s["lr_crop"], s["gt_crop"], s["frames"]) for s in stages] == [
        (32, 128, 7), (32, 128, 11), (32, 128, 15), (64, 256, 7), (64, 256, 11), (64, 256, 15)]
    assert [s["start_iter"] for s in stages] == [0, 50_000, 100_000, 150_000, 200_000, 250_000]
    assert all(s["iters"] == 50_000 and s["batch_per_device"] == 4 and s["global_batch"] == 64 for s in stages)
    assert all(s["lr_peak"] == pytest.approx(8e-4) for s in stages)  # 2e-4 x 64 / 16
    assert stages[0]["lr_start"] == pytest.approx(8e-4 / 5000)  # warmup's first step
    assert stages[1]["lr_start"] == pytest.approx(8e-4)
    assert stages[1]["lr_end"] == pytest.approx(8e-4 * 0.5 * (1 + math.cos(math.pi * 49_999 / 300_000)))
    assert stages[5]["lr_end"] == pytest.approx(1e-7 + (8e-4 - 1e-7) * 0.5 * (1 + math.cos(math.pi * 49_999 / 50_000)))
    assert [s["relative_compute"] for s in stages] == pytest.approx(
        [7 / 60, 11 / 60, 15 / 60, 7 / 15, 11 / 15, 1.0])
    assert [s["index"] for s in stages] == list(range(6))
    assert reds_plan["total_iter"] == 300_000
    assert reds_plan["compute_ratio"] == pytest.approx(24 / 11)
    json.loads(json.dumps(reds_plan))  # --plan --json


def test_format_plan_is_a_table_with_the_speedup_line(reds_plan):
    text = format_plan(reds_plan)
    lines = text.splitlines()
    assert "LR crop" in lines[1] and "frames" in lines[1]
    rows = lines[3:9]
    assert [row.split()[:6] for row in rows] == [
        ["1", "50000", "0", "32", "128", "7"], ["2", "50000", "50000", "32", "128", "11"],
        ["3", "50000", "100000", "32", "128", "15"], ["4", "50000", "150000", "64", "256", "7"],
        ["5", "50000", "200000", "64", "256", "11"], ["6", "50000", "250000", "64", "256", "15"]]
    assert "2.18x" in lines[-1]
    assert "warmup" in text


def test_baseline_plan_has_one_stage_and_no_speedup():
    schedule = build_schedule("none", 1000, 64, 15, 4)
    lr = LRSchedule(schedule, base_lr=2e-4, base_batch=None)
    plan = plan_dict(schedule, lr, scale=4, world_size=1, grad_accum=1)
    assert len(plan["stages"]) == 1 and plan["compute_ratio"] == 1.0
    assert plan["stages"][0]["lr_start"] == pytest.approx(2e-4)
    assert "1.00x" in format_plan(plan)


def test_plan_of_a_custom_stage_list_from_the_options_file(tmp_path, capsys):
    """The paper's Table 9 recipe as options: six default stages and an extra 72&17 one."""
    import json

    import yaml

    import train

    data = yaml.safe_load((REPO / "options" / "basicvsr_m_multigrid.yml").read_text())
    stages = [{"lr_crop": c, "num_frames": f, "iters": 12_500} for c in (32, 64) for f in (7, 11, 15)]
    data["train"]["curriculum"] = {"type": "custom", "stages": [*stages, {"lr_crop": 72, "num_frames": 17, "iters": 20_000}]}
    data["train"]["total_iter"] = 95_000
    path = tmp_path / "t9.yml"
    path.write_text(yaml.safe_dump(data))
    assert train.main(["-opt", str(path), "--plan", "--json", "--world-size", "8"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [(s["lr_crop"], s["frames"], s["iters"]) for s in plan["stages"]][-2:] == [(64, 15, 12_500), (72, 17, 20_000)]
    assert plan["lr_restarts"] == [12_500 * i for i in range(1, 7)]


@pytest.mark.parametrize("path", sorted((REPO / "options").glob("*.yml")), ids=lambda p: p.name)
def test_every_shipped_options_file_loads_and_plans(path):
    """Each recipe passes every option rule and prints a plan (what `train.py --plan` shows)."""
    import models
    from vsr_accel.train import builders
    from vsr_accel.train.options import load_options

    opt = load_options(path)
    models.check_model_type(opt.model_type, opt.network_g)
    plan = builders.build_plan(opt, world_size=8, crop_multiple=models.required_multiple(opt.network_g))
    assert plan["total_iter"] == sum(stage["iters"] for stage in plan["stages"]) > 0
