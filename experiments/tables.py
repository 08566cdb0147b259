"""The ablation table writer: measured timings and scores in, speedups and Markdown/CSV out.

Pure functions of the numbers they are given (no training, no files read), so the arithmetic the
tables rest on is tested on its own. Three kinds of speedup are kept apart, and labelled apart,
because only the first two are measurements:

- measured speedup: baseline time / variant time, both read from the trainer's own clock
  (`train_seconds` in the final training state: wall-clock training time excluding data
  loading), on the device count each run actually used;
- measured speedup at equal iterations: a curriculum variant against the variant that differs only
  in the curriculum (e.g. Multi-S&T vs Large-Batch), next to the FLOP bound `train.py --plan` prints;
- projected multi-device speedup, for rows whose paper speedup came from running a k-times larger
  minibatch on k-times more devices while the sweep ran it on the baseline's device count:
  T_baseline / (T_variant / k), i.e. ideal data-parallel scaling. Never presented as measured.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from vsr_accel.fsio import atomic_write_text


@dataclass(frozen=True)
class Row:
    """One variant of one table section, as measured (None where it has no result yet)."""

    section: str
    variant: str
    row_id: str
    label: str
    minibatch: int  # global samples per optimizer step
    world_size: int  # devices the run used
    curriculum: str  # kind plus the paper's notation, e.g. "multigrid 16&3 / ... / 32&7"
    iterations: int
    grad_accum: int = 1  # accumulation steps per optimizer step
    devices: int = 1  # device multiple the paper used for this row relative to the baseline
    train_seconds: float | None = None  # trainer-measured, excluding data loading
    total_seconds: float | None = None  # the launch's wall-clock, everything included
    psnr: float | None = None
    ssim: float | None = None
    flop_bound: float | None = None  # Schedule.compute_ratio(): `--plan`'s bound at equal iterations
    equal_iters_ref: str | None = None  # variant this one is compared with at equal iterations
    status: str = "done"  # done | failed | not run
    paper: dict = field(default_factory=dict)  # the paper's speedup / psnr / ssim for this row


@dataclass(frozen=True)
class Speedups:
    measured: float | None
    projected: float | None  # only for rows whose devices were not actually added
    equal_iters: float | None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0 or numerator <= 0:
        return None
    return numerator / denominator


def projected_devices(row: Row, baseline: Row) -> int:
    """How many times more devices the paper gave this row than the sweep did: 1 when the sweep
    already launched it on `devices` times the baseline's device count (nothing to project)."""
    launched = max(1, row.world_size // max(1, baseline.world_size))
    return max(1, row.devices // launched)


def compute_speedups(rows: Sequence[Row], baseline: str) -> dict[str, Speedups]:
    """Speedups of every row of one section, keyed by variant name."""
    by_name = {row.variant: row for row in rows}
    if baseline not in by_name:
        raise ValueError(f"baseline variant {baseline!r} is not among the rows {list(by_name)}")
    base = by_name[baseline]
    out = {}
    for row in rows:
        measured = ratio(base.train_seconds, row.train_seconds)
        k = projected_devices(row, base)
        projected = measured * k if measured is not None and k > 1 else None
        ref = by_name.get(row.equal_iters_ref) if row.equal_iters_ref else None
        equal = ratio(ref.train_seconds, row.train_seconds) if ref is not None else None
        out[row.variant] = Speedups(measured=None if row.variant == baseline else measured,
                                    projected=projected, equal_iters=equal)
    return out


# -- formatting ------------------------------------------------------------------------------

def _num(value: float | None, digits: int) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _times(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _paper(paper: dict) -> str:
    parts = []
    if paper.get("speedup") is not None:
        parts.append(f"{paper['speedup']}×")
    if paper.get("psnr") is not None:
        parts.append(f"{paper['psnr']:.2f}")
    if paper.get("ssim") is not None:
        parts.append(f"{paper['ssim']:.4f}")
    return " / ".join(parts) if parts else "—"


def per_device_batch(row: Row) -> int:
    return row.minibatch // max(1, row.world_size * row.grad_accum)


def _minibatch(row: Row) -> str:
    accum = f"×{row.grad_accum}" if row.grad_accum > 1 else ""
    return f"{row.minibatch} ({row.world_size}×{per_device_batch(row)}{accum})"


def section_markdown(title: str, rows: Sequence[Row], baseline: str) -> str:
    """One section: the main table, then the equal-iteration comparison where a row has one."""
    speed = compute_speedups(rows, baseline)
    base = rows_by(rows)[baseline]
    lines = [f"### {title}", "",
             "| id | variant | minibatch (devices×per device) | curriculum | iterations | "
             "train time excl. data loading (s) | total wall-clock (s) | speedup vs baseline (measured) | "
             "multi-device speedup (projected)† | PSNR | SSIM | paper: speedup / PSNR / SSIM |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        s = speed[row.variant]
        measured = "baseline" if row.variant == baseline else _times(s.measured)
        projected = "—"
        if s.projected is not None:
            projected = f"{s.projected:.2f}× (k={projected_devices(row, base)}, projected)"
        status = "" if row.status == "done" else f" **({row.status})**"
        lines.append(f"| {row.row_id} | {row.label}{status} | {_minibatch(row)} | {row.curriculum} | {row.iterations} | "
                     f"{_num(row.train_seconds, 1)} | {_num(row.total_seconds, 1)} | {measured} | {projected} | "
                     f"{_num(row.psnr, 2)} | {_num(row.ssim, 4)} | {_paper(row.paper)} |")
    compared = [row for row in rows if row.equal_iters_ref]
    if compared:
        lines += ["", "Curriculum speedup at equal iterations and equal minibatch (measured), next to the "
                      "FLOP-proportional bound `train.py --plan` prints for the same curriculum:", "",
                  "| variant | compared with | measured speedup | FLOP bound (`--plan`) | measured / bound |",
                  "|---|---|---:|---:|---:|"]
        labels = {row.variant: row.label for row in rows}
        for row in compared:
            s = speed[row.variant]
            share = ratio(s.equal_iters, row.flop_bound)
            lines.append(f"| {row.label} | {labels.get(row.equal_iters_ref, row.equal_iters_ref)} | "
                         f"{_times(s.equal_iters)} | {_times(row.flop_bound)} | {_num(share, 2)} |")
    return "\n".join(lines)


def rows_by(rows: Sequence[Row]) -> dict[str, Row]:
    return {row.variant: row for row in rows}


FOOTNOTES = """\
- **train time excl. data loading**: measured by the trainer (`train.py`), summed over the steps
  between receiving a batch and finishing the optimizer step, and stored as `train_seconds` in the
  final training state (`training_states/<iterations>.state`); validation, checkpointing and
  waiting for data are not counted. This is the paper's wall-clock measure. On more than one device
  it is rank 0's clock (every rank waits for the gradient all-reduce, so all ranks agree).
- **total wall-clock**: the runner's clock around the training launch (process start to exit,
  summed over attempts when a run was resumed): start-up, data loading, validation and checkpoints
  included. Not the paper's measure; shown so the excluded time is visible.
- **speedup vs baseline (measured)**: baseline train time / variant train time, both measured, each
  on the device count shown in the minibatch column.
- † **multi-device speedup (projected)**: for rows whose speedup in the paper comes from more
  devices (a k× larger minibatch on k× the GPUs, each GPU keeping the baseline's per-device
  batch) while this sweep ran the k× minibatch on the baseline's devices:
  `projected = T_baseline / (T_variant / k)`, i.e. the measured per-device time divided by k,
  assuming ideal data-parallel scaling (no all-reduce or straggler cost). It is an upper bound,
  **not a measurement**.
- **equal-iteration speedup**: a curriculum variant vs the variant with the same minibatch, iterations
  and LR rules but a fixed shape. The FLOP bound is `Schedule.compute_ratio()` (`train.py --plan`:
  work per iteration taken as batch × crop² × frames); a measured ratio below it shows the per-step
  overhead that does not shrink with the shape.
"""


def markdown(title: str, header: Sequence[str], sections: Sequence[tuple[str, Sequence[Row], str]],
             notes: str = "") -> str:
    """The whole table file: provenance header, one block per section, footnotes."""
    parts = [f"## {title}", ""]
    parts += [f"> {line}  " if line else ">" for line in header]
    parts.append("")
    for section_title, rows, baseline in sections:
        parts += [section_markdown(section_title, rows, baseline), ""]
    parts += ["Notes:", "", FOOTNOTES.rstrip()]
    if notes.strip():
        parts += ["", notes.strip()]
    return "\n".join(parts) + "\n"


CSV_COLUMNS = ("section", "id", "variant", "label", "status", "minibatch", "world_size", "per_device_batch",
               "paper_devices", "curriculum", "iterations", "train_seconds_excl_data", "total_wall_seconds",
               "speedup_measured", "speedup_projected", "projected_devices", "equal_iters_ref",
               "speedup_equal_iters_measured", "flop_bound", "psnr", "ssim", "paper_speedup", "paper_psnr",
               "paper_ssim")


def csv_text(header: Sequence[str], sections: Sequence[tuple[str, Sequence[Row], str]]) -> str:
    """Raw numbers (full precision) for other tools; `#` lines carry the provenance header and
    say which columns are projections."""
    buffer = io.StringIO()
    for line in header:
        buffer.write(f"# {line}\n")
    buffer.write("# speedup_projected = T_baseline / (T_variant / projected_devices): a projection "
                 "assuming ideal multi-device scaling, not a measurement\n")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for section_title, rows, baseline in sections:
        speed = compute_speedups(rows, baseline)
        base = rows_by(rows)[baseline]
        for row in rows:
            s = speed[row.variant]
            writer.writerow([
                section_title, row.row_id, row.variant, row.label, row.status, row.minibatch, row.world_size,
                per_device_batch(row), row.devices, row.curriculum, row.iterations,
                _raw(row.train_seconds), _raw(row.total_seconds), _raw(s.measured), _raw(s.projected),
                projected_devices(row, base) if s.projected is not None else "", row.equal_iters_ref or "",
                _raw(s.equal_iters), _raw(row.flop_bound), _raw(row.psnr), _raw(row.ssim),
                _raw(row.paper.get("speedup")), _raw(row.paper.get("psnr")), _raw(row.paper.get("ssim")),
            ])
    return buffer.getvalue()


def _raw(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def write_table(directory: Path, stem: str, title: str, header: Sequence[str],
                sections: Sequence[tuple[str, Sequence[Row], str]], notes: str = "") -> tuple[Path, Path]:
    """`<stem>.md` and `<stem>.csv` in `directory`; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    md_path, csv_path = directory / f"{stem}.md", directory / f"{stem}.csv"
    atomic_write_text(md_path, markdown(title, header, sections, notes))
    atomic_write_text(csv_path, csv_text(header, sections))
    return md_path, csv_path
