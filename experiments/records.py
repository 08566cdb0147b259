"""What one finished run measured, as one small JSON file (`result.json`) beside its logs.

The table, the figures and the summary are written from these records, so they can be rebuilt
from the committed `experiments/results/<scale>/<table>/logs/` folders alone (`--report-only` on a
fresh clone, where the run folders with their checkpoints do not exist). A record names its run
folder; the report uses it only for a run of the same name, so a changed definition (a new
hash, a new name) never picks up a stale record.

Two training clocks, both the trainer's own and both excluding validation and checkpointing:
`train_seconds` excludes waiting for data (the paper's measure), `wall_seconds` includes it (what
a user waits). Runs written before the trainer kept the second clock have only the runner's
clock around the launch (start-up and validation included); the record then says so
(`wall_source: "launch"`), and the tables mark those cells.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from experiments import plots
from experiments.launch import final_state, read_record, total_train_wall
from experiments.resolve import ResolvedVariant
from vsr_accel.core.fsio import atomic_write_text

RESULT_FILE = "result.json"
FORMAT = 1


@dataclass(frozen=True)
class RunResult:
    run: str  # the run folder's name (curriculum, batch, iterations, seed and options hash)
    iterations: int
    seed: int
    train_seconds: float | None  # trainer's clock, excluding data loading
    wall_seconds: float | None  # including data loading (see wall_source)
    wall_source: str  # "trainer": the trainer's clock; "launch": the runner's clock around the launch
    launch_seconds: float | None  # the runner's clock around the training launches, everything included
    eval_seconds: float | None  # the runner's clock around the evaluation launches
    psnr: float | None
    ssim: float | None
    bicubic_psnr: float | None = None
    bicubic_ssim: float | None = None
    val_curve: tuple[plots.ValPoint, ...] = field(default_factory=tuple)
    # the final weights on the held-out clip (scripts/evaluate.py --probe, vsr_accel.train.health):
    # max_abs_diff_vs_per_frame, flow_mean_px, flow_max_px, frames; None for runs before the probe
    propagation: dict[str, Any] | None = None

    def to_json(self) -> str:
        data = asdict(self)
        data["format"] = FORMAT
        data["val_curve"] = [asdict(p) for p in self.val_curve]
        return json.dumps(data, indent=2)

    @staticmethod
    def from_json(text: str) -> "RunResult":
        data = json.loads(text)
        data.pop("format", None)
        data["val_curve"] = tuple(plots.ValPoint(**p) for p in data.get("val_curve") or [])
        return RunResult(**data)


def eval_scores(rv: ResolvedVariant) -> dict[str, Any]:
    """The run's averages on datasets.val (and MATLAB bicubic's, when evaluated with --bicubic),
    and the propagation probe of its final weights (evaluated with --probe)."""
    path = rv.run_dir / "eval.json"
    scores: dict[str, Any] = {"psnr": None, "ssim": None, "bicubic_psnr": None, "bicubic_ssim": None,
                              "propagation": None}
    if not path.is_file():
        return scores
    data = json.loads(path.read_text())
    model = (data.get(rv.opt.network_g["type"]) or {}).get("average") or {}
    bicubic = (data.get("bicubic") or {}).get("average") or {}
    scores.update(psnr=model.get("psnr"), ssim=model.get("ssim"), bicubic_psnr=bicubic.get("psnr"),
                  bicubic_ssim=bicubic.get("ssim"), propagation=data.get("propagation"))
    return scores


def result_from_run(rv: ResolvedVariant) -> RunResult | None:
    """The record of a finished run, from its folder (None unless the final state exists)."""
    state = final_state(rv)
    if state is None:
        return None
    launch = total_train_wall(rv.run_dir)
    wall = state.get("wall_seconds")
    evals = read_record(rv.run_dir).get("eval_attempts", [])
    return RunResult(
        run=rv.run_dir.name, iterations=rv.total_iter, seed=rv.seed,
        train_seconds=_float(state.get("train_seconds")),
        wall_seconds=_float(wall) if wall is not None else launch,
        wall_source="trainer" if wall is not None else "launch",
        launch_seconds=launch, eval_seconds=sum(a["seconds"] for a in evals) if evals else None,
        val_curve=tuple(plots.read_val_curve(rv.run_dir)), **eval_scores(rv))


def write_result(rv: ResolvedVariant) -> Path | None:
    """`<run>/result.json` for a finished run (rewritten each report: it only restates the run)."""
    result = result_from_run(rv)
    if result is None:
        return None
    path = rv.run_dir / RESULT_FILE
    atomic_write_text(path, result.to_json())
    return path


def result_from_logs(logs: Path, rv: ResolvedVariant) -> RunResult | None:
    """The committed record of this very run (same folder name), if the table's logs hold one."""
    path = logs / rv.log_name / RESULT_FILE
    if not path.is_file():
        return None
    try:
        result = RunResult.from_json(path.read_text())
    except (ValueError, TypeError, KeyError):
        return None
    return result if result.run == rv.run_dir.name else None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
