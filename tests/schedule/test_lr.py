"""LR schedules: Eq. 1 (as read in vsr_accel/schedule/lr/multigrid_cosine.py), warmup, linear scaling."""
from __future__ import annotations

import importlib.util
import math
import os

import pytest

from vsr_accel.schedule.curriculum import build_schedule
from vsr_accel.core.errors import ConfigError
from vsr_accel.schedule.lr import LRSchedule, multigrid_cosine_lr, scaled_lr, stage_cosine_lr, warmup_factor

SIX_TENS = [10] * 6  # a 60-iteration run of six equal stages


def test_non_final_stages_decay_over_the_whole_run_and_restart():
    lr = lambda t: multigrid_cosine_lr(t, periods=SIX_TENS, peak_lrs=[1.0] * 6)  # noqa: E731
    assert lr(0) == 1.0
    assert lr(5) == pytest.approx(0.5 * (1 + 0.9659258262890683))  # cos(pi * 5 / 60) = cos(15 deg)
    assert lr(9) == pytest.approx(0.5 * (1 + 0.8910065241883679))  # cos(27 deg): the stage's lowest value
    for start in (10, 20, 30, 40, 50):
        assert lr(start) == 1.0  # restart at every boundary
    assert lr(47) == pytest.approx(lr(7))  # every non-final stage has the same shape


def test_final_stage_anneals_fully_to_eta_min():
    def lr(t, eta_min=0.0):
        return multigrid_cosine_lr(t, periods=SIX_TENS, peak_lrs=[1.0] * 6, eta_min=eta_min)

    assert lr(50) == 1.0
    assert lr(55) == pytest.approx(0.5)  # cos(pi/2) = 0
    assert lr(59) == pytest.approx(0.5 * (1 - 0.9510565162951535))  # cos(0.9 pi)
    assert lr(55, eta_min=0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr(50, eta_min=0.1) == 1.0


def test_stage_peaks_and_bounds():
    assert multigrid_cosine_lr(12, periods=[10, 10], peak_lrs=[2e-4, 4e-4]) == pytest.approx(
        4e-4 * 0.5 * (1 + math.cos(math.pi * 2 / 10)))
    assert multigrid_cosine_lr(3, periods=[10, 10], peak_lrs=[2e-4, 4e-4]) == pytest.approx(
        2e-4 * 0.5 * (1 + math.cos(math.pi * 3 / 20)))
    for bad in (-1, 20):
        with pytest.raises(ValueError):
            multigrid_cosine_lr(bad, periods=[10, 10], peak_lrs=[1.0, 1.0])
    with pytest.raises(ValueError):
        stage_cosine_lr(10, peak_lr=1.0, stage_iters=10, total_iter=60, final=False)


def _load_basicsr_lr_scheduler():
    """BasicSR's lr_scheduler.py is a leaf module (torch only); import it by path, because
    importing `basicsr.models` would import every model."""
    from tests.basicsr_ref import DEFAULT_REF_DIR, reference_root
    root = reference_root()
    if root is None:
        message = f"BasicSR reference sources not found under {DEFAULT_REF_DIR}"
        if os.environ.get("VSR_REQUIRE_BASICSR_REF") == "1":
            pytest.fail(message)
        pytest.skip(message)
    path = root / "basicsr" / "models" / "lr_scheduler.py"
    spec = importlib.util.spec_from_file_location("basicsr_ref_lr_scheduler", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_single_stage_matches_basicsr_cosine_annealing_restart():
    torch = pytest.importorskip("torch")
    reference = _load_basicsr_lr_scheduler()
    total, base_lr, eta_min = 50, 2e-4, 1e-7
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    scheduler = reference.CosineAnnealingRestartLR(optimizer, periods=[total], restart_weights=[1], eta_min=eta_min)
    ours = LRSchedule(build_schedule("none", total, 64, 15, 4), base_lr=base_lr, base_batch=None, eta_min=eta_min)
    for t in range(total):  # BasicSR's 1-based iteration t + 1 runs with last_epoch = t
        assert ours.lr_at(t) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-12, abs=1e-18)
        optimizer.step()
        scheduler.step()


def test_linear_warmup_matches_basicsr_ramp():
    # BasicSR: lr = initial_lr / warmup_iter * current_iter for 1-based current_iter < warmup_iter.
    for t in range(4):
        assert warmup_factor(t, warmup_iter=5) == pytest.approx((t + 1) / 5)
    assert warmup_factor(4, warmup_iter=5) == 1.0
    assert warmup_factor(5, warmup_iter=5) == 1.0
    assert warmup_factor(0, warmup_iter=0) == 1.0


def test_constant_and_no_warmup():
    assert warmup_factor(0, warmup_iter=5, mode="constant", factor=0.1) == 0.1
    assert warmup_factor(4, warmup_iter=5, mode="constant", factor=0.1) == 0.1
    assert warmup_factor(5, warmup_iter=5, mode="constant", factor=0.1) == 1.0
    assert warmup_factor(0, warmup_iter=5, mode="none") == 1.0


def test_warmup_multiplies_the_scheduled_lr_once():
    schedule = build_schedule("multigrid", 60, 64, 15, 4)
    lr = LRSchedule(schedule, base_lr=1.0, base_batch=None, warmup_iter=20)
    plain = LRSchedule(schedule, base_lr=1.0, base_batch=None)
    assert lr.lr_at(0) == pytest.approx(1 / 20)
    assert lr.lr_at(9) == pytest.approx(plain.lr_at(9) * 10 / 20)
    assert lr.lr_at(10) == pytest.approx(11 / 20)  # the restart is still inside the warmup
    assert lr.lr_at(20) == plain.lr_at(20) == 1.0  # no second warmup at later restarts


def test_linear_scaling_rule_table_4():
    assert scaled_lr(2e-4, 64, 16) == pytest.approx(8e-4)
    assert scaled_lr(2e-4, 16, 16) == pytest.approx(2e-4)
    schedule = build_schedule("multigrid", 60, 64, 15, 4)
    # 4 per device x 4 devices x 4 accumulation steps = 64
    lr = LRSchedule(schedule, base_lr=2e-4, base_batch=16, world_size=4, grad_accum=4)
    assert lr.lr_at(0) == pytest.approx(8e-4)
    assert lr.lr_at(50) == pytest.approx(8e-4)
    assert lr.lr_at(0) / 2e-4 == pytest.approx(4.0)


def test_per_stage_batches_scale_per_stage_and_overrides_too():
    schedule = build_schedule("spatial", 20, 64, 15, 4, stage_batches=[8, 4], stage_lrs=[1e-4, None])
    lr = LRSchedule(schedule, base_lr=2e-4, base_batch=16, world_size=2)
    assert lr.peak_lr(schedule.stages[0]) == pytest.approx(1e-4 * 16 / 16)
    assert lr.peak_lr(schedule.stages[1]) == pytest.approx(2e-4 * 8 / 16)
    assert lr.lr_at(10) == pytest.approx(1e-4)


def test_edvr_m_first_stage_starts_at_its_override():
    schedule = build_schedule("spatial", 600_000, 64, 5, 4, stage_lrs=[2e-4, None])
    lr = LRSchedule(schedule, base_lr=4e-4, base_batch=None, eta_min=1e-7)
    assert lr.lr_at(0) == pytest.approx(2e-4)
    assert lr.lr_at(299_999) == pytest.approx(2e-4 * 0.5 * (1 + math.cos(math.pi * 299_999 / 600_000)))
    assert lr.lr_at(300_000) == pytest.approx(4e-4)
    assert lr.lr_at(599_999) == pytest.approx(1e-7, rel=1e-2)


@pytest.mark.parametrize("kind", ["multigrid", "synchronous", "spatial", "temporal"])
def test_restarts_land_exactly_on_shape_changes(kind):
    schedule = build_schedule(kind, 61, 64, 15, 4)
    lr = LRSchedule(schedule, base_lr=1.0, base_batch=None)
    jumps = [t for t in range(1, 61) if lr.lr_at(t) > lr.lr_at(t - 1)]
    shape = lambda t: (schedule.stage_at(t).lr_crop, schedule.stage_at(t).num_frames)  # noqa: E731
    changes = [t for t in range(1, 61) if shape(t) != shape(t - 1)]
    assert jumps == changes == lr.restart_iters == schedule.boundaries
    assert len(jumps) == len(schedule.stages) - 1 > 0
    assert all(lr.lr_at(t) == 1.0 for t in lr.restart_iters)


def test_the_lr_is_a_pure_function_of_the_iteration():
    schedule = build_schedule("multigrid", 600, 64, 15, 4)
    def make():
        return LRSchedule(schedule, base_lr=2e-4, base_batch=16, world_size=2, eta_min=1e-7, warmup_iter=50)

    uninterrupted = make()
    values = [uninterrupted.lr_at(t) for t in range(600)]
    resumed = make()
    assert [resumed.lr_at(t) for t in range(333, 600)] == values[333:]


@pytest.mark.parametrize("kwargs, fragments", [
    (dict(base_lr=0), ["train.optim_g.lr", "positive"]),
    (dict(base_batch=0), ["train.base_batch", "0"]),
    (dict(eta_min=-1e-7), ["train.scheduler.eta_min", ">= 0"]),
    (dict(eta_min=1e-3), ["train.scheduler.eta_min", "0.001", "final stage"]),
    (dict(warmup="cosine"), ["train.warmup", "'cosine'", "linear"]),
    (dict(warmup_iter=61), ["train.warmup_iter", "61", "60"]),
    (dict(warmup_iter=1.5), ["train.warmup_iter", "1.5"]),
    (dict(warmup="constant", warmup_factor=2.0), ["train.warmup_factor", "2.0"]),
    (dict(base_lr=-1, option_keys={"base_lr": "train.optim.lr"}), ["train.optim.lr"]),
])
def test_bad_lr_options_are_one_line_config_errors(kwargs, fragments):
    schedule = build_schedule("multigrid", 60, 64, 15, 4)
    args = dict(base_lr=2e-4, base_batch=16)
    args.update(kwargs)
    with pytest.raises(ConfigError) as info:
        LRSchedule(schedule, **args)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_warmup_iter_minus_one_means_none():
    schedule = build_schedule("none", 10, 64, 15, 4)
    assert LRSchedule(schedule, base_lr=1.0, base_batch=None, warmup_iter=-1).lr_at(0) == 1.0


# -- BasicSR's CosineAnnealingRestartLR, driven exactly as BasicSR's training loop drives it ------------

def basicsr_lrs(total: int, base_lr: float, flow_lr_mul: float, periods, restart_weights, eta_min: float,
                warmup_iter: int) -> list[list[float]]:
    """Every iteration's param-group LRs from BasicSR's own scheduler and its
    `BaseModel.update_learning_rate(current_iter, warmup_iter)` (1-based current_iter)."""
    import torch

    from tests import basicsr_ref

    scheduler_module = basicsr_ref.load("models.lr_scheduler")
    weights = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.Adam([{"params": [weights[0]], "lr": base_lr},
                                  {"params": [weights[1]], "lr": base_lr * flow_lr_mul}], lr=base_lr)
    scheduler = scheduler_module.CosineAnnealingRestartLR(optimizer, periods, restart_weights=restart_weights,
                                                          eta_min=eta_min)
    lrs = []
    for current_iter in range(1, total + 1):
        if current_iter > 1:
            scheduler.step()
        if current_iter < warmup_iter:
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] / warmup_iter * current_iter
        lrs.append([group["lr"] for group in optimizer.param_groups])
    return lrs


@pytest.mark.parametrize("periods, restart_weights, warmup_iter", [
    ([120], [1], -1),                      # BasicSR's REDS BasicVSR recipe, scaled down
    ([30, 30, 30, 30], [1, 1, 1, 1], -1),  # its EDVR recipe
    ([20, 40, 60], [1, 0.5, 0.5], 10),     # restart weights and a warmup
])
def test_cosine_annealing_restart_is_basicsrs_over_a_whole_run(periods, restart_weights, warmup_iter):
    total, base_lr, flow_lr_mul, eta_min = 120, 2e-4, 0.125, 1e-7
    expected = basicsr_lrs(total, base_lr, flow_lr_mul, periods, restart_weights, eta_min, warmup_iter)
    schedule = build_schedule("none", total, 64, 15, 4)
    ours = LRSchedule(schedule, base_lr=base_lr, base_batch=None, eta_min=eta_min, scheduler="CosineAnnealingRestartLR",
                      periods=tuple(periods), restart_weights=tuple(restart_weights),
                      warmup_iter=max(warmup_iter, 0), warmup="linear" if warmup_iter > 0 else "none")
    for t in range(total):
        got = [ours.lr_at(t), ours.lr_at(t, flow_lr_mul)]
        assert got == pytest.approx(expected[t], rel=1e-12, abs=1e-18), t


def test_original_scheduler_over_a_multigrid_curriculum_is_one_cosine():
    """The paper's Sec. 3.1 control: the shape changes, the LR does not restart."""
    schedule = build_schedule("multigrid", 60, 64, 15, 4)
    lr = LRSchedule(schedule, base_lr=1.0, base_batch=None, scheduler="CosineAnnealingRestartLR")
    values = [lr.lr_at(t) for t in range(60)]
    assert all(b < a for a, b in zip(values, values[1:]))
    assert lr.restart_iters == [] and len(schedule.boundaries) == 5
    assert values[0] == 1.0 and values[30] == pytest.approx(0.5 * (1 + math.cos(math.pi * 30 / 60)))
