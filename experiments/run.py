"""Reproduce the paper's ablation tables from your own runs: train every variant, evaluate, tabulate.

    python -m experiments.run --list                                  # the tables and their scales
    python -m experiments.run table1 --scale cpu --dry-run            # variants, curricula, LRs, run folders
    python -m experiments.run all --scale cpu                         # every table: train + evaluate + write
    python -m experiments.run all --scale cpu --dry-run --estimate    # every run, and its time measured here
    python -m experiments.run table1 table8 --scale cpu               # train + evaluate + write tables/figures
    python -m experiments.run table1 --scale paper --nproc-per-node 8 # every variant under torchrun, 8 processes
    python -m experiments.run table1 --scale paper --nproc-per-node 4 --scale-devices  # k x devices for k x batch rows
    python -m experiments.run table1 --scale cpu --report-only        # tables/figures from finished runs only
    python -m experiments.run table1 --scale cpu --limit-iters 6      # smoke test of the whole pipeline

Each variant trains with `python train.py -opt <resolved options> --auto_resume` in its own process
(with `--nproc-per-node N`: `python -m torch.distributed.run --standalone --nproc_per_node=N
train.py ...`; the runner itself is always started with plain `python`, never under torchrun), in
`experiments/runs/<scale>/<curriculum>-b<minibatch>-<iters>it-w<devices>-s<seed>-<hash>/`. The folder name
hashes every option that changes results, so identical variants of different tables (every table's
baseline, Table 1's Multi-S&T and Table 8's hierarchical 6-stage row) train once and are shared, and
a changed definition never reuses a stale run. A variant whose final training state exists is not
trained again; an interrupted one resumes from its newest checkpoint. Then `scripts/evaluate.py
--json` scores the final weights on `datasets.val`, and the table (Markdown + CSV) and figures go to
`experiments/results/<scale>/<table>/` with the runner's log and a copy of every run's train.log.

Rows with `seeds` train once per seed; the tables show the mean PSNR, each seed's, and mark the
PSNR differences larger than the seed spread. Each finished run leaves a `result.json` (both
clocks, scores, validation curve) that is copied beside the table, so `--report-only` rebuilds the
tables, figures and the one-page summary (`<results>/README.md`) from the committed logs alone.

Timing: both training clocks are the trainer's own (`train_seconds`, excluding data loading, the
paper's measure; `wall_seconds`, including it; both in the final training state, both without
validation and checkpointing), never estimates. `--dry-run --estimate` times a few training steps
of every stage shape on this machine and estimates each run's time from them.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Sequence

import time

from experiments import plots, summary, tables
# The runner's pieces live in definitions / resolve / launch / records; the names below are also
# this module's API (tests and users import them from experiments.run).
from experiments.definitions import (REPO, ScaleSpec, SectionSpec, TableSpec, VariantSpec, available_tables,  # noqa: F401
                                     display_path, load_table)
from experiments.launch import (Runner, RunnerLog, eval_command, evaluate_in_process, final_state,  # noqa: F401
                                run_status, total_train_wall, train_command, train_in_process)
from experiments.records import RunResult, result_from_logs, result_from_run, write_result
from experiments.resolve import ResolvedVariant, SweepSettings, expand, resolve_variant  # noqa: F401
from vsr_accel.core.errors import ConfigError, report_interrupt
from vsr_accel.schedule.plan import format_plan
from vsr_accel.core.cli import ArgumentParser



Expanded = list[tuple[SectionSpec, list[ResolvedVariant]]]


def collect_results(resolved: Sequence[ResolvedVariant], logs: Path) -> dict[Path, RunResult | None]:
    """Each run's record: from its run folder when it finished there, else the committed copy in
    the table's `logs/` (same run name only), else None."""
    return {rv.run_dir: result_from_run(rv) or result_from_logs(logs, rv) for rv in resolved}


def variant_groups(resolved: Sequence[ResolvedVariant]) -> list[list[ResolvedVariant]]:
    """A section's runs grouped by row (a row trained with k seeds has k runs), in row order."""
    groups: dict[str, list[ResolvedVariant]] = {}
    for rv in resolved:
        groups.setdefault(rv.variant.name, []).append(rv)
    return list(groups.values())


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present and len(present) == len(values) else None


def run_state_label(rv: ResolvedVariant, result: RunResult | None, failed: dict[Path, str]) -> str:
    if rv.run_dir in failed:
        return "failed"
    if result is not None:
        return "done" if result.psnr is not None else "not evaluated"
    if final_state(rv) is not None:
        return "not evaluated"
    return "partial" if run_status(rv) == "partial" else "not run"


def build_row(runs: Sequence[ResolvedVariant], results: dict[Path, RunResult | None],
              failed: dict[Path, str]) -> tables.Row:
    """One table row from the runs of one variant (one per seed): the means over the seeds that
    finished, each seed's PSNR, and a status that says what is missing."""
    rv = runs[0]
    found = [results.get(r.run_dir) for r in runs]
    states = [run_state_label(r, res, failed) for r, res in zip(runs, found)]
    done = [res for res, state in zip(found, states) if state == "done"]
    if len(done) == len(runs):
        status = "done"
    elif done:
        status = f"{len(done)} of {len(runs)} seeds"
    else:
        status = next((s for s in ("failed", "partial", "not evaluated") if s in states), "not run")
    return tables.Row(
        section=rv.section.name, variant=rv.variant.name, row_id=rv.variant.row_id, label=rv.variant.label,
        minibatch=rv.minibatch, world_size=rv.world_size, grad_accum=rv.opt.train.grad_accum,
        curriculum=rv.curriculum_label, iterations=rv.total_iter, devices=rv.variant.devices,
        train_seconds=_mean([r.train_seconds for r in done]) if done else None,
        wall_seconds=_mean([r.wall_seconds for r in done]) if done else None,
        wall_from_launch=any(r.wall_source == "launch" for r in done),
        launch_seconds=_mean([r.launch_seconds for r in done]) if done else None,
        psnr=_mean([r.psnr for r in done]) if done else None, ssim=_mean([r.ssim for r in done]) if done else None,
        seeds=rv.seeds if rv.multi_seed else (), psnr_seeds=tuple(r.psnr for r in done) if rv.multi_seed else (),
        flop_bound=rv.schedule.compute_ratio() if rv.schedule.kind != "none" else None,
        equal_iters_ref=rv.variant.equal_iters_ref, status=status, paper=rv.variant.paper,
        **propagation_summary([r.propagation for r in done]))


def propagation_summary(probes: Sequence[dict | None]) -> dict[str, float | None]:
    """The seeds' probes as one row: the smallest propagation gap (the worst seed), the mean
    flow and the largest flow, the mean PSNR gain of restoring whole over frame by frame; all None
    unless every finished seed was probed (each of flow and gain: unless every seed measured it)."""
    if not probes or any(p is None for p in probes):
        return {}
    flows = [p["flow_mean_px"] for p in probes if p.get("flow_mean_px") is not None]
    gains = [p["psnr_gain_vs_per_frame"] for p in probes if p.get("psnr_gain_vs_per_frame") is not None]
    return {"propagation_gap": min(p["max_abs_diff_vs_per_frame"] for p in probes),
            "flow_mean_px": sum(flows) / len(flows) if len(flows) == len(probes) else None,
            "flow_max_px": max(p["flow_max_px"] for p in probes) if len(flows) == len(probes) else None,
            "propagation_gain_db": sum(gains) / len(gains) if len(gains) == len(probes) else None}


def table_rows(table: TableSpec, sections: Expanded, logs: Path, failed: dict[Path, str]
               ) -> tuple[list[tuple[SectionSpec, list[tables.Row]]], dict[Path, RunResult | None]]:
    every = [rv for _, resolved in sections for rv in resolved]
    results = collect_results(every, logs)
    rows = [(section, [build_row(group, results, failed) for group in variant_groups(resolved)])
            for section, resolved in sections]
    return rows, results


def bicubic_of(results: dict[Path, RunResult | None]) -> tuple[float, float | None] | None:
    for result in results.values():
        if result is not None and result.bicubic_psnr is not None:
            return result.bicubic_psnr, result.bicubic_ssim
    return None


def provenance(argv: Sequence[str], settings: SweepSettings, started: datetime.datetime, table: TableSpec,
               sections: Sequence[tuple[SectionSpec, list[ResolvedVariant]]]) -> list[str]:
    """The header every result file carries: how, when and where it was produced."""
    lines = [f"command: python -m experiments.run {shlex.join(argv)}",
             f"date: started {started.isoformat(timespec='seconds')}, written "
             f"{datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
             f"machine: {machine_description(settings.device)}",
             f"code: {git_description()}; definition {display_path(table.source)}"]
    notes = {section.scales[settings.scale].note for section, _ in sections if section.scales[settings.scale].note}
    lines += [f"scale '{settings.scale}': {note}" for note in sorted(notes)]
    if settings.limit_iters is not None:
        lines.append(f"SMOKE RUN (--limit-iters {settings.limit_iters}): iterations were cut, so the timings and "
                     "scores below test the pipeline and measure nothing about the method")
    return lines


def machine_description(device: str | None) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    parts = [platform.platform(), cpu, f"{os.cpu_count()} logical CPUs", f"Python {platform.python_version()}",
             f"torch {torch.__version__}"]
    if torch.cuda.is_available() and device != "cpu":
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        parts.append(f"{len(names)} GPU(s): {', '.join(sorted(set(names)))}")
    else:
        parts.append("training on CPU")
    if hasattr(os, "getloadavg"):
        parts.append(f"load average {os.getloadavg()[0]:.2f} when written")
    return "; ".join(parts)


def git_description() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        # the results folder is this runner's own output: rewriting it does not make the code dirty
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)experiments/results"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "git commit unknown"
    if not sha:
        return "git commit unknown"
    return f"git {sha}" + (" with uncommitted changes" if dirty else "")


def table_dir(out_root: Path, table: TableSpec) -> Path:
    return out_root / table.name


def write_report(table: TableSpec, sections: Expanded, out_root: Path, header: list[str],
                 failed: dict[Path, str], scale: str) -> list[Path]:
    """Markdown + CSV table, the two figures, and copies of every run's log, scores and record."""
    folder = table_dir(out_root, table)
    every = [rv for _, resolved in sections for rv in resolved]
    for rv in every:
        write_result(rv)  # a finished run's record, so the copy below can rebuild this report later
    rows, results = table_rows(table, sections, folder / "logs", failed)
    if not any(results.values()) and not failed and (folder / f"{table.name}.md").is_file():
        return []  # nothing of this definition has run yet: an earlier table stays readable until replaced
    blocks = [(section.title, section_rows, section.baseline) for section, section_rows in rows]
    notes = "\n\n".join(n for n in [table.notes.strip(), *(s.notes.strip() for s, _ in sections)] if n)
    skipped = [s.title for s in table.sections if s not in [sec for sec, _ in sections]]
    if skipped:
        notes += ("\n\n" if notes else "") + "Not defined at this scale: " + "; ".join(skipped) + "."
    title = table.title_at(scale)
    md, csv_path = tables.write_table(folder, table.name, title, header, blocks, notes, bicubic_of(results))
    written = [md, csv_path]
    curves = []
    for rv in every:
        if rv.seed == rv.seeds[0]:  # one curriculum curve per row: the seeds share it
            curves.append(plots.curriculum_curve(_curve_label(rv, seed=False), rv.schedule, rv.lr_schedule))
    written.append(plots.plot_curricula(curves, folder / "curricula.png",
                                        f"{title}: LR, crop and clip length per iteration", header))
    val = {_curve_label(rv): list(results[rv.run_dir].val_curve) if results.get(rv.run_dir) else [] for rv in every}
    written.append(plots.plot_val_psnr(val, folder / "val_psnr.png",
                                       f"{title}: validation PSNR vs training time", header))
    written += copy_run_logs(every, folder / "logs")
    prune_stale_logs(every, folder / "logs")
    return written


def prune_stale_logs(resolved: Sequence[ResolvedVariant], folder: Path) -> list[Path]:
    """Remove log folders of rows the definition no longer has (an earlier definition's rows, e.g.
    `basicvsr_m__baseline` once the baseline trains with seeds), so the table's evidence is its own."""
    if not folder.is_dir():
        return []
    current = {rv.log_name for rv in resolved}
    stale = [path for path in folder.iterdir() if path.is_dir() and path.name not in current]
    for path in stale:
        shutil.rmtree(path)
    return stale


def _curve_label(rv: ResolvedVariant, seed: bool = True) -> str:
    prefix = f"{rv.variant.row_id} " if rv.variant.row_id else ""
    section = f"[{rv.section.name}] " if len(rv.table.sections) > 1 else ""
    suffix = f" (seed {rv.seed})" if seed and rv.multi_seed else ""
    return f"{section}{prefix}{rv.variant.label}{suffix}"


RUN_FILES = ("train.log", "eval.json", "ablation.yml", "ablation_record.json", "result.json")


def copy_run_logs(resolved: Sequence[ResolvedVariant], folder: Path) -> list[Path]:
    """The evidence beside the table: each run's train.log, scores, resolved options and record.
    Copies of runs whose folders are gone (a fresh clone) are kept as they are."""
    written = []
    for rv in resolved:
        target = folder / rv.log_name
        for name in RUN_FILES:
            source = rv.run_dir / name
            if source.is_file():
                target.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target / name)
                written.append(target / name)
    return written


# ============================================================================================
# dry run
# ============================================================================================
def describe_sections(table: TableSpec, sections: Sequence[tuple[SectionSpec, list[ResolvedVariant]]],
                      settings: SweepSettings, verbose: bool) -> str:
    lines = [f"{table.name}: {table.title_at(settings.scale)} ({display_path(table.source)})"]
    for section in table.sections:
        if section not in [s for s, _ in sections]:
            lines.append(f"  section '{section.name}': not defined at scale '{settings.scale}'")
    for section, resolved in sections:
        base = next(rv for rv in resolved if rv.variant.name == section.baseline)
        lines.append(f"  section '{section.name}': {section.title} (baseline: {section.baseline})")
        header = ("id", "variant", "seed", "minibatch", "iters", "curriculum", "peak LR", "warmup", "FLOP bound",
                  "work/baseline", "status", "run folder")
        rows = [header]
        for rv in resolved:
            peaks = sorted({f"{s['lr_peak']:.3g}" for s in rv.plan["stages"]}, key=float)
            warm = f"{rv.lr_schedule.warmup} {rv.plan['warmup_iter']}" if rv.plan["warmup_iter"] else "none"
            iters = f"{rv.total_iter}" + (f" (of {rv.limited_from})" if rv.limited_from else "")
            rows.append((rv.variant.row_id or "-", rv.variant.name, str(rv.seed), f"{rv.minibatch} ({_split(rv)})", iters,
                         rv.curriculum_label, "/".join(peaks), warm, f"{rv.schedule.compute_ratio():.2f}x",
                         f"{rv.work / base.work:.2f}", run_status(rv),
                         display_path(rv.run_dir)))
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
        for position, row in enumerate(rows):
            lines.append("    " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
            if position == 0:
                lines.append("    " + "  ".join("-" * w for w in widths))
        if verbose:
            for rv in resolved:
                lines.append(f"\n    {rv.variant.name} (seed {rv.seed}): python train.py -opt "
                             f"{display_path(rv.options_path)} --plan")
                lines += ["    " + line for line in format_plan(rv.plan).splitlines()]
    return "\n".join(lines)


def _split(rv: ResolvedVariant) -> str:
    """devices x per-device batch (x accumulation steps)."""
    accum = rv.opt.train.grad_accum
    text = f"{rv.world_size}x{rv.opt.datasets['train']['batch_size_per_gpu']}"
    return text + (f"x{accum}" if accum > 1 else "")


def sweep_totals(runs: Sequence[ResolvedVariant]) -> str:
    """Iterations and FLOP-proportional work of the distinct runs, the work in units of the first
    table's baseline run (one run of the scale's baseline recipe)."""
    if not runs:
        return "no runs"
    base = next((rv for rv in runs if rv.variant.name == rv.section.baseline), runs[0])
    work = sum(rv.work for rv in runs)
    return (f"{len(runs)} distinct run(s): {sum(rv.total_iter for rv in runs)} iterations, work "
            f"{work / base.work:.2f} x the baseline run ({base.total_iter} iterations at minibatch {base.minibatch}); "
            f"the longest run is {max(rv.work for rv in runs) / base.work:.2f} x the baseline's work")


def unique_runs(expanded: Sequence[tuple[TableSpec, list[tuple[SectionSpec, list[ResolvedVariant]]]]],
                only: Sequence[str] = (), seeds: Sequence[int] = ()) -> list[ResolvedVariant]:
    """Each run folder once, in table order (shared variants train once); `only` keeps these
    variants, `seeds` these seeds (e.g. every row's seed 0 first, the other seeds later)."""
    seen: dict[Path, ResolvedVariant] = {}
    for _, sections in expanded:
        for _, resolved in sections:
            for rv in resolved:
                if (only and rv.variant.name not in only) or (seeds and rv.seed not in seeds):
                    continue
                seen.setdefault(rv.run_dir, rv)
    return list(seen.values())


# ============================================================================================
# command line
# ============================================================================================
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m experiments.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tables", nargs="*", help="table names (table1, table8, ...), 'all', or definition .yml paths")
    p.add_argument("--scale", default="cpu", help="paper | proxy | cpu (or a scale a custom definition declares)")
    p.add_argument("--list", action="store_true", help="list the built-in tables and exit")
    p.add_argument("--dry-run", action="store_true", help="list variants and resolved curricula; train nothing")
    p.add_argument("--verbose", action="store_true", help="with --dry-run: every variant's full --plan")
    p.add_argument("--estimate", action="store_true",
                   help="with --dry-run: time a few training steps of every stage shape here and estimate each run")
    p.add_argument("--estimate-steps", type=int, default=2, metavar="N", help="timed steps per shape (default 2)")
    p.add_argument("--report-only", action="store_true", help="write tables and figures from existing runs only")
    p.add_argument("--only", nargs="+", default=[], metavar="VARIANT", help="run only these variants")
    p.add_argument("--seeds", nargs="+", type=int, default=[], metavar="SEED",
                   help="run only these seeds of the rows (e.g. --seeds 0 first, the rest later)")
    p.add_argument("--limit-iters", type=int, default=None, metavar="N",
                   help="smoke test: at most N iterations per variant (results go to <scale>-limit<N>)")
    p.add_argument("--nproc-per-node", type=int, default=1, metavar="N",
                   help="launch every variant with torch.distributed.run on N processes (default 1: plain python)")
    p.add_argument("--scale-devices", action="store_true",
                   help="launch a row the paper ran on k x the devices on k x N processes (measured, not projected)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override an option of every variant (applied last), e.g. datasets.train.num_worker_per_gpu=0")
    p.add_argument("--runs-root", default=None, help="run folders (default experiments/runs/<scale>)")
    p.add_argument("--out", default=None, help="results folder (default experiments/results/<scale>)")
    p.add_argument("--device", default=None, help="passed to train.py and evaluate.py (cpu, cuda, ...)")
    p.add_argument("--in-process", action="store_true",
                   help="train and evaluate inside this process (one device; for tests and debugging)")
    p.add_argument("--quiet", action="store_true", help="do not echo the training output")
    p.add_argument("--debug", action="store_true", help="show tracebacks for input errors")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate_like_ctrl_c) if in_main_thread else None
    try:
        return report_interrupt(lambda: run(args, argv), args.debug,
                                lambda: "interrupted: finished variants are kept; run the same command again to continue")
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _terminate_like_ctrl_c(signum, frame) -> None:
    """A scheduler's SIGTERM takes the Ctrl-C path: the running variant gets SIGINT, saves a
    resumable state, and the runner records the attempt before exiting."""
    raise KeyboardInterrupt


def check_not_under_torchrun() -> None:
    if os.environ.get("TORCHELASTIC_RUN_ID") or int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise ConfigError("experiments.run launches torchrun for each variant itself: start it with plain "
                          "python and pass --nproc-per-node N (e.g. python -m experiments.run table1 "
                          "--scale paper --nproc-per-node 8)")


def settings_from(args: argparse.Namespace) -> SweepSettings:
    if args.nproc_per_node < 1:
        raise ConfigError(f"--nproc-per-node must be >= 1, got {args.nproc_per_node}")
    if args.limit_iters is not None and args.limit_iters < 1:
        raise ConfigError(f"--limit-iters must be >= 1, got {args.limit_iters}")
    if args.in_process and (args.nproc_per_node > 1 or args.scale_devices):
        raise ConfigError("--in-process runs on one device; drop --nproc-per-node / --scale-devices")
    runs_root = Path(args.runs_root) if args.runs_root else REPO / "experiments" / "runs" / args.scale
    return SweepSettings(scale=args.scale, runs_root=runs_root.resolve(), nproc_per_node=args.nproc_per_node,
                         scale_devices=args.scale_devices, limit_iters=args.limit_iters,
                         overrides=tuple(args.overrides), device=args.device)


def out_root(args: argparse.Namespace) -> Path:
    if args.out:
        return Path(args.out).resolve()
    suffix = f"-limit{args.limit_iters}" if args.limit_iters is not None else ""
    return REPO / "experiments" / "results" / f"{args.scale}{suffix}"


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    check_not_under_torchrun()
    if args.list:
        for name in available_tables():
            table = load_table(name)
            print(f"{name:8s} {table.title}  [scales: {', '.join(table.scale_names)}]")
            for scale in table.scale_names:
                print(f"{'':8s}   {scale}: {table.title_at(scale)}")
        return 0
    if args.tables == ["all"]:  # every built-in table defined at this scale
        refs = [name for name in available_tables() if args.scale in load_table(name).scale_names]
    else:
        refs = args.tables
    if not refs:
        raise ConfigError("name at least one table (e.g. table1), 'all', or use --list")
    settings = settings_from(args)
    started = datetime.datetime.now().astimezone()
    expanded = [(table, expand(table, settings)) for table in (load_table(ref) for ref in refs)]
    if args.dry_run:
        for table, sections in expanded:
            print(describe_sections(table, sections, settings, args.verbose))
        runs = unique_runs(expanded, args.only, args.seeds)
        print("\n" + sweep_totals(runs))
        if args.estimate:
            from experiments import estimate  # torch models are built only when asked

            per_step, estimates, validation = estimate.estimate(runs, args.estimate_steps)
            print("\n" + estimate.format_estimate(per_step, estimates, validation))
        print(f"\n{len(runs)} distinct run(s); dry run: nothing trained or written")
        return 0

    results = out_root(args)
    log = RunnerLog([table_dir(results, table) / "runner.log" for table, _ in expanded])
    log.info(f"python -m experiments.run {shlex.join(argv)}")
    failed: dict[Path, str] = {}
    if not args.report_only:
        runner = Runner(settings, log, in_process=args.in_process, quiet_children=args.quiet)
        for rv in unique_runs(expanded, args.only, args.seeds):
            outcome = runner.ensure(rv)
            if outcome.error:
                failed[rv.run_dir] = outcome.error
                log.info(f"FAILED {rv.variant.name}: {outcome.error}")
    for table, sections in expanded:
        header = provenance(argv, settings, started, table, sections)
        written = write_report(table, sections, results, header, failed, settings.scale)
        for path in written[:2]:
            log.info(f"wrote {display_path(path)}")
        if not written:
            log.info(f"kept {display_path(table_dir(results, table) / (table.name + '.md'))}: no run of this "
                     "definition has finished yet")
    page = write_scale_summary(results, settings, argv, started, expanded, failed)
    if page is not None:
        log.info(f"wrote {display_path(page)}")
    elapsed = (datetime.datetime.now().astimezone() - started).total_seconds()
    log.info(f"finished in {elapsed / 60:.1f} min" + (f"; {len(failed)} run(s) failed" if failed else ""))
    return 1 if failed else 0


def write_scale_summary(results: Path, settings: SweepSettings, argv: Sequence[str], started: datetime.datetime,
                        expanded: Sequence[tuple[TableSpec, Expanded]], failed: dict[Path, str]) -> Path | None:
    """`<results>/README.md`: every built-in table defined at this scale, claim by claim, from the
    run folders or, where those are gone, the committed records. None if no built-in table has
    this scale (a custom definition's own scale)."""
    given = {table.source: (table, sections) for table, sections in expanded}
    builtin = [load_table(name) for name in available_tables()]
    builtin = [t for t in builtin if settings.scale in t.scale_names]
    if not builtin:
        return None
    sections: dict[tuple[str, str], summary.SectionRows] = {}
    records: dict[Path, RunResult] = {}
    bicubic = None
    notes: list[str] = []
    for table in builtin:
        if not any(key[0] == table.name for key in summary.SUMMARISED):
            continue  # another model's table (basicvsrpp): its own page only, not this one's runs or compute
        table, table_sections = given.get(table.source) or (table, expand(table, settings))
        rows, found = table_rows(table, table_sections, table_dir(results, table) / "logs", failed)
        for section, section_rows in rows:
            sections[(table.name, section.name)] = summary.SectionRows(section.title, section.baseline,
                                                                       tuple(section_rows))
            note = section.scales[settings.scale].note
            if note and note not in notes and (table.name, section.name) in summary.SUMMARISED:
                notes.append(note)
        bicubic = bicubic or bicubic_of(found)
        records.update({path: r for path, r in found.items() if r is not None})
    if not records and not failed:
        return None  # nothing to summarise yet (and an earlier summary stays as it is)
    compute = (len(records), sum(r.launch_seconds or 0.0 for r in records.values()),
               sum(r.eval_seconds or 0.0 for r in records.values())) if records else None
    header = [f"written by: python -m experiments.run {shlex.join(argv)}",
              f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
              f"machine: {machine_description(settings.device)}", f"code: {git_description()}"]
    if settings.limit_iters is not None:
        header.append(f"SMOKE RUN (--limit-iters {settings.limit_iters}): the numbers test the pipeline only")
    return summary.write_summary(results / "README.md", header, " ".join(notes), sections,
                                 bicubic[0] if bicubic else None, compute, settings.scale)


if __name__ == "__main__":
    sys.exit(main())
