"""The speed switches' defaults (vsr_accel/train/speed.py): what the benchmarks measured as faster."""
from __future__ import annotations

import pytest
import torch

from vsr_accel.train.options import TrainOptions
from vsr_accel.train.speed import SpeedSettings, resolve_speed

DEFAULT_TRAIN = TrainOptions(total_iter=1)  # every speed switch at its default


def test_default_speed_settings_are_the_benchmarked_ones():
    from benchmarks._common import OPTIMISED
    cpu = resolve_speed(DEFAULT_TRAIN.amp, DEFAULT_TRAIN.channels_last, torch.device("cpu"))
    assert cpu.channels_last == OPTIMISED.channels_last
    assert cpu.amp_dtype == {"bf16": torch.bfloat16, "none": None}[OPTIMISED.amp]
    cuda = resolve_speed(DEFAULT_TRAIN.amp, DEFAULT_TRAIN.channels_last, torch.device("cuda"))
    assert cuda == SpeedSettings(channels_last=False, amp_dtype=None)  # nothing measured there
    forced = resolve_speed("fp16", False, torch.device("cpu"))
    assert forced == SpeedSettings(channels_last=False, amp_dtype=torch.float16)


@pytest.mark.parametrize("capability, expected", [("AVX512", True), ("AVX2", False), ("DEFAULT", False)])
def test_channels_last_by_default_only_where_it_measured_faster(monkeypatch, capability, expected):
    """On by default with AVX-512 (1.1-1.4x on the Xeon), off on AVX2 (0.74-0.82x on the AMD EPYC)."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert resolve_speed("none", None, torch.device("cpu")).channels_last is expected
    assert resolve_speed("none", True, torch.device("cpu")).channels_last is True  # asked for: always
    assert resolve_speed("none", None, torch.device("cuda")).channels_last is False
