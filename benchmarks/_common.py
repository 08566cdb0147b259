"""What the benchmarks share: the training step they time (`vsr_accel.train.step.TrainStep`, the one
train.py runs, built by the same `vsr_accel.train.builders` from a set of speed switches), FLOP
counting, interleaved timing, machine description and the Markdown report.

The machine these run on is shared and noisy, so every comparison is timed *interleaved*
(A, B, A, B, ... with the order reversed every other round, so a slow spell hits both) and
reported as medians, and every ratio a script prints comes from one run of that script.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import platform
import shlex
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from vsr_accel.core.fsio import atomic_write_text  # noqa: E402
from vsr_accel.train import builders  # noqa: E402
from vsr_accel.train.options import OptimizerOptions, TrainOptions  # noqa: E402
from vsr_accel.train.speed import cpu_prefers_channels_last, cpu_supports_bf16, maybe_compile  # noqa: E402
from vsr_accel.train.step import TrainStep, build_optimizer, set_lr  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
THREADS = 2  # the brief's machine: 2 cores; timings are for exactly this many intra-op threads

# BasicVSR-M, the network the paper's curriculum is measured on (models/basicvsr.py).
BASICVSR_M = {"type": "BasicVSRM"}
# BasicSR's REDS BasicVSR recipe: Adam(lr 2e-4, betas (0.9, 0.99)), SpyNet at lr x 0.125.
ADAM_LR = 2e-4
ADAM_BETAS = (0.9, 0.99)
FLOW_LR_MUL = 0.125


def setup(threads: int = THREADS) -> None:
    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore", message="BasicVSR: spynet_path")


# ---------------------------------------------------------------------------------------------
# the training step
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class StepOptions:
    """A benchmark row's name for a set of speed switches; `train_options()` spells them as the
    trainer's options (`train.*`), from which the shared builders make the step."""

    channels_last: bool = False
    amp: str = "none"            # none | bf16 (CPU autocast): train.amp
    adam: str = "default"        # default (torch's pick: the for-loop kernel on CPU) | foreach | fused
    compile: bool = False        # train.compile
    checkpoint: bool = False     # train.checkpoint_propagation: activation checkpointing

    def train_options(self) -> TrainOptions:
        """BasicSR's REDS BasicVSR recipe (Adam 2e-4, betas (0.9, 0.99), SpyNet at x0.125, the
        Charbonnier loss) with these switches, as `train.*` options."""
        if self.adam not in ADAM_KINDS:
            raise ValueError(f"unknown Adam kind {self.adam!r}")
        optimizer = OptimizerOptions(lr=ADAM_LR, betas=ADAM_BETAS, **ADAM_KINDS[self.adam])
        return TrainOptions(total_iter=1, optim_g=optimizer, flow_lr_mul=FLOW_LR_MUL, channels_last=self.channels_last, amp=self.amp,
                            compile=self.compile, checkpoint_propagation=self.checkpoint)

    def label(self) -> str:
        parts = [self.amp if self.amp != "none" else "fp32", "channels_last" if self.channels_last else "NCHW",
                 f"Adam {self.adam}"]
        if self.compile:
            parts.append("compiled")
        if self.checkpoint:
            parts.append("act. checkpointing")
        return ", ".join(parts)


UNOPTIMISED = StepOptions()
# train.py's defaults on this CPU (vsr_accel.train.speed.resolve_speed), chosen by `bench_step.py --sweep`
# on the 2-core Xeon (AMX-BF16): channels_last 1.1-1.4x, bf16 autocast 1.8-2.1x, both 2.6-3.1x;
# fused Adam: the optimizer step alone ~5x faster (within the noise of a whole step); torch.compile:
# 455 s first call per shape and no faster after it (not a default). bf16 only where the CPU runs
# it natively, channels_last only with AVX-512 (0.74-0.82x on the AVX2-only AMD EPYC).
OPTIMISED = StepOptions(channels_last=cpu_prefers_channels_last(), amp="bf16" if cpu_supports_bf16() else "none",
                        adam="fused")


def build_model(spec: Mapping[str, Any] = BASICVSR_M, seed: int = 0, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The network through the trainer's loader (`models.load_network`), at fresh weights."""
    import models

    torch.manual_seed(seed)
    with torch.device(device), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="BasicVSR: spynet_path")  # no pretrained SpyNet: on purpose
        return models.load_network(dict(spec)).train()


ADAM_KINDS = {"default": dict(fused=False), "foreach": dict(foreach=True), "forloop": dict(foreach=False),
              "fused": dict(fused=True)}
"""`StepOptions.adam` -> `train.optim_g`'s kernel switches; 'default' is torch's own pick (the
for-loop kernel on CPU), which is what BasicSR gets."""


def make_adam(model: torch.nn.Module, kind: str) -> torch.optim.Optimizer:
    """train.py's optimizer (BasicSR's groups: SpyNet at lr x 0.125) with the chosen Adam kernel,
    alone (for timing the optimizer step by itself)."""
    o = StepOptions(adam=kind).train_options().optim_g
    optimizer = build_optimizer(model, lr=o.lr, betas=o.betas, flow_lr_mul=FLOW_LR_MUL, fused=o.fused,
                                foreach=o.foreach)
    set_lr(optimizer, lambda mul: ADAM_LR * mul)
    return optimizer


def make_step(model: torch.nn.Module, options: StepOptions) -> TrainStep:
    """The trainer's step (`vsr_accel.train.step.TrainStep`), built by the trainer's builders from
    these speed switches: zero grads, forward and Charbonnier loss under the chosen precision,
    backward, Adam, at the recipe's LRs. Like train.py it never reads the loss back (no host
    sync). Call it as `step(*step.prepare(lq, gt))`."""
    train = options.train_options()
    speed = builders.speed_settings(train, next(model.parameters()).device)
    model = builders.prepare_model(model, train, speed)
    step = builders.build_step(train, model, speed, recurrent=True)
    set_lr(step.optimizer, lambda mul: ADAM_LR * mul)
    step.net = maybe_compile(model, train.compile, stage_count=1)
    return step


def clip_batch(batch: int, frames: int, crop: int, scale: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth random LR clip and a GT of the right size (values don't change the cost)."""
    generator = torch.Generator().manual_seed(seed)
    lq = torch.rand(batch, frames, 3, crop, crop, generator=generator)
    gt = torch.nn.functional.interpolate(lq.flatten(0, 1), scale_factor=scale, mode="bilinear",
                                         align_corners=False).clamp(0, 1).unflatten(0, (batch, frames))
    return lq, gt.contiguous()


# ---------------------------------------------------------------------------------------------
# FLOPs
# ---------------------------------------------------------------------------------------------
def training_flops(spec: Mapping[str, Any], batch: int, frames: int, crop: int, scale: int = 4) -> int:
    """FLOPs of one training step's forward + backward (convolutions and matmuls, as counted by
    `torch.utils.flop_counter`), computed on the meta device: shapes only, no arithmetic, so
    even the largest stage counts in seconds. SpyNet is trainable (BasicVSR after `fix_flow`)."""
    from torch.utils.flop_counter import FlopCounterMode

    from vsr_accel.train.losses import CharbonnierLoss

    model = build_model(spec, device="meta")
    with torch.device("meta"):
        lq = torch.empty(batch, frames, 3, crop, crop)
        gt = torch.empty(batch, frames, 3, crop * scale, crop * scale)
    counter = FlopCounterMode(display=False)
    with counter:
        CharbonnierLoss()(model(lq), gt).backward()
    return int(counter.get_total_flops())


# ---------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Timings:
    """Per configuration: wall-clock seconds of each timed repetition, and the CPU seconds the
    process used meanwhile (all threads; less sensitive to other users of a shared machine,
    since time spent descheduled is not counted)."""

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]

    def median(self, name: str) -> float:
        return statistics.median(self.wall[name])

    def cpu_median(self, name: str) -> float:
        return statistics.median(self.cpu[name])


def interleaved(runs: Mapping[str, Callable[[], Any]], rounds: int, warmup: int = 1,
                progress: bool = True) -> Timings:
    """Time each callable `rounds` times, interleaved; the order is reversed every other round
    so drifts in machine load hit every configuration alike."""
    names = list(runs)
    for name in names:
        for _ in range(warmup):
            runs[name]()
    timings = Timings({name: [] for name in names}, {name: [] for name in names})
    for round_index in range(rounds):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            cpu_start, start = time.process_time(), time.perf_counter()
            runs[name]()
            timings.wall[name].append(time.perf_counter() - start)
            timings.cpu[name].append(time.process_time() - cpu_start)
        if progress:
            summary = ", ".join(f"{n}: {timings.wall[n][-1]:.2f}s" for n in names)
            print(f"  round {round_index + 1}/{rounds}: {summary}", file=sys.stderr, flush=True)
    return timings


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float]) -> str:
    """min-max of the timed repetitions, for the reader to judge the noise."""
    return f"{min(values):.2f}-{max(values):.2f}"


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
def machine_description() -> dict[str, str]:
    cpu = platform.processor() or "unknown CPU"
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in ("", "unknown CPU", "x86_64"):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return {
        "cpu": f"{cpu}, {os.cpu_count()} logical cores ({' '.join(isa) or 'no AVX2'})",
        "threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
        "load average (1/5/15 min) at start": load,
    }


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


class Report:
    """Collects a benchmark's output; prints it as it goes and writes
    `benchmarks/results/<name>.md` (+ `.json` with the raw numbers) at the end."""

    def __init__(self, name: str, title: str, argv: Sequence[str] | None = None) -> None:
        self.name = name
        self.title = title
        argv = list(sys.argv if argv is None else argv)
        self.command = " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *argv])
        self.started = _dt.datetime.now(_dt.timezone.utc)
        self.machine = machine_description()
        self.blocks: list[str] = []
        self.data: dict[str, Any] = {}

    def add(self, text: str) -> None:
        print(text, flush=True)
        self.blocks.append(text)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]], caption: str | None = None) -> None:
        text = markdown_table(headers, rows)
        self.add(f"{caption}\n\n{text}" if caption else text)

    def write(self, out_dir: Path = RESULTS) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        finished = _dt.datetime.now(_dt.timezone.utc)
        load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
        header = [f"# {self.title}", "",
                  f"- command: `{self.command}`",
                  f"- date: {self.started:%Y-%m-%d %H:%M:%S} UTC ({(finished - self.started).total_seconds():.0f} s)"]
        header += [f"- {key}: {value}" for key, value in self.machine.items()]
        header.append(f"- load average at end: {load}")
        path = out_dir / f"{self.name}.md"
        atomic_write_text(path, "\n".join(header) + "\n\n" + "\n\n".join(self.blocks) + "\n")
        atomic_write_text(out_dir / f"{self.name}.json", json.dumps(
            {"command": self.command, "date": self.started.isoformat(), "machine": self.machine, **self.data},
            indent=2, default=str) + "\n")
        print(f"\nwritten: {path.relative_to(REPO) if path.is_relative_to(REPO) else path}", flush=True)
        return path
