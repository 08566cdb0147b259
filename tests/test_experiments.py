"""The ablation runner: definitions expand to the paper's option sets, the table writer's arithmetic,
and a real (tiny) sweep that is interrupted and resumed without re-running finished variants."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import yaml

import experiments.launch as launch
import experiments.run as runner
from experiments import plots, tables
from tests.conftest import make_reds_like, tiny_options, write_options
from vsr_accel.errors import ConfigError


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
    assert (base.minibatch, base.total_iter, base.schedule.describe()) == (4, 288, "32&7")
    assert (large.minibatch, large.total_iter) == (16, 72)
    assert peak_lrs(large) == {4e-3} and peak_lrs(base) == {1e-3}  # LR x4 for the 4x minibatch
    assert large.plan["warmup_iter"] == 5  # 1/15 of the run (4.8), as 5k of 75k
    assert t1["multi_s"].schedule.describe() == "16&7 / 32&7"
    assert t1["multi_t"].schedule.describe() == "32&3 / 32&5 / 32&7"
    assert t1["multi_st"].schedule.describe() == "16&3 / 16&5 / 16&7 / 32&3 / 32&5 / 32&7"
    assert [s.iters for s in t1["multi_st"].schedule.stages] == [12] * 6  # equal stages, as the paper
    assert t8["sync_2"].schedule.describe() == "16&3 / 32&7"
    assert t8["sync_3"].schedule.describe() == "16&3 / 24&5 / 32&7"
    assert t8["hier_4"].schedule.describe() == "16&3 / 16&7 / 32&3 / 32&7"
    # the same resolved options train once for both tables
    assert t8["hier_6"].run_dir == t1["multi_st"].run_dir and t8["baseline"].run_dir == base.run_dir
    assert t8["sync_2"].run_dir != t8["hier_4"].run_dir


def test_lr_scaling_and_warmup_ablations(tmp_path):
    t4 = expand("table4", "cpu", tmp_path)["lr_scaling"]
    assert peak_lrs(t4["without_lr_scaling"]) == {1e-3} and t4["without_lr_scaling"].opt.train.base_batch is None
    assert peak_lrs(t4["with_lr_scaling"]) == {4e-3}
    t5 = expand("table5", "cpu", tmp_path)["warmup"]
    assert t5["without_warmup"].plan["warmup_iter"] == 0
    constant, linear = t5["constant_warmup"].lr_schedule, t5["linear_warmup"].lr_schedule
    assert constant.lr_at(0) == pytest.approx(0.1 * 4e-3, rel=0.01) and constant.lr_at(5) > 5 * constant.lr_at(4)
    assert linear.lr_at(0) == pytest.approx(4e-3 / 5, rel=0.01) and linear.lr_at(1) > linear.lr_at(0)
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
    expected = ["table1", "table4", "table5", "table6", "table7", "table8"]
    assert tables_at_scale == (["table1", "table2", *expected[1:]] if scale == "paper" else expected)
    t7 = expand("table7", "paper", tmp_path)
    assert t7["spatial"]["s_4"].schedule.describe() == "32&15 / 40&15 / 48&15 / 64&15"
    assert t7["temporal"]["t_4"].schedule.describe() == "64&7 / 64&9 / 64&11 / 64&15"
    edvr = expand("table2", "paper", tmp_path)["edvr_m"]["multi_s"]
    assert [round(s["lr_peak"], 12) for s in edvr.plan["stages"]] == [2e-4, 8e-4]  # paper: 2e-4 on 32x32


def test_limit_iters_keeps_every_stage_and_the_warmup_share(tmp_path):
    rows = expand("table1", "cpu", tmp_path, limit_iters=3)["basicvsr_m"]
    assert rows["baseline"].total_iter == 3 and rows["baseline"].limited_from == 288
    assert rows["multi_st"].total_iter == 6 and len(rows["multi_st"].schedule.stages) == 6
    assert 1 <= rows["large_batch"].plan["warmup_iter"] < rows["large_batch"].total_iter
    assert rows["baseline"].run_dir != expand("table1", "cpu", tmp_path)["basicvsr_m"]["baseline"].run_dir


def test_dry_run_lists_variants_and_curricula_without_training(tmp_path, capsys):
    out = tmp_path / "results"
    rc = runner.main(["table1", "table8", "--scale", "cpu", "--dry-run", "--runs-root", str(tmp_path / "runs"),
                      "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "multigrid: 16&3 / 16&5 / 16&7 / 32&3 / 32&5 / 32&7" in text and "2.24x" in text
    assert "synchronous: 16&3 / 24&5 / 32&7" in text and "section 'basicvsr': not defined at scale 'cpu'" in text
    assert "8 distinct run(s)" in text  # 5 (Table 1) + 3 new ones of Table 8
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
    rows = [row("baseline", 120.0, psnr=30.0, ssim=0.9),
            row("large", 100.0, minibatch=16, iterations=25, devices=4),
            row("multi", 40.0, minibatch=16, iterations=25, devices=4, equal_iters_ref="large", flop_bound=2.24),
            row("broken", None, status="failed", devices=4)]
    speed = tables.compute_speedups(rows, "baseline")
    assert speed["baseline"].measured is None and speed["baseline"].projected is None
    assert speed["large"].measured == pytest.approx(1.2)
    assert speed["large"].projected == pytest.approx(4.8)  # 120 / (100 / 4)
    assert speed["multi"].measured == pytest.approx(3.0) and speed["multi"].projected == pytest.approx(12.0)
    assert speed["multi"].equal_iters == pytest.approx(2.5)  # 100 / 40
    assert speed["broken"].measured is None and speed["broken"].projected is None

    header = ["command: python -m experiments.run x", "date: today", "machine: test"]
    md = tables.markdown("T", header, [("S", rows, "baseline")])
    assert "> command: python -m experiments.run x" in md.splitlines()[2]
    assert "| 1.20× | 4.80× (k=4, projected) |" in md and "| 3.00× | 12.00× (k=4, projected) |" in md
    assert "| multi | large | 2.50× | 2.24× | 1.12 |" in md
    assert "broken **(failed)**" in md and "T_baseline / (T_variant / k)" in md and "not a measurement" in md

    lines = tables.csv_text(header, [("S", rows, "baseline")]).splitlines()
    assert lines[0] == "# command: python -m experiments.run x"
    records = {r["variant"]: r for r in csv.DictReader(io.StringIO("\n".join(l for l in lines if not l.startswith("#"))))}
    assert float(records["large"]["speedup_measured"]) == pytest.approx(1.2)
    assert float(records["large"]["speedup_projected"]) == pytest.approx(4.8)
    assert records["large"]["projected_devices"] == "4" and records["baseline"]["speedup_projected"] == ""
    assert float(records["multi"]["speedup_equal_iters_measured"]) == pytest.approx(2.5)


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
            "variants": [{"name": "baseline", "id": "1"},
                         {"name": "multi_t", "id": "2", "curriculum": {"type": "temporal", "frame_counts": [2, 3]},
                          "equal_iters_ref": "baseline"}]}]})


def test_interrupted_sweep_resumes_without_rerunning_finished_variants(smoke_table, tmp_path, monkeypatch):
    args = [smoke_table, "--scale", "smoke", "--in-process", "--quiet", "--runs-root", str(tmp_path / "runs"),
            "--out", str(tmp_path / "out")]
    real_train, trained = launch.train_in_process, []

    def interrupt_second(command):
        trained.append(command)
        if len(trained) == 2:
            raise KeyboardInterrupt
        return real_train(command)

    monkeypatch.setattr(launch, "train_in_process", interrupt_second)
    assert runner.main(args) == 130
    first_state = next((tmp_path / "runs").glob("none-*/training_states/2.state"))
    first_mtime = first_state.stat().st_mtime_ns

    trained.clear()
    monkeypatch.setattr(launch, "train_in_process", lambda command: trained.append(command) or real_train(command))
    assert runner.main(args) == 0
    assert len(trained) == 1 and "temporal-" in trained[0][3]  # only the interrupted variant
    assert first_state.stat().st_mtime_ns == first_mtime

    evaluated = []
    monkeypatch.setattr(launch, "train_in_process", lambda command: pytest.fail("finished variant trained again"))
    monkeypatch.setattr(launch, "evaluate_in_process", lambda command: evaluated.append(command) or 0)
    assert runner.main(args) == 0 and not evaluated

    folder = tmp_path / "out" / "smoke"
    md = (folder / "smoke.md").read_text()
    assert "| 2 | multi_t | 1 (1×1) | temporal: 16&2 / 16&3 | 2 |" in md and "(failed)" not in md
    records = list(csv.DictReader(l for l in (folder / "smoke.csv").read_text().splitlines() if not l.startswith("#")))
    seconds = {r["variant"]: float(r["train_seconds_excl_data"]) for r in records}
    assert float(records[1]["speedup_measured"]) == pytest.approx(seconds["baseline"] / seconds["multi_t"])
    assert all(float(r["psnr"]) > 10 and float(r["total_wall_seconds"]) > 0 for r in records)
    for name in ("curricula.png", "val_psnr.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (folder / "logs" / "s__baseline" / "train.log").is_file() and (folder / "runner.log").is_file()
    assert "skipping training of smoke/s/baseline" in (folder / "runner.log").read_text()
    # the validation curve's clock is the trainer's: at the last iteration it equals the final state's
    run_dir = first_state.parents[1]
    curve = plots.read_val_curve(run_dir)
    assert [p.iteration for p in curve] == [2]
    assert curve[0].train_seconds == pytest.approx(seconds["baseline"], rel=1e-5)
