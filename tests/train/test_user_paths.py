"""The paths a user walks between features (issue 20): the resume command a stop prints, a
finished run left alone, a stop that costs no regular checkpoint, run names that cannot reach
outside the run root, `scale` checked against the network, both spellings of every flag, and the
untrained-SpyNet note only when it matters."""
from __future__ import annotations

import re
import shlex
import warnings
from pathlib import Path

import pytest
import torch

import models
import train
from tests.conftest import load_script, tiny_options, write_options
from vsr_accel.core import checkpoint as ckpt
from vsr_accel.core import test_hooks
from vsr_accel.core.cli import ArgumentParser, resume_command

TOTAL = 6


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cheap(data: Path, exp: Path, **logger) -> dict:
    """One small stage (LR crop 16, 3 frames), no validation, saves every 2 iterations."""
    options = tiny_options(data, exp, total_iter=TOTAL, curriculum={"type": "none"}, fix_flow=0)
    options.pop("val")
    options["datasets"].pop("val")
    options["datasets"]["train"].update(gt_size=64, num_frame=3)
    options["logger"].update(save_checkpoint_freq=2, print_freq=2, **logger)
    return options


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


# -- 1. the resume command, and a finished run left alone ----------------------------------------

def test_a_stop_prints_the_command_that_resumes_this_run_with_its_overrides(tiny_reds, tmp_path, monkeypatch,
                                                                            capsys):
    opt = write_options(tmp_path / "o.yml", cheap(tiny_reds, tmp_path / "exp"))
    monkeypatch.setenv(test_hooks.KILL_ENV, "step:3=SIGINT")
    assert train.main(["-opt", opt, "--set", "name=my run", "--force_yml", "train:total_iter=5"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if "stopped by SIGINT at iteration 3" in l)
    command = shlex.split(line.split("resume with: ")[1])
    assert command[:2] == ["python", train.script_path()]
    assert command[2:] == ["-opt", opt, "--set", "name=my run", "--force_yml", "train:total_iter=5", "--auto_resume"]
    monkeypatch.delenv(test_hooks.KILL_ENV)
    assert train.main(command[2:]) == 0  # run literally, it continues the same run to its end
    assert (tmp_path / "exp" / "my run" / "models" / "net_g_5.pth").is_file()
    assert not (tmp_path / "exp" / "tiny").exists()


def test_the_resume_command_under_torchrun_and_without_a_duplicate_flag():
    argv = ["-opt", "a b.yml", "--local-rank=0", "--auto-resume"]
    assert resume_command("train.py", argv, {}) == "python train.py -opt 'a b.yml' --auto-resume"
    env = {"WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "8"}
    assert resume_command("train.py", ["-opt", "x.yml", "--local_rank", "3"], env) == \
        "python -m torch.distributed.run --nproc_per_node=8 train.py -opt x.yml --auto_resume"
    two_nodes = resume_command("train.py", ["-opt", "x.yml"], {"WORLD_SIZE": "16", "LOCAL_WORLD_SIZE": "8"})
    assert two_nodes.startswith("python -m torch.distributed.run --nproc_per_node=8 ") and "every node" in two_nodes


def test_auto_resume_of_a_finished_run_writes_nothing_into_it(tiny_reds, tmp_path, capsys):
    opt = write_options(tmp_path / "o.yml", cheap(tiny_reds, tmp_path / "exp", use_tb_logger=True))
    assert train.main(["-opt", opt]) == 0
    run = tmp_path / "exp" / "tiny"
    before = snapshot(run)
    capsys.readouterr()
    assert train.main(["-opt", opt, "--auto_resume"]) == 0
    out = capsys.readouterr().out
    assert "nothing to do" in out and str(run) in out and "change 'name'" in out
    assert snapshot(run) == before  # no log line, no empty tfevents file


def test_auto_resume_of_a_finished_run_with_other_options_is_refused_saying_so(tiny_reds, tmp_path, capsys):
    opt = write_options(tmp_path / "o.yml", cheap(tiny_reds, tmp_path / "exp"))
    assert train.main(["-opt", opt]) == 0
    before = snapshot(tmp_path / "exp")
    assert train.main(["-opt", opt, "--auto_resume", "--set", "train.optim_g.lr=0.002"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "train.optim_g.lr" in err
    assert snapshot(tmp_path / "exp") == before


# -- 4. a stop never costs a regular checkpoint ---------------------------------------------------

def test_a_stop_between_saves_prunes_no_regular_checkpoint(tiny_reds, tmp_path, monkeypatch):
    opt = write_options(tmp_path / "o.yml", cheap(tiny_reds, tmp_path / "exp", keep_last=1))
    run = tmp_path / "exp" / "tiny"
    monkeypatch.setenv(test_hooks.KILL_ENV, "step:3=SIGINT")
    assert train.main(["-opt", opt]) == 0
    assert sorted(p.name for p in (run / "models").iterdir()) == ["net_g_2.pth", "net_g_3.pth"]
    assert [p.name for p in ckpt.list_training_states(run / "training_states")] == ["3.state", "2.state"]
    monkeypatch.delenv(test_hooks.KILL_ENV)
    assert train.main(["-opt", opt, "--auto_resume"]) == 0
    # the next regular save supersedes the stop's files and keeps keep_last regular ones
    assert sorted(p.name for p in (run / "models").iterdir()) == [f"net_g_{TOTAL}.pth"]


def test_prune_keeps_the_newest_regular_files_and_drops_superseded_others(tmp_path):
    for it in (2, 4, 5, 6):
        (tmp_path / f"net_g_{it}.pth").write_bytes(b"x")
    ckpt.prune(tmp_path, ckpt.WEIGHTS_NAME, 2, regular=lambda it: it % 2 == 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net_g_4.pth", "net_g_6.pth"]


# -- 3, 19. run names and scale ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["", ".", "..", "../victim", "a/b", "a\\b", " tiny"])
def test_a_run_name_must_be_one_plain_folder_name(tiny_reds, tmp_path, capsys, name):
    exp = tmp_path / "root" / "exp"
    opt = write_options(tmp_path / "o.yml", cheap(tiny_reds, exp))
    assert train.main(["-opt", opt]) == 0  # an earlier finished run
    (tmp_path / "root" / "victim").mkdir()
    (tmp_path / "root" / "victim" / "keep.txt").write_text("mine")
    before = snapshot(tmp_path / "root")
    capsys.readouterr()
    options = cheap(tiny_reds, exp)
    options["name"] = name
    assert train.main(["-opt", write_options(tmp_path / "bad.yml", options)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "'name'" in err[0] and repr(name) in err[0]
    assert snapshot(tmp_path / "root") == before


@pytest.mark.parametrize("name", ["results", "ablations"])
def test_a_run_name_over_a_folder_that_is_not_a_run_is_refused(tiny_reds, tmp_path, capsys, name):
    """The default run root `experiments/` also holds the package's results and definitions."""
    exp = tmp_path / "experiments"
    (exp / name / "table1").mkdir(parents=True)
    (exp / name / "table1" / "table1.md").write_text("committed")
    before = snapshot(exp)
    options = cheap(tiny_reds, exp)
    options["name"] = name
    assert train.main(["-opt", write_options(tmp_path / "o.yml", options)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: name: ") and "is not a run folder" in err[0]
    assert snapshot(exp) == before and not list(tmp_path.glob("experiments/*_archived_*"))


def test_scale_is_checked_against_the_network_before_any_data_is_read(tiny_reds, tmp_path, capsys):
    options = cheap(tiny_reds, tmp_path / "exp")
    options["scale"] = 2
    options["datasets"]["train"]["dataroot_lq"] = str(tmp_path / "nowhere")  # would fail if it were read
    opt = write_options(tmp_path / "o.yml", options)
    assert train.main(["-opt", opt]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {opt}: scale: 2, but network_g.type BasicVSR upsamples x4"), err
    assert not (tmp_path / "exp").exists()
    evaluate = load_script("evaluate")
    assert evaluate.main(["-opt", opt, "--checkpoint", str(tmp_path / "none.pth")]) == 2
    assert "scale: 2, but network_g.type BasicVSR upsamples x4" in capsys.readouterr().err


# -- 14. both spellings ---------------------------------------------------------------------------

def test_every_long_flag_is_accepted_with_dashes_and_with_underscores():
    args = train.parse_args(["-opt", "x.yml", "--auto-resume", "--force_resume", "--force-yml", "a:b=1"])
    assert args.auto_resume and args.force_resume and args.force_yml == ["a:b=1"]
    args = train.parse_args(["-opt", "x.yml", "--auto_resume", "--force-resume", "--world_size", "4"])
    assert args.auto_resume and args.force_resume and args.world_size == 4
    parser = ArgumentParser()
    parser.add_argument("--report-only", action="store_true")
    assert parser.parse_args(["--report_only"]).report_only


@pytest.mark.parametrize("script", ["evaluate", "create_lmdb", "create_raw_store", "generate_lr", "make_demo_data",
                                    "pretrain_spynet", "regroup_reds_val", "footage_motion"])
def test_every_script_lists_both_spellings_of_its_flags(script, capsys):
    with pytest.raises(SystemExit):
        load_script(script).main(["--help"])
    flags = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", capsys.readouterr().out))
    two_words = {f for f in flags if "-" in f[2:] or "_" in f[2:]}
    for flag in two_words:
        assert "--" + flag[2:].replace("-", "_") in flags and "--" + flag[2:].replace("_", "-") in flags, flag


# -- 13. the untrained-SpyNet note ---------------------------------------------------------------

def test_untrained_spynet_is_one_plain_line_only_when_no_weights_follow(tiny_reds, tmp_path, capsys, monkeypatch):
    opt = write_options(tmp_path / "o.yml", cheap(tiny_reds, tmp_path / "exp"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        monkeypatch.setenv(test_hooks.KILL_ENV, "step:2=SIGINT")
        assert train.main(["-opt", opt]) == 0
        fresh = capsys.readouterr()
        monkeypatch.delenv(test_hooks.KILL_ENV)
        assert train.main(["-opt", opt, "--auto_resume"]) == 0
        resumed = capsys.readouterr()
        net = models.load_network({"type": "BasicVSR", "num_feat": 4, "num_block": 1},
                                  tmp_path / "exp" / "tiny" / "models" / f"net_g_{TOTAL}.pth")
    assert fresh.out.count("note: BasicVSR: spynet_path is not set") == 1
    assert "spynet_path" not in resumed.out + resumed.err
    assert net is not None and not [w for w in caught if issubclass(w.category, models.UntrainedPartWarning)]
