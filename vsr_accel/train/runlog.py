"""Console progress lines, a plain-text log file, tensorboard scalars and (optionally) Weights &
Biases, rank 0 only; and BasicSR's record of the best validation score of each metric.

wandb (`logger.wandb.project` set, BasicSR's switch) logs the same scalars as tensorboard. It is
optional: when the package is missing the run is refused at start-up with one line (`wandb_run`),
and without network access it runs in offline mode (`WANDB_MODE`, else a 3-second probe of
wandb's server), so a run never hangs on a login.
"""
from __future__ import annotations

import datetime
import importlib
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from vsr_accel.core.errors import ConfigError


def wandb_mode() -> str:
    """`WANDB_MODE` when set, else online if wandb's server answers within 3 s, else offline."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    try:
        socket.create_connection(("api.wandb.ai", 443), timeout=3).close()
        return "online"
    except OSError:
        return "offline"


def require_wandb(project: str | None, source: str) -> Any:
    """The wandb module when `logger.wandb.project` is set (refused with one line if it is not
    installed), else None. Called before the run folder is touched."""
    if project is None:
        return None
    try:
        return importlib.import_module("wandb")
    except ImportError:
        raise ConfigError(f"{source}: 'logger.wandb.project' is {project!r} but the wandb package is not installed "
                          f"(pip install wandb), or set logger.wandb.project: ~") from None


def wandb_run(project: str | None, *, resume_id: str | None, name: str, config: Mapping[str, Any], folder: Path,
              source: str) -> Any:
    """A started wandb run for `logger.wandb.project` (its files in `folder`), or None."""
    wandb = require_wandb(project, source)
    if wandb is None:
        return None
    mode = wandb_mode()
    run = wandb.init(project=project, id=resume_id, resume="allow" if resume_id else None, name=name,
                     config=dict(config), dir=str(folder), mode=mode)
    return run


@dataclass
class BestScores:
    """BasicSR's best-metric record: per validation set and metric, the best value and its
    iteration; `better` (`higher` or `lower`) is each metric's `val.metrics.<name>.better`."""
    better: Mapping[str, str]
    best: dict[str, dict[str, tuple[float, int]]] = field(default_factory=dict)

    def update(self, dataset: str, scores: Mapping[str, float], it: int) -> dict[str, tuple[float, int]]:
        record = self.best.setdefault(dataset, {})
        for metric, value in scores.items():
            higher = self.better.get(metric, "higher") == "higher"
            old = record.get(metric)
            if old is None or (value >= old[0] if higher else value <= old[0]):
                record[metric] = (value, it)
        return record


def format_duration(seconds: float) -> str:
    """'0:04:10' (BasicSR's ETA format: hours, minutes, seconds)."""
    return str(datetime.timedelta(seconds=round(seconds)))


class RunLogger:
    def __init__(self, log_file: Path, tb_dir: Path | None, enabled: bool = True, wandb: Any = None,
                 better: Mapping[str, str] | None = None):
        self.enabled = enabled
        self.start = time.perf_counter()
        self.file = open(log_file, "a", buffering=1) if enabled else None
        self.tb = None
        self.wandb = wandb if enabled else None
        self.best = BestScores(better or {})
        if enabled and tb_dir is not None:
            from torch.utils.tensorboard import SummaryWriter  # imported lazily: tensorboard is slow to import
            self.tb = SummaryWriter(str(tb_dir))

    def info(self, message: str) -> None:
        if not self.enabled:
            return
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        print(line, flush=True)
        self.file.write(line + "\n")

    def scalars(self, prefix: str, values: Mapping[str, float], it: int) -> None:
        if self.tb is not None:
            for key, value in values.items():
                self.tb.add_scalar(f"{prefix}/{key}", value, it)
        if self.wandb is not None:
            self.wandb.log({f"{prefix}/{key}": value for key, value in values.items()}, step=it)

    def step(self, it: int, total: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        trained = scalars.get("train_seconds_incl_data", time.perf_counter() - self.start)  # carried over a resume
        eta = scalars.get("eta_seconds")
        self.info(f"iter {it:>7d}/{total} | loss {scalars['loss']:.5f} | lr {scalars['lr']:.3e} | "
                  f"{scalars['samples_per_s']:.2f} samples/s | data wait {100 * scalars['data_wait_frac']:.1f}% | "
                  f"stage {scalars['stage']} (LR crop {scalars['lr_crop']}, {scalars['frames']} frames) | "
                  + (f"flow {scalars['flow_mean_px']:.2f} px mean, {scalars['flow_max_px']:.1f} max | "
                     if "flow_mean_px" in scalars else "")
                  + f"{trained / 60:.1f} min" + (f" | eta {format_duration(eta)}" if eta is not None else ""))
        self.scalars("train", scalars, it)

    def val(self, it: int, scores: dict[str, float], dataset: str = "val") -> None:
        """One validation: the scores, and (BasicSR's line) the best of each so far."""
        if not self.enabled:
            return
        best = self.best.update(dataset, scores, it)
        where = "" if dataset == "val" else f" {dataset}"
        self.info(f"val{where} @ {it}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()) + " | best: "
                  + ", ".join(f"{k} {v:.4f} @ {i}" for k, (v, i) in best.items()))
        self.scalars("val" if dataset == "val" else f"val_{dataset}", scores, it)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
        if self.file is not None:
            self.file.close()
