"""Crash safety: atomic checkpoints, exact resume after SIGKILL at chosen points, elastic torchrun
restart, graceful stop on SIGTERM/SIGINT, NaN/Inf detection, full disk, data-worker independence.

Subprocess runs use the test hook `VSR_TEST_KILL_AT` (see `vsr_accel.core.test_hooks`)
to die at exact places: after an optimizer step, or inside a save between writing the temp file
and renaming it. Runs that are compared bitwise all use one thread (OMP_NUM_THREADS=1 in
subprocesses, `one_thread` in-process): CPU kernels may sum in another order with more threads.
"""
from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import train
from tests.conftest import sample_state, tiny_options, write_options
from vsr_accel.core import checkpoint as ckpt
from vsr_accel.core import fsio
from vsr_accel.core import test_hooks

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
ENV.pop(test_hooks.KILL_ENV, None)
TOTAL = 6  # 4 curriculum stages of 1, 1, 2, 2 iterations: boundaries after iterations 1, 2 and 4


def run_options(data: Path, exp: Path, **train_overrides) -> dict:
    """tiny_options without validation, saving every 2 iterations."""
    options = tiny_options(data, exp, **{"total_iter": TOTAL, **train_overrides})
    options.pop("val")
    options["datasets"].pop("val")
    options["logger"].update(save_checkpoint_freq=2, print_freq=2)
    return options


def cheap(options: dict, fix_flow: int = 0) -> dict:
    """For runs not compared with the reference: one small stage (LR crop 16, 3 frames)."""
    options["train"].update(curriculum={"type": "none"}, fix_flow=fix_flow)
    options["datasets"]["train"].update(gt_size=64, num_frame=3)
    return options


@pytest.fixture
def one_thread():
    """In-process runs compared bitwise with subprocess runs use the same thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def weights(run: Path, it: int) -> dict[str, torch.Tensor]:
    return torch.load(run / "models" / f"net_g_{it}.pth", weights_only=True)["params"]


def assert_bit_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[0]}"


def start(cmd: list[str], env: dict | None = None, **kwargs) -> subprocess.Popen:
    """Each run gets its own session, so a timeout can kill it with all its children."""
    return subprocess.Popen(cmd, cwd=REPO, env=env or ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, **kwargs)


def finish(proc: subprocess.Popen, timeout: float) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"timed out after {timeout}s: {' '.join(proc.args)}\n{out[-2000:]}\n{err[-2000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def descendants(pid: int) -> list[int]:
    """Children, grandchildren... of `pid`, from /proc. torchrun starts each worker in a session of
    its own, so killing the launcher's process group would orphan the workers (which keep the
    output pipes open and the test waiting)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL a run this test started and everything it started, deepest first."""
    for child in reversed(descendants(pid)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def train_cmd(opt: str, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "train.py"), "-opt", opt, *extra]


def with_kill(point: str) -> dict:
    return {**ENV, test_hooks.KILL_ENV: point}


class StraightRun:
    """The uninterrupted reference run, started once in the background so that it overlaps with
    the interrupted runs it is compared with."""

    def __init__(self, data: Path, root: Path):
        self.run = root / "exp" / "tiny"
        opt = write_options(root / "straight.yml", run_options(data, root / "exp"))
        self.proc = start(train_cmd(opt))
        self._done: subprocess.CompletedProcess | None = None

    def weights(self) -> dict[str, torch.Tensor]:
        if self._done is None:
            self._done = finish(self.proc, timeout=180)
        assert self._done.returncode == 0, self._done.stderr[-3000:]
        return weights(self.run, TOTAL)

    def state(self) -> dict:
        self.weights()
        return torch.load(self.run / "training_states" / f"{TOTAL}.state", weights_only=True)


@pytest.fixture(scope="module")
def straight(tiny_reds, tmp_path_factory) -> StraightRun:
    return StraightRun(tiny_reds, tmp_path_factory.mktemp("straight"))


# -- exact resume after SIGKILL -----------------------------------------------------------------

def test_sigkill_at_three_points_then_auto_resume_is_bit_identical(straight, tiny_reds, tmp_path):
    opt = write_options(tmp_path / "o.yml", run_options(tiny_reds, tmp_path / "exp"))
    run = tmp_path / "exp" / "tiny"
    states = run / "training_states"
    # (kill point, newest complete state afterwards): inside stage 3; during the state write at the
    # stage-3/4 boundary (the weights file of that save is already complete); inside stage 4
    for point, newest in (("step:3", 2), ("save:4.state", 2), ("step:5", 4)):
        proc = finish(start(train_cmd(opt, "--auto_resume"), env=with_kill(point)), timeout=120)
        assert proc.returncode == -signal.SIGKILL, f"{point}: {proc.returncode}\n{proc.stderr[-3000:]}"
        assert ckpt.list_training_states(states)[0].name == f"{newest}.state", point
        if point.startswith("save:"):
            leftovers = [p.name for p in states.iterdir() if fsio.TEMP_NAME.match(p.name)]
            assert leftovers and leftovers[0].startswith(".4.state."), leftovers  # killed mid-save
    done = finish(start(train_cmd(opt, "--auto_resume")), timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from" in done.stdout and f"{states / '4.state'}" in done.stdout
    assert "the temp file of an interrupted save" in (run / "train.log").read_text()
    assert not [p for p in [*states.iterdir(), *(run / "models").iterdir()] if fsio.TEMP_NAME.match(p.name)]

    assert_bit_identical(straight.weights(), weights(run, TOTAL))
    resumed = torch.load(states / f"{TOTAL}.state", weights_only=True)
    reference = straight.state()
    for key, value in reference["optimizer"]["state"].items():  # Adam moments too
        assert all(torch.equal(value[k], resumed["optimizer"]["state"][key][k]) for k in value)
    assert resumed["sampler"] == reference["sampler"]


def test_sigint_stops_at_step_boundary_with_checkpoint_and_resume_is_exact(straight, tiny_reds, tmp_path,
                                                                           one_thread, monkeypatch, capsys):
    """Graceful stop in-process (the signal is sent by the test hook at the end of iteration 3,
    which is not a save iteration), then an exact resume."""
    opt = write_options(tmp_path / "o.yml", run_options(tiny_reds, tmp_path / "exp"))
    run = tmp_path / "exp" / "tiny"
    handler_before = signal.getsignal(signal.SIGINT)
    monkeypatch.setenv(test_hooks.KILL_ENV, "step:3=SIGINT")
    assert train.main(["-opt", opt]) == 0
    out = capsys.readouterr().out
    assert "stopped by SIGINT at iteration 3" in out and "--auto_resume" in out
    assert [p.name for p in ckpt.list_training_states(run / "training_states")] == ["3.state", "2.state"]
    assert signal.getsignal(signal.SIGINT) is handler_before  # the trainer's handlers are gone
    monkeypatch.delenv(test_hooks.KILL_ENV)
    assert train.main(["-opt", opt, "--auto_resume"]) == 0
    assert_bit_identical(straight.weights(), weights(run, TOTAL))


def test_sigterm_to_the_process_group_saves_and_exits_zero(tiny_reds, tmp_path):
    """What a scheduler does before preemption: SIGTERM at an arbitrary moment of a real run, to
    every process of the job (as Slurm does), DataLoader workers included."""
    options = cheap(run_options(tiny_reds, tmp_path / "exp"))
    options["logger"]["print_freq"] = 1
    options["datasets"]["train"]["num_worker_per_gpu"] = 2
    opt = write_options(tmp_path / "o.yml", options)
    log = tmp_path / "exp" / "tiny" / "train.log"
    proc = start(train_cmd(opt))
    deadline = time.monotonic() + 120
    while not (log.is_file() and "iter       1/" in log.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be stopped"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)
    done = finish(proc, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(l for l in done.stdout.splitlines() if "stopped by SIGTERM at iteration" in l)
    stopped_at = int(line.split("at iteration ")[1].split(";")[0])
    assert 1 <= stopped_at < TOTAL and "--auto_resume" in line
    state = ckpt.read_training_state(tmp_path / "exp" / "tiny" / "training_states" / f"{stopped_at}.state")
    assert state["iter"] == stopped_at == state["sampler"]["next_iter"]
    assert "Traceback" not in done.stderr


# -- elastic DDP ----------------------------------------------------------------------------------

def test_torchrun_restarts_group_after_a_worker_is_killed_and_resumes(tiny_reds, tmp_path):
    options = run_options(tiny_reds, tmp_path / "exp", total_iter=4)  # 4 stages of one iteration
    opt = write_options(tmp_path / "o.yml", options)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--max-restarts=1",
           "--monitor-interval=0.5", str(REPO / "train.py"), "-opt", opt, "--auto_resume"]
    # rank 1 SIGKILLs itself after iteration 3 of the first attempt; the checkpoint of iteration 2 is on disk
    done = finish(start(cmd, env=with_kill("step:3@1")), timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    log = (tmp_path / "exp" / "tiny" / "train.log").read_text()
    assert log.count("training BasicVSR on cpu x2") == 2  # two attempts of the group
    assert f"resumed from {tmp_path / 'exp' / 'tiny' / 'training_states' / '2.state'} at iteration 2" in log
    state = ckpt.read_training_state(tmp_path / "exp" / "tiny" / "training_states" / "4.state")
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and state["sampler"]["next_iter"] == 4


# -- NaN / Inf ------------------------------------------------------------------------------------

# lr 1e30: iteration 1 is finite, iteration 2's loss overflows. SpyNet stays frozen (fix_flow: 3,
# BasicSR's semantics: frozen while the 1-based iteration < 3) for those iterations: torch's CPU grid_sample backward crashes on NaN coordinates with
# padding_mode='border' (SpyNet's warp), which would kill the process before any check.

def test_nonfinite_loss_stops_before_the_save_and_keeps_last_good_checkpoint(tiny_reds, tmp_path, capsys):
    """Iteration 1 is saved; nan_check_freq is large, so the check that fires at iteration 2 is the
    one every save does first."""
    options = cheap(run_options(tiny_reds, tmp_path / "exp", nan_check_freq=100, optim_g={"type": "Adam", "lr": 1e30}),
                    fix_flow=3)
    options["logger"].update(save_checkpoint_freq=1, print_freq=100)
    assert train.main(["-opt", write_options(tmp_path / "o.yml", options)]) == 2
    err = capsys.readouterr().err
    states = tmp_path / "exp" / "tiny" / "training_states"
    assert err.count("\n") == 1 and "at iteration 2 " in err and f"{states / '1.state'} is kept" in err
    assert [p.name for p in states.iterdir()] == ["1.state"]
    assert not (tmp_path / "exp" / "tiny" / "models" / "net_g_2.pth").exists()
    good = ckpt.read_training_state(states / "1.state")["network"]["params"]
    assert all(torch.isfinite(v).all() for v in good.values())


def test_nonfinite_loss_is_named_exactly_though_checked_every_few_steps(tiny_reds, tmp_path, capsys):
    options = cheap(run_options(tiny_reds, tmp_path / "exp", nan_check_freq=3, optim_g={"type": "Adam", "lr": 1e30}),
                    fix_flow=3)
    options["logger"].update(save_checkpoint_freq=100, print_freq=100)
    assert train.main(["-opt", write_options(tmp_path / "o.yml", options)]) == 2
    err = capsys.readouterr().err
    assert "loss became NaN/Inf at iteration 2 (detected at iteration 3)" in err and "no checkpoint" in err


# -- full disk, workers -----------------------------------------------------------------------

def disk_full_after(saves_that_fit: int, monkeypatch) -> None:
    """torch.save as seen by atomic_save: the first `saves_that_fit` saves work, later ones hit
    ENOSPC after 64 KiB of data, as a real full disk would."""
    real_save, calls = torch.save, []

    def save(obj, handle, *args, **kwargs):
        calls.append(1)
        if len(calls) <= saves_that_fit:
            return real_save(obj, handle, *args, **kwargs)

        class Full:
            written = 0

            def write(self, data):
                self.written += memoryview(data).nbytes
                if self.written > 65536:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return handle.write(data)

            def flush(self):
                handle.flush()
        return real_save(obj, Full(), *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def test_disk_full_during_save_keeps_previous_checkpoint_and_leaves_no_partial_file(tiny_reds, tmp_path,
                                                                                     monkeypatch, capsys):
    options = cheap(run_options(tiny_reds, tmp_path / "exp", total_iter=2))
    options["logger"]["save_checkpoint_freq"] = 1
    disk_full_after(2, monkeypatch)  # net_g_1.pth and 1.state fit; net_g_2.pth does not
    assert train.main(["-opt", write_options(tmp_path / "o.yml", options)]) == 2
    err = capsys.readouterr().err
    run = tmp_path / "exp" / "tiny"
    assert err.count("\n") == 1 and "net_g_2.pth: checkpoint not written (No space left on device)" in err
    assert f"the last complete state is {run / 'training_states' / '1.state'}" in err and "--auto_resume" in err
    assert sorted(p.name for p in (run / "models").iterdir()) == ["net_g_1.pth"]
    assert [p.name for p in (run / "training_states").iterdir()] == ["1.state"]
    assert ckpt.read_training_state(run / "training_states" / "1.state")["iter"] == 1


def test_ema_weights_are_saved_and_restored_exactly(tiny_reds, tmp_path, one_thread, monkeypatch):
    """With train.ema_decay the state carries params_ema; a stop after iteration 1 and a resume give
    the same EMA (and weights) as an uninterrupted run."""
    finals = {}
    for name, stop_at in (("straight", None), ("stopped", "step:1=SIGINT")):
        options = cheap(run_options(tiny_reds, tmp_path / name, total_iter=2, ema_decay=0.5))
        opt = write_options(tmp_path / f"{name}.yml", options)
        if stop_at:
            monkeypatch.setenv(test_hooks.KILL_ENV, stop_at)
            assert train.main(["-opt", opt]) == 0
            state = ckpt.read_training_state(tmp_path / name / "tiny" / "training_states" / "1.state")
            assert state["network"]["params_ema"].keys() == state["network"]["params"].keys()
            monkeypatch.delenv(test_hooks.KILL_ENV)
        assert train.main(["-opt", opt, "--auto_resume"]) == 0
        finals[name] = torch.load(tmp_path / name / "tiny" / "models" / "net_g_2.pth", weights_only=True)
    for key in ("params", "params_ema"):
        assert_bit_identical(finals["straight"][key], finals["stopped"][key])
    assert not all(torch.equal(finals["straight"]["params"][k], v) for k, v in finals["straight"]["params_ema"].items())


def test_disk_full_outside_a_checkpoint_is_one_line(monkeypatch, capsys):
    """E.g. the log file or options.yml cannot be written: no traceback either."""
    def full(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "experiments/x/train.log")
    monkeypatch.setattr(train, "run", full)
    assert train.main(["-opt", "unused.yml"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: experiments/x/train.log: No space left on device")


def test_data_workers_do_not_change_results(tiny_reds, tmp_path, one_thread):
    """Every item's randomness comes from the sampler's item_seed (seed, global sample number), so
    0 or 2 workers (with their own process RNGs) give bit-identical weights."""
    runs = {}
    for workers in (0, 2):
        options = run_options(tiny_reds, tmp_path / f"w{workers}", total_iter=2, fix_flow=0,
                              curriculum={"type": "none"})
        options["datasets"]["train"]["num_worker_per_gpu"] = workers
        assert train.main(["-opt", write_options(tmp_path / f"w{workers}.yml", options)]) == 0
        runs[workers] = weights(tmp_path / f"w{workers}" / "tiny", 2)
    assert_bit_identical(runs[0], runs[2])


# -- a kill inside a save ------------------------------------------------------------------------

def test_kill_during_save_leaves_only_an_ignored_temp_file(tmp_path):
    """A real SIGKILL between writing the temp file and renaming it."""
    code = ("import torch, sys; from vsr_accel.core.checkpoint import atomic_save; "
            "atomic_save({'iter': 7, 'x': torch.zeros(10)}, sys.argv[1])")
    ckpt.atomic_save(sample_state(3), tmp_path / "3.state")  # an older state that must survive
    proc = finish(start([sys.executable, "-c", code, str(tmp_path / "7.state")], env=with_kill("save:7.state")), 60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "7.state" not in names and any(n.startswith(".7.state.") and n.endswith(".tmp") for n in names)
    assert ckpt.latest_good_state(tmp_path)[1]["iter"] == 3
    assert [p.name for p in fsio.remove_stale_temps(tmp_path)][0].startswith(".7.state.")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["3.state"]


def test_auto_resume_skips_a_truncated_newest_state_with_a_warning(straight, tiny_reds, tmp_path, one_thread,
                                                                   capsys):
    opt = write_options(tmp_path / "o.yml", run_options(tiny_reds, tmp_path / "exp"))
    assert train.main(["-opt", opt, "--set", "logger.keep_last=0"]) == 0
    states = tmp_path / "exp" / "tiny" / "training_states"
    (states / "6.state").write_bytes((states / "6.state").read_bytes()[:4096])
    (states / "4.state").unlink()
    (tmp_path / "exp" / "tiny" / "models" / "net_g_6.pth").unlink()
    capsys.readouterr()
    assert train.main(["-opt", opt, "--auto_resume"]) == 0
    captured = capsys.readouterr()
    assert "warning: skipping damaged training state" in captured.err and "6.state" in captured.err
    assert f"resumed from {states / '2.state'} at iteration 2" in captured.out
    assert_bit_identical(straight.weights(), weights(tmp_path / "exp" / "tiny", TOTAL))
