"""Figures for the ablation tables (PNG, matplotlib's Agg backend: no display needed).

- `plot_curricula`: learning rate, LR crop size and clip length against the iteration for every
  variant of a table, computed from the same `Schedule` / `LRSchedule` objects the trainer uses
  (so the figure cannot drift from what was trained).
- `plot_val_psnr`: validation PSNR against the trainer-measured training time excluding data
  loading, read back from each run's tensorboard scalars.

Every figure carries the provenance header (command, date, machine) as a footer and as PNG
metadata, like the Markdown and CSV files it sits beside.
"""
from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vsr_accel.schedule.curriculum import Schedule  # noqa: E402
from vsr_accel.schedule.lr import LRSchedule  # noqa: E402


@dataclass(frozen=True)
class CurriculumCurve:
    label: str
    iters: tuple[int, ...]
    lr: tuple[float, ...]
    lr_crop: tuple[int, ...]
    frames: tuple[int, ...]


@dataclass(frozen=True)
class ValPoint:
    iteration: int
    train_seconds: float | None  # trainer-measured, excluding data loading; None if not logged
    psnr: float
    ssim: float | None = None
    wall_seconds: float | None = None  # trainer-measured, including data loading (newer runs only)


def sample_iterations(schedule: Schedule, warmup_iter: int, max_points: int = 1200) -> list[int]:
    """Every iteration of short runs; for long ones an even grid plus both sides of every stage
    boundary and the warmup's end, so the sawtooth's restarts stay sharp."""
    total = schedule.total_iter
    if total <= max_points:
        return list(range(total))
    points = {round(i * (total - 1) / (max_points - 1)) for i in range(max_points)}
    for edge in [*schedule.boundaries, warmup_iter]:
        points.update(t for t in (edge - 1, edge) if 0 <= t < total)
    return sorted(points)


def curriculum_curve(label: str, schedule: Schedule, lr_schedule: LRSchedule) -> CurriculumCurve:
    iters = sample_iterations(schedule, lr_schedule.warmup_iters)
    stages = [schedule.stage_at(t) for t in iters]
    lrs = [lr_schedule.lr_at(t) for t in iters]
    # one closing point at total_iter so the last iteration's step is drawn to the end of the run
    iters, stages, lrs = [*iters, schedule.total_iter], [*stages, stages[-1]], [*lrs, lrs[-1]]
    return CurriculumCurve(label=label, iters=tuple(iters), lr=tuple(lrs),
                           lr_crop=tuple(s.lr_crop for s in stages), frames=tuple(s.num_frames for s in stages))


FOOTER_CHARS = 180  # monospace 6 pt across a 10-inch figure
LEGEND_CHARS = 36  # 7 pt in the quarter of the figure right of the axes
TITLE_CHARS = 70  # the axes span ~2/3 of the figure (legend on the right)


def _wrapped(lines: Sequence[str], width: int) -> list[str]:
    """Long provenance lines (the scale note) wrapped, so no footer text runs off the PNG."""
    return [part for line in lines for part in (textwrap.wrap(line, width, subsequent_indent="  ") or [""])]


def _legend(label: str) -> str:
    """Legend entries wrapped to the space right of the axes (Table 8's labels are long)."""
    return textwrap.fill(label, LEGEND_CHARS, subsequent_indent="  ")


def _footer_inches(header: Sequence[str]) -> float:
    return 0.16 * (len(_wrapped(header, FOOTER_CHARS)) + 1)


def _footer(fig, header: Sequence[str]) -> None:
    fig.text(0.01, 0.005, "\n".join(_wrapped(header, FOOTER_CHARS)), fontsize=6, va="bottom", ha="left",
             color="0.35", family="monospace")


def _save(fig, path: Path, header: Sequence[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Description": "\n".join(header), "Software": "vsr-accel experiments"})
    plt.close(fig)
    return path


def plot_curricula(curves: Sequence[CurriculumCurve], path: Path, title: str, header: Sequence[str]) -> Path:
    """Three stacked panels sharing the iteration axis: LR, LR crop size, clip length."""
    footer_in = _footer_inches(header)
    fig, axes = plt.subplots(3, 1, figsize=(10, 8.5 + footer_in), sharex=True)
    panels = (("learning rate", "lr"), ("LR crop (px)", "lr_crop"), ("clip length (frames)", "frames"))
    for ax, (ylabel, attr) in zip(axes, panels):
        for curve in curves:
            ax.plot(curve.iters, getattr(curve, attr), drawstyle="steps-post", label=_legend(curve.label),
                    linewidth=1.4)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("iteration")
    axes[0].set_title(textwrap.fill(title, TITLE_CHARS))
    axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.subplots_adjust(left=0.08, right=0.74, top=0.93, bottom=0.06 + footer_in / (8.5 + footer_in))
    _footer(fig, header)
    return _save(fig, path, header)


def plot_val_psnr(curves: dict[str, Sequence[ValPoint]], path: Path, title: str, header: Sequence[str]) -> Path:
    """One line per variant: validation PSNR against training time excluding data loading."""
    footer_in = _footer_inches(header)
    fig, ax = plt.subplots(figsize=(10, 5.5 + footer_in))
    plotted = 0
    for label, points in curves.items():
        timed = [p for p in points if p.train_seconds is not None]
        if not timed:
            continue
        ax.plot([p.train_seconds for p in timed], [p.psnr for p in timed], marker="o", markersize=3, label=_legend(label))
        plotted += 1
    if not plotted:
        ax.text(0.5, 0.5, "no validation results yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("training time excluding data loading (s, measured by the trainer)")
    ax.set_ylabel("validation PSNR (dB)")
    ax.set_title(textwrap.fill(title, TITLE_CHARS))
    ax.grid(alpha=0.3)
    if plotted:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.subplots_adjust(left=0.08, right=0.74, top=0.9, bottom=0.1 + footer_in / (5.5 + footer_in))
    _footer(fig, header)
    return _save(fig, path, header)


# -- reading a run's validation history -------------------------------------------------------

VAL_LINE = re.compile(r"val @ (\d+): psnr ([-\d.naif]+)(?:, ssim ([-\d.naif]+))?")


def read_val_curve(run_dir: Path) -> list[ValPoint]:
    """Validation points of one run, with the trainer's `train_seconds_excl_data` at each.

    The trainer logs that clock to tensorboard every `logger.print_freq` iterations (and at the
    last one); the runner makes `print_freq` divide `val.val_freq`, so each validation iteration
    has an exact reading. Otherwise the reading is interpolated between the neighbouring ones.
    Without tensorboard events the PSNRs come from train.log, with no time."""
    tb = Path(run_dir) / "tb_logger"
    if tb.is_dir():
        points = _val_from_tensorboard(tb)
        if points:
            return points
    log = Path(run_dir) / "train.log"
    if not log.is_file():
        return []
    found: dict[int, ValPoint] = {}
    for match in VAL_LINE.finditer(log.read_text(errors="replace")):
        ssim = float(match.group(3)) if match.group(3) else None
        found[int(match.group(1))] = ValPoint(int(match.group(1)), None, float(match.group(2)), ssim)
    return [found[k] for k in sorted(found)]


def _val_from_tensorboard(tb_dir: Path) -> list[ValPoint]:
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:  # tensorboard is in requirements.txt, but the figure is not worth a crash
        return []
    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags().get("scalars", []))
    if "val/psnr" not in tags:
        return []
    # a resumed run re-logs the steps after its last checkpoint: the last value of a step wins
    psnr = {e.step: e.value for e in acc.Scalars("val/psnr")}
    ssim = {e.step: e.value for e in acc.Scalars("val/ssim")} if "val/ssim" in tags else {}
    clock, wall = ({e.step: e.value for e in acc.Scalars(tag)} if tag in tags else {}
                   for tag in ("train/train_seconds_excl_data", "train/train_seconds_incl_data"))
    return [ValPoint(step, seconds_at(step, clock), psnr[step], ssim.get(step), seconds_at(step, wall))
            for step in sorted(psnr)]


def seconds_at(step: int, clock: dict[int, float]) -> float | None:
    """The trainer's clock at `step`: exact if logged there, else linear between neighbours."""
    if step in clock:
        return clock[step]
    before = [s for s in clock if s < step]
    after = [s for s in clock if s > step]
    if not before or not after:
        return None
    lo, hi = max(before), min(after)
    return clock[lo] + (clock[hi] - clock[lo]) * (step - lo) / (hi - lo)
