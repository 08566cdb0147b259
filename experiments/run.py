"""Reproduce the paper's ablation tables from your own runs: train every variant, evaluate, tabulate.

    python -m experiments.run --list                                  # the tables and their scales
    python -m experiments.run table1 --scale cpu --dry-run            # variants, curricula, LRs, run folders
    python -m experiments.run table1 table8 --scale cpu               # train + evaluate + write tables/figures
    python -m experiments.run table1 --scale paper --nproc-per-node 8 # every variant under torchrun, 8 processes
    python -m experiments.run table1 --scale paper --nproc-per-node 4 --scale-devices  # k x devices for k x batch rows
    python -m experiments.run table1 --scale cpu --report-only        # tables/figures from finished runs only
    python -m experiments.run table1 --scale cpu --limit-iters 6      # smoke test of the whole pipeline

Each variant trains with `python train.py -opt <resolved options> --auto_resume` in its own process
(with `--nproc-per-node N`: `python -m torch.distributed.run --standalone --nproc_per_node=N
train.py ...`; the runner itself is always started with plain `python`, never under torchrun), in
`experiments/runs/<scale>/<curriculum>-b<minibatch>-<iters>it-w<devices>-<hash>/`. The folder name
hashes every option that changes results, so identical variants of different tables (every table's
baseline, Table 1's Multi-S&T and Table 8's hierarchical 6-stage row) train once and are shared, and
a changed definition never reuses a stale run. A variant whose final training state exists is not
trained again; an interrupted one resumes from its newest checkpoint. Then `scripts/evaluate.py
--json` scores the final weights on `datasets.val`, and the table (Markdown + CSV) and figures go to
`experiments/results/<scale>/<table>/` with the runner's log and a copy of every run's train.log.

Timing: "train time excluding data loading" is the trainer's own clock (`train_seconds` in the final
training state), never an estimate; "total wall-clock" is this runner's clock around each launch.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import importlib.util
import json
import math
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import yaml

import models
import train
from experiments import plots, tables
from vsr_accel import checkpoint as ckpt
from vsr_accel.config import apply_overrides, read_yaml, unknown_key_message
from vsr_accel.curriculum import KINDS, Schedule
from vsr_accel.errors import CheckpointError, ConfigError, VSRError
from vsr_accel.lr import LRSchedule
from vsr_accel.options import Options, load_options
from vsr_accel.plan import format_plan, plan_dict

REPO = Path(__file__).resolve().parents[1]
ABLATIONS = Path(__file__).resolve().parent / "ablations"
WARMUPS = ("none", "linear", "constant")

# ============================================================================================
# table definitions (experiments/ablations/<table>.yml)
# ============================================================================================
TABLE_KEYS = ("table", "title", "notes", "sections")
SECTION_KEYS = ("name", "title", "baseline", "scales", "variants", "notes")
SCALE_KEYS = ("base", "note", "minibatch", "iterations", "warmup_iter", "lr_crops", "frame_counts", "val_points", "set")
VARIANT_KEYS = ("name", "id", "label", "minibatch", "iterations", "devices", "warmup", "lr_scaling", "curriculum",
                "equal_iters_ref", "set", "paper")
CURRICULUM_KEYS = ("type", "lr_crops", "frame_counts", "stage_lrs")
PAPER_KEYS = ("speedup", "psnr", "ssim")


@dataclass(frozen=True)
class ScaleSpec:
    """What one scale means for one section: the base options file and the baseline's numbers.

    Every variant is expressed relative to these, so the same variant list serves the paper's
    300k-iteration, 16-sample runs and the CPU-sized ones with the same ratios."""

    name: str
    base: Path
    minibatch: int  # the baseline's global minibatch
    iterations: int  # the baseline's iterations
    warmup_iter: int  # warmup length of the rows that warm up
    lr_crops: tuple[int, ...] | None  # the spatial cycle (Sec. 4.1: 32/64 on REDS)
    frame_counts: tuple[int, ...] | None  # the temporal cycle (7/11/15 on REDS)
    val_points: int | None  # validations per run (None: keep the base's val_freq)
    set: dict[str, Any]
    note: str = ""


@dataclass(frozen=True)
class VariantSpec:
    """One row: how it differs from the baseline, in scale-independent terms (per-scale values,
    e.g. crop lists, are written `{paper: [32, 64], cpu: [16, 32]}`)."""

    name: str
    row_id: str
    label: str
    minibatch: int = 1  # x the scale's baseline minibatch
    iterations: Fraction = Fraction(1)  # x the scale's baseline iterations
    devices: int = 1  # x the baseline's devices in the paper (4 for the 4x minibatch rows)
    warmup: str = "none"
    lr_scaling: bool = True
    curriculum: dict[str, Any] = field(default_factory=lambda: {"type": "none"})
    equal_iters_ref: str | None = None
    set: dict[str, Any] = field(default_factory=dict)
    paper: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SectionSpec:
    name: str
    title: str
    baseline: str
    scales: dict[str, ScaleSpec]
    variants: tuple[VariantSpec, ...]
    notes: str = ""


@dataclass(frozen=True)
class TableSpec:
    name: str
    title: str
    source: Path
    sections: tuple[SectionSpec, ...]
    notes: str = ""

    @property
    def scale_names(self) -> list[str]:
        return sorted({scale for section in self.sections for scale in section.scales})


def available_tables() -> list[str]:
    return sorted(p.stem for p in ABLATIONS.glob("*.yml"))


def table_path(ref: str) -> Path:
    """A built-in table name (`table1`) or a path to a definition file."""
    candidate = Path(ref)
    if candidate.suffix in (".yml", ".yaml") or candidate.is_file():
        if not candidate.is_file():
            raise ConfigError(f"{candidate}: ablation definition not found")
        return candidate.resolve()
    builtin = ABLATIONS / f"{ref}.yml"
    if not builtin.is_file():
        known = available_tables()
        raise ConfigError(f"unknown table '{ref}' (built-in: {', '.join(known)}; or give a path to a .yml)")
    return builtin


def load_table(ref: str) -> TableSpec:
    path = table_path(ref)
    data = read_yaml(path)
    src = _display(path)
    _check_keys(data, TABLE_KEYS, src, "")
    sections_data = data.get("sections")
    if not isinstance(sections_data, list) or not sections_data:
        raise ConfigError(f"{src}: 'sections' must be a non-empty list")
    sections = tuple(_section(s, src, f"sections[{i}]") for i, s in enumerate(sections_data))
    return TableSpec(name=str(data.get("table", path.stem)), title=str(data.get("title", path.stem)),
                     source=path, sections=sections, notes=str(data.get("notes") or ""))


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def _check_keys(data: Any, valid: Sequence[str], src: str, where: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{src}: '{where or 'top level'}' must be a mapping, got {type(data).__name__}")
    for key in data:
        if key not in valid:
            raise ConfigError(unknown_key_message(src, f"{where}.{key}" if where else str(key), valid))


def _positive_int(value: Any, src: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{src}: '{where}' must be a positive integer, got {value!r}")
    return value


def _section(data: Any, src: str, where: str) -> SectionSpec:
    _check_keys(data, SECTION_KEYS, src, where)
    for key in ("name", "baseline", "scales", "variants"):
        if key not in data:
            raise ConfigError(f"{src}: '{where}.{key}' is missing")
    scales_data = data["scales"]
    if not isinstance(scales_data, dict) or not scales_data:
        raise ConfigError(f"{src}: '{where}.scales' must map scale names (paper, cpu, ...) to settings")
    scales = {str(name): _scale(str(name), spec, src, f"{where}.scales.{name}") for name, spec in scales_data.items()}
    if not isinstance(data["variants"], list) or not data["variants"]:
        raise ConfigError(f"{src}: '{where}.variants' must be a non-empty list")
    variants = tuple(_variant(v, src, f"{where}.variants[{i}]") for i, v in enumerate(data["variants"]))
    names = [v.name for v in variants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{src}: '{where}.variants': duplicate names {duplicates}")
    if data["baseline"] not in names:
        raise ConfigError(f"{src}: '{where}.baseline' = {data['baseline']!r} is not a variant ({', '.join(names)})")
    for v in variants:
        if v.equal_iters_ref is not None and v.equal_iters_ref not in names:
            raise ConfigError(f"{src}: '{where}.variants' ('{v.name}'): equal_iters_ref {v.equal_iters_ref!r} "
                              f"is not a variant of this section ({', '.join(names)})")
    return SectionSpec(name=str(data["name"]), title=str(data.get("title", data["name"])), baseline=data["baseline"],
                       scales=scales, variants=variants, notes=str(data.get("notes") or ""))


def _scale(name: str, data: Any, src: str, where: str) -> ScaleSpec:
    _check_keys(data, SCALE_KEYS, src, where)
    for key in ("base", "minibatch", "iterations"):
        if key not in data:
            raise ConfigError(f"{src}: '{where}.{key}' is missing")
    base = Path(data["base"])
    base = base if base.is_absolute() else REPO / base
    val_points = data.get("val_points")
    settings = data.get("set") or {}
    if not isinstance(settings, dict):
        raise ConfigError(f"{src}: '{where}.set' must map option keys (a.b.c) to values")
    return ScaleSpec(
        name=name, base=base, minibatch=_positive_int(data["minibatch"], src, f"{where}.minibatch"),
        iterations=_positive_int(data["iterations"], src, f"{where}.iterations"),
        warmup_iter=int(data.get("warmup_iter", 0)),
        lr_crops=_int_tuple(data.get("lr_crops"), src, f"{where}.lr_crops"),
        frame_counts=_int_tuple(data.get("frame_counts"), src, f"{where}.frame_counts"),
        val_points=None if val_points is None else _positive_int(val_points, src, f"{where}.val_points"),
        set=dict(settings), note=" ".join(str(data.get("note") or "").split()))


def _int_tuple(value: Any, src: str, where: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ConfigError(f"{src}: '{where}' must be a list of integers, got {value!r}")
    return tuple(value)


def _variant(data: Any, src: str, where: str) -> VariantSpec:
    _check_keys(data, VARIANT_KEYS, src, where)
    if "name" not in data:
        raise ConfigError(f"{src}: '{where}.name' is missing")
    name = str(data["name"])
    where = f"{where} ('{name}')"
    warmup = data.get("warmup", "none")
    if warmup not in WARMUPS:
        raise ConfigError(f"{src}: '{where}.warmup' = {warmup!r} is not one of {', '.join(WARMUPS)}")
    curriculum = data.get("curriculum", "none")
    curriculum = {"type": curriculum} if isinstance(curriculum, str) else curriculum
    _check_keys(curriculum, CURRICULUM_KEYS, src, f"{where}.curriculum")
    if curriculum.get("type") not in KINDS:
        raise ConfigError(f"{src}: '{where}.curriculum.type' = {curriculum.get('type')!r} "
                          f"is not one of {', '.join(KINDS)}")
    paper = data.get("paper") or {}
    _check_keys(paper, PAPER_KEYS, src, f"{where}.paper")
    settings = data.get("set") or {}
    if not isinstance(settings, dict):
        raise ConfigError(f"{src}: '{where}.set' must map option keys (a.b.c) to values")
    lr_scaling = data.get("lr_scaling", True)
    if not isinstance(lr_scaling, bool):
        raise ConfigError(f"{src}: '{where}.lr_scaling' must be true or false, got {lr_scaling!r}")
    return VariantSpec(
        name=name, row_id=str(data.get("id", "")), label=str(data.get("label", name)),
        minibatch=_positive_int(data.get("minibatch", 1), src, f"{where}.minibatch"),
        iterations=_fraction(data.get("iterations", 1), src, f"{where}.iterations"),
        devices=_positive_int(data.get("devices", 1), src, f"{where}.devices"),
        warmup=warmup, lr_scaling=lr_scaling, curriculum=dict(curriculum),
        equal_iters_ref=data.get("equal_iters_ref"), set=dict(settings), paper=dict(paper))


def _fraction(value: Any, src: str, where: str) -> Fraction:
    try:
        result = Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"{src}: '{where}' must be a fraction like 1/4 or a number, got {value!r}") from None
    if result <= 0:
        raise ConfigError(f"{src}: '{where}' must be positive, got {value!r}")
    return result


def pick(value: Any, scale: str, scales: Sequence[str], where: str) -> Any:
    """`{paper: X, cpu: Y}` -> the value for `scale`; anything else is used at every scale."""
    if isinstance(value, dict) and value and set(value) <= set(scales):
        if scale not in value:
            raise ConfigError(f"{where}: no value for scale '{scale}' (given for {', '.join(value)})")
        return value[scale]
    return value


# ============================================================================================
# resolving a variant at a scale into an options file, a curriculum and a run folder
# ============================================================================================
@dataclass(frozen=True)
class SweepSettings:
    """How this invocation runs the variants (the same for every table it runs)."""

    scale: str
    runs_root: Path
    nproc_per_node: int = 1  # processes per baseline run (1: plain python, no torch.distributed)
    scale_devices: bool = False  # launch a row with `devices: k` on k x nproc_per_node processes
    limit_iters: int | None = None  # smoke test: at most this many iterations per variant
    overrides: tuple[str, ...] = ()  # --set for every variant, applied last
    device: str | None = None


@dataclass(frozen=True)
class ResolvedVariant:
    table: TableSpec
    section: SectionSpec
    variant: VariantSpec
    options: dict[str, Any]  # what is written to <run>/ablation.yml
    opt: Options
    schedule: Schedule
    lr_schedule: LRSchedule
    plan: dict[str, Any]  # exactly what `train.py --plan --json` prints for this run
    world_size: int
    minibatch: int
    run_dir: Path
    limited_from: int | None = None  # the definition's iterations when --limit-iters cut them

    @property
    def options_path(self) -> Path:
        return self.run_dir / "ablation.yml"

    @property
    def total_iter(self) -> int:
        return self.schedule.total_iter

    @property
    def curriculum_label(self) -> str:
        return f"{self.schedule.kind}: {self.schedule.describe()}"

    @property
    def work(self) -> float:
        """FLOP-proportional work of the whole run (global samples x crop^2 x frames), in units of
        one baseline-shape sample: the dry run's cost estimate."""
        per_step = self.world_size * self.opt.train.grad_accum
        return sum(stage.iters * self.schedule.batch_per_device * per_step * self.schedule.compute_per_iter(stage)
                   for stage in self.schedule.stages)


def set_key(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `a.b.c` in nested dicts, creating the intermediate mappings."""
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def expand(table: TableSpec, settings: SweepSettings) -> list[tuple[SectionSpec, list[ResolvedVariant]]]:
    """Every section of `table` defined at `settings.scale`, with its variants resolved and
    validated (options, curriculum, LR schedule). Reads no data and writes nothing."""
    out = []
    with tempfile.TemporaryDirectory(prefix="vsr-ablation-") as scratch:
        for section in table.sections:
            if settings.scale not in section.scales:
                continue
            resolved = [resolve_variant(table, section, v, settings, Path(scratch)) for v in section.variants]
            out.append((section, resolved))
    if not out:
        raise ConfigError(f"{_display(table.source)}: no section is defined at scale '{settings.scale}' "
                          f"(scales: {', '.join(table.scale_names)})")
    return out


def resolve_variant(table: TableSpec, section: SectionSpec, variant: VariantSpec, settings: SweepSettings,
                    scratch: Path) -> ResolvedVariant:
    where = f"{_display(table.source)}: {section.name}/{variant.name} at scale '{settings.scale}'"
    scale = section.scales[settings.scale]
    try:
        return _resolve(table, section, variant, scale, settings, scratch, where)
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(where) else f"{where}: {message}") from None


def _resolve(table: TableSpec, section: SectionSpec, variant: VariantSpec, scale: ScaleSpec,
             settings: SweepSettings, scratch: Path, where: str) -> ResolvedVariant:
    scales = table.scale_names
    data = read_yaml(scale.base)
    for key, value in scale.set.items():
        set_key(data, key, pick(value, scale.name, scales, f"{key}"))

    world = settings.nproc_per_node * (variant.devices if settings.scale_devices else 1)
    minibatch = scale.minibatch * variant.minibatch
    accum = int((data.get("train") or {}).get("grad_accum", 1))
    if minibatch % (world * accum):
        raise ConfigError(f"minibatch {minibatch} does not split over {world} process(es) x {accum} "
                          f"accumulation step(s); pick --nproc-per-node to divide it")
    if variant.warmup != "none" and scale.warmup_iter <= 0:
        raise ConfigError(f"the variant warms up ({variant.warmup}) but the scale sets no warmup_iter")
    iterations = scale.iterations * variant.iterations
    if iterations.denominator != 1:
        raise ConfigError(f"iterations {scale.iterations} x {variant.iterations} = {float(iterations):g} "
                          "is not a whole number; adjust the scale's iterations")
    set_key(data, "datasets.train.batch_size_per_gpu", minibatch // (world * accum))
    set_key(data, "train.curriculum", _curriculum(variant, scale, scales))
    set_key(data, "train.base_batch", scale.minibatch if variant.lr_scaling else None)
    set_key(data, "train.warmup", variant.warmup)
    set_key(data, "logger.use_tb_logger", True)  # the validation-vs-time figure reads it
    for key, value in variant.set.items():
        set_key(data, key, pick(value, scale.name, scales, f"set.{key}"))

    full_iters = int(iterations)
    opt, schedule = _with_iterations(data, full_iters, scale, variant, scratch, settings)
    limited_from = None
    if settings.limit_iters is not None and settings.limit_iters < full_iters:
        limited = max(settings.limit_iters, len(schedule.stages))
        if limited < full_iters:
            limited_from = full_iters
            opt, schedule = _with_iterations(data, limited, scale, variant, scratch, settings, full_iters)

    digest = hashlib.sha256(f"{opt.results_hash()}|world={world}".encode()).hexdigest()[:8]
    slug = f"{schedule.kind}-b{minibatch}-{schedule.total_iter}it-w{world}-{digest}"
    set_key(data, "name", slug)
    set_key(data, "path.experiments_root", str(settings.runs_root))
    opt = dataclasses.replace(opt, name=slug,
                              path=dataclasses.replace(opt.path, experiments_root=str(settings.runs_root)))
    lr_schedule = train.build_lr_schedule(opt, schedule, world)
    plan = plan_dict(schedule, lr_schedule, scale=opt.scale, world_size=world, grad_accum=opt.train.grad_accum)
    return ResolvedVariant(table=table, section=section, variant=variant, options=data, opt=opt, schedule=schedule,
                           lr_schedule=lr_schedule, plan=plan, world_size=world, minibatch=minibatch,
                           run_dir=settings.runs_root / slug, limited_from=limited_from)


def _curriculum(variant: VariantSpec, scale: ScaleSpec, scales: Sequence[str]) -> dict[str, Any]:
    """The variant's curriculum with the scale's cycles filled in where the kind uses them."""
    spec = {key: pick(value, scale.name, scales, f"curriculum.{key}") for key, value in variant.curriculum.items()}
    kind = spec["type"]
    if kind in ("spatial", "multigrid", "synchronous") and spec.get("lr_crops") is None and scale.lr_crops:
        spec["lr_crops"] = list(scale.lr_crops)
    if kind in ("temporal", "multigrid", "synchronous") and spec.get("frame_counts") is None and scale.frame_counts:
        spec["frame_counts"] = list(scale.frame_counts)
    return {key: value for key, value in spec.items() if value is not None}


def _with_iterations(data: dict[str, Any], iters: int, scale: ScaleSpec, variant: VariantSpec, scratch: Path,
                     settings: SweepSettings, full_iters: int | None = None) -> tuple[Options, Schedule]:
    """Set everything that depends on the run length, validate, and build the curriculum.
    A run cut by --limit-iters keeps its warmup's share of the run."""
    set_key(data, "train.total_iter", iters)
    warmup = scale.warmup_iter if variant.warmup != "none" else -1
    if warmup > 0 and full_iters:
        warmup = max(1, round(warmup * iters / full_iters))
    if warmup >= iters:
        warmup = iters - 1 if iters > 1 else -1
    set_key(data, "train.warmup_iter", warmup)
    if scale.val_points or settings.limit_iters:
        val_freq = max(1, math.ceil(iters / (scale.val_points or 2)))
        set_key(data, "val.val_freq", val_freq)
        set_key(data, "logger.save_checkpoint_freq", val_freq)
        print_freq = int((data.get("logger") or {}).get("print_freq", 100))
        set_key(data, "logger.print_freq", max(d for d in range(1, min(print_freq, val_freq) + 1) if val_freq % d == 0))
    if settings.overrides:
        apply_overrides(data, settings.overrides)
    opt = _validate(data, scratch / "check.yml")
    schedule = train.build_curriculum(opt, max_frames=None, crop_multiple=models.required_multiple(opt.network_g))
    return opt, schedule


def _validate(data: dict[str, Any], path: Path) -> Options:
    """Type- and value-check through the same loader train.py uses."""
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        return load_options(path)
    except ConfigError as exc:  # the scratch file's name means nothing to the user
        raise ConfigError(str(exc).replace(f"{path}: ", "", 1)) from None


# ============================================================================================
# running: launch, skip, resume, evaluate
# ============================================================================================
class RunnerLog:
    """Timestamped lines to the console and to every table's runner.log."""

    def __init__(self, files: Iterable[Path] = ()) -> None:
        self.files = list(files)
        for path in self.files:
            path.parent.mkdir(parents=True, exist_ok=True)

    def info(self, message: str) -> None:
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}"
        print(line, flush=True)
        for path in self.files:
            with open(path, "a") as handle:
                handle.write(line + "\n")


@dataclass(frozen=True)
class Outcome:
    run_dir: Path
    trained: bool
    evaluated: bool
    error: str | None = None


_STATE_CACHE: dict[tuple[Path, int, int], dict[str, Any] | None] = {}


def final_state(rv: ResolvedVariant) -> dict[str, Any] | None:
    """The run's last training state if it is complete and readable (the finished marker).
    Read once per file version: a paper-scale state is hundreds of MB and is asked for often."""
    path = rv.run_dir / "training_states" / f"{rv.total_iter}.state"
    if not path.is_file():
        return None
    stat = path.stat()
    key = (path, stat.st_mtime_ns, stat.st_size)
    if key not in _STATE_CACHE:
        try:
            state = ckpt.read_training_state(path)
            _STATE_CACHE[key] = {"iter": int(state["iter"]), "train_seconds": state.get("train_seconds")}
        except CheckpointError:
            _STATE_CACHE[key] = None
    state = _STATE_CACHE[key]
    return state if state is not None and state["iter"] == rv.total_iter else None


def run_status(rv: ResolvedVariant) -> str:
    if final_state(rv) is not None:
        return "evaluated" if (rv.run_dir / "eval.json").is_file() else "trained"
    if ckpt.list_training_states(rv.run_dir / "training_states"):
        return "partial"
    return "new"


def train_command(rv: ResolvedVariant, device: str | None) -> list[str]:
    args = [str(REPO / "train.py"), "-opt", str(rv.options_path), "--auto_resume"]
    if device:
        args += ["--device", device]
    if rv.world_size > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={rv.world_size}", *args]
    return [sys.executable, *args]


def eval_command(rv: ResolvedVariant, device: str | None) -> list[str]:
    args = [sys.executable, str(REPO / "scripts" / "evaluate.py"), "-opt", str(rv.options_path),
            "--checkpoint", str(rv.run_dir / "models" / f"net_g_{rv.total_iter}.pth"), "--phase", "val",
            "--json", str(rv.run_dir / "eval.json")]
    return args + (["--device", device] if device else [])


def run_subprocess(command: list[str], log_file: Path, echo: Callable[[str], None]) -> int:
    """Run with output streamed to the console and appended to `log_file`. Ctrl-C (or SIGTERM to
    the runner) reaches the child as SIGINT, so train.py saves a resumable state before exiting."""
    with open(log_file, "a") as sink:
        sink.write(f"$ {shlex.join(command)}\n")
        proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                bufsize=1)
        try:
            for line in proc.stdout:
                sink.write(line)
                echo(line.rstrip("\n"))
            return proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=600)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise


def train_in_process(command: list[str]) -> int:
    """`train.main` in this process (tests, debugging): one device only. The trainer installs its
    own SIGINT/SIGTERM handlers; they are put back afterwards so Ctrl-C still stops the runner."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return train.main(command[2:])  # drop the interpreter and train.py's path
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def evaluate_in_process(command: list[str]) -> int:
    spec = importlib.util.spec_from_file_location("vsr_accel_evaluate_script", REPO / "scripts" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(command[2:])


def read_record(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "ablation_record.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            pass
    return {"train_attempts": [], "eval_attempts": []}


def add_attempt(run_dir: Path, kind: str, command: list[str], started: float, seconds: float, rc: int | None) -> None:
    """Append one launch to `<run>/ablation_record.json` (written atomically): total wall-clock
    is the sum over attempts, so a resumed run still reports its whole cost."""
    record = read_record(run_dir)
    record.setdefault(kind, []).append({
        "started": datetime.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        "seconds": round(seconds, 3), "returncode": rc, "command": shlex.join(command)})
    tmp = run_dir / "ablation_record.json.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, run_dir / "ablation_record.json")


def total_train_wall(run_dir: Path) -> float | None:
    attempts = read_record(run_dir).get("train_attempts", [])
    return sum(a["seconds"] for a in attempts) if attempts else None


@dataclass
class Runner:
    settings: SweepSettings
    log: RunnerLog
    in_process: bool = False
    quiet_children: bool = False

    def launch(self, rv: ResolvedVariant, kind: str, command: list[str]) -> int:
        started, tick = time.time(), time.perf_counter()
        rc: int | None = None
        try:
            if self.in_process:
                rc = (train_in_process if kind == "train_attempts" else evaluate_in_process)(command)
            else:
                echo = (lambda line: None) if self.quiet_children else (lambda line: print(f"  | {line}", flush=True))
                rc = run_subprocess(command, rv.run_dir / "launch.log", echo)
        finally:  # an interrupted attempt still counts towards the run's wall-clock
            add_attempt(rv.run_dir, kind, command, started, time.perf_counter() - tick, rc)
        return rc

    def where_output(self, rv: ResolvedVariant) -> str:
        return " (its output is above)" if self.in_process else f"; output in {_display(rv.run_dir / 'launch.log')}"

    def ensure(self, rv: ResolvedVariant) -> Outcome:
        """Train (or resume) unless finished, then evaluate unless evaluated."""
        name = f"{rv.table.name}/{rv.section.name}/{rv.variant.name}"
        status = run_status(rv)
        trained = evaluated = False
        if status in ("new", "partial"):
            rv.run_dir.mkdir(parents=True, exist_ok=True)
            rv.options_path.write_text(yaml.safe_dump(rv.options, sort_keys=False))
            command = train_command(rv, self.settings.device)
            verb = "resuming" if status == "partial" else "training"
            self.log.info(f"{verb} {name} -> {_display(rv.run_dir)} ({rv.total_iter} iterations, "
                          f"{rv.curriculum_label}, minibatch {rv.minibatch} on {rv.world_size} process(es))")
            rc = self.launch(rv, "train_attempts", command)
            if rc != 0 or final_state(rv) is None:
                return Outcome(rv.run_dir, False, False, f"training exited with {rc}{self.where_output(rv)}")
            trained = True
        else:
            self.log.info(f"skipping training of {name}: finished in {_display(rv.run_dir)}")
        if not (rv.run_dir / "eval.json").is_file():
            self.log.info(f"evaluating {name} on datasets.val")
            rc = self.launch(rv, "eval_attempts", eval_command(rv, self.settings.device))
            if rc != 0 or not (rv.run_dir / "eval.json").is_file():
                return Outcome(rv.run_dir, trained, False, f"evaluation exited with {rc}{self.where_output(rv)}")
            evaluated = True
        return Outcome(rv.run_dir, trained, evaluated)


# ============================================================================================
# reporting
# ============================================================================================
def eval_scores(rv: ResolvedVariant) -> tuple[float | None, float | None]:
    path = rv.run_dir / "eval.json"
    if not path.is_file():
        return None, None
    data = json.loads(path.read_text())
    entry = data.get(rv.opt.network_g["type"]) or {}
    average = entry.get("average") or {}
    return average.get("psnr"), average.get("ssim")


def build_row(rv: ResolvedVariant, failed: dict[Path, str]) -> tables.Row:
    state = final_state(rv)
    psnr, ssim = eval_scores(rv)
    if rv.run_dir in failed:
        status = "failed"
    elif state is None:
        status = "partial" if run_status(rv) == "partial" else "not run"
    elif psnr is None:
        status = "not evaluated"
    else:
        status = "done"
    equal_ref = rv.variant.equal_iters_ref
    return tables.Row(
        section=rv.section.name, variant=rv.variant.name, row_id=rv.variant.row_id, label=rv.variant.label,
        minibatch=rv.minibatch, world_size=rv.world_size, grad_accum=rv.opt.train.grad_accum,
        curriculum=rv.curriculum_label, iterations=rv.total_iter,
        devices=rv.variant.devices,
        train_seconds=float(state["train_seconds"]) if state and state["train_seconds"] is not None else None,
        total_seconds=total_train_wall(rv.run_dir) if state else None, psnr=psnr, ssim=ssim,
        flop_bound=rv.schedule.compute_ratio() if rv.schedule.kind != "none" else None,
        equal_iters_ref=equal_ref, status=status, paper=rv.variant.paper)


def provenance(argv: Sequence[str], settings: SweepSettings, started: datetime.datetime, table: TableSpec,
               sections: Sequence[tuple[SectionSpec, list[ResolvedVariant]]]) -> list[str]:
    """The header every result file carries: how, when and where it was produced."""
    lines = [f"command: python -m experiments.run {shlex.join(argv)}",
             f"date: started {started.isoformat(timespec='seconds')}, written "
             f"{datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
             f"machine: {machine_description(settings.device)}",
             f"code: {git_description()}; definition {_display(table.source)}"]
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
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "git commit unknown"
    if not sha:
        return "git commit unknown"
    return f"git {sha}" + (" with uncommitted changes" if dirty else "")


def table_dir(out_root: Path, table: TableSpec) -> Path:
    return out_root / table.name


def write_report(table: TableSpec, sections: Sequence[tuple[SectionSpec, list[ResolvedVariant]]], out_root: Path,
                 header: list[str], failed: dict[Path, str], scale: str) -> list[Path]:
    """Markdown + CSV table, the two figures, and copies of every run's log and scores."""
    folder = table_dir(out_root, table)
    blocks = []
    for section, resolved in sections:
        rows = [build_row(rv, failed) for rv in resolved]
        blocks.append((section.title, rows, section.baseline))
    notes = "\n\n".join(n for n in [table.notes.strip(), *(s.notes.strip() for s, _ in sections)] if n)
    skipped = [s.title for s in table.sections if s not in [sec for sec, _ in sections]]
    if skipped:
        notes += ("\n\n" if notes else "") + "Not defined at this scale: " + "; ".join(skipped) + "."
    md, csv_path = tables.write_table(folder, table.name, f"{table.title} ({scale} scale)", header, blocks, notes)
    written = [md, csv_path]
    every = [rv for _, resolved in sections for rv in resolved]
    curves = [plots.curriculum_curve(_curve_label(rv), rv.schedule, rv.lr_schedule) for rv in every]
    written.append(plots.plot_curricula(curves, folder / "curricula.png",
                                        f"{table.title}: LR, crop and clip length per iteration", header))
    val = {_curve_label(rv): plots.read_val_curve(rv.run_dir) for rv in every}
    written.append(plots.plot_val_psnr(val, folder / "val_psnr.png",
                                       f"{table.title}: validation PSNR vs training time", header))
    written += copy_run_logs(every, folder / "logs")
    return written


def _curve_label(rv: ResolvedVariant) -> str:
    prefix = f"{rv.variant.row_id} " if rv.variant.row_id else ""
    section = f"[{rv.section.name}] " if len(rv.table.sections) > 1 else ""
    return f"{section}{prefix}{rv.variant.label}"


def copy_run_logs(resolved: Sequence[ResolvedVariant], folder: Path) -> list[Path]:
    """The evidence beside the table: each run's train.log, scores and resolved options."""
    written = []
    for rv in resolved:
        target = folder / f"{rv.section.name}__{rv.variant.name}"
        for name in ("train.log", "eval.json", "ablation.yml", "ablation_record.json"):
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
    lines = [f"{table.name}: {table.title} — scale '{settings.scale}' ({_display(table.source)})"]
    for section in table.sections:
        if section not in [s for s, _ in sections]:
            lines.append(f"  section '{section.name}': not defined at scale '{settings.scale}'")
    for section, resolved in sections:
        base = next(rv for rv in resolved if rv.variant.name == section.baseline)
        lines.append(f"  section '{section.name}': {section.title} (baseline: {section.baseline})")
        header = ("id", "variant", "minibatch", "iters", "curriculum", "peak LR", "warmup", "FLOP bound",
                  "work/baseline", "status", "run folder")
        rows = [header]
        for rv in resolved:
            peaks = sorted({f"{s['lr_peak']:.3g}" for s in rv.plan["stages"]}, key=float)
            warm = f"{rv.lr_schedule.warmup} {rv.plan['warmup_iter']}" if rv.plan["warmup_iter"] else "none"
            iters = f"{rv.total_iter}" + (f" (of {rv.limited_from})" if rv.limited_from else "")
            rows.append((rv.variant.row_id or "-", rv.variant.name, f"{rv.minibatch} ({_split(rv)})", iters,
                         rv.curriculum_label, "/".join(peaks), warm, f"{rv.schedule.compute_ratio():.2f}x",
                         f"{rv.work / base.work:.2f}", run_status(rv),
                         _display(rv.run_dir)))
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
        for position, row in enumerate(rows):
            lines.append("    " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
            if position == 0:
                lines.append("    " + "  ".join("-" * w for w in widths))
        if verbose:
            for rv in resolved:
                lines.append(f"\n    {rv.variant.name}: python train.py -opt {_display(rv.options_path)} --plan")
                lines += ["    " + line for line in format_plan(rv.plan).splitlines()]
    return "\n".join(lines)


def _split(rv: ResolvedVariant) -> str:
    """devices x per-device batch (x accumulation steps)."""
    accum = rv.opt.train.grad_accum
    text = f"{rv.world_size}x{rv.opt.datasets['train']['batch_size_per_gpu']}"
    return text + (f"x{accum}" if accum > 1 else "")


def unique_runs(expanded: Sequence[tuple[TableSpec, list[tuple[SectionSpec, list[ResolvedVariant]]]]],
                only: Sequence[str] = ()) -> list[ResolvedVariant]:
    """Each run folder once, in table order (shared variants train once)."""
    seen: dict[Path, ResolvedVariant] = {}
    for _, sections in expanded:
        for _, resolved in sections:
            for rv in resolved:
                if only and rv.variant.name not in only:
                    continue
                seen.setdefault(rv.run_dir, rv)
    return list(seen.values())


# ============================================================================================
# command line
# ============================================================================================
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tables", nargs="*", help="table names (table1, table8, ...), 'all', or definition .yml paths")
    p.add_argument("--scale", default="cpu", help="paper | cpu (or a scale a custom definition declares)")
    p.add_argument("--list", action="store_true", help="list the built-in tables and exit")
    p.add_argument("--dry-run", action="store_true", help="list variants and resolved curricula; train nothing")
    p.add_argument("--verbose", action="store_true", help="with --dry-run: every variant's full --plan")
    p.add_argument("--report-only", action="store_true", help="write tables and figures from existing runs only")
    p.add_argument("--only", nargs="+", default=[], metavar="VARIANT", help="run only these variants")
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
        return run(args, argv)
    except VSRError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished variants are kept; run the same command again to continue", file=sys.stderr)
        return 130
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
        runs = unique_runs(expanded, args.only)
        print(f"\n{len(runs)} distinct run(s); dry run: nothing trained or written")
        return 0

    results = out_root(args)
    log = RunnerLog([table_dir(results, table) / "runner.log" for table, _ in expanded])
    log.info(f"python -m experiments.run {shlex.join(argv)}")
    failed: dict[Path, str] = {}
    if not args.report_only:
        runner = Runner(settings, log, in_process=args.in_process, quiet_children=args.quiet)
        for rv in unique_runs(expanded, args.only):
            outcome = runner.ensure(rv)
            if outcome.error:
                failed[rv.run_dir] = outcome.error
                log.info(f"FAILED {rv.variant.name}: {outcome.error}")
    for table, sections in expanded:
        header = provenance(argv, settings, started, table, sections)
        for path in write_report(table, sections, results, header, failed, settings.scale)[:2]:
            log.info(f"wrote {_display(path)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
