"""Multi-node launches, tested on one machine as two torchrun "nodes" (issue 13, item 10).

Each node is its own torchrun agent with one process (`--nproc_per_node=1`), and the two meet
through a c10d rendezvous on localhost, exactly as two machines would through
`--rdzv-endpoint=<node>:<port>`. Checked:

- `--nnodes=2` trains exactly like one node with two processes (`--standalone
  --nproc_per_node=2`): the same global batch and LR at every logged iteration, bit-identical
  weights, Adam moments and sampler position.
- `--nnodes=1:2 --max-restarts=1`: a node killed (SIGKILL to its agent and its worker) after a
  checkpoint exists; the other node re-rendezvouses alone and finishes the run from the last
  checkpoint. One process instead of two halves the global batch, which a resume refuses unless
  `--force-resume` is given (vsr_accel.train.run_state.CheckpointClient.geometry_change): so the nodes are
  launched with `--auto_resume --force-resume`, and the survivor's stderr must say what changed.

All runs use one thread per process (bitwise comparisons) and kill their whole process trees on
failure (torchrun's workers live in sessions of their own).
"""
from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import uuid

import pytest
import torch

import models
from tests.conftest import write_options
from tests.test_reliability import (REPO, assert_bit_identical, cheap, finish, kill_tree, run_options, start,
                                    weights)
from vsr_accel.train import builders
from vsr_accel.train.options import load_options

pytestmark = pytest.mark.slow  # each test launches two or three torchrun jobs: a minute or more on 2 cores

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
ITER_LINE = re.compile(r"iter +(\d+)/\d+ \| loss ([0-9.]+) \| lr ([0-9.e+-]+) \|")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_cmd(opt: str, port: int, run_id: str, nnodes: str, *extra: str, rdzv_conf: str = "") -> list[str]:
    """One "node": its own torchrun agent with one process, meeting the others at 127.0.0.1:port."""
    conf = [f"--rdzv-conf={rdzv_conf}"] if rdzv_conf else []
    return [*TORCHRUN, f"--nnodes={nnodes}", "--nproc_per_node=1", "--rdzv-backend=c10d",
            f"--rdzv-endpoint=127.0.0.1:{port}", f"--rdzv-id={run_id}", *conf, "--monitor-interval=0.5",
            *extra, str(REPO / "train.py"), "-opt", opt]


def logged_iterations(log: str) -> dict[int, tuple[str, str]]:
    """{iteration: (loss, lr)} as printed (the last attempt's line wins)."""
    return {int(m.group(1)): (m.group(2), m.group(3)) for m in ITER_LINE.finditer(log)}


class Launched:
    """Processes a test started, killed with all their children whatever happens."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, cmd: list[str]) -> subprocess.Popen:
        proc = start(cmd)
        self.procs.append(proc)
        return proc

    def kill_all(self) -> None:
        running = [proc for proc in self.procs if proc.poll() is None]
        for proc in running:
            kill_tree(proc.pid)
        for proc in running:
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def launched():
    procs = Launched()
    yield procs
    procs.kill_all()


def test_two_nodes_train_exactly_like_one_node_with_two_processes(tiny_reds, tmp_path, launched):
    """Same global batch (4 = 2 processes x 2 clips), same LR at every iteration across the four
    curriculum stages, bit-identical weights, optimizer and sampler state."""
    options = run_options(tiny_reds, tmp_path / "one_node", total_iter=4)  # 4 stages of one iteration
    options["logger"]["print_freq"] = 1
    one_node_opt = write_options(tmp_path / "one_node.yml", options)
    options["path"]["experiments_root"] = str(tmp_path / "two_nodes")
    two_nodes_opt = write_options(tmp_path / "two_nodes.yml", options)

    port, run_id = free_port(), f"vsr-test-{uuid.uuid4().hex[:8]}"
    one_node = launched.start([*TORCHRUN, "--standalone", "--nproc_per_node=2", str(REPO / "train.py"),
                               "-opt", one_node_opt])
    nodes = [launched.start(node_cmd(two_nodes_opt, port, run_id, "2")) for _ in range(2)]
    for proc in (*nodes, one_node):
        done = finish(proc, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]

    reference, multi = tmp_path / "one_node" / "tiny", tmp_path / "two_nodes" / "tiny"
    logs = {run: (run / "train.log").read_text() for run in (reference, multi)}
    for log in logs.values():
        assert log.count("training BasicVSR on cpu x2:") == 1  # one attempt, two processes
    iterations = logged_iterations(logs[multi])
    assert sorted(iterations) == [1, 2, 3, 4]
    assert iterations == logged_iterations(logs[reference])  # loss and LR, as printed, at every iteration
    assert_bit_identical(weights(reference, 4), weights(multi, 4))
    ref_state, multi_state = (torch.load(run / "training_states" / "4.state", weights_only=True)
                              for run in (reference, multi))
    assert multi_state["world_size"] == ref_state["world_size"] == 2 and len(multi_state["rng"]) == 2
    assert multi_state["sampler"] == ref_state["sampler"]
    assert multi_state["sampler"]["consumed"] == 4 * 2 * 2  # 4 iterations of a global batch of 4
    for key, moments in ref_state["optimizer"]["state"].items():
        assert all(torch.equal(moments[k], multi_state["optimizer"]["state"][key][k]) for k in moments)
    assert sorted(p.name for p in (multi / "training_states").iterdir()) == ["2.state", "4.state"]  # rank 0 only


def test_elastic_nodes_continue_on_one_node_when_the_other_is_killed(tiny_reds, tmp_path, launched):
    """`--nnodes=1:2`: kill one node (agent and worker) once a checkpoint exists; the survivor
    re-rendezvouses alone, resumes from the newest checkpoint with half the global batch (and,
    by linear scaling, half the LR), says so, and finishes."""
    total = 12
    options = cheap(run_options(tiny_reds, tmp_path / "exp", total_iter=total))  # one stage: LR crop 16, 3 frames
    options["logger"]["print_freq"] = 1
    opt = write_options(tmp_path / "o.yml", options)
    run, states = tmp_path / "exp" / "tiny", tmp_path / "exp" / "tiny" / "training_states"

    port, run_id = free_port(), f"vsr-test-{uuid.uuid4().hex[:8]}"
    # On one machine both agents would take 127.0.0.1 as their own address and race to host the
    # rendezvous store; on a cluster the endpoint's node hosts it. `is_host` pins it to the
    # survivor, since a job cannot outlive the node holding its rendezvous (the other node's agent
    # retries connecting until the store is up). Both start together; the default last call (30 s
    # of waiting for more nodes once the minimum is there) covers one node starting later than
    # the other; a 1 s heartbeat finds the killed node in about 3 s.
    conf = "keep_alive_interval=1,keep_alive_max_attempt=3,read_timeout=300"
    args = ("--max-restarts=1",)
    survivor = launched.start(node_cmd(opt, port, run_id, "1:2", *args, rdzv_conf=f"is_host=true,{conf}")
                              + ["--auto_resume", "--force-resume"])
    victim = launched.start(node_cmd(opt, port, run_id, "1:2", *args, rdzv_conf=f"is_host=false,{conf}")
                            + ["--auto_resume", "--force-resume"])

    deadline = time.monotonic() + 480
    while not (states / "2.state").is_file():
        assert survivor.poll() is None and victim.poll() is None, "a node ended before the first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint after 480 s"
        time.sleep(0.05)
    first_attempt = (run / "train.log").read_text()
    kill_tree(victim.pid)  # the node's torchrun agent and its worker, at once
    killed = finish(victim, timeout=60)
    assert killed.returncode == -9

    done = finish(survivor, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert "training BasicVSR on cpu x2:" in first_attempt and "x1:" not in first_attempt  # both nodes took part

    log = (run / "train.log").read_text()
    resumed = re.findall(rf"resumed from {re.escape(str(states))}/(\d+)\.state at iteration (\d+)", log)
    assert len(resumed) == 1 and resumed[0][0] == resumed[0][1], log[-3000:]
    at = int(resumed[0][0])
    assert at >= 2 and at % 2 == 0  # a checkpoint of the two-node attempt (saved every 2 iterations)
    after = log.split("resumed from", 1)[1]
    assert after.count("training BasicVSR on cpu x1:") == 1 and "x2:" not in after

    err = done.stderr
    assert (f"{states / f'{at}.state'}: cannot resume:" in err and "the global batch changes: written by 2 process(es) "
            "x grad_accum 1, this run has 1 x 1" in err and "changes by x0.5" in err
            and "--set train.grad_accum=2 keeps it" in err and "continuing because of --force-resume" in err), err[-4000:]

    # the LR follows the processes: two-node LRs before the kill, one-node LRs after (linear scaling)
    opt_obj = load_options(opt)
    schedule = builders.build_curriculum(opt_obj, crop_multiple=models.required_multiple(opt_obj.network_g))
    lr = {world: builders.build_lr_schedule(opt_obj, schedule, world) for world in (1, 2)}
    iterations = logged_iterations(log)
    assert sorted(iterations) == list(range(1, total + 1))
    assert iterations[at][1] == f"{lr[2].lr_at(at - 1):.3e}"   # logged before the kill, 2 processes
    assert iterations[at + 1][1] == f"{lr[1].lr_at(at):.3e}"  # the survivor alone
    assert lr[1].peak_lr(schedule.stages[0]) == pytest.approx(lr[2].peak_lr(schedule.stages[0]) / 2)

    state = torch.load(states / f"{total}.state", weights_only=True)
    assert state["iter"] == total == state["sampler"]["next_iter"] and state["world_size"] == 1
    assert state["sampler"]["consumed"] == at * 4 + (total - at) * 2  # global batch 4, then 2
