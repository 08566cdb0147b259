"""Ablation tables as data: `experiments/ablations/<table>.yml` parsed into typed specs.

Every key is checked, and a bad one fails with the file, the key path and the valid keys.

A scale can name a preset (`preset: demo_basicvsr16` reads `experiments/ablations/scales/demo_basicvsr16.yml`),
so the numbers of a scale (base options, baseline minibatch and iterations, cycles, LR) live in one
file that every table shares; keys given next to `preset` override it (`set` is merged key by key).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

from vsr_accel.core.checks import is_int
from vsr_accel.core.config import read_yaml, unknown_key_message
from vsr_accel.schedule.curriculum import KINDS
from vsr_accel.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
ABLATIONS = Path(__file__).resolve().parent / "ablations"
SCALE_PRESETS = ABLATIONS / "scales"
WARMUPS = ("none", "linear", "constant")


TABLE_KEYS = ("table", "title", "notes", "sections")
SECTION_KEYS = ("name", "title", "baseline", "scales", "variants", "notes")
SCALE_KEYS = ("preset", "base", "subject", "note", "minibatch", "iterations", "warmup_iter", "lr_crops",
              "frame_counts", "val_points", "set")
VARIANT_KEYS = ("name", "id", "label", "minibatch", "iterations", "devices", "warmup", "lr_scaling", "curriculum",
                "equal_iters_ref", "seeds", "set", "paper")
CURRICULUM_KEYS = ("type", "lr_crops", "frame_counts", "stage_lrs", "stages", "extra_stages")
STAGE_SPEC_KEYS = ("lr_crop", "num_frames", "iters", "lr")
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
    subject: str = ""  # what is trained on what, for titles: "BasicVSR-M on REDS4"


@dataclass(frozen=True)
class StageSpec:
    """One explicit curriculum stage of a definition (`curriculum.stages` / `extra_stages`):
    shapes may differ per scale (`{paper: 72, cpu: 34}`); `iters` is a fraction of the scale's
    baseline iterations, like a variant's `iterations` (Table 9's 20k of 300k is `1/15`)."""

    lr_crop: Any
    num_frames: Any
    iters: Fraction
    lr: Any = None


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
    seeds: Any = None  # a list of seeds, or {scale: [seeds]}; None: the base options' manual_seed only
    set: dict[str, Any] = field(default_factory=dict)
    paper: dict[str, Any] = field(default_factory=dict)
    stages: tuple[StageSpec, ...] | None = None  # curriculum type custom: the whole explicit list
    extra_stages: tuple[StageSpec, ...] = ()  # appended after the generated curriculum's stages

    @property
    def total_iterations(self) -> Fraction:
        """The run's length as a fraction of the baseline's: `iterations` plus any extra stages."""
        return self.iterations + sum((stage.iters for stage in self.extra_stages), Fraction(0))

    def seeds_at(self, scale: str, scales: Sequence[str]) -> tuple[int, ...] | None:
        """The seeds this row trains with at `scale` (None: the base options' own seed)."""
        if isinstance(self.seeds, dict) and set(self.seeds) <= set(scales):
            return None if self.seeds.get(scale) is None else tuple(self.seeds[scale])
        return None if self.seeds is None else tuple(self.seeds)


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

    def title_at(self, scale: str) -> str:
        """The title with what was trained at `scale` (each scale's `subject`), e.g.
        'Table 5: warmup, 16-channel BasicVSR (2 blocks) on the demo footage (cpu scale)'."""
        subjects = list(dict.fromkeys(s.scales[scale].subject for s in self.sections
                                      if scale in s.scales and s.scales[scale].subject))
        subject = f", {' and '.join(subjects)}" if subjects else ""
        return f"{self.title}{subject} ({scale} scale)"


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
    return TableSpec(name=str(data.get("table", path.stem)), title=" ".join(str(data.get("title", path.stem)).split()),
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
    if not is_int(value) or value <= 0:
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


def available_presets() -> list[str]:
    return sorted(p.stem for p in SCALE_PRESETS.glob("*.yml"))


def _with_preset(data: Any, src: str, where: str) -> tuple[dict[str, Any], str]:
    """The scale's settings with its preset filled in (keys given here win; `set` merges)."""
    _check_keys(data, SCALE_KEYS, src, where)
    if "preset" not in data:
        return dict(data), src
    name = str(data["preset"])
    path = SCALE_PRESETS / f"{name}.yml"
    if not path.is_file():
        raise ConfigError(f"{src}: '{where}.preset' = {name!r} is not a scale preset "
                          f"(experiments/ablations/scales/: {', '.join(available_presets())})")
    preset = read_yaml(path)
    preset_src = display_path(path)
    _check_keys(preset, tuple(k for k in SCALE_KEYS if k != "preset"), preset_src, "")
    merged = {**preset, **{k: v for k, v in data.items() if k != "preset"}}
    if isinstance(preset.get("set"), dict) and isinstance(data.get("set"), dict):
        merged["set"] = {**preset["set"], **data["set"]}
    return merged, f"{src} (preset {preset_src})"


def _scale(name: str, data: Any, src: str, where: str) -> ScaleSpec:
    data, src = _with_preset(data, src, where)
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
        set=dict(settings), note=" ".join(str(data.get("note") or "").split()),
        subject=" ".join(str(data.get("subject") or "").split()))


def _int_tuple(value: Any, src: str, where: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(is_int(v) for v in value):
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
    curriculum = dict(curriculum)
    stages = _stage_specs(curriculum.pop("stages", None), src, f"{where}.curriculum.stages")
    extra = _stage_specs(curriculum.pop("extra_stages", None), src, f"{where}.curriculum.extra_stages") or ()
    iterations = _fraction(data.get("iterations", 1), src, f"{where}.iterations")
    if (stages is not None) != (curriculum["type"] == "custom"):
        raise ConfigError(f"{src}: '{where}.curriculum.stages' is {'missing' if stages is None else 'given'}: "
                          "the stage list is what type 'custom' means, and only it")
    if stages is not None:
        if extra:
            raise ConfigError(f"{src}: '{where}.curriculum.extra_stages': list them in 'stages' (type custom)")
        total = sum((stage.iters for stage in stages), Fraction(0))
        if "iterations" in data and iterations != total:
            raise ConfigError(f"{src}: '{where}.iterations' = {data['iterations']} but the stages' iters add up "
                              f"to {total}; drop 'iterations' (it follows from the stages)")
        iterations = total
    return VariantSpec(
        name=name, row_id=str(data.get("id", "")), label=str(data.get("label", name)),
        minibatch=_positive_int(data.get("minibatch", 1), src, f"{where}.minibatch"),
        iterations=iterations,
        devices=_positive_int(data.get("devices", 1), src, f"{where}.devices"),
        warmup=warmup, lr_scaling=lr_scaling, curriculum=curriculum,
        equal_iters_ref=data.get("equal_iters_ref"), seeds=_seeds(data.get("seeds"), src, f"{where}.seeds"),
        set=dict(settings), paper=dict(paper), stages=stages, extra_stages=tuple(extra))


def _seeds(value: Any, src: str, where: str) -> Any:
    """`[0, 1]` or `{cpu: [0, 1], paper: [0]}`: distinct integers, at least one."""
    if value is None:
        return None
    per_scale = value if isinstance(value, dict) else {"": value}
    for scale, seeds in per_scale.items():
        key = f"{where}.{scale}" if scale else where
        if (not isinstance(seeds, list) or not seeds
                or not all(is_int(s) and s >= 0 for s in seeds)):
            raise ConfigError(f"{src}: '{key}' must be a non-empty list of seeds (integers >= 0), got {seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"{src}: '{key}' lists a seed twice: {seeds}")
    return value if isinstance(value, dict) else list(value)


def _stage_specs(value: Any, src: str, where: str) -> tuple[StageSpec, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{src}: '{where}' must be a non-empty list of stages {{lr_crop, num_frames, iters}}")
    out = []
    for i, item in enumerate(value):
        _check_keys(item, STAGE_SPEC_KEYS, src, f"{where}[{i}]")
        for key in ("lr_crop", "num_frames", "iters"):
            if key not in item:
                raise ConfigError(f"{src}: '{where}[{i}].{key}' is missing")
        out.append(StageSpec(lr_crop=item["lr_crop"], num_frames=item["num_frames"],
                             iters=_fraction(item["iters"], src, f"{where}[{i}].iters"), lr=item.get("lr")))
    return tuple(out)


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
