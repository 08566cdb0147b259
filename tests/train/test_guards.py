"""The trainer's guards (vsr_accel/train/guards.py): the NaN/Inf watch without a host sync per
step, and the stop flag's signal handling. End-to-end stops and kills are tests/test_reliability.py."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from vsr_accel.core.distributed import DistContext
from vsr_accel.core.errors import VSRError
from vsr_accel.train.guards import NonFiniteWatch, StopFlag


def test_nonfinite_watch_records_first_bad_iteration_without_reading_it():
    watch = NonFiniteWatch(torch.device("cpu"))
    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    for it, value in enumerate([0.5, 0.4, float("inf"), 0.3, float("nan")], start=1):
        watch.record(torch.tensor(value), it)
    with pytest.raises(VSRError, match="at iteration 3 .detected at iteration 5"):
        watch.check(5, ctx, Path("/nonexistent"))
    clean = NonFiniteWatch(torch.device("cpu"))
    clean.record(torch.tensor(1.0), 1)
    clean.check(1, ctx, Path("/nonexistent"))  # finite: no error


def test_stop_flag_restores_handlers_and_second_signal_aborts(monkeypatch):
    before = signal.getsignal(signal.SIGTERM)
    sent = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append(sig))
    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    with StopFlag() as stop:
        assert not stop.should_stop(1, ctx)
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
        assert stop.should_stop(2, ctx) and stop.requested == "SIGTERM" and not sent
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)  # a second one: default action, now
        assert sent == [signal.SIGTERM] and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) is before
