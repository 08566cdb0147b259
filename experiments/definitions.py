"""Ablation tables as data: `experiments/ablations/<table>.yml` parsed into typed specs.

Every key is checked, and a bad one fails with the file, the key path and the valid keys.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

from vsr_accel.config import read_yaml, unknown_key_message
from vsr_accel.curriculum import KINDS
from vsr_accel.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
ABLATIONS = Path(__file__).resolve().parent / "ablations"
WARMUPS = ("none", "linear", "constant")


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
    src = display_path(path)
    _check_keys(data, TABLE_KEYS, src, "")
    sections_data = data.get("sections")
    if not isinstance(sections_data, list) or not sections_data:
        raise ConfigError(f"{src}: 'sections' must be a non-empty list")
    sections = tuple(_section(s, src, f"sections[{i}]") for i, s in enumerate(sections_data))
    return TableSpec(name=str(data.get("table", path.stem)), title=str(data.get("title", path.stem)),
                     source=path, sections=sections, notes=str(data.get("notes") or ""))


def display_path(path: Path) -> str:
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
