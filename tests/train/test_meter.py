"""The trainer's clocks: both measured at log-interval boundaries only, with one device sync each
(a fake clock: exact values, no dependence on this machine's load)."""
from __future__ import annotations

import types

import pytest
import torch

from vsr_accel.train import meter as meter_module
from vsr_accel.train.meter import TrainMeter
from vsr_accel.train.meter import Clocks


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def perf_counter(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(meter_module, "time", types.SimpleNamespace(perf_counter=fake.perf_counter))
    return fake


def waiting_batches(clock: FakeClock, count: int, wait: float):
    for i in range(count):
        clock.now += wait  # the host blocks on the loader
        yield i


def test_clocks_split_data_wait_from_training_and_sync_only_at_pauses(clock, monkeypatch):
    """On CUDA a step returns before the device finishes, so the clocks must be read after a
    synchronize; the meter syncs once per pause (an interval boundary), never per step."""
    syncs = []
    monkeypatch.setattr(meter_module, "synchronize", lambda device: syncs.append(device))
    meter = TrainMeter(torch.device("cpu"), Clocks(train_seconds=10.0, wall_seconds=12.0))
    meter.start()
    for _ in meter.batches(waiting_batches(clock, 4, 0.5)):
        clock.now += 1.5  # the step
        meter.add_step(torch.tensor(1.0), samples=2)
    assert syncs == []  # no sync per step
    clock.now += 0.25   # queued device work the pause's synchronize waits for
    meter.pause()
    assert len(syncs) == 1
    assert meter.wall_seconds == pytest.approx(12.0 + 4 * 2.0 + 0.25)
    assert meter.train_seconds == pytest.approx(10.0 + 4 * 1.5 + 0.25)
    interval = meter.take_interval()
    assert interval["steps"] == 4 and float(interval["loss_sum"]) == 4.0
    assert interval["data_wait_frac"] == pytest.approx(2.0 / 8.25)
    assert interval["samples_per_s"] == pytest.approx(8 / 8.25)
    meter.pause()  # already paused: nothing counted, no sync
    assert len(syncs) == 1 and meter.clocks == Clocks(meter.train_seconds, meter.wall_seconds)


def test_paused_time_counts_on_neither_clock(clock):
    meter = TrainMeter(torch.device("cpu"))
    meter.start()
    clock.now += 1.0
    meter.pause()
    clock.now += 30.0  # validation or a save
    meter.start()
    clock.now += 2.0
    meter.pause()
    assert meter.wall_seconds == pytest.approx(3.0) and meter.train_seconds == pytest.approx(3.0)
