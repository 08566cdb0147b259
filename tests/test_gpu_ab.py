"""benchmarks/gpu_ab.sh, the GPU accuracy A/B, runs end to end at tiny sizes on the CPU (data from the
footage, SpyNet pretraining, both rows through the ablation runner, the table with both clocks, PSNR
and the propagation probe), so it cannot rot between the rare sessions that have a GPU."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_ab_runs_on_the_cpu_at_tiny_sizes(tmp_path):
    env = {**os.environ, "OUT_DIR": str(tmp_path / "out"), "RUNS_ROOT": str(tmp_path / "runs"),
           "TINY_DATA": str(tmp_path / "data"), "PYTHON": str(REPO / ".venv" / "bin" / "python"),
           "OMP_NUM_THREADS": "1"}
    if not Path(env["PYTHON"]).exists():
        env.pop("PYTHON")
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_ab.sh"), "--tiny"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = (tmp_path / "out" / "gpu_ab" / "gpu_ab.md").read_text()
    assert "| ① | baseline |" in table and "| ⑤ | Multi-S&T (ours) |" in table and "(not run)" not in table
    assert "measures nothing" in table  # the tiny scale says so in the table's header
    records = sorted((tmp_path / "out" / "gpu_ab" / "logs").glob("*/result.json"))
    assert len(records) == 2
    for path in records:
        result = json.loads(path.read_text())
        assert 0 < result["train_seconds"] <= result["wall_seconds"] and result["psnr"] > 10
        assert result["propagation"]["max_abs_diff_vs_per_frame"] >= 0 and result["propagation"]["frames"] == 15
        assert result["iterations"] in (24, 6)  # baseline, and Multi-S&T at 4x the minibatch
    assert "gpu_ab:" in (tmp_path / "out" / "machine.txt").read_text()
