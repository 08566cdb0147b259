"""The ablation runner: definitions expand to the paper's option sets, the table writer's arithmetic,
and a real (tiny) sweep that is interrupted and resumed without re-running finished variants."""
from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import experiments.launch as launch
import experiments.run as runner
from experiments import plots, records, summary, tables
from tests.conftest import make_reds_like, tiny_options, write_options
from vsr_accel.core.errors import ConfigError


def expand(ref: str, scale: str, tmp_path: Path, **settings) -> dict[str, dict[str, runner.ResolvedVariant]]:
    table = runner.load_table(ref)
    resolved = runner.expand(table, runner.SweepSettings(scale=scale, runs_root=tmp_path / "runs", **settings))
    return {section.name: {rv.variant.name: rv for rv in rvs} for section, rvs in resolved}


def peak_lrs(rv: runner.ResolvedVariant) -> set[float]:
    return {round(stage["lr_peak"], 12) for stage in rv.plan["stages"]}


# -- definitions ---------------------------------------------------------------------------------

def test_table1_paper_scale_resolves_to_the_papers_settings(tmp_path):
    rows = expand("table1", "paper", tmp_path, nproc_per_node=4)["basicvsr_m"]
    base, large, ours = rows["baseline"], rows["large_batch"], rows["multi_st"]
    assert base.opt.datasets["train"]["batch_size_per_gpu"] == 4 and base.minibatch == 16
    assert base.total_iter == 300_000 and base.schedule.kind == "none" and base.plan["warmup_iter"] == 0
    assert peak_lrs(base) == {2e-4}
    assert large.minibatch == 64 and large.opt.datasets["train"]["batch_size_per_gpu"] == 16
    assert large.total_iter == 75_000 and peak_lrs(large) == {8e-4}  # linear scaling 2e-4 x 64/16
    assert large.opt.train.warmup == "linear" and large.plan["warmup_iter"] == 5000
    assert ours.schedule.describe() == "32&7 / 32&11 / 32&15 / 64&7 / 64&11 / 64&15"
    assert ours.plan["compute_ratio"] == pytest.approx(2.18, abs=0.01)  # what `train.py --plan` prints
    assert ours.variant.equal_iters_ref == "large_batch"
    # BasicVSR rows: 2x minibatch for half the iterations
    plain = expand("table1", "paper", tmp_path)["basicvsr"]
    assert plain["large_batch"].minibatch == 64 and plain["large_batch"].total_iter == 150_000
    assert peak_lrs(plain["large_batch"]) == {4e-4}


def test_scale_devices_launches_the_large_minibatch_on_more_processes(tmp_path):
    rows = expand("table1", "paper", tmp_path, nproc_per_node=4, scale_devices=True)["basicvsr_m"]
    assert rows["baseline"].world_size == 4 and rows["large_batch"].world_size == 16
    assert rows["large_batch"].opt.datasets["train"]["batch_size_per_gpu"] == 4  # each GPU keeps 4 samples
    command = runner.train_command(rows["large_batch"], device=None)
    assert command[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=16"]
    assert command[-1] == "--auto_resume"
    single = runner.train_command(expand("table1", "cpu", tmp_path)["basicvsr_m"]["baseline"], device="cpu")
    assert "torch.distributed.run" not in single and single[-3:] == ["--auto_resume", "--device", "cpu"]


def test_cpu_scale_keeps_the_papers_ratios_and_shares_identical_runs(tmp_path):
    t1 = expand("table1", "cpu", tmp_path)["basicvsr_m"]
    t8 = expand("table8", "cpu", tmp_path)["combinations"]
    base, large = t1["baseline"], t1["large_batch"]
    assert (base.minibatch, base.total_iter, base.schedule.describe()) == (1, 600, "24&7")
    assert (large.minibatch, large.total_iter) == (4, 150)
    assert peak_lrs(large) == {4e-3} and peak_lrs(base) == {1e-3}  # LR x4 for the 4x minibatch
    assert large.plan["warmup_iter"] == 10  # 1/15 of the run, as 5k of 75k
    assert base.opt.train.channels_last is False and base.opt.network_g["num_feat"] == 16
    assert t1["multi_s"].schedule.describe() == "12&7 / 24&7"
    assert t1["multi_t"].schedule.describe() == "24&3 / 24&5 / 24&7"
    assert t1["multi_st"].schedule.describe() == "12&3 / 12&5 / 12&7 / 24&3 / 24&5 / 24&7"
    assert [s.iters for s in t1["multi_st"].schedule.stages] == [25] * 6  # equal stages, as the paper
    assert t8["sync_2"].schedule.describe() == "12&3 / 24&7"
    assert t8["sync_3"].schedule.describe() == "12&3 / 18&5 / 24&7"
    assert t8["hier_4"].schedule.describe() == "12&3 / 12&7 / 24&3 / 24&7"
    # the same resolved options train once for both tables
    assert t8["hier_6"].run_dir == t1["multi_st"].run_dir and t8["baseline"].run_dir == base.run_dir
    assert t8["sync_2"].run_dir != t8["hier_4"].run_dir


def runs_of(ref: str, scale: str, tmp_path: Path, section: str, variant: str) -> list[runner.ResolvedVariant]:
    table = runner.load_table(ref)
    sections = runner.expand(table, runner.SweepSettings(scale=scale, runs_root=tmp_path / "runs"))
    return [rv for sec, rvs in sections if sec.name == section for rv in rvs if rv.variant.name == variant]


def test_seeded_rows_train_once_per_seed_and_every_table_shares_them(tmp_path):
    base = runs_of("table1", "cpu", tmp_path, "basicvsr_m", "baseline")
    assert [rv.seed for rv in base] == [0, 1] and [rv.opt.manual_seed for rv in base] == [0, 1]
    assert base[0].run_dir != base[1].run_dir and all(rv.seeds == (0, 1) and rv.multi_seed for rv in base)
    assert [rv.log_name for rv in base] == ["basicvsr_m__baseline__seed0", "basicvsr_m__baseline__seed1"]
    ours = runs_of("table1", "cpu", tmp_path, "basicvsr_m", "multi_st")
    assert [rv.seed for rv in ours] == [0, 1]
    for ref, section in (("table4", "lr_scaling"), ("table5", "warmup"), ("table6", "minibatch"),
                         ("table7", "spatial"), ("table8", "combinations"), ("table9", "extra_stage")):
        assert [rv.run_dir for rv in runs_of(ref, "cpu", tmp_path, section, "baseline")] == [rv.run_dir for rv in base]
    assert [rv.run_dir for rv in runs_of("table9", "cpu", tmp_path, "extra_stage", "multi_st")] == \
        [rv.run_dir for rv in ours]
    # rows without seeds train once, with the base options' seed; the paper scale lists one seed
    assert [rv.seed for rv in runs_of("table1", "cpu", tmp_path, "basicvsr_m", "large_batch")] == [0]
    paper = runs_of("table1", "paper", tmp_path, "basicvsr_m", "baseline")
    assert len(paper) == 1 and not paper[0].multi_seed and paper[0].log_name == "basicvsr_m__baseline"


def test_basicvsrpp_table_differs_from_its_baseline_in_the_curriculum_only(tmp_path):
    rows = expand("basicvsrpp", "cpu", tmp_path)["curriculum"]
    base, ours = rows["baseline"], rows["multi_st"]
    assert base.options["network_g"]["type"] == ours.options["network_g"]["type"] == "BasicVSRPlusPlus"
    assert (base.minibatch, base.total_iter) == (ours.minibatch, ours.total_iter) == (1, 600)
    assert base.schedule.describe() == "24&7"
    assert ours.schedule.describe() == "12&3 / 12&5 / 12&7 / 24&3 / 24&5 / 24&7"
    assert peak_lrs(base) == peak_lrs(ours) == {1e-3}
    basicvsr = expand("table1", "cpu", tmp_path)["basicvsr_m"]["baseline"]
    assert base.run_dir != basicvsr.run_dir


def test_table9_appends_the_extra_stage_after_the_default_six(tmp_path):
    cpu = expand("table9", "cpu", tmp_path)["extra_stage"]["multi_st_extra"]
    assert cpu.schedule.kind == "custom" and cpu.options["train"]["curriculum"]["type"] == "custom"
    assert cpu.schedule.describe() == "12&3 / 12&5 / 12&7 / 24&3 / 24&5 / 24&7 / 27&8"
    assert [s.iters for s in cpu.schedule.stages] == [25] * 6 + [40]  # 150 + 600/15, as 75k + 20k
    assert cpu.total_iter == 190 and cpu.minibatch == 4 and cpu.plan["warmup_iter"] == 10 and peak_lrs(cpu) == {4e-3}
    assert len(cpu.lr_schedule.restart_iters) == 6  # the LR restarts at every stage, the extra one included
    paper = expand("table9", "paper", tmp_path)["extra_stage"]["multi_st_extra"]
    assert paper.schedule.describe().endswith("64&15 / 72&17") and paper.total_iter == 95_000
    assert paper.schedule.stages[-1].iters == 20_000
    limited = expand("table9", "cpu", tmp_path, limit_iters=3)["extra_stage"]["multi_st_extra"]
    assert len(limited.schedule.stages) == 7 and limited.limited_from == 190 and limited.total_iter < 190


def test_original_scheduler_control_is_one_cosine_over_the_multigrid_run(tmp_path):
    for scale, iters in (("cpu", 150), ("paper", 75_000)):
        rows = expand("table1", scale, tmp_path)["basicvsr_m"]
        control, ours = rows["multi_st_original_lr"], rows["multi_st"]
        assert control.schedule.describe() == ours.schedule.describe()  # the shapes still change
        assert control.opt.train.scheduler.type == "CosineAnnealingRestartLR"
        assert control.opt.train.scheduler.periods == (iters,) and control.opt.train.scheduler.restart_weights == (1,)
        assert control.lr_schedule.restart_iters == [] and len(ours.lr_schedule.restart_iters) == 5
        warm = control.plan["warmup_iter"]
        lrs = [control.lr_schedule.lr_at(t) for t in range(warm, iters, max(1, iters // 600))]
        assert all(b <= a for a, b in zip(lrs, lrs[1:]))  # never rises again after the warmup
        boundary = ours.schedule.boundaries[0]
        assert ours.lr_schedule.lr_at(boundary) > ours.lr_schedule.lr_at(boundary - 1)  # ours restarts
        assert control.run_dir != ours.run_dir
    limited = expand("table1", "cpu", tmp_path, limit_iters=6)["basicvsr_m"]["multi_st_original_lr"]
    assert limited.opt.train.scheduler.periods == (limited.total_iter,)


def test_scale_presets_and_stage_lists_are_checked(tmp_path, capsys):
    table = {"table": "t", "sections": [{"name": "s", "baseline": "b", "scales": {"cpu": {"preset": "nope"}},
                                         "variants": [{"name": "b"}]}]}
    with pytest.raises(ConfigError, match=r"preset' = 'nope' is not a scale preset .*demo_basicvsr16"):
        runner.load_table(write_definition(tmp_path / "p.yml", table))
    table["sections"][0]["scales"]["cpu"] = {"preset": "demo_basicvsr16", "iterations": 120, "set": {"train.grad_clip": 1.0}}
    table["sections"][0]["variants"] = [{"name": "b", "seeds": [0, 0]}]
    with pytest.raises(ConfigError, match=r"'sections\[0\]\.variants\[0\] \('b'\)\.seeds' lists a seed twice"):
        runner.load_table(write_definition(tmp_path / "p.yml", table))
    table["sections"][0]["variants"] = [{"name": "b", "curriculum": {"type": "multigrid", "stages": [
        {"lr_crop": 16, "num_frames": 3, "iters": "1/2"}]}}]
    with pytest.raises(ConfigError, match=r"curriculum.stages' is given: the stage list is what type 'custom' means"):
        runner.load_table(write_definition(tmp_path / "p.yml", table))
    table["sections"][0]["variants"] = [{"name": "b"}, {"name": "c", "curriculum": {"type": "custom", "stages": [
        {"lr_crop": 16, "num_frames": 3, "iters": "1/2"}, {"lr_crop": 32, "num_frames": 7, "iters": "1/2"}]}}]
    rows = {rv.variant.name: rv for _, rvs in runner.expand(runner.load_table(write_definition(tmp_path / "p.yml", table)),
                                                            runner.SweepSettings("cpu", tmp_path)) for rv in rvs}
    assert rows["b"].total_iter == 120 and rows["b"].opt.train.grad_clip == 1.0  # given keys override the preset
    assert rows["b"].opt.train.optim_g.lr == pytest.approx(1e-3)  # the rest comes from it
    assert rows["c"].schedule.describe() == "16&3 / 32&7" and [s.iters for s in rows["c"].schedule.stages] == [60, 60]


def test_lr_scaling_and_warmup_ablations(tmp_path):
    t4 = expand("table4", "cpu", tmp_path)["lr_scaling"]
    assert peak_lrs(t4["without_lr_scaling"]) == {1e-3} and t4["without_lr_scaling"].opt.train.base_batch is None
    assert peak_lrs(t4["with_lr_scaling"]) == {4e-3}
    t5 = expand("table5", "cpu", tmp_path)["warmup"]
    assert t5["without_warmup"].plan["warmup_iter"] == 0
    constant, linear = t5["constant_warmup"].lr_schedule, t5["linear_warmup"].lr_schedule
    assert constant.lr_at(0) == pytest.approx(0.1 * 4e-3, rel=0.01) and constant.lr_at(10) > 5 * constant.lr_at(9)
    assert linear.lr_at(0) == pytest.approx(4e-3 / 10, rel=0.01) and linear.lr_at(1) > linear.lr_at(0)
    t6 = expand("table6", "paper", tmp_path)["minibatch"]
    assert [(t6[n].minibatch, t6[n].total_iter) for n in ("minibatch_x2", "minibatch_x3", "minibatch_x4")] == \
        [(32, 150_000), (48, 100_000), (64, 75_000)]


@pytest.mark.parametrize("scale", ["paper", "cpu"])
def test_every_builtin_table_resolves(tmp_path, scale):
    tables_at_scale = []
    for name in runner.available_tables():
        table = runner.load_table(name)
        if scale not in table.scale_names:
            with pytest.raises(ConfigError, match=f"no section is defined at scale '{scale}'"):
                runner.expand(table, runner.SweepSettings(scale=scale, runs_root=tmp_path))
            continue
        sections = runner.expand(table, runner.SweepSettings(scale=scale, runs_root=tmp_path))
        assert sections and all(rvs for _, rvs in sections)
        tables_at_scale.append(name)
    expected = ["table1", "table4", "table5", "table6", "table7", "table8", "table9"]
    assert tables_at_scale == (["table1", "table2", *expected[1:]] if scale == "paper" else ["basicvsrpp", *expected])
    t7 = expand("table7", "paper", tmp_path)
    assert t7["spatial"]["s_4"].schedule.describe() == "32&15 / 40&15 / 48&15 / 64&15"
    assert t7["temporal"]["t_4"].schedule.describe() == "64&7 / 64&9 / 64&11 / 64&15"
    edvr = expand("table2", "paper", tmp_path)["edvr_m"]["multi_s"]
    assert [round(s["lr_peak"], 12) for s in edvr.plan["stages"]] == [2e-4, 8e-4]  # paper: 2e-4 on 32x32


def test_limit_iters_keeps_every_stage_and_the_warmup_share(tmp_path):
    rows = expand("table1", "cpu", tmp_path, limit_iters=3)["basicvsr_m"]
    assert rows["baseline"].total_iter == 3 and rows["baseline"].limited_from == 600
    assert rows["multi_st"].total_iter == 6 and len(rows["multi_st"].schedule.stages) == 6
    assert 1 <= rows["large_batch"].plan["warmup_iter"] < rows["large_batch"].total_iter
    assert rows["baseline"].run_dir != expand("table1", "cpu", tmp_path)["basicvsr_m"]["baseline"].run_dir


def test_dry_run_lists_variants_and_curricula_without_training(tmp_path, capsys):
    out = tmp_path / "results"
    rc = runner.main(["table1", "table8", "--scale", "cpu", "--dry-run", "--runs-root", str(tmp_path / "runs"),
                      "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "multigrid: 12&3 / 12&5 / 12&7 / 24&3 / 24&5 / 24&7" in text and "2.24x" in text
    assert "synchronous: 12&3 / 18&5 / 24&7" in text and "section 'basicvsr': not defined at scale 'cpu'" in text
    assert "16-channel BasicVSR (2 blocks) on the demo footage (cpu scale)" in text and "REDS4" not in text
    # Table 1: 2 baseline seeds, Large-Batch, Multi-S, Multi-T, 2 Multi-S&T seeds, the scheduler control;
    # Table 8: synchronous 2 and 3, hierarchical 4 (its 6-stage row and baseline are Table 1's runs)
    assert "11 distinct run(s)" in text
    assert not (tmp_path / "runs").exists() and not out.exists()


def write_definition(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def test_definition_mistakes_are_one_line_errors_naming_the_key(tmp_path, capsys):
    table = {"table": "t", "sections": [{"name": "s", "baseline": "b", "scales": {
        "cpu": {"base": "options/demo_cpu.yml", "minibatch": 4, "iterations": 8}},
        "variants": [{"name": "b"}, {"name": "v", "minibach": 2}]}]}
    path = write_definition(tmp_path / "bad.yml", table)
    with pytest.raises(ConfigError, match=r"bad.yml: unknown option 'sections\[0\]\.variants\[1\]\.minibach' \(did you mean 'minibatch'"):
        runner.load_table(path)
    table["sections"][0]["variants"][1] = {"name": "v", "minibatch": 3, "iterations": "1/3"}
    assert runner.main([write_definition(tmp_path / "bad2.yml", table), "--scale", "cpu", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "s/v at scale 'cpu'" in err and "not a whole number" in err


def test_refuses_to_run_under_torchrun(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert runner.main(["table1", "--dry-run"]) == 2
    assert "--nproc-per-node" in capsys.readouterr().err


# -- the table writer ------------------------------------------------------------------------------

def row(variant: str, seconds: float | None, **kw) -> tables.Row:
    defaults = dict(section="s", row_id="", label=variant, minibatch=4, world_size=1, curriculum="none: 32&7",
                    iterations=100)
    return tables.Row(variant=variant, train_seconds=seconds, **{**defaults, **kw})


def test_speedups_from_given_timings():
    rows = [row("baseline", 120.0, wall_seconds=150.0, psnr=30.0, ssim=0.9),
            row("large", 100.0, wall_seconds=120.0, minibatch=16, iterations=25, devices=4),
            row("multi", 40.0, wall_seconds=60.0, minibatch=16, iterations=25, devices=4, equal_iters_ref="large",
                flop_bound=2.24),
            row("broken", None, status="failed", devices=4)]
    speed = tables.compute_speedups(rows, "baseline")
    assert speed["baseline"].measured is None and speed["baseline"].projected is None
    assert speed["large"].measured == pytest.approx(1.2) and speed["large"].measured_incl_data == pytest.approx(1.25)
    assert speed["large"].projected == pytest.approx(4.8)  # 120 / (100 / 4)
    assert speed["multi"].measured == pytest.approx(3.0) and speed["multi"].projected == pytest.approx(12.0)
    assert speed["multi"].equal_iters == pytest.approx(2.5)  # 100 / 40
    assert speed["multi"].equal_iters_incl_data == pytest.approx(2.0)  # 120 / 60
    assert speed["broken"].measured is None and speed["broken"].projected is None

    header = ["command: python -m experiments.run x", "date: today", "machine: test"]
    md = tables.markdown("T", header, [("S", rows, "baseline")], bicubic=(25.46, 0.6758))
    assert "> command: python -m experiments.run x" in md.splitlines()[2]
    assert "| 100.0 | 120.0 | 1.20× / 1.25× | 4.80× (k=4, projected) |" in md
    assert "| 40.0 | 60.0 | 3.00× / 2.50× | 12.00× (k=4, projected) |" in md
    assert "| multi | large | 2.50× | 2.00× | 2.24× | 1.12 |" in md
    assert "MATLAB bicubic upsampling of the same clips scores **25.46 dB** / SSIM 0.6758" in md
    assert "broken **(failed)**" in md and "T_baseline / (T_variant / k)" in md and "not a measurement" in md
    assert "Seed spread: not measured yet" in md

    lines = tables.csv_text(header, [("S", rows, "baseline")]).splitlines()
    assert lines[0] == "# command: python -m experiments.run x"
    records = {r["variant"]: r for r in csv.DictReader(io.StringIO("\n".join(l for l in lines if not l.startswith("#"))))}
    assert float(records["large"]["speedup_measured"]) == pytest.approx(1.2)
    assert float(records["large"]["speedup_measured_incl_data"]) == pytest.approx(1.25)
    assert float(records["large"]["train_seconds_incl_data"]) == 120.0
    assert float(records["large"]["speedup_projected"]) == pytest.approx(4.8)
    assert records["large"]["projected_devices"] == "4" and records["baseline"]["speedup_projected"] == ""
    assert float(records["multi"]["speedup_equal_iters_measured"]) == pytest.approx(2.5)


def test_seed_spread_marks_only_the_differences_larger_than_it():
    rows = [row("baseline", 100.0, wall_seconds=110.0, psnr=26.10, seeds=(0, 1), psnr_seeds=(26.05, 26.15)),
            row("close", 50.0, wall_seconds=55.0, psnr=26.04),  # -0.06: within the 0.12 spread
            row("ours", 40.0, wall_seconds=45.0, psnr=25.90, seeds=(0, 1), psnr_seeds=(25.84, 25.96),
                equal_iters_ref="close", flop_bound=2.0),  # -0.20: outside
            row("old", 30.0, wall_seconds=33.0, wall_from_launch=True, psnr=26.40)]  # +0.30: outside
    spread = tables.section_spread(rows)
    assert spread.value == pytest.approx(0.12) and [label for label, _, _ in spread.rows] == ["baseline", "ours"]
    assert rows[0].spread == pytest.approx(0.10) and rows[1].spread is None
    md = tables.section_markdown("S", rows, "baseline")
    assert "| 26.10 (26.05, 26.15) | — |" in md  # the baseline: mean and each seed, no delta
    assert "| 26.04 | −0.06 |" in md  # within the spread: not marked
    assert "| 25.90 (25.84, 25.96) | **−0.20** ✱ |" in md and "| 26.40 | **+0.30** ✱ |" in md
    assert "| 33.0‡ |" in md  # the launch clock of an old run is marked
    assert "The section's spread is the largest, **0.12 dB**" in md and "baseline 0.10 dB (2 seeds)" in md
    assert "| ours | close | 1.25× | 1.22× | 2.00× | 0.62 | **−0.14** ✱ |" in md  # Δ vs the compared row
    missing = row("half", 10.0, psnr=26.0, seeds=(0, 1), psnr_seeds=(26.0,), status="1 of 2 seeds")
    assert tables.psnr_cell(missing) == "26.00 (26.00; 1 missing)" and missing.spread is None
    records = list(csv.DictReader(l for l in tables.csv_text([], [("S", rows, "baseline")]).splitlines()
                                  if not l.startswith("#")))
    assert [r["delta_exceeds_seed_spread"] for r in records] == ["", "0", "1", "1"]
    assert records[2]["psnr_seeds"] == "25.84 25.96" and float(records[2]["section_seed_spread"]) == pytest.approx(0.12)


def summary_rows() -> dict:
    t1 = [row("baseline", 400.0, wall_seconds=420.0, psnr=26.13, seeds=(0, 1), psnr_seeds=(26.06, 26.20),
              label="baseline", paper={"psnr": 30.91}),
          row("large_batch", 390.0, wall_seconds=400.0, psnr=25.80, minibatch=16, devices=4, label="Large-Batch",
              paper={"speedup": 3.9, "psnr": 30.93}),
          row("multi_st", 200.0, wall_seconds=230.0, psnr=26.01, seeds=(0, 1), psnr_seeds=(25.95, 26.07),
              minibatch=16, devices=4, label="Multi-S&T (ours)", paper={"speedup": 6.2, "psnr": 30.90}),
          row("multi_st_original_lr", 200.0, wall_seconds=231.0, psnr=25.70, minibatch=16, devices=4,
              label="Multi-S&T, original scheduler")]
    t4 = [t1[0], row("without_lr_scaling", 390.0, psnr=25.50, label="w/o LR scaling", paper={"psnr": 30.64}),
          row("with_lr_scaling", 390.0, psnr=25.80, label="w/ LR scaling", paper={"psnr": 30.93})]
    return {("table1", "basicvsr_m"): summary.SectionRows("T1", "baseline", tuple(t1)),
            ("table4", "lr_scaling"): summary.SectionRows("T4", "baseline", tuple(t4))}


def test_summary_states_each_claim_with_the_spread_and_keeps_handwritten_notes(tmp_path):
    sections = summary_rows()
    spread, seeded = summary.scale_spread(sections)
    assert spread == pytest.approx(0.14) and len(seeded) == 2  # the shared baseline counted once
    # one run under another label in another table (Table 8's hier_6 is Table 1's Multi-S&T): once
    relabelled = dataclasses.replace(sections[("table1", "basicvsr_m")].rows[2], label="hierarchical (ours)")
    with_t8 = {**sections, ("table8", "combinations"): summary.SectionRows("T8", "large_batch", (relabelled,))}
    assert [r.label for r in summary.scale_spread(with_t8)[1]] == ["baseline", "Multi-S&T (ours)"]
    path = summary.write_summary(tmp_path / "README.md", ["command: x"], "the scale", sections, 25.46,
                                 (21, 6000.0, 300.0), "cpu")
    text = path.read_text()
    assert "Multi-S&T (ours) is 0.12 dB below baseline (26.01 vs 26.13 dB), within the seed spread of 0.14 dB; " \
           "in the paper -0.01 dB (30.90 vs 30.91): as in the paper, no difference resolved." in text
    assert "w/ LR scaling is 0.30 dB above w/o LR scaling (25.80 vs 25.50 dB), outside the seed spread of 0.14 dB; " \
           "in the paper +0.29 dB (30.93 vs 30.64): the same sign as the paper." in text
    assert "Multi-S&T (ours) is 0.31 dB above Multi-S&T, original scheduler (26.01 vs 25.70 dB), outside" in text
    assert "Multi-S&T (ours) trained in 200 s vs baseline's 400 s excluding data loading (2.00x; 1.83x including " \
           "data loading), 8.00x projected with the paper's 4x devices (ideal scaling, not measured); " \
           "the paper: 6.2x on 4x the GPUs." in text
    assert "Large-Batch is 0.33 dB below baseline (25.80 vs 26.13 dB), outside the seed spread of 0.14 dB; in the " \
           "paper +0.02 dB (30.93 vs 30.91): the paper shows no difference (below 0.05 dB)." in text
    assert "MATLAB bicubic scores 25.46 dB on the held-out clip; the baseline 26.13 dB (+0.67 dB over bicubic)" in text
    assert "**Compute.** 21 distinct runs, 1.75 h in all" in text
    assert "| baseline | 100 × 4 | 26.06, 26.20 | 0.14 |" in text
    assert "## 2. Warmup is needed for the large minibatch (Table 5)" in text and "not defined at this scale" in text
    # a person's interpretation survives the next regeneration; the numbers are rewritten
    edited = text.replace(summary.PLACEHOLDER, "Seed noise is as large as the effect.\n", 1)
    path.write_text(edited)
    sections[("table1", "basicvsr_m")] = summary.SectionRows("T1", "baseline", tuple(
        dataclasses.replace(r, psnr=26.00) if r.variant == "multi_st" else r for r in sections[("table1", "basicvsr_m")].rows))
    again = summary.write_summary(path, ["command: x"], "the scale", sections, 25.46, None, "cpu").read_text()
    assert "<!-- notes:intro -->\nSeed noise is as large as the effect.\n<!-- /notes:intro -->" in again
    assert again.count(summary.PLACEHOLDER.strip()) == text.count(summary.PLACEHOLDER.strip()) - 1
    assert "Multi-S&T (ours) is 0.13 dB below baseline (26.00 vs 26.13 dB)" in again


def test_no_projection_when_the_devices_were_really_added():
    rows = [row("baseline", 100.0, world_size=4, minibatch=16),
            row("large", 30.0, world_size=16, minibatch=64, devices=4)]
    speed = tables.compute_speedups(rows, "baseline")
    assert speed["large"].measured == pytest.approx(100 / 30) and speed["large"].projected is None


# -- a real sweep on tiny data ---------------------------------------------------------------------

@pytest.fixture()
def smoke_table(tmp_path) -> str:
    train_data = make_reds_like(tmp_path / "train", {"000": 6, "001": 6}, gt_hw=(64, 64))
    val_data = make_reds_like(tmp_path / "val", {"000": 4}, gt_hw=(64, 64), seed=1)
    options = tiny_options(train_data, tmp_path / "unused", fix_flow=None)
    options["datasets"]["train"].update(gt_size=64, num_frame=3, batch_size_per_gpu=1)
    options["datasets"]["val"].update(dataroot_gt=str(val_data / "train_sharp"),
                                      dataroot_lq=str(val_data / "train_sharp_bicubic" / "X4"))
    base = write_options(tmp_path / "base.yml", options)
    return write_definition(tmp_path / "smoke.yml", {
        "table": "smoke", "title": "Smoke", "sections": [{
            "name": "s", "baseline": "baseline",
            "scales": {"smoke": {"base": base, "minibatch": 1, "iterations": 2, "val_points": 1}},
            "variants": [{"name": "baseline", "id": "1", "seeds": [3, 4]},
                         {"name": "multi_t", "id": "2", "curriculum": {"type": "temporal", "frame_counts": [2, 3]},
                          "equal_iters_ref": "baseline"}]}]})


def test_interrupted_sweep_resumes_without_rerunning_finished_variants(smoke_table, tmp_path, monkeypatch):
    args = [smoke_table, "--scale", "smoke", "--in-process", "--quiet", "--runs-root", str(tmp_path / "runs"),
            "--out", str(tmp_path / "out")]
    real_train, trained = launch.train_in_process, []

    def interrupt_second(command):
        trained.append(command)
        if len(trained) == 2:  # the baseline's second seed
            raise KeyboardInterrupt
        return real_train(command)

    monkeypatch.setattr(launch, "train_in_process", interrupt_second)
    assert runner.main(args) == 130
    first_state = next((tmp_path / "runs").glob("none-*-s3-*/training_states/2.state"))
    first_mtime = first_state.stat().st_mtime_ns

    trained.clear()
    monkeypatch.setattr(launch, "train_in_process", lambda command: trained.append(command) or real_train(command))
    assert runner.main(args) == 0
    assert len(trained) == 2 and "-s4-" in trained[0][3] and "temporal-" in trained[1][3]  # only the unfinished runs
    assert first_state.stat().st_mtime_ns == first_mtime

    evaluated = []
    monkeypatch.setattr(launch, "train_in_process", lambda command: pytest.fail("finished variant trained again"))
    monkeypatch.setattr(launch, "evaluate_in_process", lambda command: evaluated.append(command) or 0)
    assert runner.main(args) == 0 and not evaluated

    folder = tmp_path / "out" / "smoke"
    md = (folder / "smoke.md").read_text()
    assert "| 2 | multi_t | 1 (1×1) | temporal: 16&2 / 16&3 | 2 |" in md and "(failed)" not in md
    assert "MATLAB bicubic upsampling of the same clips scores" in md and "Seed spread (max − min PSNR over seeds): " \
        "baseline" in md
    rows = list(csv.DictReader(l for l in (folder / "smoke.csv").read_text().splitlines() if not l.startswith("#")))
    seconds = {r["variant"]: float(r["train_seconds_excl_data"]) for r in rows}
    assert float(rows[1]["speedup_measured"]) == pytest.approx(seconds["baseline"] / seconds["multi_t"])
    for r in rows:  # both clocks are the trainer's; the launch clock includes start-up and validation
        excl, incl, launched = (float(r[k]) for k in ("train_seconds_excl_data", "train_seconds_incl_data",
                                                      "launch_wall_seconds"))
        assert 0 < excl <= incl < launched and r["incl_data_from_launch_clock"] == "0" and float(r["psnr"]) > 10
    assert rows[0]["seeds"] == "3 4" and len(rows[0]["psnr_seeds"].split()) == 2
    seeds_psnr = [float(p) for p in rows[0]["psnr_seeds"].split()]
    assert float(rows[0]["psnr"]) == pytest.approx(sum(seeds_psnr) / 2)
    assert float(rows[0]["psnr_seed_spread"]) == pytest.approx(max(seeds_psnr) - min(seeds_psnr))
    for name in ("curricula.png", "val_psnr.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    logs = folder / "logs"
    assert sorted(p.name for p in logs.iterdir()) == ["s__baseline__seed3", "s__baseline__seed4", "s__multi_t"]
    record = json.loads((logs / "s__baseline__seed3" / "result.json").read_text())
    assert record["run"] == first_state.parents[1].name and record["wall_source"] == "trainer"
    other = json.loads((logs / "s__baseline__seed4" / "result.json").read_text())
    assert seconds["baseline"] == pytest.approx((record["train_seconds"] + other["train_seconds"]) / 2)  # the mean
    assert (folder / "runner.log").is_file()
    assert "skipping training of smoke/s/baseline (seed 3)" in (folder / "runner.log").read_text()
    # the validation curve's clock is the trainer's: at the last iteration it equals the final state's
    run_dir = first_state.parents[1]
    curve = plots.read_val_curve(run_dir)
    assert [p.iteration for p in curve] == [2] and curve[0].wall_seconds >= curve[0].train_seconds
    assert curve[0].train_seconds == pytest.approx(record["train_seconds"], rel=1e-5)

    # an earlier definition's log folders are removed when the table is written again
    (logs / "s__gone").mkdir()
    (logs / "s__gone" / "train.log").write_text("old\n")
    # a fresh clone has the committed logs but no run folders: --report-only rebuilds the same table
    table_before = md.split("Notes:")[0].split("### ")[1]
    import shutil
    shutil.rmtree(tmp_path / "runs")
    monkeypatch.setattr(launch, "evaluate_in_process", lambda command: pytest.fail("nothing to evaluate"))
    assert runner.main([*args, "--report-only"]) == 0
    rebuilt = (folder / "smoke.md").read_text()
    assert rebuilt.split("Notes:")[0].split("### ")[1] == table_before
    assert (logs / "s__multi_t" / "result.json").is_file() and not (logs / "s__gone").exists()


def test_report_falls_back_to_the_launch_clock_for_runs_without_the_second_clock(tmp_path, monkeypatch):
    run_dir = tmp_path / "none-b1-2it-w1-s0-abc"
    run_dir.mkdir()
    (run_dir / "ablation_record.json").write_text(json.dumps({"train_attempts": [{"seconds": 30.0}, {"seconds": 12.5}],
                                                              "eval_attempts": [{"seconds": 4.0}]}))
    (run_dir / "eval.json").write_text(json.dumps({"BasicVSR": {"average": {"psnr": 26.0, "ssim": 0.7}},
                                                   "bicubic": {"average": {"psnr": 25.46, "ssim": 0.68}}}))
    rv = SimpleNamespace(run_dir=run_dir, total_iter=2, seed=0, opt=SimpleNamespace(network_g={"type": "BasicVSR"}))
    monkeypatch.setattr(records, "final_state", lambda rv: {"iter": 2, "train_seconds": 20.0, "wall_seconds": None})
    result = records.result_from_run(rv)
    assert (result.train_seconds, result.wall_seconds, result.wall_source) == (20.0, 42.5, "launch")
    assert (result.psnr, result.bicubic_psnr, result.eval_seconds) == (26.0, 25.46, 4.0)
    monkeypatch.setattr(records, "final_state", lambda rv: {"iter": 2, "train_seconds": 20.0, "wall_seconds": 21.0})
    newer = records.result_from_run(rv)
    assert (newer.wall_seconds, newer.wall_source, newer.launch_seconds) == (21.0, "trainer", 42.5)
    assert records.RunResult.from_json(newer.to_json()) == newer


def test_dry_run_estimate_times_every_stage_shape(smoke_table, tmp_path, capsys):
    assert runner.main([smoke_table, "--scale", "smoke", "--dry-run", "--estimate", "--estimate-steps", "1",
                        "--runs-root", str(tmp_path / "runs")]) == 0
    text = capsys.readouterr().out
    assert "3 distinct run(s): 6 iterations" in text
    for shape in ("b1 16&2", "b1 16&3"):
        assert f"    {shape}" in text
    assert "estimated total:" in text and "smoke/s/baseline (seed 4)" in text and not (tmp_path / "runs").exists()


def test_report_only_keeps_an_earlier_table_until_a_run_of_the_new_definition_finishes(smoke_table, tmp_path):
    folder = tmp_path / "out" / "smoke"
    folder.mkdir(parents=True)
    (folder / "smoke.md").write_text("an earlier definition's table\n")
    args = [smoke_table, "--scale", "smoke", "--report-only", "--runs-root", str(tmp_path / "runs"),
            "--out", str(tmp_path / "out")]
    assert runner.main(args) == 0
    assert (folder / "smoke.md").read_text() == "an earlier definition's table\n"
    assert "kept" in (folder / "runner.log").read_text() and not (folder / "smoke.csv").exists()
    (folder / "smoke.md").unlink()  # with no earlier table, the empty one is written
    assert runner.main(args) == 0
    assert "baseline **(not run)**" in (folder / "smoke.md").read_text()


ROW_FIELDS = dict(section="s", variant="v", row_id="a", label="v", minibatch=4, world_size=1, curriculum="none: 64&7",
                  iterations=720)


def test_propagation_column_summarises_the_seeds_probes_with_the_gain_of_restoring_whole():
    probes = [{"max_abs_diff_vs_per_frame": 0.06, "flow_mean_px": 0.2, "flow_max_px": 9.0, "psnr_gain_vs_per_frame": 0.01},
              {"max_abs_diff_vs_per_frame": 0.04, "flow_mean_px": 0.4, "flow_max_px": 14.0, "psnr_gain_vs_per_frame": 0.03}]
    summary_ = runner.propagation_summary(probes)
    assert summary_ == pytest.approx({"propagation_gap": 0.04, "flow_mean_px": 0.3, "flow_max_px": 14.0,
                                      "propagation_gain_db": 0.02})
    row = tables.Row(**ROW_FIELDS, **summary_)
    assert tables.propagation_cell(row) == "4.0e-02 / 0.30 / 14.0 / +0.02"
    # a seed probed before the probe measured the gain: no mean over the others, the rest stays
    older = runner.propagation_summary([probes[0], {k: v for k, v in probes[1].items() if k != "psnr_gain_vs_per_frame"}])
    assert older["propagation_gain_db"] is None and older["propagation_gap"] == 0.04
    assert tables.propagation_cell(tables.Row(**ROW_FIELDS, **older)) == \
        "4.0e-02 / 0.30 / 14.0"
