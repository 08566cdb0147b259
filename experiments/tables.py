"""The ablation table writer: measured timings and scores in, speedups and Markdown/CSV out.

Pure functions of the numbers they are given (no training, no files read), so the arithmetic the
tables rest on is tested on its own. Kinds of speedup are kept apart, and labelled apart, because
only the measured ones are measurements:

- measured speedup: baseline time / variant time, on two clocks, both the trainer's own:
  training time excluding data loading (`train_seconds`, the paper's measure) and including it
  (`wall_seconds`, what a user waits); both exclude validation and checkpointing. Each run used
  the device count its minibatch column shows;
- measured speedup at equal iterations: a curriculum variant against the variant that differs only
  in the curriculum (e.g. Multi-S&T vs Large-Batch), next to the FLOP bound `train.py --plan` prints;
- projected multi-device speedup, for rows whose paper speedup came from running a k-times larger
  minibatch on k-times more devices while the sweep ran it on the baseline's device count:
  T_baseline / (T_variant / k), i.e. ideal data-parallel scaling. Never presented as measured.

Seeds: a row trained with several seeds shows the mean PSNR and each seed's; the seed spread of a
section is the largest max-min PSNR over the seeds of any of its rows, and a PSNR difference
larger than it is marked, so a reader can tell a measured difference from seed noise.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from vsr_accel.core.fsio import atomic_write_text


@dataclass(frozen=True)
class Row:
    """One variant of one table section, as measured (None where it has no result yet). Rows
    trained with several seeds hold the mean over the finished seeds, and each seed's PSNR."""

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
    wall_seconds: float | None = None  # trainer-measured, including data loading
    wall_from_launch: bool = False  # wall_seconds is the runner's launch clock (runs before the trainer kept it)
    launch_seconds: float | None = None  # the runner's clock around the training launch, everything included
    psnr: float | None = None
    ssim: float | None = None
    seeds: tuple[int, ...] = ()  # seeds the row trains with (empty: one run with the base's seed)
    psnr_seeds: tuple[float, ...] = ()  # PSNR of each finished seed, in the order of `seeds`
    flop_bound: float | None = None  # Schedule.compute_ratio(): `--plan`'s bound at equal iterations
    equal_iters_ref: str | None = None  # variant this one is compared with at equal iterations
    status: str = "done"  # done | failed | partial | not run | not evaluated | "1 of 2 seeds"
    paper: dict = field(default_factory=dict)  # the paper's speedup / psnr / ssim for this row
    # the propagation probe of the final weights on the held-out clip (vsr_accel.train.health), over the
    # finished seeds: the smallest max |whole - frame by frame|, the mean and the largest |flow|, and the
    # mean PSNR gain of restoring the clip whole over restoring it frame by frame (what propagation is worth)
    propagation_gap: float | None = None
    flow_mean_px: float | None = None
    flow_max_px: float | None = None
    propagation_gain_db: float | None = None

    @property
    def spread(self) -> float | None:
        """max - min PSNR over the finished seeds (None with fewer than two)."""
        return max(self.psnr_seeds) - min(self.psnr_seeds) if len(self.psnr_seeds) >= 2 else None


@dataclass(frozen=True)
class Speedups:
    measured: float | None  # excluding data loading
    projected: float | None  # only for rows whose devices were not actually added
    equal_iters: float | None
    measured_incl_data: float | None = None
    equal_iters_incl_data: float | None = None


@dataclass(frozen=True)
class Spread:
    """A section's seed spread: the largest max-min PSNR over the seeds of any of its rows."""

    value: float | None
    rows: tuple[tuple[str, float, int], ...]  # (label, spread, number of seeds) of each multi-seed row

    def exceeded_by(self, difference: float | None) -> bool | None:
        if difference is None or self.value is None:
            return None
        return abs(difference) > self.value


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0 or numerator <= 0:
        return None
    return numerator / denominator


def difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


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
        is_base = row.variant == baseline
        out[row.variant] = Speedups(
            measured=None if is_base else measured, projected=projected,
            equal_iters=ratio(ref.train_seconds, row.train_seconds) if ref is not None else None,
            measured_incl_data=None if is_base else ratio(base.wall_seconds, row.wall_seconds),
            equal_iters_incl_data=ratio(ref.wall_seconds, row.wall_seconds) if ref is not None else None)
    return out


def section_spread(rows: Sequence[Row]) -> Spread:
    measured = tuple((row.label, row.spread, len(row.psnr_seeds)) for row in rows if row.spread is not None)
    return Spread(max((s for _, s, _ in measured), default=None), measured)


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


EXCEEDS = "✱"  # marks a PSNR difference larger than the section's seed spread


def psnr_cell(row: Row) -> str:
    """Mean PSNR; for several seeds also each seed's value (and which are still missing)."""
    if row.psnr is None:
        return "—"
    if len(row.seeds) < 2:
        return f"{row.psnr:.2f}"
    each = ", ".join(f"{p:.2f}" for p in row.psnr_seeds)
    missing = len(row.seeds) - len(row.psnr_seeds)
    return f"{row.psnr:.2f} ({each}{f'; {missing} missing' if missing else ''})"


def delta_cell(value: float | None, spread: Spread) -> str:
    if value is None:
        return "—"
    text = f"{value:+.2f}".replace("-", "−")
    return f"**{text}** {EXCEEDS}" if spread.exceeded_by(value) else text


def _wall(row: Row) -> str:
    text = _num(row.wall_seconds, 1)
    return f"{text}‡" if row.wall_seconds is not None and row.wall_from_launch else text


def _both(excl: float | None, incl: float | None) -> str:
    return "—" if excl is None and incl is None else f"{_times(excl)} / {_times(incl)}"


def spread_line(spread: Spread) -> str:
    if spread.value is None:
        return ("Seed spread: not measured yet (no row of this section has two finished seeds), so no PSNR "
                "difference below can be told apart from seed noise.")
    parts = ", ".join(f"{label} {value:.2f} dB ({count} seeds)" for label, value, count in spread.rows)
    return (f"Seed spread (max − min PSNR over seeds): {parts}. The section's spread is the largest, "
            f"**{spread.value:.2f} dB**; PSNR differences larger than it are bold and marked {EXCEEDS}, the "
            f"others are within seed noise.")


def propagation_cell(row: Row) -> str:
    """'2.1e-01 / 0.31 / 4.2 / +0.02': the network's output depends on its neighbours (a gap of 0 means
    it restores frames alone), its flow stays within the footage's motion, and what its neighbours are
    worth in dB (absent for runs probed before the probe measured it)."""
    if row.propagation_gap is None:
        return "—"
    flow = f" / {row.flow_mean_px:.2f} / {row.flow_max_px:.1f}" if row.flow_mean_px is not None else ""
    gain = f" / {row.propagation_gain_db:+.2f}" if row.propagation_gain_db is not None else ""
    return f"{row.propagation_gap:.1e}{flow}{gain}"


def section_markdown(title: str, rows: Sequence[Row], baseline: str) -> str:
    """One section: the main table, the seed spread, then the equal-iteration comparison."""
    speed = compute_speedups(rows, baseline)
    base = rows_by(rows)[baseline]
    spread = section_spread(rows)
    lines = [f"### {title}", "",
             "| id | variant | minibatch (devices×per device) | curriculum | iterations | "
             "train time excl. data loading (s) | train time incl. data loading (s) | "
             "speedup vs baseline, excl. / incl. data loading (measured) | "
             "multi-device speedup (projected)† | PSNR (dB) | Δ PSNR vs baseline | SSIM | "
             "propagation: max |Δ| vs per-frame / flow mean / max (px) / gain (dB)§ | paper: speedup / PSNR / SSIM |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        s = speed[row.variant]
        measured = "baseline" if row.variant == baseline else _both(s.measured, s.measured_incl_data)
        projected = "—"
        if s.projected is not None:
            projected = f"{s.projected:.2f}× (k={projected_devices(row, base)}, projected)"
        status = "" if row.status == "done" else f" **({row.status})**"
        delta = "—" if row.variant == baseline else delta_cell(difference(row.psnr, base.psnr), spread)
        lines.append(f"| {row.row_id} | {row.label}{status} | {_minibatch(row)} | {row.curriculum} | {row.iterations} | "
                     f"{_num(row.train_seconds, 1)} | {_wall(row)} | {measured} | {projected} | "
                     f"{psnr_cell(row)} | {delta} | {_num(row.ssim, 4)} | {propagation_cell(row)} | "
                     f"{_paper(row.paper)} |")
    lines += ["", spread_line(spread)]
    compared = [row for row in rows if row.equal_iters_ref]
    if compared:
        lines += ["", "Curriculum speedup at equal iterations and equal minibatch (measured, both clocks), next to "
                      "the FLOP-proportional bound `train.py --plan` prints for the same curriculum:", "",
                  "| variant | compared with | measured speedup, excl. data loading | incl. data loading | "
                  "FLOP bound (`--plan`) | measured (excl.) / bound | Δ PSNR vs the compared row |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        by_name = rows_by(rows)
        for row in compared:
            s = speed[row.variant]
            ref = by_name.get(row.equal_iters_ref)
            share = ratio(s.equal_iters, row.flop_bound)
            delta = delta_cell(difference(row.psnr, ref.psnr if ref else None), spread)
            lines.append(f"| {row.label} | {ref.label if ref else row.equal_iters_ref} | "
                         f"{_times(s.equal_iters)} | {_times(s.equal_iters_incl_data)} | {_times(row.flop_bound)} | "
                         f"{_num(share, 2)} | {delta} |")
    return "\n".join(lines)


def rows_by(rows: Sequence[Row]) -> dict[str, Row]:
    return {row.variant: row for row in rows}


FOOTNOTES = """\
- **train time excl. data loading**: measured by the trainer (`train.py`), summed over the steps
  between receiving a batch and finishing the optimizer step, and stored as `train_seconds` in the
  final training state (`training_states/<iterations>.state`); validation, checkpointing and
  waiting for data are not counted. This is the paper's wall-clock measure. On more than one device
  it is rank 0's clock (every rank waits for the gradient all-reduce, so all ranks agree).
- **train time incl. data loading**: the trainer's second clock (`wall_seconds` in the same state):
  the same loop with the waits for data counted, still without validation and checkpointing; what
  a user waits for the training itself. A value marked ‡ comes from a run written before the
  trainer kept that clock: it is the runner's clock around the whole launch (start-up, validation
  and checkpoints included), so it overstates the training time.
- **speedup vs baseline (measured)**: baseline time / variant time on each clock, both measured,
  each run on the device count shown in the minibatch column.
- † **multi-device speedup (projected)**: for rows whose speedup in the paper comes from more
  devices (a k× larger minibatch on k× the GPUs, each GPU keeping the baseline's per-device
  batch) while this sweep ran the k× minibatch on the baseline's devices:
  `projected = T_baseline / (T_variant / k)` on the clock excluding data loading, i.e. the
  measured per-device time divided by k, assuming ideal data-parallel scaling (no all-reduce or
  straggler cost). It is an upper bound, **not a measurement**.
- **seeds**: a row trained with several seeds (`seeds` in the definition) shows the mean PSNR,
  then each seed's; its times are the means over its seeds. The seed spread under each table is
  the largest max − min PSNR over the seeds of any row there; a Δ PSNR larger than it is marked.
  Two seeds give a rough measure of seed noise, not a confidence interval.
- § **propagation**: the final weights on the held-out clip (`scripts/evaluate.py --probe`,
  `vsr_accel.train.health`): the largest difference between the clip restored whole and frame by frame
  (0 means the recurrent network restores every frame alone: its propagation is dead), then the
  flow network's mean and largest |flow| in LR pixels between consecutive frames, to be read
  against the footage's own motion, then the PSNR of the clip restored whole minus restored frame by
  frame (what the neighbouring frames are worth). Over seeds: the smallest difference, the mean and the
  largest flow, the mean gain.
- **equal-iteration speedup**: a curriculum variant vs the variant with the same minibatch, iterations
  and LR rules but a fixed shape. The FLOP bound is `Schedule.compute_ratio()` (`train.py --plan`:
  work per iteration taken as batch × crop² × frames); a measured ratio below it shows the per-step
  overhead that does not shrink with the shape.
"""


def markdown(title: str, header: Sequence[str], sections: Sequence[tuple[str, Sequence[Row], str]],
             notes: str = "", bicubic: tuple[float, float | None] | None = None) -> str:
    """The whole table file: provenance header, one block per section, footnotes."""
    parts = [f"## {title}", ""]
    parts += [f"> {line}  " if line else ">" for line in header]
    parts.append("")
    if bicubic is not None:
        ssim = f" / SSIM {bicubic[1]:.4f}" if bicubic[1] is not None else ""
        parts += [f"MATLAB bicubic upsampling of the same clips scores **{bicubic[0]:.2f} dB**{ssim} "
                  "(the floor every PSNR below is read against).", ""]
    for section_title, rows, baseline in sections:
        parts += [section_markdown(section_title, rows, baseline), ""]
    parts += ["Notes:", "", FOOTNOTES.rstrip()]
    if notes.strip():
        parts += ["", notes.strip()]
    return "\n".join(parts) + "\n"


CSV_COLUMNS = ("section", "id", "variant", "label", "status", "minibatch", "world_size", "per_device_batch",
               "paper_devices", "curriculum", "iterations", "train_seconds_excl_data", "train_seconds_incl_data",
               "incl_data_from_launch_clock", "launch_wall_seconds", "speedup_measured",
               "speedup_measured_incl_data", "speedup_projected", "projected_devices", "equal_iters_ref",
               "speedup_equal_iters_measured", "speedup_equal_iters_measured_incl_data", "flop_bound", "psnr",
               "ssim", "seeds", "psnr_seeds", "psnr_seed_spread", "section_seed_spread", "delta_psnr_vs_baseline",
               "delta_exceeds_seed_spread", "propagation_max_abs_diff_vs_per_frame", "flow_mean_px", "flow_max_px",
               "propagation_psnr_gain_db", "paper_speedup", "paper_psnr", "paper_ssim")


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
        spread = section_spread(rows)
        for row in rows:
            s = speed[row.variant]
            delta = None if row.variant == baseline else difference(row.psnr, base.psnr)
            exceeds = spread.exceeded_by(delta)
            writer.writerow([
                section_title, row.row_id, row.variant, row.label, row.status, row.minibatch, row.world_size,
                per_device_batch(row), row.devices, row.curriculum, row.iterations,
                _raw(row.train_seconds), _raw(row.wall_seconds), int(row.wall_from_launch) if row.wall_seconds else "",
                _raw(row.launch_seconds), _raw(s.measured), _raw(s.measured_incl_data), _raw(s.projected),
                projected_devices(row, base) if s.projected is not None else "", row.equal_iters_ref or "",
                _raw(s.equal_iters), _raw(s.equal_iters_incl_data), _raw(row.flop_bound), _raw(row.psnr),
                _raw(row.ssim), " ".join(map(str, row.seeds)), " ".join(repr(p) for p in row.psnr_seeds),
                _raw(row.spread), _raw(spread.value), _raw(delta), "" if exceeds is None else int(exceeds),
                _raw(row.propagation_gap), _raw(row.flow_mean_px), _raw(row.flow_max_px), _raw(row.propagation_gain_db),
                _raw(row.paper.get("speedup")), _raw(row.paper.get("psnr")), _raw(row.paper.get("ssim")),
            ])
    return buffer.getvalue()


def _raw(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def write_table(directory: Path, stem: str, title: str, header: Sequence[str],
                sections: Sequence[tuple[str, Sequence[Row], str]], notes: str = "",
                bicubic: tuple[float, float | None] | None = None) -> tuple[Path, Path]:
    """`<stem>.md` and `<stem>.csv` in `directory`; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    md_path, csv_path = directory / f"{stem}.md", directory / f"{stem}.csv"
    atomic_write_text(md_path, markdown(title, header, sections, notes, bicubic))
    atomic_write_text(csv_path, csv_text(header, sections))
    return md_path, csv_path
