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


def test_eta_follows_the_work_left_not_the_iterations_left():
    from vsr_accel.schedule.curriculum import Schedule, Stage
    from vsr_accel.train.meter import eta_seconds
    # 100 iterations at crop 32 (1/4 of the work of crop 64), then 100 at crop 64 (the baseline's shape)
    stages = [Stage(index=0, start_iter=0, iters=100, lr_crop=32, num_frames=7, batch_per_device=4),
              Stage(index=1, start_iter=100, iters=100, lr_crop=64, num_frames=7, batch_per_device=4)]
    schedule = Schedule(kind="spatial", stages=tuple(stages), total_iter=200, lr_crop=64, num_frames=7,
                        batch_per_device=4)
    assert schedule.work_between(0, 200) == pytest.approx(125)
    # halfway through the cheap stage: 50 iterations in 50 s = 12.5 baseline iterations -> 4 s each
    eta = eta_seconds(schedule, 0, 50, 50.0)
    assert eta == pytest.approx((50 * 0.25 + 100) * 4.0)  # 450 s, where 150 iterations x 1 s would say 150
    assert eta_seconds(schedule, 0, 150, 100.0 + 200.0) == pytest.approx(50 * 4.0)  # 4 s per unit in both stages
    # after a resume the rate is this process's: iterations [120, 150) in 120 s
    assert eta_seconds(schedule, 120, 150, 120.0) == pytest.approx(50 * 4.0)
    assert eta_seconds(schedule, 50, 50, 0.0) is None and eta_seconds(schedule, 0, 200, 10.0) == 0


def test_the_logged_minutes_carry_over_a_resume(tmp_path):
    from vsr_accel.train.runlog import RunLogger
    log = RunLogger(tmp_path / "train.log", None)
    scalars = {"loss": 0.1, "lr": 1e-3, "samples_per_s": 2.0, "data_wait_frac": 0.0, "stage": 2, "lr_crop": 32,
               "frames": 7, "train_seconds_incl_data": 600.0, "eta_seconds": 3725.0}
    log.step(10, 20, scalars)
    log.close()
    line = (tmp_path / "train.log").read_text()
    assert "stage 2 (LR crop 32, 7 frames)" in line and "| 10.0 min | eta 1:02:05" in line
