"""What keeps a training run safe to stop and restart: stop signals, the NaN/Inf watch, DataLoader
worker shutdown, and train.py's advice for out-of-memory and full disks.

Each guard is a small object or context manager the recipe puts around its loop; none of them
reads a device value per step.
"""
from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from vsr_accel.core import checkpoint as ckpt
from vsr_accel.core.distributed import DistContext
from vsr_accel.core.errors import VSRError, first_line


class StopFlag:
    """SIGTERM/SIGINT (what schedulers send before preemption) ask for a save and a clean exit.

    On one device the flag is read after every step. Under DDP the ranks must agree on the step
    at which they stop, which costs a collective, so they agree every `check_every` steps. A
    second signal aborts at once (the default action), for a run stuck outside the loop. Used as
    a context manager, it puts the previous handlers back on exit."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, check_every: int = 10) -> None:
        self.requested: str | None = None
        self.check_every = check_every
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopFlag":
        self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.requested = signal.Signals(signum).name  # no printing here: a handler may interrupt a print

    def should_stop(self, done: int, ctx: DistContext) -> bool:
        if not ctx.is_distributed:
            return bool(self.requested)
        if done % self.check_every:
            return False
        flag = torch.tensor([float(bool(self.requested))], device=ctx.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())


class NonFiniteWatch:
    """NaN/Inf loss detection without a host sync per step: each step folds "is the loss finite"
    into a device tensor holding the first bad iteration (no sync); `check` reads it every
    `train.nan_check_freq` steps and before every save, so a NaN never reaches a checkpoint."""

    NONE = 2**62

    def __init__(self, device: torch.device) -> None:
        self.first_bad = torch.full((), self.NONE, dtype=torch.int64, device=device)

    def record(self, loss: torch.Tensor, it: int) -> None:
        bad_here = torch.where(torch.isfinite(loss), self.NONE, it)
        torch.minimum(self.first_bad, bad_here, out=self.first_bad)

    def check(self, done: int, ctx: DistContext, states: Path) -> None:
        first = self.first_bad.clone()
        if ctx.is_distributed:  # every rank stops together, at the earliest bad iteration of any rank
            torch.distributed.all_reduce(first, op=torch.distributed.ReduceOp.MIN)
        bad = int(first.item())
        if bad == self.NONE:
            return
        good = ckpt.list_training_states(states)
        kept = f"the last good checkpoint {good[0]} is kept" if good else "no checkpoint had been written"
        raise VSRError(f"loss became NaN/Inf at iteration {bad} (detected at iteration {done}); stopped without "
                       f"saving: {kept}; lower train.optim_g.lr, set train.grad_clip, or check the data")


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader `worker_init_fn`. A terminal's Ctrl-C reaches the whole process group, and Slurm
    signals every process of a job. A worker would quit on it and the trainer would die with
    'worker killed by signal' instead of saving; workers ignore both, and `workers_stopped` ends them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


@contextlib.contextmanager
def workers_stopped(batches) -> Iterator[None]:
    """Workers ignore SIGTERM, and multiprocessing's exit handler stops leftover daemon processes
    with SIGTERM and then waits for them: so stop them here, on every way out of the loop (end,
    graceful stop, error), and kill any that do not stop, or the process could never exit."""
    try:
        yield
    finally:
        shutdown = getattr(batches, "_shutdown_workers", None)  # only multi-process iterators have workers
        if shutdown is not None:
            shutdown()
        for worker in getattr(batches, "_workers", ()):
            if worker.is_alive():
                worker.kill()
                worker.join()


@contextlib.contextmanager
def oom_names_stage(describe_stage: Callable[[], str]) -> Iterator[None]:
    """Out-of-memory errors name the curriculum stage (shape and batch) that did not fit."""
    try:
        yield
    except torch.OutOfMemoryError as exc:
        raise torch.OutOfMemoryError(f"{describe_stage()}: {first_line(exc)}") from exc


OUT_OF_MEMORY = ("out of memory during training; reduce datasets.train.batch_size_per_gpu or the crop "
                 "(train.curriculum.lr_crops / datasets.train.gt_size), or set train.checkpoint_propagation: true")
"""train.py's advice when a stage does not fit (`vsr_accel.core.errors.run_guarded`)."""
DISK_FULL = "free some space, then resume with --auto_resume (the last complete checkpoint is kept)"
"""train.py's advice when the disk fills up: saves are atomic, so the last complete state survives."""
