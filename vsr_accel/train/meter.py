"""The trainer's clocks and its log interval (the steps since the last log line), without a host
sync per step.

Two clocks run over training (validation and saving are paused out of both): `wall_seconds`,
everything the loop spends including waiting for data (what a user waits), and `train_seconds`,
the same minus the time the host blocked on the next batch (the paper's "training time without
data loading"). Both are read only at interval boundaries (log, save, validation, stop), where
`pause` synchronises the device first, so on CUDA the asynchronous step's real duration is
counted without a per-step sync. Caveat: on CUDA a data wait can overlap work still queued on the
device, so `train_seconds` is then a lower bound of the device's busy time.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from vsr_accel.schedule.curriculum import Schedule


@dataclass(frozen=True)
class Clocks:
    """Training time so far: excluding data loading (the paper's measure) and including it (the
    user's wall clock); both exclude validation and saving."""
    train_seconds: float = 0.0
    wall_seconds: float = 0.0


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def eta_seconds(schedule: Schedule, start_iter: int, done: int, seconds: float) -> float | None:
    """Seconds of training left after iteration `done`, from `seconds` spent on iterations
    [start_iter, done) of this process: the measured rate per unit of work (batch x crop^2 x
    frames, `Schedule.work_between`) times the work left, so a run in a cheap early stage is not
    promised the naive `seconds / iterations x iterations left` (the later stages cost more per
    iteration). None before anything was measured."""
    work_done = schedule.work_between(start_iter, done)
    if work_done <= 0 or seconds <= 0:
        return None
    return seconds / work_done * schedule.work_between(done, schedule.total_iter)


class TrainMeter:
    def __init__(self, device: torch.device, clocks: Clocks = Clocks()) -> None:
        self.device = device
        self.train_seconds = clocks.train_seconds
        self.wall_seconds = clocks.wall_seconds
        self.resumed_wall_seconds = clocks.wall_seconds  # the clock as this process found it (0 if fresh)
        self.interval_loss = torch.zeros((), device=device)
        self._reset_interval()
        self._running_since: float | None = None
        self._waited = 0.0  # data wait since the clock last started

    # -- the clocks --------------------------------------------------------------------------
    def start(self) -> None:
        self._running_since = time.perf_counter()
        self._waited = 0.0

    def pause(self) -> None:
        """Stop both clocks (synchronising the device), e.g. before validation or a save."""
        if self._running_since is None:
            return
        synchronize(self.device)
        elapsed = time.perf_counter() - self._running_since
        self.wall_seconds += elapsed
        self.train_seconds += max(0.0, elapsed - self._waited)
        self.interval_wall += elapsed
        self.interval_wait += self._waited
        self._running_since = None

    @property
    def clocks(self) -> Clocks:
        """The totals as of the last `pause`."""
        return Clocks(self.train_seconds, self.wall_seconds)

    def batches(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """`iterable`'s items, timing how long the host waits for each."""
        iterator = iter(iterable)
        while True:
            asked = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                return
            self._waited += time.perf_counter() - asked
            yield item

    # -- the log interval --------------------------------------------------------------------
    def _reset_interval(self) -> None:
        self.interval_wall = 0.0
        self.interval_wait = 0.0
        self.interval_samples = 0
        self.interval_steps = 0

    def add_step(self, loss: torch.Tensor, samples: int) -> None:
        """One optimizer step: its loss (a device tensor, not read back) and global samples."""
        self.interval_loss += loss
        self.interval_samples += samples
        self.interval_steps += 1

    def take_interval(self) -> dict[str, Any]:
        """The interval since the last call (call it paused): summed loss tensor, steps, rates."""
        interval = {"loss_sum": self.interval_loss.clone(), "steps": max(1, self.interval_steps),
                    "samples_per_s": self.interval_samples / max(self.interval_wall, 1e-9),
                    "data_wait_frac": self.interval_wait / max(self.interval_wall, 1e-9)}
        self.interval_loss.zero_()
        self._reset_interval()
        return interval
