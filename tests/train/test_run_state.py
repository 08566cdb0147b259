"""The run folder and training-state client (vsr_accel/train/run_state.py) on their own; resumes
end to end are tests/test_train.py and tests/test_reliability.py."""
from __future__ import annotations

from pathlib import Path

import torch

from vsr_accel.core.distributed import DistContext
from vsr_accel.train.run_state import CheckpointClient, RunDirs, RunRecord


def test_geometry_change_names_processes_and_accumulation():
    ctx = DistContext(rank=0, world_size=4, local_rank=0, device=torch.device("cpu"))
    state = CheckpointClient(RunDirs(Path("/nonexistent")), RunRecord("h", "{}", "[]", grad_accum=1), ctx, keep_last=1)
    assert "--set train.grad_accum=2 keeps it" in state.geometry_change({"world_size": 8, "grad_accum": 1})
    assert state.geometry_change({"world_size": 2, "grad_accum": 2}) is None
    assert "no grad_accum keeps it on 4" in state.geometry_change({"world_size": 3, "grad_accum": 1})
