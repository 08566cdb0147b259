"""How long a sweep will take here: a few timed training steps of every stage shape it uses.

`python -m experiments.run all --scale cpu --dry-run --estimate` builds each distinct network and
speed setting the runs use (the trainer's own model, optimizer, loss and `TrainStep`, on random
clips of each stage's shape), times `--estimate-steps` steps per shape after one untimed step,
and estimates every run as  sum over stages (iterations x seconds per step)  plus its validations
and evaluation (one restore of the first validation clip, timed) and a fixed start-up allowance
per launch. Per shape it keeps the *fastest* timed step: on a shared machine other processes only
ever make a step slower, so the minimum is the closest to an idle machine's time; it is still an
estimate, and the printout says so. Torch's intra-op thread count is the one this process has
(`torch.get_num_threads()`; set OMP_NUM_THREADS to model another).
"""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

import datasets
import models
from experiments.resolve import ResolvedVariant
from vsr_accel.core.errors import VSRError
from vsr_accel.infer.restore import restore_clip
from vsr_accel.train import builders
from vsr_accel.train.speed import SpeedSettings

STARTUP_SECONDS = 8.0  # per launch (interpreter, torch and the data index); train and evaluate: two launches


@dataclass(frozen=True)
class Shape:
    network: str  # network_g as JSON
    amp: str
    channels_last: bool | None
    batch: int
    lr_crop: int
    frames: int
    scale: int

    @property
    def label(self) -> str:
        return f"b{self.batch} {self.lr_crop}&{self.frames}"


@dataclass(frozen=True)
class RunEstimate:
    rv: ResolvedVariant
    train_seconds: float
    overhead_seconds: float  # validations, evaluation and start-up

    @property
    def total(self) -> float:
        return self.train_seconds + self.overhead_seconds


def shapes_of(rv: ResolvedVariant) -> list[tuple[Shape, int]]:
    """(shape, iterations) of every stage of the run."""
    net = json.dumps(rv.opt.network_g, sort_keys=True)
    return [(Shape(net, rv.opt.train.amp, rv.opt.train.channels_last, stage.batch_per_device, stage.lr_crop,
                   stage.num_frames, rv.opt.scale), stage.iters) for stage in rv.schedule.stages]


def _model(shape: Shape, rv: ResolvedVariant) -> tuple[torch.nn.Module, SpeedSettings]:
    """The run's network as the trainer prepares it (the shared builders), at fresh weights."""
    speed = builders.speed_settings(rv.opt.train, torch.device("cpu"))
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*spynet_path")
        model = models.load_network(json.loads(shape.network)).train()
    return builders.prepare_model(model, rv.opt.train, speed, source=rv.opt.source), speed


def time_step(shape: Shape, rv: ResolvedVariant, steps: int) -> float:
    """Fastest of `steps` timed training steps at `shape` (after one untimed step): the trainer's
    own step (`builders.build_step`: optimizer groups, loss, precision, accumulation, EMA)."""
    model, speed = _model(shape, rv)
    step = builders.build_step(rv.opt.train, model, speed, recurrent=models.is_recurrent(model))
    generator = torch.Generator().manual_seed(0)
    lq = torch.rand(shape.batch, shape.frames, 3, shape.lr_crop, shape.lr_crop, generator=generator)
    gt = torch.rand(shape.batch, shape.frames, 3, shape.lr_crop * shape.scale, shape.lr_crop * shape.scale,
                    generator=generator)
    args = step.prepare(lq, gt)
    step(*args)
    best = float("inf")
    for _ in range(steps):
        start = time.perf_counter()
        step(*args)
        best = min(best, time.perf_counter() - start)
    return best


def time_validation(rv: ResolvedVariant) -> float | None:
    """One restore of the first validation clip (None when the options have no readable val set)."""
    try:
        lq = datasets.build_dataset(rv.opt.dataset_kwargs("val"), phase="val")[0]["lq"]
    except (VSRError, OSError, IndexError, KeyError):
        return None
    model, _ = _model(shapes_of(rv)[0][0], rv)
    start = time.perf_counter()
    with torch.no_grad():
        restore_clip(model, lq, torch.device("cpu"), models.input_window(model))
    return time.perf_counter() - start


def estimate(runs: Sequence[ResolvedVariant], steps: int = 2,
             progress: Callable[[str], None] = print) -> tuple[dict[Shape, float], list[RunEstimate], float | None]:
    """Seconds per step of every shape, every run's estimate, and one validation's seconds."""
    per_step: dict[Shape, float] = {}
    for rv in runs:
        for shape, _ in shapes_of(rv):
            if shape not in per_step:
                per_step[shape] = time_step(shape, rv, steps)
                progress(f"  timed {shape.label}: {per_step[shape]:.2f} s per step")
    validation = time_validation(runs[0]) if runs else None
    out = []
    for rv in runs:
        train = sum(iters * per_step[shape] for shape, iters in shapes_of(rv))
        vals = rv.total_iter // rv.opt.val.val_freq if rv.opt.val else 0
        overhead = 2 * STARTUP_SECONDS + (vals + 1) * (validation or 0.0)
        out.append(RunEstimate(rv, train, overhead))
    return per_step, out, validation


def format_estimate(per_step: dict[Shape, float], runs: Sequence[RunEstimate], validation: float | None) -> str:
    threads = torch.get_num_threads()
    lines = [f"Estimate on this machine ({threads} intra-op thread(s); fastest of the timed steps per shape; other "
             "processes on the machine make every figure larger):", "",
             "  seconds per training step, by shape (per-device batch, LR crop & frames):"]
    for shape, seconds in sorted(per_step.items(), key=lambda item: (item[0].batch, item[0].lr_crop, item[0].frames)):
        lines.append(f"    {shape.label:12s} {seconds:7.2f} s")
    val = f"{validation:.1f} s per validation/evaluation" if validation is not None else "validation not timed"
    lines += ["", f"  per run: training + overhead ({val}, {STARTUP_SECONDS:.0f} s start-up per launch)"]
    for run in runs:
        name = f"{run.rv.table.name}/{run.rv.section.name}/{run.rv.variant.name}"
        name += f" (seed {run.rv.seed})" if run.rv.multi_seed else ""
        lines.append(f"    {name:55s} {run.rv.total_iter:5d} it  {run.train_seconds / 60:6.1f} + "
                     f"{run.overhead_seconds / 60:4.1f} min")
    total = sum(r.total for r in runs)
    longest = max(runs, key=lambda r: r.total, default=None)
    lines += ["", f"  estimated total: {total / 3600:.2f} h for {len(runs)} distinct run(s) "
                  f"(training {sum(r.train_seconds for r in runs) / 3600:.2f} h)"]
    if longest is not None:
        lines.append(f"  longest run: {longest.rv.variant.name} ({longest.total / 60:.1f} min)")
    return "\n".join(lines)
