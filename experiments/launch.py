"""Running the variants: launch (subprocess, torchrun, or in-process for tests), skip what is
finished, resume what was interrupted, evaluate, and record every attempt's wall-clock.
"""
from __future__ import annotations

import datetime
import json
import runpy
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

import models
from experiments.definitions import REPO, display_path
from experiments.resolve import ResolvedVariant, SweepSettings
from vsr_accel.core import checkpoint as ckpt
from vsr_accel.core.errors import CheckpointError
from vsr_accel.core.fsio import atomic_write_text


class RunnerLog:
    """Timestamped lines to the console and to every table's runner.log."""

    def __init__(self, files: Iterable[Path] = ()) -> None:
        self.files = list(files)
        for path in self.files:
            path.parent.mkdir(parents=True, exist_ok=True)

    def info(self, message: str) -> None:
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}"
        print(line, flush=True)
        for path in self.files:
            with open(path, "a") as handle:
                handle.write(line + "\n")


@dataclass(frozen=True)
class Outcome:
    run_dir: Path
    trained: bool
    evaluated: bool
    error: str | None = None


_STATE_CACHE: dict[tuple[Path, int, int], dict[str, Any] | None] = {}


def final_state(rv: ResolvedVariant) -> dict[str, Any] | None:
    """The run's last training state if it is complete and readable (the finished marker).
    Read once per file version: a paper-scale state is hundreds of MB and is asked for often."""
    path = rv.run_dir / "training_states" / f"{rv.total_iter}.state"
    if not path.is_file():
        return None
    stat = path.stat()
    key = (path, stat.st_mtime_ns, stat.st_size)
    if key not in _STATE_CACHE:
        try:
            state = ckpt.read_training_state(path)
            _STATE_CACHE[key] = {"iter": int(state["iter"]), "train_seconds": state.get("train_seconds"),
                                 "wall_seconds": state.get("wall_seconds")}  # absent in states written before it
        except CheckpointError:
            _STATE_CACHE[key] = None
    state = _STATE_CACHE[key]
    return state if state is not None and state["iter"] == rv.total_iter else None


def run_status(rv: ResolvedVariant) -> str:
    if final_state(rv) is not None:
        return "evaluated" if (rv.run_dir / "eval.json").is_file() else "trained"
    if ckpt.list_training_states(rv.run_dir / "training_states"):
        return "partial"
    return "new"


def train_command(rv: ResolvedVariant, device: str | None) -> list[str]:
    args = [str(REPO / "train.py"), "-opt", str(rv.options_path), "--auto_resume"]
    if device:
        args += ["--device", device]
    if rv.world_size > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={rv.world_size}", *args]
    return [sys.executable, *args]


def eval_command(rv: ResolvedVariant, device: str | None) -> list[str]:
    args = [sys.executable, str(REPO / "scripts" / "evaluate.py"), "-opt", str(rv.options_path),
            "--checkpoint", str(rv.run_dir / "models" / f"net_g_{rv.total_iter}.pth"), "--phase", "val",
            "--json", str(rv.run_dir / "eval.json"), "--bicubic",  # bicubic: the number every row is read against
            *(["--probe"] if models.is_recurrent_type(rv.opt.network_g["type"]) else [])]  # is it using its frames?
    return args + (["--device", device] if device else [])


def run_subprocess(command: list[str], log_file: Path, echo: Callable[[str], None]) -> int:
    """Run with output streamed to the console and appended to `log_file`. Ctrl-C (or SIGTERM to
    the runner) reaches the child as SIGINT, so train.py saves a resumable state before exiting."""
    with open(log_file, "a") as sink:
        sink.write(f"$ {shlex.join(command)}\n")
        proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                bufsize=1)
        try:
            for line in proc.stdout:
                sink.write(line)
                echo(line.rstrip("\n"))
            return proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=600)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise


def run_entry_script(script: Path, argv: list[str]) -> int:
    """An entry script's `main(argv)` in this process (tests, debugging), one device only. The
    script is executed, not imported as a library (`runpy`, under a name other than __main__);
    the signal handlers it installs are put back afterwards so Ctrl-C still stops the runner."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return runpy.run_path(str(script), run_name="vsr_accel_entry_script")["main"](argv)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def train_in_process(command: list[str]) -> int:
    return run_entry_script(REPO / "train.py", command[2:])  # drop the interpreter and train.py's path


def evaluate_in_process(command: list[str]) -> int:
    return run_entry_script(REPO / "scripts" / "evaluate.py", command[2:])


def read_record(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "ablation_record.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            pass
    return {"train_attempts": [], "eval_attempts": []}


def add_attempt(run_dir: Path, kind: str, command: list[str], started: float, seconds: float, rc: int | None) -> None:
    """Append one launch to `<run>/ablation_record.json` (written atomically): total wall-clock
    is the sum over attempts, so a resumed run still reports its whole cost."""
    record = read_record(run_dir)
    record.setdefault(kind, []).append({
        "started": datetime.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        "seconds": round(seconds, 3), "returncode": rc, "command": shlex.join(command)})
    atomic_write_text(run_dir / "ablation_record.json", json.dumps(record, indent=2))


def total_train_wall(run_dir: Path) -> float | None:
    attempts = read_record(run_dir).get("train_attempts", [])
    return sum(a["seconds"] for a in attempts) if attempts else None


@dataclass
class Runner:
    settings: SweepSettings
    log: RunnerLog
    in_process: bool = False
    quiet_children: bool = False

    def launch(self, rv: ResolvedVariant, kind: str, command: list[str]) -> int:
        started, tick = time.time(), time.perf_counter()
        rc: int | None = None
        try:
            if self.in_process:
                rc = (train_in_process if kind == "train_attempts" else evaluate_in_process)(command)
            else:
                echo = (lambda line: None) if self.quiet_children else (lambda line: print(f"  | {line}", flush=True))
                rc = run_subprocess(command, rv.run_dir / "launch.log", echo)
        finally:  # an interrupted attempt still counts towards the run's wall-clock
            add_attempt(rv.run_dir, kind, command, started, time.perf_counter() - tick, rc)
        return rc

    def where_output(self, rv: ResolvedVariant) -> str:
        return " (its output is above)" if self.in_process else f"; output in {display_path(rv.run_dir / 'launch.log')}"

    def ensure(self, rv: ResolvedVariant) -> Outcome:
        """Train (or resume) unless finished, then evaluate unless evaluated."""
        name = f"{rv.table.name}/{rv.section.name}/{rv.variant.name}" + (f" (seed {rv.seed})" if rv.multi_seed else "")
        status = run_status(rv)
        trained = evaluated = False
        if status in ("new", "partial"):
            rv.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(rv.options_path, yaml.safe_dump(rv.options, sort_keys=False))
            command = train_command(rv, self.settings.device)
            verb = "resuming" if status == "partial" else "training"
            self.log.info(f"{verb} {name} -> {display_path(rv.run_dir)} ({rv.total_iter} iterations, "
                          f"{rv.curriculum_label}, minibatch {rv.minibatch} on {rv.world_size} process(es))")
            rc = self.launch(rv, "train_attempts", command)
            if rc != 0 or final_state(rv) is None:
                return Outcome(rv.run_dir, False, False, f"training exited with {rc}{self.where_output(rv)}")
            trained = True
        else:
            self.log.info(f"skipping training of {name}: finished in {display_path(rv.run_dir)}")
        if not (rv.run_dir / "eval.json").is_file():
            self.log.info(f"evaluating {name} on datasets.val")
            rc = self.launch(rv, "eval_attempts", eval_command(rv, self.settings.device))
            if rc != 0 or not (rv.run_dir / "eval.json").is_file():
                return Outcome(rv.run_dir, trained, False, f"evaluation exited with {rc}{self.where_output(rv)}")
            evaluated = True
        return Outcome(rv.run_dir, trained, evaluated)
