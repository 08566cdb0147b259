"""benchmarks/bench_infer_speed.py: it times what infer.py runs, with infer.py's speed settings,
and reports the ratios and PSNRs of one run."""
from __future__ import annotations

import json

import torch

from benchmarks import bench_infer_speed as bench
from vsr_accel.core.speed_defaults import FP32_NCHW, resolve_speed
from vsr_accel.infer import inference


def test_bench_infer_speed_times_infer_pys_run_with_its_settings(tmp_path):
    assert bench.run_chunks is inference.run_chunks and bench.Upscaler is inference.Upscaler
    assert bench.settings(bench.BASELINE) == FP32_NCHW
    assert bench.settings(bench.DEFAULT) == resolve_speed("auto", None, torch.device("cpu"))  # infer.py's default
    threads = torch.get_num_threads()
    try:
        assert bench.main(["--frames", "2", "--width", "24", "--height", "20", "--rounds", "1", "--threads", "1",
                           "--network", "BasicVSR", "--network-args", "num_feat=4", "num_block=1",
                           "--fit-steps", "1", "--out", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    data = json.loads((tmp_path / "bench_infer_speed.json").read_text())
    assert list(data["timing"]) == list(bench.CONFIGS)
    assert data["timing"][bench.BASELINE]["speed_vs_fp32"] == 1.0
    assert len(data["fidelity"]) == 2 * len(bench.CONFIGS)  # the timed network and the fitted tiny one
    assert "frames/s" in (tmp_path / "bench_infer_speed.md").read_text()
