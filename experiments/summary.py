"""The one-page summary of a scale's results (`experiments/results/<scale>/README.md`), claim by claim.

For each claim of the paper (linear scaling needed, warmup needed, hierarchical beats synchronous,
LR restarts needed, multigrid keeps accuracy) it lists the rows that test it, the measured numbers
with the seed spread, and sentences that say what the numbers show, e.g. "Multi-S&T (ours) is
0.12 dB below baseline (26.01 vs 26.13 dB), within the seed spread of 0.15 dB; in the paper
-0.01 dB (30.90 vs 30.91)". The sentences state differences and whether they exceed the spread;
interpretation is left to a person: text between `<!-- notes:<claim> -->` and
`<!-- /notes:<claim> -->` is kept when the summary is written again.

The seed spread used here is the scale's: the largest max - min PSNR over the seeds of any row
trained with several seeds, in any table (the per-table spreads are in the tables themselves).
Pure functions of the rows they are given, plus one file write.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from experiments.tables import Row, compute_speedups, difference, propagation_cell, psnr_cell
from vsr_accel.core.fsio import atomic_write_text

Key = tuple[str, str, str]  # (table, section, variant)


@dataclass(frozen=True)
class Claim:
    key: str  # the notes marker's name
    title: str
    paper: str  # what the paper reports, in a sentence
    rows: tuple[Key, ...]  # rows shown in the claim's table
    comparisons: tuple[tuple[Key, Key], ...]  # (a, b): "a is ... dB above/below b"
    speed: tuple[tuple[Key, Key], ...] = ()  # (a, b): "a trains in ... s vs b's ...": speedup of a over b


def _k(table: str, section: str, *variants: str) -> tuple[Key, ...]:
    return tuple((table, section, v) for v in variants)


T1, T4, T5, T8, T9 = ("table1", "basicvsr_m"), ("table4", "lr_scaling"), ("table5", "warmup"), \
    ("table8", "combinations"), ("table9", "extra_stage")

CLAIMS: tuple[Claim, ...] = (
    Claim("linear_scaling", "1. The linear scaling rule is needed (Table 4)",
          "With a 4x minibatch for 1/4 of the iterations, keeping the baseline's LR loses 0.29 dB "
          "(30.64 dB) while scaling it x4 matches the baseline (30.93 vs 30.91 dB).",
          _k(*T4, "baseline", "without_lr_scaling", "with_lr_scaling"),
          ((_k(*T4, "with_lr_scaling")[0], _k(*T4, "without_lr_scaling")[0]),
           (_k(*T4, "with_lr_scaling")[0], _k(*T4, "baseline")[0]),
           (_k(*T4, "without_lr_scaling")[0], _k(*T4, "baseline")[0]))),
    Claim("warmup", "2. Warmup is needed for the large minibatch (Table 5)",
          "Without warmup the 4x minibatch loses 0.10 dB (30.81 dB); constant warmup recovers the baseline "
          "(30.91 dB), linear warmup is best (30.93 dB).",
          _k(*T5, "baseline", "without_warmup", "constant_warmup", "linear_warmup"),
          ((_k(*T5, "linear_warmup")[0], _k(*T5, "without_warmup")[0]),
           (_k(*T5, "constant_warmup")[0], _k(*T5, "without_warmup")[0]),
           (_k(*T5, "linear_warmup")[0], _k(*T5, "constant_warmup")[0]))),
    Claim("hierarchical", "3. Hierarchical cycles beat synchronous ones (Table 8)",
          "Synchronous cycles (crop and clip length growing together) lose 0.07-0.10 dB (30.81, 30.83 dB); "
          "hierarchical ones keep 30.86-30.90 dB and are also faster (6.2-6.3x vs 5.8-6.0x).",
          _k(*T8, "large_batch", "sync_2", "sync_3", "hier_4", "hier_6"),
          ((_k(*T8, "hier_4")[0], _k(*T8, "sync_2")[0]), (_k(*T8, "hier_6")[0], _k(*T8, "sync_3")[0]),
           (_k(*T8, "hier_6")[0], _k(*T8, "sync_2")[0])),
          ((_k(*T8, "hier_4")[0], _k(*T8, "sync_2")[0]), (_k(*T8, "hier_6")[0], _k(*T8, "sync_3")[0]))),
    Claim("restarts", "4. Restarting the LR at every stage is needed (Sec. 3.1 control, Table 1)",
          "Multigrid training with the original scheduler (one cosine over the run) \"causes an accuracy drop\" "
          "(Sec. 3.1; the paper gives no number); its dynamic scheduler restarts the cosine at every stage.",
          _k(*T1, "multi_st", "multi_st_original_lr"),
          ((_k(*T1, "multi_st")[0], _k(*T1, "multi_st_original_lr")[0]),)),
    Claim("accuracy", "5. Multigrid training keeps the baseline's accuracy (Tables 1 and 9)",
          "Multi-S&T is 6.2x faster than the baseline at -0.01 dB (30.90 vs 30.91 dB); with one extra, "
          "larger stage (72&17, Table 9) it is +0.07 dB (30.98 dB) and 3.4x faster.",
          (*_k(*T1, "baseline", "large_batch", "multi_st"), *_k(*T9, "multi_st_extra")),
          ((_k(*T1, "multi_st")[0], _k(*T1, "baseline")[0]), (_k(*T1, "large_batch")[0], _k(*T1, "baseline")[0]),
           (_k(*T1, "multi_st")[0], _k(*T1, "large_batch")[0]), (_k(*T9, "multi_st_extra")[0], _k(*T1, "baseline")[0]),
           (_k(*T9, "multi_st_extra")[0], _k(*T1, "multi_st")[0])),
          ((_k(*T1, "multi_st")[0], _k(*T1, "baseline")[0]), (_k(*T1, "large_batch")[0], _k(*T1, "baseline")[0]),
           (_k(*T9, "multi_st_extra")[0], _k(*T1, "baseline")[0]))),
)

OTHER_TABLES = (("table6", "minibatch"), ("table7", "spatial"), ("table7", "temporal"))
# The sections this page speaks of (a table outside them, such as `basicvsrpp`, another model, has
# only its own page): their scale notes make the page's setup line.
SUMMARISED = frozenset({key[:2] for claim in CLAIMS for key in claim.rows} | set(OTHER_TABLES))


@dataclass(frozen=True)
class SectionRows:
    """The rows of one table section, and which is its baseline (for speedups)."""

    title: str
    baseline: str
    rows: tuple[Row, ...]


def scale_spread(sections: Mapping[tuple[str, str], SectionRows]) -> tuple[float | None, list[Row]]:
    """The largest max - min PSNR over the seeds of any multi-seed row (each shared row once)."""
    seen: dict[tuple[str, ...], Row] = {}
    for section in sections.values():
        for row in section.rows:
            if row.spread is not None:
                # a run shared by several tables (Table 1's Multi-S&T is Table 8's and Table 9's row) once
                seen.setdefault((row.curriculum, str(row.iterations), str(row.minibatch), tuple(row.psnr_seeds)), row)
    rows = list(seen.values())
    return max((r.spread for r in rows), default=None), rows


def compare(a: Row, b: Row, spread: float | None) -> str:
    """One sentence: the PSNR difference of a over b, against the spread and the paper's."""
    if a.psnr is None or b.psnr is None:
        missing = a.label if a.psnr is None else b.label
        return f"{a.label} vs {b.label}: not measured yet ({missing} has no result)."
    d = a.psnr - b.psnr
    direction = "above" if d > 0 else "below" if d < 0 else "level with"
    text = f"{a.label} is {abs(d):.2f} dB {direction} {b.label} ({a.psnr:.2f} vs {b.psnr:.2f} dB)"
    outside = None
    if spread is None:
        text += ", with no seed spread measured to judge it"
    else:
        outside = abs(d) > spread
        text += f", {'outside' if outside else 'within'} the seed spread of {spread:.2f} dB"
    pa, pb = a.paper.get("psnr"), b.paper.get("psnr")
    if pa is not None and pb is not None:
        pd = pa - pb
        text += f"; in the paper {pd:+.2f} dB ({pa:.2f} vs {pb:.2f})"
        if outside is not None:
            text += ": " + verdict(d, pd, outside)
    return text + "."


PAPER_PARITY_DB = 0.05  # paper differences below this are its "no accuracy loss" claims (Tables 1, 4-9)


def verdict(ours: float, paper: float, outside: bool) -> str:
    """How a measured difference relates to the paper's, in words."""
    if abs(paper) < PAPER_PARITY_DB:
        return "as in the paper, no difference resolved" if not outside else \
            f"the paper shows no difference (below {PAPER_PARITY_DB:.2f} dB)"
    if not outside:
        return "the paper's difference is not resolved at this scale"
    return "the same sign as the paper" if (ours > 0) == (paper > 0) else "the opposite of the paper"


def speed_sentence(a: Row, b: Row, a_section: SectionRows) -> str:
    if a.train_seconds is None or b.train_seconds is None:
        return f"{a.label} vs {b.label}: timing not measured yet."
    text = (f"{a.label} trained in {a.train_seconds:.0f} s vs {b.label}'s {b.train_seconds:.0f} s excluding data "
            f"loading ({b.train_seconds / a.train_seconds:.2f}x")
    if a.wall_seconds is not None and b.wall_seconds is not None:
        text += f"; {b.wall_seconds / a.wall_seconds:.2f}x including data loading"
    text += ")"
    if b.variant == a_section.baseline and a.variant in {r.variant for r in a_section.rows}:
        projected = compute_speedups(a_section.rows, a_section.baseline)[a.variant].projected
        if projected is not None:
            text += f", {projected:.2f}x projected with the paper's {a.devices}x devices (ideal scaling, not measured)"
    if a.paper.get("speedup") is not None and b.variant == a_section.baseline:
        text += f"; the paper: {a.paper['speedup']}x on {a.devices}x the GPUs"
    return text + "."


def _row_table(rows: Sequence[tuple[str, Row]], baselines: Mapping[str, Row], spread: float | None) -> list[str]:
    lines = ["| table | row | iterations × minibatch | curriculum | train time excl. / incl. data loading (s) | "
             "PSNR (dB) | Δ vs the table's baseline | propagation: max |Δ| vs per-frame / flow mean / max (px) | "
             "paper PSNR |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for table, row in rows:
        base = baselines.get(table)
        delta = difference(row.psnr, base.psnr) if base is not None and base is not row else None
        mark = "" if delta is None or spread is None or abs(delta) <= spread else " ✱"
        times = "—" if row.train_seconds is None else \
            f"{row.train_seconds:.0f} / {row.wall_seconds:.0f}" if row.wall_seconds is not None else f"{row.train_seconds:.0f} / —"
        status = "" if row.status == "done" else f" ({row.status})"
        lines.append(f"| {table} | {row.label}{status} | {row.iterations} × {row.minibatch} | {row.curriculum} | "
                     f"{times} | {psnr_cell(row)} | {'—' if delta is None else f'{delta:+.2f}'}{mark} | "
                     f"{propagation_cell(row)} | {_paper_psnr(row)} |")
    return lines


def _paper_psnr(row: Row) -> str:
    value = row.paper.get("psnr")
    return "—" if value is None else f"{value:.2f}"


NOTES = re.compile(r"<!-- notes:(\w+) -->\n(.*?)<!-- /notes:\1 -->", re.S)
PLACEHOLDER = "*Interpretation: to be written (this text is kept when the summary is regenerated).*\n"


def kept_notes(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    return {m.group(1): m.group(2) for m in NOTES.finditer(path.read_text())}


def _notes(key: str, kept: Mapping[str, str]) -> list[str]:
    body = kept.get(key, PLACEHOLDER)
    return [f"<!-- notes:{key} -->", body.rstrip("\n"), f"<!-- /notes:{key} -->"]


def render(header: Sequence[str], scale_note: str, sections: Mapping[tuple[str, str], SectionRows],
           bicubic: float | None, compute: tuple[int, float, float] | None, kept: Mapping[str, str],
           scale: str) -> str:
    """The summary's Markdown. `sections` is keyed by (table, section); `compute` is (distinct
    runs, training seconds, evaluation seconds) summed over the runs' launch records."""
    spread, seeded = scale_spread(sections)
    rows = {(t, s, r.variant): r for (t, s), sec in sections.items() for r in sec.rows}
    baselines = {t: next((r for r in sec.rows if r.variant == sec.baseline), None) for (t, _), sec in sections.items()}
    lines = [f"# What the {scale}-scale runs show, claim by claim", ""]
    lines += [f"> {line}  " for line in header] + [""]
    lines += _notes("intro", kept) + [""]
    if scale_note:
        lines += [f"**Setup.** {scale_note}", ""]
    base = rows.get(("table1", "basicvsr_m", "baseline"))
    if bicubic is not None:
        text = f"**Floor.** MATLAB bicubic scores {bicubic:.2f} dB on the held-out clip"
        if base is not None and base.psnr is not None:
            text += f"; the baseline {base.psnr:.2f} dB ({base.psnr - bicubic:+.2f} dB over bicubic)"
        lines += [text + ".", ""]
    if compute is not None:
        runs, train, evaluation = compute
        lines += [f"**Compute.** {runs} distinct runs, {(train + evaluation) / 3600:.2f} h in all on this machine "
                  f"({train / 3600:.2f} h of training launches, {evaluation / 60:.1f} min of evaluation; the runner's "
                  "clock around each launch, summed over the runs' records).", ""]
    lines += ["**Seed spread.** Rows trained with several seeds (PSNR per seed, max − min):", "",
              "| row | iterations × minibatch | PSNR per seed (dB) | spread (dB) |", "|---|---|---|---:|"]
    for row in seeded:
        lines.append(f"| {row.label} | {row.iterations} × {row.minibatch} | "
                     f"{', '.join(f'{p:.2f}' for p in row.psnr_seeds)} | {row.spread:.2f} |")
    if not seeded:
        lines.append("| (no row has two finished seeds yet) | | | |")
    lines += ["", (f"The spread used below is the largest, **{spread:.2f} dB**: a difference smaller than it is "
                   "called *within the seed spread* (not resolved by these runs), a larger one is marked ✱."
                   if spread is not None else "No spread is measured yet, so no difference below can be judged."), ""]
    for claim in CLAIMS:
        lines += [f"## {claim.title}", "", f"The paper: {claim.paper}", ""]
        shown = [(key[0], rows[key]) for key in claim.rows if key in rows]
        if not shown:
            lines += ["(These rows are not defined at this scale.)", ""]
        else:
            lines += _row_table(shown, baselines, spread) + [""]
            lines += [f"- {compare(rows[a], rows[b], spread)}" for a, b in claim.comparisons if a in rows and b in rows]
            lines += [f"- {speed_sentence(rows[a], rows[b], sections[(a[0], a[1])])}" for a, b in claim.speed
                      if a in rows and b in rows]
            lines.append("")
        lines += _notes(claim.key, kept) + [""]
    others = [(key, sections[key]) for key in OTHER_TABLES if key in sections]
    if others:
        lines += ["## Other tables", ""]
        for (table, _), sec in others:
            base_row = next((r for r in sec.rows if r.variant == sec.baseline), None)
            lines.append(f"- **{table}, {sec.title}**:")
            for row in sec.rows:
                if row is base_row or base_row is None:
                    continue
                lines.append(f"  - {compare(row, base_row, spread)} {speed_sentence(row, base_row, sec)}")
        lines += [""] + _notes("other", kept) + [""]
    return "\n".join(lines)


def write_summary(path: Path, header: Sequence[str], scale_note: str,
                  sections: Mapping[tuple[str, str], SectionRows], bicubic: float | None,
                  compute: tuple[int, float, float] | None, scale: str) -> Path:
    atomic_write_text(path, render(header, scale_note, sections, bicubic, compute, kept_notes(path), scale))
    return path
