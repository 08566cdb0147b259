"""The run folder and the training state: where a run writes, what a state holds, and how a run
finds, checks, restores and saves one (torchtune's checkpoint client, with our crash safety).

A run lives in `experiments/<name>/` as in BasicSR: `models/net_g_<iter>.pth` (BasicSR's
weights format), `training_states/<iter>.state` (everything a resume needs: weights, EMA,
optimizer, sampler position, every rank's RNG streams, grad scaler, clocks, and a record of the
options and curriculum), `options.yml`, `train.log`, `tb_logger/`. The training state is written
last: it is a save's commit point, so a kill between the two files resumes from the older state.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from vsr_accel.core import checkpoint as ckpt
from vsr_accel.schedule.curriculum import Schedule
from vsr_accel.core.distributed import DistContext, barrier, broadcast_object
from vsr_accel.train.ema import EMA
from vsr_accel.train.meter import Clocks
from vsr_accel.core.errors import CheckpointError, ConfigError
from vsr_accel.core.fsio import atomic_write_text, remove_stale_temps
from vsr_accel.train.options import GEOMETRY_KEYS, MONITORING_KEYS, RUN_ONLY_SECTIONS
from vsr_accel.core.rng import rng_state, set_rng_state
from vsr_accel.schedule.sampler import MultigridBatchSampler


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


# what only a run folder holds: the trainer's files, and the options the ablation runner writes there first
RUN_FOLDER_MARKS = ("options.yml", "train.log", "models", "training_states", "ablation.yml")


@dataclasses.dataclass(frozen=True)
class RunDirs:
    root: Path

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def states(self) -> Path:
        return self.root / "training_states"

    @property
    def tb(self) -> Path:
        return self.root / "tb_logger"

    @property
    def log_file(self) -> Path:
        return self.root / "train.log"

    def is_run_folder(self) -> bool:
        """Whether the folder holds a run (which a fresh run of this name may move aside), rather
        than something else under the root: the ablation definitions or committed results in
        `experiments/`, the package's own modules."""
        return any((self.root / entry).exists() for entry in RUN_FOLDER_MARKS)

    def check_writable(self, resuming: bool) -> None:
        """Refuse, before anything is built or touched, a folder that is not a run's (the
        experiments package's `results/`, `ablations/`...: see `is_run_folder`), and a run folder
        this process cannot create or write: `path.experiments_root` (or a folder above it) that is not a folder, or a folder
        without write permission. A fresh run over an earlier one renames it inside its parent, so
        the parent must be writable; a resumed run writes inside the run folder and its subfolders.
        `os.access` asks with the real user's rights (root may write anywhere)."""
        where = f"path.experiments_root {self.root.parent}"
        if self.root.is_dir() and not self.is_run_folder() and any(self.root.iterdir()):
            raise ConfigError(f"name: {self.root} exists and is not a run folder (none of "
                              f"{', '.join(RUN_FOLDER_MARKS)} in it), so a run there would move it aside; choose another name")
        existing = self.root
        while not existing.is_dir():
            if existing.exists() or existing.is_symlink():
                raise ConfigError(f"{existing}: not a folder, so the run folder {self.root} cannot be created "
                                  f"({where})")
            existing = existing.parent

        def require(folder: Path, mode: int, why: str) -> None:
            if not os.access(folder, mode):
                raise ConfigError(f"{folder}: permission denied: {why} ({where}); choose another "
                                  f"path.experiments_root or fix the folder's permissions")

        if existing != self.root:  # the missing folders up to the run folder are created in `existing`
            require(existing, os.W_OK | os.X_OK, f"cannot create the run folder {self.root} in it")
            return
        require(self.root, os.R_OK | os.X_OK, "cannot read the run folder")
        if not resuming and any(self.root.iterdir()):
            require(self.root.parent, os.W_OK | os.X_OK,
                    f"cannot move the earlier run aside to {self.root.name}_archived_<time>")
            return
        for folder in (self.root, *(d for d in (self.models, self.states, self.tb) if d.is_dir())):
            require(folder, os.R_OK | os.W_OK | os.X_OK, "cannot write the run's files in it")
        if self.log_file.exists():
            require(self.log_file, os.W_OK, "cannot append to the run's log")


@dataclasses.dataclass
class LiveObjects:
    """The live objects a training state (`<iter>.state`) is saved from and restored into."""
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    sampler: MultigridBatchSampler
    ema: EMA | None
    scaler: torch.amp.GradScaler


@dataclasses.dataclass(frozen=True)
class Found:
    path: Path
    state: dict[str, Any]

    @property
    def iteration(self) -> int:
        return int(self.state["iter"])

    @property
    def clocks(self) -> Clocks:
        train = float(self.state.get("train_seconds", 0.0))
        return Clocks(train, float(self.state.get("wall_seconds", train)))


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """What a training state records about the run that wrote it, to refuse mixing two trainings."""
    options_hash: str
    options: str  # every option as JSON, so a refused resume can say what changed
    schedule: str  # the curriculum stages as JSON
    grad_accum: int = 1  # with the number of processes: the global batch (per-device batches are options)

    @staticmethod
    def of(options: dict[str, Any], options_hash: str, schedule: Schedule, grad_accum: int = 1) -> "RunRecord":
        return RunRecord(options_hash, json.dumps(options, sort_keys=True, default=str),
                         json.dumps([dataclasses.asdict(s) for s in schedule.stages], sort_keys=True), grad_accum)


def plain_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights saved NCHW-contiguous whatever layout trained them (channels_last on CPU), so
    BasicSR and any other reader gets the layout it expects."""
    return {key: value.contiguous() for key, value in state.items()}


class CheckpointClient:
    """Find, check, restore and save one run folder's training states (torchtune's name for the
    object a recipe asks for its checkpoints)."""

    def __init__(self, dirs: RunDirs, record: RunRecord, ctx: DistContext, keep_last: int,
                 is_regular: Callable[[int], bool] = lambda it: True) -> None:
        self.dirs = dirs
        self.record = record
        self.ctx = ctx
        self.keep_last = keep_last
        self.is_regular = is_regular  # iteration -> saved by the schedule (not by a stop)

    # -- resume ------------------------------------------------------------------------------
    def find(self, resume_state: str | None, auto_resume: bool) -> Found | None:
        """`path.resume_state` if given, else with `auto_resume` the newest state that loads.
        Rank 0 picks (skipping damaged states) and every rank loads that same file, so an
        elastic restart resumes all ranks from one iteration."""
        if resume_state:
            path = Path(resume_state)
            if path.is_dir():
                raise CheckpointError(f"{path}: path.resume_state is a directory, not a training state file")
            if not path.is_file():
                raise CheckpointError(f"{path}: path.resume_state does not exist")
            return Found(path, ckpt.read_training_state(path))
        if not auto_resume:
            return None
        found = ckpt.latest_good_state(self.dirs.states, on_skip=warn) if self.ctx.is_main else None
        chosen = broadcast_object(str(found[0]) if found else None, self.ctx)
        if chosen is None:
            return None
        if self.ctx.is_main:
            return Found(*found)
        return Found(Path(chosen), ckpt.read_training_state(chosen))

    def check_compatible(self, found: Found, force: bool) -> None:
        """Refuse to mix two different trainings in one set of weights, and say what differs."""
        changes = []
        state = found.state
        if state.get("options_hash") != self.record.options_hash:
            diff = changed_options(state.get("options"), self.record.options)
            changes.append("options changed: " + ("; ".join(diff) if diff else "model, data, optimizer, curriculum or LR"))
        if state.get("schedule") != self.record.schedule:
            old = describe_stages(state["schedule"]) if state.get("schedule") else "(not recorded)"
            changes.append(f"curriculum stages changed: {old} -> {describe_stages(self.record.schedule)}")
        geometry = self.geometry_change(state)
        if geometry:
            changes.append(geometry)
        if not changes:
            return
        message = f"{found.path}: cannot resume: {'; '.join(changes)}"
        if not force:
            raise CheckpointError(message + " (pass --force-resume to continue anyway)")
        warn(f"{message}; continuing because of --force-resume")

    def geometry_change(self, state: dict[str, Any]) -> str | None:
        """Processes x accumulation steps make the global batch, and with it the LR (linear
        scaling): resuming with another product would silently change both."""
        old_world = int(state.get("world_size", 1))
        old_accum = int(state.get("grad_accum") or _recorded(state.get("options"), "train.grad_accum") or 1)
        new_world, new_accum = self.ctx.world_size, self.record.grad_accum
        if old_world * old_accum == new_world * new_accum:
            return None
        keep = old_world * old_accum / new_world
        advice = (f"--set train.grad_accum={int(keep)} keeps it" if keep == int(keep)
                  else f"no grad_accum keeps it on {new_world} process(es)")
        return (f"the global batch changes: written by {old_world} process(es) x grad_accum {old_accum}, this run has "
                f"{new_world} x {new_accum}, so every stage's global batch (and its linearly scaled LR) changes by "
                f"x{new_world * new_accum / (old_world * old_accum):g}; {advice}")

    def restore(self, found: Found, live: LiveObjects) -> None:
        state, source = found.state, str(found.path)
        ckpt.load_weights_strict(live.model, state["network"]["params"], source)
        if live.ema is not None:
            if "params_ema" in state["network"]:
                live.ema.load_state_dict(state["network"]["params_ema"])
            else:
                live.ema.load_state_dict(live.model.state_dict())
                warn("the training state has no EMA weights (params_ema); the EMA restarts from the weights")
        live.optimizer.load_state_dict(state["optimizer"])
        live.sampler.load_state_dict(state["sampler"])
        if state.get("scaler"):
            live.scaler.load_state_dict(state["scaler"])
        rngs = state.get("rng") or []
        if len(rngs) == self.ctx.world_size:
            set_rng_state(rngs[self.ctx.rank])
        elif self.ctx.is_main:
            warn(f"the checkpoint was written by {len(rngs)} process(es), this run has {self.ctx.world_size}: the "
                 f"data order continues exactly, the random number streams are not restored")

    # -- the run folder ----------------------------------------------------------------------
    def prepare_dir(self, resuming: bool, options: dict[str, Any]) -> list[Path]:
        """Create the run folder. Called once everything a bad input can break has been checked,
        so a failed start never touches an earlier run. A fresh (non-resumed) run never
        overwrites an old one: the old folder is renamed `<name>_archived_<time>` (BasicSR's
        behaviour). Returns the temp files of killed saves that were removed."""
        stale: list[Path] = []
        dirs = self.dirs
        if self.ctx.is_main:
            if dirs.root.exists() and not resuming and any(dirs.root.iterdir()):
                archived = dirs.root.with_name(f"{dirs.root.name}_archived_{time.strftime('%Y%m%d_%H%M%S')}")
                dirs.root.rename(archived)
                print(f"note: existing {dirs.root} moved to {archived}")
            for folder in (dirs.root, dirs.models, dirs.states):
                folder.mkdir(parents=True, exist_ok=True)
            stale = remove_stale_temps(dirs.states) + remove_stale_temps(dirs.models)
            atomic_write_text(dirs.root / "options.yml", yaml.safe_dump(options, sort_keys=False))
        barrier(self.ctx)
        return stale

    # -- saving ------------------------------------------------------------------------------
    def save(self, live: LiveObjects, it: int, clocks: Clocks, regular: bool = True) -> None:
        """Weights in BasicSR's format (`models/net_g_<iter>.pth`) and the full training state
        (`training_states/<iter>.state`, written last: it is the commit point of a save).
        `regular`: a save of the schedule (`logger.save_checkpoint_freq`, the last iteration),
        after which the run keeps `logger.keep_last` of them; a stop's save (Ctrl-C, SIGTERM)
        between two is extra and prunes nothing, so a stop never costs a regular checkpoint. The
        next regular save removes the stop's files, which it supersedes."""
        ctx = self.ctx
        rngs = rng_state()
        all_rngs = [rngs]
        if ctx.is_distributed:
            all_rngs = [None] * ctx.world_size
            torch.distributed.all_gather_object(all_rngs, rngs)
        if not ctx.is_main:
            return
        weights = {"params": plain_layout(live.model.state_dict())}
        if live.ema is not None:
            weights["params_ema"] = plain_layout(live.ema.state_dict())
        state = {
            "iter": it, "network": weights, "optimizer": live.optimizer.state_dict(),
            "sampler": live.sampler.state_dict(next_iter=it), "rng": all_rngs, "world_size": ctx.world_size,
            "grad_accum": self.record.grad_accum,
            "scaler": live.scaler.state_dict() or None,
            "options_hash": self.record.options_hash, "options": self.record.options, "schedule": self.record.schedule,
            "train_seconds": clocks.train_seconds, "wall_seconds": clocks.wall_seconds,
        }
        try:
            ckpt.atomic_save(weights, self.dirs.models / ckpt.WEIGHTS_NAME.format(iter=it))
            ckpt.atomic_save(state, self.dirs.states / ckpt.STATE_NAME.format(iter=it))
        except CheckpointError as exc:
            previous = ckpt.list_training_states(self.dirs.states)
            kept = f"the last complete state is {previous[0]}" if previous else "no earlier state exists"
            raise CheckpointError(f"{exc}; {kept}; free some space, then resume with --auto_resume") from exc
        if not regular:
            return
        for folder, pattern in ((self.dirs.states, ckpt.STATE_NAME), (self.dirs.models, ckpt.WEIGHTS_NAME)):
            ckpt.prune(folder, pattern, self.keep_last, regular=lambda n: n == it or self.is_regular(n))


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def changed_options(recorded: str | None, current: str) -> list[str]:
    """`key: old -> new` for each result-changing option that differs from the checkpoint's."""
    if not recorded:
        return []
    old, new = _flatten(json.loads(recorded)), _flatten(json.loads(current))
    missing = "(unset)"
    keys = sorted(k for k in old.keys() | new.keys()
                  if old.get(k, missing) != new.get(k, missing) and k.split(".")[0] not in RUN_ONLY_SECTIONS
                  and k not in GEOMETRY_KEYS and not k.startswith(tuple(f"{m}." for m in MONITORING_KEYS)))
    return [f"{k} {old.get(k, missing)!r} -> {new.get(k, missing)!r}" for k in keys]


def _recorded(options: str | None, key: str) -> Any:
    """One option's value in a state's options record (None if not recorded)."""
    return _flatten(json.loads(options)).get(key) if options else None


def describe_stages(fingerprint: str) -> str:
    stages = json.loads(fingerprint)
    return "[" + ", ".join(f"{s['iters']} it at {s['lr_crop']}&{s['num_frames']}" for s in stages) + "]"
