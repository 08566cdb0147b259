"""benchmarks/gpu_check.sh, the GPU machine's one command, runs end to end at tiny sizes on the CPU
(so it cannot rot between the rare sessions that have a GPU)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_on_the_cpu_at_tiny_sizes(tmp_path):
    env = {**os.environ, "OUT_DIR": str(tmp_path), "PYTHON": str(REPO / ".venv" / "bin" / "python")}
    if not Path(env["PYTHON"]).exists():
        env.pop("PYTHON")
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--tiny"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert {"machine.txt", "bench_device.md", "bench_device.json", "bench_pipeline.md", "bench_pipeline.json"} <= \
        {p.name for p in tmp_path.iterdir()}
    device = json.loads((tmp_path / "bench_device.json").read_text())
    assert device["speedup"]["fp32"] > 0 and len(device["seconds"]) == 2  # both stages timed
    pipeline = json.loads((tmp_path / "bench_pipeline.json").read_text())
    run = pipeline["runs"]["raw"]
    assert run["windows"] and all(0 <= w["wait_pct"] <= 100 for w in run["windows"])
    assert 0 < run["train_seconds"] <= run["wall_seconds"]
    assert {row[0] for row in pipeline["loader"]} >= {"folders", "raw"}
    assert "gpu_check:" in (tmp_path / "machine.txt").read_text()
