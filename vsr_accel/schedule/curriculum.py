"""The multigrid curriculum: which training shape (LR crop, clip length, batch) each iteration uses.

A `Schedule` is a pure, immutable description of the whole run, shared by the sampler (which
shape to draw), the LR schedule (where to restart) and the plan printer. Everything is a pure
function of the iteration, so resuming at any iteration needs no replay. This module must import
without torch: `train.py --plan` and option validation use it on machines without a GPU stack.

Kinds (paper Sec. 3.1 / 4.1, Tables 7-8), with H = baseline LR crop and T = baseline clip length:

- ``multigrid`` (hierarchical, the paper's method): a spatial cycle of s crops; inside each
  spatial stage a full temporal cycle of f clip lengths; p = s * f stages.
  REDS, H=64, T=15: 32&7 / 32&11 / 32&15 / 64&7 / 64&11 / 64&15.
- ``synchronous`` (Table 8a): crop and length change together, ``zip(lr_crops, frame_counts)``.
  Default 32&7 / 48&11 / 64&15: the temporal cycle with crops spread evenly from the smallest
  crop to H (or, given crops only, lengths spread evenly over the temporal range).
- ``spatial`` (Table 7a, EDVR-M): crops only, every stage uses T frames.
- ``temporal`` (Table 7b): clip lengths only, every stage uses crop H.
- ``none``: one stage with the baseline shape.
- ``custom``: an explicit list of stages, each ``{lr_crop, num_frames, iters}`` (optionally
  ``batch_per_device``, ``lr``), in training order; their iterations must add up to total_iter.
  Stages may exceed the baseline shape (the paper's Table 9 adds 72&17 after 64&15); compute
  ratios stay relative to the baseline.

Defaults (paper Sec. 4.1): crops ``[max(32, H // 2), H]``; clip lengths
``[max(6, T // 2), 3T // 4, T]``, both rounded *down*, which gives exactly 7/11/15 for T=15.
For T=14 (Vimeo-90K, 7 frames + their flip) the rule gives 7/10/14, while the paper trains on
6/10/14: its first length is not max(6, 14 // 2) = 7, so Vimeo recipes must list
``frame_counts: [6, 10, 14]`` explicitly (explicit lists always override the defaults). A derived
size never exceeds the baseline, and sizes that would not grow are dropped (T=8 gives 6/8, T<=6
gives a single length), so tiny demo baselines still yield a valid, if shorter, cycle.

Stage lengths: the paper divides training equally; with a remainder, each of the *last*
``total_iter % p`` stages gets one extra iteration (the larger, more expensive shapes, which the
model must end on, are never shortened). ``stage_iters`` overrides this.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from vsr_accel.core.checks import closest, is_int, is_number
from vsr_accel.core.errors import ConfigError

KINDS = ("multigrid", "synchronous", "spatial", "temporal", "none", "custom")

MIN_DEFAULT_LR_CROP = 32  # smaller crops starve optical flow (paper Sec. 3.1, 16x16 fails)
MIN_DEFAULT_FRAMES = 6  # shorter clips give too little temporal context (paper Sec. 3.1)


@dataclass(frozen=True)
class Stage:
    """One spatial-temporal stage: iterations [start_iter, start_iter + iters) use this shape.

    `lr` is the stage's peak learning rate override (in the same units as the base LR, i.e. at
    the base batch before linear scaling); None means the base LR.
    """

    index: int
    start_iter: int
    iters: int
    lr_crop: int
    num_frames: int
    batch_per_device: int
    lr: float | None = None

    @property
    def end_iter(self) -> int:
        """First iteration after this stage."""
        return self.start_iter + self.iters

    @property
    def label(self) -> str:
        """The paper's notation, e.g. '32&7' (Tables 8-9)."""
        return f"{self.lr_crop}&{self.num_frames}"


def global_batch(batch_per_device: int, world_size: int, grad_accum: int) -> int:
    """Samples per optimizer step: every device's micro-batches over the accumulation steps. The
    sampler draws this many per iteration and the linear scaling rule scales the LR by it."""
    return batch_per_device * world_size * grad_accum


@dataclass(frozen=True)
class Schedule:
    """The whole run's curriculum. `lr_crop`, `num_frames`, `batch_per_device` are the
    baseline shape that compute ratios are measured against."""

    stages: tuple[Stage, ...]
    total_iter: int
    kind: str
    lr_crop: int
    num_frames: int
    batch_per_device: int

    def __post_init__(self) -> None:
        # Internal invariants (builder bugs, not user mistakes): contiguous stages covering the run.
        if not self.stages:
            raise ValueError("a schedule needs at least one stage")
        expected_start = 0
        for position, stage in enumerate(self.stages):
            if stage.index != position or stage.start_iter != expected_start or stage.iters <= 0:
                raise ValueError(f"stages are not contiguous at stage {position}: {stage}")
            expected_start = stage.end_iter
        if expected_start != self.total_iter:
            raise ValueError(f"stages cover {expected_start} iterations, total_iter is {self.total_iter}")

    @property
    def boundaries(self) -> list[int]:
        """Start iterations of stages 2..p: where the shape changes and the LR restarts."""
        return [stage.start_iter for stage in self.stages[1:]]

    def stage_at(self, t: int) -> Stage:
        """The stage that iteration t (0-based) belongs to."""
        if not 0 <= t < self.total_iter:
            raise ValueError(f"iteration {t} is outside the run [0, {self.total_iter})")
        position = bisect.bisect_right(self.boundaries, t)
        return self.stages[position]

    def compute_per_iter(self, stage: Stage) -> float:
        """Work of one iteration of `stage` relative to one baseline iteration, taking the cost
        as proportional to batch x crop^2 x frames (true for convolutional VSR networks)."""
        baseline = self.batch_per_device * self.lr_crop ** 2 * self.num_frames
        return stage.batch_per_device * stage.lr_crop ** 2 * stage.num_frames / baseline

    def work_between(self, start: int, stop: int) -> float:
        """Work of iterations [start, stop), in baseline iterations (`compute_per_iter` summed):
        what the time left depends on when the stages ahead cost more or less than those done."""
        return sum(max(0, min(stop, stage.end_iter) - max(start, stage.start_iter)) * self.compute_per_iter(stage)
                   for stage in self.stages)

    def compute_ratio(self) -> float:
        """Baseline work / curriculum work for the same number of iterations: the speedup bound
        from smaller shapes alone (2.18 for the default REDS multigrid)."""
        curriculum = sum(stage.iters * self.compute_per_iter(stage) for stage in self.stages)
        return self.total_iter / curriculum

    def describe(self) -> str:
        """Paper notation for the whole run, e.g. '32&7 / 32&11 / ... / 64&15'."""
        return " / ".join(stage.label for stage in self.stages)


def describe_stage(stage: Stage) -> str:
    """How errors and warnings name a stage (e.g. what did not fit in memory)."""
    return (f"stage {stage.index + 1} (LR crop {stage.lr_crop}, {stage.num_frames} frames, "
            f"{stage.batch_per_device} clips per device)")


# -- builder -----------------------------------------------------------------------------------


def build_schedule(
    kind: str,
    total_iter: int,
    lr_crop: int,
    num_frames: int,
    batch_per_device: int,
    *,
    lr_crops: Sequence[int] | None = None,
    frame_counts: Sequence[int] | None = None,
    stage_iters: Sequence[int] | None = None,
    stage_lrs: Sequence[float | None] | None = None,
    stage_batches: Sequence[int] | None = None,
    crop_multiple: int = 1,
    max_frames: int | None = None,
    max_lr_crop: int | None = None,
    stages: Sequence[Mapping[str, Any]] | None = None,
    key_prefix: str = "train.curriculum",
    baseline_keys: tuple[str, str] | None = None,
) -> Schedule:
    """Build and validate a curriculum. `lr_crop` / `num_frames` / `batch_per_device` are the
    baseline (largest) shape; the optional lists override the paper's defaults (None keeps them; an
    empty list is refused). Every user mistake raises ConfigError naming `{key_prefix}.<option>`,
    or for a shape derived from the baseline, the baseline's option (`baseline_keys`: the options
    the crop and the clip length came from)."""
    _check_kind(kind, key_prefix)
    _check_positive_int(total_iter, "total_iter")
    _check_positive_int(lr_crop, "lr_crop (baseline LR patch size)")
    _check_positive_int(num_frames, "num_frames (baseline clip length)")
    _check_positive_int(batch_per_device, "batch_per_device (baseline batch per device)")
    _check_positive_int(crop_multiple, f"{key_prefix}.crop_multiple")
    if lr_crops is not None:
        lr_crops = _int_list(lr_crops, f"{key_prefix}.lr_crops")
    if frame_counts is not None:
        frame_counts = _int_list(frame_counts, f"{key_prefix}.frame_counts")

    if kind == "custom":
        shapes, iters, lrs, batches = _custom_stages(stages, total_iter, batch_per_device, key_prefix,
                                                     (lr_crops, frame_counts, stage_iters, stage_lrs, stage_batches))
    else:
        if stages is not None:
            raise ConfigError(f"{key_prefix}.stages: only used by type 'custom' (type is '{kind}')")
        shapes = _stage_shapes(kind, lr_crop, num_frames, lr_crops, frame_counts, crop_multiple, key_prefix)
        count = len(shapes)
        iters = _stage_lengths(total_iter, count, stage_iters, key_prefix)
        lrs = _stage_lrs(stage_lrs, count, key_prefix)
        batches = _stage_batches(stage_batches, count, batch_per_device, key_prefix)
    baseline_keys = baseline_keys or (f"the baseline crop {lr_crop}", "the baseline clip length")
    _check_shapes(shapes, *_shape_keys(kind, lr_crops is not None, frame_counts is not None, key_prefix, baseline_keys),
                  crop_multiple, max_lr_crop, max_frames)

    stages = []
    start = 0
    for index, ((crop, frames), length, lr, batch) in enumerate(zip(shapes, iters, lrs, batches)):
        stages.append(Stage(index=index, start_iter=start, iters=length, lr_crop=crop, num_frames=frames,
                            batch_per_device=batch, lr=lr))
        start += length
    return Schedule(stages=tuple(stages), total_iter=total_iter, kind=kind, lr_crop=lr_crop,
                    num_frames=num_frames, batch_per_device=batch_per_device)


STAGE_KEYS = ("lr_crop", "num_frames", "iters", "batch_per_device", "lr")


def _custom_stages(stages: Sequence[Mapping[str, Any]] | None, total_iter: int, batch_per_device: int,
                   key_prefix: str, generated: tuple) -> tuple[list[tuple[int, int]], list[int], list, list[int]]:
    """The explicit stage list of kind 'custom': shapes, lengths, LR overrides and batches."""
    key = f"{key_prefix}.stages"
    names = ("lr_crops", "frame_counts", "stage_iters", "stage_lrs", "stage_batches")
    for name, value in zip(names, generated):
        if value is not None:
            raise ConfigError(f"{key_prefix}.{name}: not used by type 'custom'; give each stage's values in {key}")
    items = _as_list(stages if stages is not None else [], key)
    _check_nonempty(items, key)
    shapes, iters, lrs, batches = [], [], [], []
    for position, stage in enumerate(items):
        where = f"{key}[{position}]"
        if not isinstance(stage, Mapping):
            raise ConfigError(f"{where}: expected a mapping with lr_crop, num_frames and iters, got {stage!r}")
        unknown = [k for k in stage if k not in STAGE_KEYS]
        if unknown:
            close = closest(str(unknown[0]), STAGE_KEYS)
            hint = f"did you mean '{close}'? " if close else ""
            raise ConfigError(f"{where}.{unknown[0]}: unknown stage key ({hint}valid: {', '.join(STAGE_KEYS)})")
        for required in STAGE_KEYS[:3]:
            if stage.get(required) is None:
                raise ConfigError(f"{where}.{required}: missing")
            _check_positive_int(stage[required], f"{where}.{required}")
        shapes.append((stage["lr_crop"], stage["num_frames"]))
        iters.append(stage["iters"])
        batch = stage.get("batch_per_device")
        if batch is not None:
            _check_positive_int(batch, f"{where}.batch_per_device")
        batches.append(batch_per_device if batch is None else batch)
        lr = stage.get("lr")
        if lr is not None and (not is_number(lr) or not lr > 0):
            raise ConfigError(f"{where}.lr: must be a positive number or null (base LR), got {lr!r}")
        lrs.append(None if lr is None else float(lr))
    if sum(iters) != total_iter:
        raise ConfigError(f"{key}: the stages' iters sum to {sum(iters)} but train.total_iter is {total_iter}")
    return shapes, iters, lrs, batches


def default_lr_crops(lr_crop: int) -> list[int]:
    """Paper Sec. 4.1: [max(32, H/2), H], never above H; a single crop when they coincide."""
    return _increasing([min(max(MIN_DEFAULT_LR_CROP, lr_crop // 2), lr_crop), lr_crop])


def default_frame_counts(num_frames: int) -> list[int]:
    """Paper Sec. 4.1: [max(6, T/2), 3T/4, T] rounded down (7/11/15 for T=15), never above T,
    keeping only lengths that grow (so T=8 gives [6, 8] and T<=6 gives [T])."""
    first = min(max(MIN_DEFAULT_FRAMES, num_frames // 2), num_frames)
    return _increasing([first, 3 * num_frames // 4, num_frames])


def spread(low: int, high: int, count: int, multiple: int = 1) -> list[int]:
    """`count` sizes from low to high, evenly spaced and rounded down to `multiple` (the last is
    always `high`): 32..64 in 3 gives 32/48/64, 7..15 in 3 gives 7/11/15."""
    if count == 1:
        return [high]
    values = []
    for i in range(count):
        exact = low + (high - low) * i // (count - 1)
        values.append(max(low, exact // multiple * multiple) if i < count - 1 else high)
    return values


def _increasing(values: list[int]) -> list[int]:
    kept: list[int] = []
    for value in values:
        if not kept or value > kept[-1]:
            kept.append(value)
    return kept


def _stage_shapes(kind: str, lr_crop: int, num_frames: int, lr_crops: list[int] | None,
                  frame_counts: list[int] | None, crop_multiple: int, key_prefix: str) -> list[tuple[int, int]]:
    if kind in ("temporal", "none") and lr_crops is not None:
        raise ConfigError(f"{key_prefix}.lr_crops: not used by type '{kind}' (crop stays {lr_crop}); "
                          "remove it or pick type 'spatial', 'synchronous' or 'multigrid'")
    if kind in ("spatial", "none") and frame_counts is not None:
        raise ConfigError(f"{key_prefix}.frame_counts: not used by type '{kind}' (clip length stays "
                          f"{num_frames}); remove it or pick type 'temporal', 'synchronous' or 'multigrid'")
    if kind == "none":
        return [(lr_crop, num_frames)]
    crops = lr_crops if lr_crops is not None else default_lr_crops(lr_crop)
    frames = frame_counts if frame_counts is not None else default_frame_counts(num_frames)
    _check_nonempty(crops, f"{key_prefix}.lr_crops")
    _check_nonempty(frames, f"{key_prefix}.frame_counts")
    if kind == "spatial":
        return [(crop, num_frames) for crop in crops]
    if kind == "temporal":
        return [(lr_crop, length) for length in frames]
    if kind == "multigrid":
        return [(crop, length) for crop in crops for length in frames]
    # synchronous: both change together, so the two lists pair up one to one; a list that was
    # not given is spread evenly over its range with as many entries as the given one.
    if lr_crops is not None and frame_counts is not None:
        if len(lr_crops) != len(frame_counts):
            raise ConfigError(f"{key_prefix}.frame_counts: has {len(frame_counts)} entries but "
                              f"{key_prefix}.lr_crops has {len(lr_crops)}; synchronous stages pair them one to one")
    elif lr_crops is not None:
        frames = spread(default_frame_counts(num_frames)[0], num_frames, len(lr_crops))
    else:
        crops = spread(default_lr_crops(lr_crop)[0], lr_crop, len(frames), crop_multiple)
    return list(zip(crops, frames))


def _shape_keys(kind: str, crops_given: bool, frames_given: bool, key_prefix: str,
                baseline_keys: tuple[str, str]) -> tuple[Callable[[int], str], Callable[[int], str]]:
    """The option a user wrote for stage i's crop and clip length: the curriculum's list when it was
    given (or the custom stage), else the baseline option the list was derived from."""
    if kind == "custom":
        return lambda i: f"{key_prefix}.stages[{i}].lr_crop", lambda i: f"{key_prefix}.stages[{i}].num_frames"

    def derived(given: bool, own: str, baseline: str, varies: bool) -> Callable[[int], str]:
        if given:
            return lambda i: own
        return (lambda i: f"{own} (derived from {baseline})") if varies else (lambda i: baseline)

    return (derived(crops_given, f"{key_prefix}.lr_crops", baseline_keys[0], kind in ("spatial", "multigrid", "synchronous")),
            derived(frames_given, f"{key_prefix}.frame_counts", baseline_keys[1],
                    kind in ("temporal", "multigrid", "synchronous")))


def _check_shapes(shapes: list[tuple[int, int]], crop_key_of: Callable[[int], str], frames_key_of: Callable[[int], str],
                  crop_multiple: int, max_lr_crop: int | None, max_frames: int | None) -> None:
    for i, (crop, frames) in enumerate(shapes):
        crop_key, frames_key = crop_key_of(i), frames_key_of(i)
        if crop <= 0:
            raise ConfigError(f"{crop_key}: crop sizes must be positive, got {crop}")
        if frames <= 0:
            raise ConfigError(f"{frames_key}: clip lengths must be positive, got {frames}")
        if crop % crop_multiple:
            raise ConfigError(f"{crop_key}: crop {crop} is not a multiple of {crop_multiple}, "
                              "which the network needs")
        if max_lr_crop is not None and crop > max_lr_crop:
            raise ConfigError(f"{crop_key}: crop {crop} is larger than the LR frames allow ({max_lr_crop})")
        if max_frames is not None and frames > max_frames:
            raise ConfigError(f"{frames_key}: clip length {frames} is longer than the clips in the "
                              f"dataset allow ({max_frames})")


def _stage_lengths(total_iter: int, count: int, stage_iters: Sequence[int] | None, key_prefix: str) -> list[int]:
    if stage_iters is None:
        if total_iter < count:
            raise ConfigError(f"{key_prefix}: total_iter={total_iter} is shorter than the {count} "
                              "curriculum stages (each needs at least one iteration)")
        base, remainder = divmod(total_iter, count)
        return [base + (1 if index >= count - remainder else 0) for index in range(count)]
    key = f"{key_prefix}.stage_iters"
    lengths = _int_list(stage_iters, key)
    _check_count(lengths, count, key)
    if any(length <= 0 for length in lengths):
        raise ConfigError(f"{key}: every stage needs a positive number of iterations, got {lengths}")
    if sum(lengths) != total_iter:
        raise ConfigError(f"{key}: sums to {sum(lengths)} but total_iter is {total_iter}")
    return lengths


def _stage_lrs(stage_lrs: Sequence[float | None] | None, count: int, key_prefix: str) -> list[float | None]:
    if stage_lrs is None:
        return [None] * count
    key = f"{key_prefix}.stage_lrs"
    lrs = _as_list(stage_lrs, key)
    _check_count(lrs, count, key)
    for lr in lrs:
        if lr is None:
            continue
        if not is_number(lr) or not lr > 0:
            raise ConfigError(f"{key}: entries must be positive numbers or null (base LR), got {lr!r}")
    return [None if lr is None else float(lr) for lr in lrs]


def _stage_batches(stage_batches: Sequence[int] | None, count: int, batch_per_device: int,
                   key_prefix: str) -> list[int]:
    if stage_batches is None:
        return [batch_per_device] * count
    key = f"{key_prefix}.stage_batches"
    batches = _int_list(stage_batches, key)
    _check_count(batches, count, key)
    if any(batch <= 0 for batch in batches):
        raise ConfigError(f"{key}: batch sizes must be positive, got {batches}")
    return batches


# -- small validators --------------------------------------------------------------------------


def _check_kind(kind: str, key_prefix: str) -> None:
    if kind in KINDS:
        return
    close = closest(str(kind), KINDS)
    hint = f"; did you mean '{close}'?" if close else ""
    raise ConfigError(f"{key_prefix}.type: unknown curriculum '{kind}'{hint} (choose from {', '.join(KINDS)})")


def _check_positive_int(value: object, name: str) -> None:
    if not is_int(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def _as_list(values: object, key: str) -> list:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ConfigError(f"{key}: expected a list, got {values!r}")
    return list(values)


def _int_list(values: object, key: str) -> list[int]:
    items = _as_list(values, key)
    for item in items:
        if not is_int(item):
            raise ConfigError(f"{key}: entries must be integers, got {item!r}")
    return items


def _check_nonempty(values: list, key: str) -> None:
    if not values:
        raise ConfigError(f"{key}: the cycle is empty; give at least one size or leave it out for the default")


def _check_count(values: list, count: int, key: str) -> None:
    if len(values) != count:
        raise ConfigError(f"{key}: has {len(values)} entries but the curriculum has {count} stages")
