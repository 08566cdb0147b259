"""The curriculum's stage tables (paper Sec. 4.1, Tables 7-9), its queries and its one-line errors."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO
from vsr_accel.core.errors import ConfigError
from vsr_accel.schedule.curriculum import (Schedule, Stage, build_schedule, default_frame_counts, default_lr_crops,
                                           spread)


def table(schedule: Schedule) -> list[tuple[int, int, int, int]]:
    return [(s.lr_crop, s.num_frames, s.start_iter, s.iters) for s in schedule.stages]


def test_reds_default_multigrid_is_the_papers_six_stages():
    schedule = build_schedule("multigrid", 300_000, 64, 15, 4)
    assert table(schedule) == [
        (32, 7, 0, 50_000), (32, 11, 50_000, 50_000), (32, 15, 100_000, 50_000),
        (64, 7, 150_000, 50_000), (64, 11, 200_000, 50_000), (64, 15, 250_000, 50_000),
    ]
    assert schedule.describe() == "32&7 / 32&11 / 32&15 / 64&7 / 64&11 / 64&15"
    assert [s.index for s in schedule.stages] == list(range(6))
    assert all(s.batch_per_device == 4 and s.lr is None for s in schedule.stages)
    assert schedule.boundaries == [50_000, 100_000, 150_000, 200_000, 250_000]


def test_remainder_iterations_go_to_the_last_stages():
    schedule = build_schedule("multigrid", 302, 64, 15, 4)
    assert [s.iters for s in schedule.stages] == [50, 50, 50, 50, 51, 51]
    assert schedule.stages[-1].end_iter == 302


@pytest.mark.parametrize("frames, expected", [(15, [7, 11, 15]), (14, [7, 10, 14]), (8, [6, 8]), (7, [6, 7]),
                                              (6, [6]), (5, [5]), (30, [15, 22, 30])])
def test_default_frame_counts(frames, expected):
    assert default_frame_counts(frames) == expected


@pytest.mark.parametrize("crop, expected", [(64, [32, 64]), (128, [64, 128]), (40, [32, 40]), (32, [32]), (16, [16])])
def test_default_lr_crops(crop, expected):
    assert default_lr_crops(crop) == expected


def test_spread_is_even_and_ends_at_the_baseline():
    assert spread(32, 64, 3) == [32, 48, 64]
    assert spread(7, 15, 3) == [7, 11, 15]
    assert spread(32, 64, 4, multiple=8) == [32, 40, 48, 64]
    assert spread(7, 15, 1) == [15]


def test_vimeo_needs_explicit_frame_counts_for_6_10_14():
    derived = build_schedule("multigrid", 60, 64, 14, 4)
    assert [s.num_frames for s in derived.stages[:3]] == [7, 10, 14]  # max(6, 14 // 2) = 7, not the paper's 6
    explicit = build_schedule("multigrid", 60, 64, 14, 4, frame_counts=[6, 10, 14], max_frames=14)
    assert [(s.lr_crop, s.num_frames) for s in explicit.stages] == [
        (32, 6), (32, 10), (32, 14), (64, 6), (64, 10), (64, 14)]


def test_synchronous_default_is_table_8a():
    schedule = build_schedule("synchronous", 90, 64, 15, 4)
    assert table(schedule) == [(32, 7, 0, 30), (48, 11, 30, 30), (64, 15, 60, 30)]
    two = build_schedule("synchronous", 90, 64, 15, 4, lr_crops=[32, 64], frame_counts=[7, 15])
    assert [s.label for s in two.stages] == ["32&7", "64&15"]
    crops_only = build_schedule("synchronous", 90, 64, 15, 4, lr_crops=[32, 64])
    assert [s.label for s in crops_only.stages] == ["32&7", "64&15"]


def test_spatial_edvr_m_with_a_lower_first_lr():
    schedule = build_schedule("spatial", 600_000, 64, 5, 4, stage_lrs=[2e-4, None], crop_multiple=4)
    assert table(schedule) == [(32, 5, 0, 300_000), (64, 5, 300_000, 300_000)]
    assert [s.lr for s in schedule.stages] == [2e-4, None]


def test_spatial_table_7a_variant():
    schedule = build_schedule("spatial", 80, 64, 15, 4, lr_crops=[32, 40, 48, 64])
    assert [s.label for s in schedule.stages] == ["32&15", "40&15", "48&15", "64&15"]


def test_temporal_table_7b_default_and_variant():
    assert [s.label for s in build_schedule("temporal", 30, 64, 15, 4).stages] == ["64&7", "64&11", "64&15"]
    variant = build_schedule("temporal", 40, 64, 15, 4, frame_counts=[7, 9, 11, 15])
    assert [s.label for s in variant.stages] == ["64&7", "64&9", "64&11", "64&15"]


def test_hierarchical_table_8b_four_stages_with_explicit_lengths():
    schedule = build_schedule("multigrid", 100, 64, 15, 4, frame_counts=[7, 15], stage_iters=[10, 20, 30, 40])
    assert table(schedule) == [(32, 7, 0, 10), (32, 15, 10, 20), (64, 7, 30, 30), (64, 15, 60, 40)]


def test_none_is_the_baseline():
    schedule = build_schedule("none", 1000, 64, 15, 4)
    assert table(schedule) == [(64, 15, 0, 1000)]
    assert schedule.boundaries == []
    assert schedule.compute_ratio() == 1.0


def test_per_stage_batches():
    schedule = build_schedule("spatial", 20, 64, 15, 4, stage_batches=[16, 4])
    assert [s.batch_per_device for s in schedule.stages] == [16, 4]
    assert schedule.compute_per_iter(schedule.stages[0]) == pytest.approx(16 * 32 * 32 / (4 * 64 * 64))


def test_stage_at_and_boundaries():
    schedule = build_schedule("multigrid", 60, 64, 15, 4)
    assert [schedule.stage_at(t).index for t in (0, 9, 10, 19, 20, 49, 50, 59)] == [0, 0, 1, 1, 2, 4, 5, 5]
    for bad in (-1, 60):
        with pytest.raises(ValueError):
            schedule.stage_at(bad)



def test_compute_ratio_of_the_default_reds_multigrid_is_24_over_11():
    schedule = build_schedule("multigrid", 300_000, 64, 15, 4)
    # sum of relative costs = (1/4 + 1) * (7 + 11 + 15) / 15 = 2.75 over 6 equal stages
    assert schedule.compute_ratio() == pytest.approx(24 / 11)
    assert round(schedule.compute_ratio(), 2) == 2.18
    assert schedule.compute_per_iter(schedule.stages[0]) == pytest.approx(0.25 * 7 / 15)
    assert build_schedule("spatial", 100, 64, 15, 4).compute_ratio() == pytest.approx(1.6)


def test_schedule_rejects_non_contiguous_stages():
    with pytest.raises(ValueError):
        Schedule(stages=(Stage(0, 0, 5, 32, 7, 4), Stage(1, 6, 5, 64, 15, 4)), total_iter=11, kind="x",
                 lr_crop=64, num_frames=15, batch_per_device=4)


@pytest.mark.parametrize("kwargs, fragments", [
    (dict(kind="multgrid"), ["train.curriculum.type", "'multigrid'"]),
    (dict(kind="temporall"), ["did you mean 'temporal'"]),
    (dict(lr_crops=[30, 64], crop_multiple=4), ["train.curriculum.lr_crops", "30", "multiple of 4"]),
    (dict(crop_multiple=3), ["train.curriculum.lr_crops (derived from the baseline crop 64)", "multiple of 3"]),
    (dict(lr_crops=[32, 64], max_lr_crop=48), ["train.curriculum.lr_crops", "64", "48"]),
    (dict(frame_counts=[6, 10, 14], max_frames=7), ["train.curriculum.frame_counts", "10", "(7)"]),
    (dict(max_frames=10), ["train.curriculum.frame_counts (derived", "11"]),
    (dict(stage_iters=[10, 10, 10, 10, 10, 9]), ["train.curriculum.stage_iters", "sums to 59", "total_iter is 60"]),
    (dict(stage_iters=[30, 30]), ["train.curriculum.stage_iters", "2 entries", "6 stages"]),
    (dict(kind="spatial", stage_iters=[0, 60]), ["train.curriculum.stage_iters", "positive"]),
    (dict(lr_crops=[]), ["train.curriculum.lr_crops", "empty"]),
    (dict(kind="spatial", lr_crops=[]), ["train.curriculum.lr_crops", "empty"]),
    (dict(kind="temporal", frame_counts=[]), ["train.curriculum.frame_counts", "empty"]),
    (dict(kind="synchronous", frame_counts=[]), ["train.curriculum.frame_counts", "empty"]),
    (dict(lr_crops=[0, 64]), ["train.curriculum.lr_crops", "positive", "0"]),
    (dict(frame_counts=[-1, 15]), ["train.curriculum.frame_counts", "positive", "-1"]),
    (dict(lr_crops=["32", 64]), ["train.curriculum.lr_crops", "integers", "'32'"]),
    (dict(lr_crops=64), ["train.curriculum.lr_crops", "expected a list"]),
    (dict(stage_batches=[4, 4, 0, 4, 4, 4]), ["train.curriculum.stage_batches", "positive"]),
    (dict(stage_batches=[4, 4]), ["train.curriculum.stage_batches", "2 entries", "6 stages"]),
    (dict(stage_lrs=[2e-4]), ["train.curriculum.stage_lrs", "1 entries", "6 stages"]),
    (dict(kind="spatial", stage_lrs=[-1e-4, None]), ["train.curriculum.stage_lrs", "-0.0001"]),
    (dict(kind="synchronous", lr_crops=[32, 64], frame_counts=[7, 11, 15]),
     ["train.curriculum.frame_counts", "3 entries", "lr_crops has 2"]),
    (dict(kind="temporal", lr_crops=[32, 64]), ["train.curriculum.lr_crops", "type 'temporal'"]),
    (dict(kind="spatial", frame_counts=[7, 15]), ["train.curriculum.frame_counts", "type 'spatial'"]),
    (dict(kind="none", lr_crops=[32]), ["train.curriculum.lr_crops", "type 'none'"]),
    (dict(total_iter=4), ["train.curriculum", "total_iter=4", "6"]),
    (dict(lr_crop=0), ["lr_crop", "positive integer", "0"]),
    (dict(batch_per_device=-2), ["batch_per_device", "-2"]),
    (dict(lr_crops=[30, 64], crop_multiple=4, key_prefix="recipe.mg"), ["recipe.mg.lr_crops"]),
])
def test_bad_input_is_a_one_line_config_error_naming_the_key(kwargs, fragments):
    args = dict(kind="multigrid", total_iter=60, lr_crop=64, num_frames=15, batch_per_device=4)
    args.update(kwargs)
    with pytest.raises(ConfigError) as info:
        build_schedule(args.pop("kind"), args.pop("total_iter"), args.pop("lr_crop"), args.pop("num_frames"),
                       args.pop("batch_per_device"), **args)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_core_modules_import_without_torch():
    # --plan and option validation run without the torch stack; block torch and import.
    code = ("import sys; sys.modules['torch'] = None\n"
            "import vsr_accel.schedule.curriculum, vsr_accel.schedule.lr, vsr_accel.schedule.plan\n"
            "s = vsr_accel.schedule.curriculum.build_schedule('multigrid', 60, 64, 15, 4)\n"
            "print(vsr_accel.schedule.plan.format_plan(vsr_accel.schedule.plan.plan_dict(s, vsr_accel.schedule.lr.LRSchedule(s, 2e-4, 16),"
            " scale=4, world_size=1, grad_accum=1)).splitlines()[-1])\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "2.18x" in result.stdout


# -- custom stage lists (the paper's Table 9) -----------------------------------------------------

TABLE9 = [*({"lr_crop": c, "num_frames": f, "iters": 12_500} for c in (32, 64) for f in (7, 11, 15)),
          {"lr_crop": 72, "num_frames": 17, "iters": 20_000}]


def test_custom_stages_run_in_the_given_order_and_may_exceed_the_baseline():
    schedule = build_schedule("custom", 95_000, 64, 15, 4, stages=TABLE9)
    assert schedule.describe() == "32&7 / 32&11 / 32&15 / 64&7 / 64&11 / 64&15 / 72&17"
    assert [s.iters for s in schedule.stages] == [12_500] * 6 + [20_000]
    assert schedule.stage_at(94_999).lr_crop == 72 and schedule.boundaries[-1] == 75_000
    # compute stays relative to the 64&15 baseline; the extra stage costs more than a baseline iteration
    assert schedule.compute_per_iter(schedule.stages[-1]) == pytest.approx(72 ** 2 * 17 / (64 ** 2 * 15))


def test_custom_stage_batch_and_lr_overrides():
    schedule = build_schedule("custom", 30, 64, 15, 4, stages=[
        {"lr_crop": 32, "num_frames": 7, "iters": 10, "batch_per_device": 16, "lr": 2e-4},
        {"lr_crop": 64, "num_frames": 15, "iters": 20}])
    assert [(s.batch_per_device, s.lr) for s in schedule.stages] == [(16, 2e-4), (4, None)]


@pytest.mark.parametrize("stages, kwargs, fragments", [
    (TABLE9[:2], {}, ["train.curriculum.stages", "sum to 25000", "95000"]),
    ([{"lr_crop": 32, "num_frames": 7}], {}, ["train.curriculum.stages[0].iters", "missing"]),
    ([{"lr_crop": 32, "num_frames": 7, "iters": 95_000, "frames": 3}], {}, ["stages[0].frames", "num_frames"]),
    ([{"lr_crop": 30, "num_frames": 7, "iters": 95_000}], {"crop_multiple": 4}, ["stages[0].lr_crop", "multiple of 4"]),
    ([{"lr_crop": 32, "num_frames": 120, "iters": 95_000}], {"max_frames": 100}, ["stages[0].num_frames", "120"]),
    ([], {}, ["train.curriculum.stages", "empty"]),
    (TABLE9, {"stage_iters": [1] * 7}, ["train.curriculum.stage_iters", "custom"]),
])
def test_bad_custom_stages_name_the_stage(stages, kwargs, fragments):
    with pytest.raises(ConfigError) as info:
        build_schedule("custom", 95_000, 64, 15, 4, stages=stages, **kwargs)
    message = str(info.value)
    assert "\n" not in message and all(f in message for f in fragments), message


def test_stages_belong_to_custom_only():
    with pytest.raises(ConfigError, match="stages: only used by type 'custom'"):
        build_schedule("multigrid", 60, 64, 15, 4, stages=TABLE9)


def test_a_derived_shape_names_the_option_the_user_wrote():
    with pytest.raises(ConfigError, match=r"^datasets.train.num_frame 10000: clip length 10000 is longer"):
        build_schedule("none", 10, 64, 10_000, 4, max_frames=100,
                       baseline_keys=("datasets.train.gt_size 256 (LR crop 64)", "datasets.train.num_frame 10000"))
    with pytest.raises(ConfigError, match=r"^datasets.train.gt_size 256 \(LR crop 64\): crop 64 is larger than the LR"):
        build_schedule("none", 10, 64, 15, 4, max_lr_crop=45,
                       baseline_keys=("datasets.train.gt_size 256 (LR crop 64)", "datasets.train.num_frame 15"))
