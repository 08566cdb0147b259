"""A table variant at a scale -> a validated options file, a curriculum and a run folder.

The run folder's name hashes every option that changes results, so identical variants of
different tables share one run, and a changed definition never reuses a stale one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import yaml

import models
from experiments.definitions import (ScaleSpec, SectionSpec, StageSpec, TableSpec, VariantSpec, display_path,
                                     pick)
from vsr_accel.train import builders
from vsr_accel.core.config import apply_overrides, read_yaml
from vsr_accel.schedule.curriculum import Schedule, global_batch
from vsr_accel.core.errors import ConfigError
from vsr_accel.schedule.lr import LRSchedule
from vsr_accel.schedule.lr.warmup import warmup_iters
from vsr_accel.train.options import Options, load_options
from vsr_accel.schedule.plan import plan_dict


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
    """One training run: a variant of a table section at a scale, with one seed."""

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
    seed: int = 0  # manual_seed of this run
    seeds: tuple[int, ...] = (0,)  # every seed the row trains with (this run's is one of them)

    @property
    def multi_seed(self) -> bool:
        return len(self.seeds) > 1

    @property
    def log_name(self) -> str:
        """The run's folder under a table's logs/: section and variant, and the seed for rows with several."""
        name = f"{self.section.name}__{self.variant.name}"
        return f"{name}__seed{self.seed}" if self.multi_seed else name

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
        baseline_batch = global_batch(self.schedule.batch_per_device, self.world_size, self.opt.train.grad_accum)
        return sum(stage.iters * baseline_batch * self.schedule.compute_per_iter(stage)
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
    validated (options, curriculum, LR schedule), one run per seed. Reads no data, writes nothing."""
    out = []
    with tempfile.TemporaryDirectory(prefix="vsr-ablation-") as scratch:
        for section in table.sections:
            if settings.scale not in section.scales:
                continue
            resolved = [rv for v in section.variants for rv in resolve_seeds(table, section, v, settings, Path(scratch))]
            out.append((section, resolved))
    if not out:
        raise ConfigError(f"{display_path(table.source)}: no section is defined at scale '{settings.scale}' "
                          f"(scales: {', '.join(table.scale_names)})")
    return out


def resolve_seeds(table: TableSpec, section: SectionSpec, variant: VariantSpec, settings: SweepSettings,
                  scratch: Path) -> list[ResolvedVariant]:
    """The variant's runs, one per seed it lists at this scale (one with the base's seed if none)."""
    seeds = variant.seeds_at(settings.scale, table.scale_names)
    if seeds is None:
        return [resolve_variant(table, section, variant, settings, scratch)]
    return [resolve_variant(table, section, variant, settings, scratch, seed=seed, seeds=seeds) for seed in seeds]


def resolve_variant(table: TableSpec, section: SectionSpec, variant: VariantSpec, settings: SweepSettings,
                    scratch: Path, seed: int | None = None, seeds: tuple[int, ...] | None = None) -> ResolvedVariant:
    where = f"{display_path(table.source)}: {section.name}/{variant.name} at scale '{settings.scale}'"
    if seed is not None:
        where += f" (seed {seed})"
    scale = section.scales[settings.scale]
    try:
        return _resolve(table, section, variant, scale, settings, scratch, where, seed, seeds)
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(where) else f"{where}: {message}") from None


def _resolve(table: TableSpec, section: SectionSpec, variant: VariantSpec, scale: ScaleSpec,
             settings: SweepSettings, scratch: Path, where: str, seed: int | None,
             seeds: tuple[int, ...] | None) -> ResolvedVariant:
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
    if variant.warmup != "none" and not warmup_iters(scale.warmup_iter, variant.warmup):
        raise ConfigError(f"the variant warms up ({variant.warmup}) but the scale sets no warmup_iter")
    set_key(data, "datasets.train.batch_size_per_gpu", minibatch // (world * accum))
    set_key(data, "train.curriculum", _curriculum(variant, scale, scales))
    set_key(data, "train.base_batch", scale.minibatch if variant.lr_scaling else None)
    set_key(data, "train.warmup", variant.warmup)
    set_key(data, "logger.use_tb_logger", True)  # the validation-vs-time figure reads it
    for key, value in variant.set.items():
        set_key(data, key, pick(value, scale.name, scales, f"set.{key}"))
    if seed is not None:
        set_key(data, "manual_seed", seed)
    scheduler = (data.get("train") or {}).get("scheduler") or {}
    # the original (BasicSR) scheduler without periods: the paper's Sec. 3.1 control, one cosine over the run
    one_cosine = scheduler.get("type") == "CosineAnnealingRestartLR" and scheduler.get("periods") is None
    run = RunLength(scale, variant, settings, scales, scratch, one_cosine)

    main_iters = _whole(scale.iterations * variant.iterations, scale, variant.iterations, "iterations")
    full_total = _whole(scale.iterations * variant.total_iterations, scale, variant.total_iterations, "iterations")
    opt, schedule = run.build(data, main_iters)
    limited_from = None
    if settings.limit_iters is not None and settings.limit_iters < full_total:
        limited = max(settings.limit_iters, len(schedule.stages))
        if limited < full_total:
            limited_from = full_total
            main = max(1, round(main_iters * limited / full_total))
            opt, schedule = run.build(data, main, factor=main / main_iters, full_iters=full_total)

    digest = hashlib.sha256(f"{opt.results_hash()}|world={world}".encode()).hexdigest()[:8]
    slug = f"{schedule.kind}-b{minibatch}-{schedule.total_iter}it-w{world}-s{opt.manual_seed}-{digest}"
    set_key(data, "name", slug)
    set_key(data, "path.experiments_root", str(settings.runs_root))
    opt = dataclasses.replace(opt, name=slug,
                              path=dataclasses.replace(opt.path, experiments_root=str(settings.runs_root)))
    lr_schedule = builders.build_lr_schedule(opt, schedule, world)
    plan = plan_dict(schedule, lr_schedule, scale=opt.scale, world_size=world, grad_accum=opt.train.grad_accum)
    return ResolvedVariant(table=table, section=section, variant=variant, options=data, opt=opt, schedule=schedule,
                           lr_schedule=lr_schedule, plan=plan, world_size=world, minibatch=minibatch,
                           run_dir=settings.runs_root / slug, limited_from=limited_from, seed=opt.manual_seed,
                           seeds=tuple(seeds) if seeds else (opt.manual_seed,))


def _whole(value: Fraction, scale: ScaleSpec, fraction: Fraction, what: str) -> int:
    if value.denominator != 1:
        raise ConfigError(f"{what} {scale.iterations} x {fraction} = {float(value):g} "
                          "is not a whole number; adjust the scale's iterations")
    return int(value)


def _curriculum(variant: VariantSpec, scale: ScaleSpec, scales: Sequence[str]) -> dict[str, Any]:
    """The variant's curriculum with the scale's cycles filled in where the kind uses them."""
    spec = {key: pick(value, scale.name, scales, f"curriculum.{key}") for key, value in variant.curriculum.items()}
    kind = spec["type"]
    if kind in ("spatial", "multigrid", "synchronous") and spec.get("lr_crops") is None and scale.lr_crops:
        spec["lr_crops"] = list(scale.lr_crops)
    if kind in ("temporal", "multigrid", "synchronous") and spec.get("frame_counts") is None and scale.frame_counts:
        spec["frame_counts"] = list(scale.frame_counts)
    return {key: value for key, value in spec.items() if value is not None}


def _stage_options(specs: Sequence[StageSpec], scale: ScaleSpec, scales: Sequence[str], factor: float,
                   where: str) -> list[dict[str, Any]]:
    """Definition stages -> `train.curriculum.stages` entries at this scale (`factor` < 1 when
    --limit-iters shortens the run: every stage keeps at least one iteration)."""
    out = []
    for i, spec in enumerate(specs):
        iters = scale.iterations * spec.iters
        if iters.denominator != 1:
            raise ConfigError(f"{where}[{i}].iters: {scale.iterations} x {spec.iters} = {float(iters):g} "
                              "is not a whole number; adjust the scale's iterations")
        stage = {"lr_crop": pick(spec.lr_crop, scale.name, scales, f"{where}[{i}].lr_crop"),
                 "num_frames": pick(spec.num_frames, scale.name, scales, f"{where}[{i}].num_frames"),
                 "iters": max(1, round(int(iters) * factor))}
        lr = pick(spec.lr, scale.name, scales, f"{where}[{i}].lr")
        if lr is not None:
            stage["lr"] = lr
        out.append(stage)
    return out


@dataclass(frozen=True)
class RunLength:
    """Everything that depends on the run's length, set in one place: iterations, explicit and
    extra stages, warmup, the one-cosine scheduler's period, validation and logging frequencies."""

    scale: ScaleSpec
    variant: VariantSpec
    settings: SweepSettings
    scales: Sequence[str]
    scratch: Path
    one_cosine: bool  # CosineAnnealingRestartLR without periods: one period = the whole run

    def build(self, data: dict[str, Any], iters: int, factor: float = 1.0,
              full_iters: int | None = None) -> tuple[Options, Schedule]:
        """Validate and build the curriculum. `iters` is the generated curriculum's length (the
        variant's `iterations`); explicit and extra stages bring their own. A run cut by
        --limit-iters (`factor` < 1) keeps every stage and its warmup's share of the run."""
        variant = self.variant
        if variant.stages is not None:
            stages = _stage_options(variant.stages, self.scale, self.scales, factor, "curriculum.stages")
            set_key(data, "train.curriculum", {"type": "custom", "stages": stages})
            iters = sum(stage["iters"] for stage in stages)
        elif variant.extra_stages:
            set_key(data, "train.curriculum", _curriculum(variant, self.scale, self.scales))
            self.prepare(data, iters, full_iters)
            generated = _build(data, self.scratch)[1]
            stages = [{"lr_crop": s.lr_crop, "num_frames": s.num_frames, "iters": s.iters,
                       **({"lr": s.lr} if s.lr is not None else {})} for s in generated.stages]
            stages += _stage_options(variant.extra_stages, self.scale, self.scales, factor,
                                     "curriculum.extra_stages")
            set_key(data, "train.curriculum", {"type": "custom", "stages": stages})
            iters = sum(stage["iters"] for stage in stages)
        self.prepare(data, iters, full_iters)
        return _build(data, self.scratch)

    def prepare(self, data: dict[str, Any], iters: int, full_iters: int | None) -> None:
        set_key(data, "train.total_iter", iters)
        warmup = self.scale.warmup_iter if self.variant.warmup != "none" else -1
        if warmup > 0 and full_iters:
            warmup = max(1, round(warmup * iters / full_iters))
        if warmup >= iters:
            warmup = iters - 1 if iters > 1 else -1
        set_key(data, "train.warmup_iter", warmup)
        if self.one_cosine:
            set_key(data, "train.scheduler.periods", [iters])
            set_key(data, "train.scheduler.restart_weights", [1])
        if self.scale.val_points or self.settings.limit_iters:
            val_freq = max(1, math.ceil(iters / (self.scale.val_points or 2)))
            set_key(data, "val.val_freq", val_freq)
            set_key(data, "logger.save_checkpoint_freq", val_freq)
            print_freq = int((data.get("logger") or {}).get("print_freq", 100))
            set_key(data, "logger.print_freq",
                    max(d for d in range(1, min(print_freq, val_freq) + 1) if val_freq % d == 0))
        if self.settings.overrides:
            apply_overrides(data, self.settings.overrides)


def _build(data: dict[str, Any], scratch: Path) -> tuple[Options, Schedule]:
    opt = _validate(data, scratch / "check.yml")
    schedule = builders.build_curriculum(opt, crop_multiple=models.required_multiple(opt.network_g))
    return opt, schedule


def _validate(data: dict[str, Any], path: Path) -> Options:
    """Type- and value-check through the same loader train.py uses."""
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        return load_options(path)
    except ConfigError as exc:  # the scratch file's name means nothing to the user
        raise ConfigError(str(exc).replace(f"{path}: ", "", 1)) from None
