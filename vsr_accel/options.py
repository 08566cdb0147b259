"""The training options schema: BasicSR's YAML layout, typed and validated.

The layout is BasicSR's (`name`, `scale`, `datasets.train/val`, `network_g`, `path`, `train`,
`val`, `logger`) so existing option files need few edits. vsr-accel's additions live under
`train` (`curriculum`, `base_batch`, `grad_accum`, `warmup`, ...). The network and dataset
sections are passed through as dicts: their builders validate them against the constructors.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vsr_accel.config import apply_overrides, from_dict, read_yaml, unknown_key_message
from vsr_accel.errors import ConfigError
from vsr_accel.lr.schedule import check_lr_options

LOADER_KEYS = ("name", "type", "num_worker_per_gpu", "batch_size_per_gpu", "gt_size", "num_frame",
               "use_shuffle", "dataset_enlarge_ratio", "prefetch_mode", "pin_memory", "persistent_workers")
"""Keys of `datasets.<phase>` that configure loading and the curriculum, not the dataset class."""

RUN_ONLY_SECTIONS = ("name", "logger", "path", "val", "num_gpu", "dist_params", "is_train")
"""Top-level sections that do not change results: left out of `Options.results_hash`, and not
reported as changes when a resume compares options."""


@dataclass(frozen=True)
class OptimizerOptions:
    type: str = "Adam"
    lr: float = 2e-4
    weight_decay: float = 0.0
    betas: tuple[float, ...] = (0.9, 0.99)
    eps: float = 1e-8
    foreach: bool | None = None
    fused: bool | None = None


@dataclass(frozen=True)
class SchedulerOptions:
    """`MultigridCosineLR` (restarts at every curriculum stage, the paper's Eq. 1) or BasicSR's
    `CosineAnnealingRestartLR` (`periods`, `restart_weights`; default one period over the run).
    See `vsr_accel.lr.schedule`."""
    type: str = "MultigridCosineLR"
    eta_min: float = 1e-7
    periods: tuple[int, ...] | None = None
    restart_weights: tuple[float, ...] | None = None


@dataclass(frozen=True)
class LossOptions:
    type: str = "CharbonnierLoss"
    loss_weight: float = 1.0
    reduction: str = "mean"
    eps: float = 1e-12


@dataclass(frozen=True)
class CurriculumOptions:
    """See `vsr_accel.curriculum.build_schedule`. Empty lists mean the paper's defaults."""
    type: str = "none"
    lr_crops: tuple[int, ...] | None = None
    frame_counts: tuple[int, ...] | None = None
    stage_iters: tuple[int, ...] | None = None
    stage_lrs: tuple[float | None, ...] | None = None
    stage_batches: tuple[int, ...] | None = None


@dataclass(frozen=True)
class TrainOptions:
    total_iter: int
    optim_g: OptimizerOptions = field(default_factory=OptimizerOptions)
    scheduler: SchedulerOptions = field(default_factory=SchedulerOptions)
    pixel_opt: LossOptions = field(default_factory=LossOptions)
    warmup_iter: int = -1
    warmup: str = "linear"
    warmup_factor: float = 0.1
    curriculum: CurriculumOptions = field(default_factory=CurriculumOptions)
    base_batch: int | None = None
    grad_accum: int = 1
    fix_flow: int | None = None
    flow_lr_mul: float = 1.0
    ema_decay: float = 0.0
    grad_clip: float | None = None
    # speed switches (measured defaults; see benchmarks/)
    channels_last: bool | None = None  # None: on for CPU (measured faster), off on CUDA (not measured)
    amp: str = "auto"  # auto | none | bf16 | fp16; auto: bf16 on CPUs with native bf16 (measured), else none
    compile: bool = False
    checkpoint_propagation: bool = False
    nan_check_freq: int = 50


@dataclass(frozen=True)
class MetricOptions:
    type: str
    crop_border: int = 0
    test_y_channel: bool = False
    better: str = "higher"


@dataclass(frozen=True)
class ValOptions:
    val_freq: int = 5000
    save_img: bool = False
    metrics: dict = field(default_factory=dict)
    max_clips: int | None = None
    center_frame_only: bool = False


@dataclass(frozen=True)
class LoggerOptions:
    print_freq: int = 100
    save_checkpoint_freq: int = 5000
    use_tb_logger: bool = True
    keep_last: int = 3
    wandb: Any = None


@dataclass(frozen=True)
class PathOptions:
    experiments_root: str = "experiments"
    pretrain_network_g: str | None = None
    param_key_g: str = "params"
    strict_load_g: bool = True
    resume_state: str | None = None


@dataclass(frozen=True)
class DistOptions:
    """Accepted for BasicSR compatibility; torchrun's environment decides the launch."""
    backend: str = "nccl"
    port: int = 29500


@dataclass(frozen=True)
class Options:
    name: str
    scale: int
    network_g: dict
    datasets: dict
    train: TrainOptions
    model_type: str = "VideoRecurrentModel"
    num_gpu: int | str = "auto"
    manual_seed: int = 0
    deterministic: bool = False
    is_train: bool = True
    # DDP: SpyNet skips its coarsest pyramid levels on crops below 33 px, so some parameters get no
    # gradient in the curriculum's small stages (BasicSR's BasicVSR options set this too).
    find_unused_parameters: bool = True
    dist_params: DistOptions = field(default_factory=DistOptions)
    path: PathOptions = field(default_factory=PathOptions)
    val: ValOptions | None = None
    logger: LoggerOptions = field(default_factory=LoggerOptions)
    source: str = ""  # the file these options came from (not an option key)

    # -- derived views ---------------------------------------------------------------------
    def dataset_section(self, phase: str) -> dict[str, Any]:
        section = self.datasets.get(phase)
        if not isinstance(section, dict):
            raise ConfigError(f"{self.source}: 'datasets.{phase}' is missing or not a mapping")
        return section

    def dataset_kwargs(self, phase: str) -> dict[str, Any]:
        """The dataset constructor's arguments: the section minus loader/curriculum keys."""
        section = self.dataset_section(phase)
        kwargs = {k: v for k, v in section.items() if k not in LOADER_KEYS or k == "type"}
        kwargs.setdefault("scale", self.scale)
        return kwargs

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("source")
        return data

    def results_hash(self) -> str:
        """Hash of what changes results (everything but logging, paths and the run name), stored
        in checkpoints so a resume with different options is caught."""
        data = self.to_dict()
        for key in RUN_ONLY_SECTIONS:
            data.pop(key, None)
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _check_values(opt: Options) -> None:
    src, tr = opt.source, opt.train
    positive = {"scale": opt.scale, "train.total_iter": tr.total_iter, "train.grad_accum": tr.grad_accum,
                "logger.print_freq": opt.logger.print_freq,
                "logger.save_checkpoint_freq": opt.logger.save_checkpoint_freq,
                "train.nan_check_freq": tr.nan_check_freq}
    if opt.val is not None:
        positive["val.val_freq"] = opt.val.val_freq
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{src}: '{key}' must be positive, got {value}")
    choices = {"train.amp": (tr.amp, ("auto", "none", "bf16", "fp16")),
               "train.optim_g.type": (tr.optim_g.type, ("Adam", "AdamW")),
               "train.pixel_opt.type": (tr.pixel_opt.type, ("CharbonnierLoss", "L1Loss", "MSELoss")),
               "train.pixel_opt.reduction": (tr.pixel_opt.reduction, ("mean", "sum"))}
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{src}: '{key}' = {value!r} is not one of {', '.join(allowed)}")
    check_lr_options(base_lr=tr.optim_g.lr, base_batch=tr.base_batch, eta_min=tr.scheduler.eta_min,
                     warmup=tr.warmup, warmup_iter=tr.warmup_iter, warmup_factor=tr.warmup_factor,
                     total_iter=tr.total_iter, scheduler=tr.scheduler.type, periods=tr.scheduler.periods,
                     restart_weights=tr.scheduler.restart_weights, where=f"{src}: ")
    if not 0.0 <= tr.ema_decay < 1.0:
        raise ConfigError(f"{src}: 'train.ema_decay' must be in [0, 1), got {tr.ema_decay}")
    if tr.flow_lr_mul < 0:
        raise ConfigError(f"{src}: 'train.flow_lr_mul' must be >= 0, got {tr.flow_lr_mul}")
    if not isinstance(opt.network_g.get("type"), str):
        raise ConfigError(f"{src}: 'network_g.type' is missing (e.g. BasicVSR, BasicVSRM, EDVRM)")
    for phase, section in opt.datasets.items():
        if phase not in ("train", "val", "test") and not phase.startswith(("val_", "test_")):
            raise ConfigError(unknown_key_message(src, f"datasets.{phase}", ("train", "val", "test")))
        if not isinstance(section, dict) or not isinstance(section.get("type"), str):
            raise ConfigError(f"{src}: 'datasets.{phase}.type' is missing")
    train = opt.datasets.get("train")
    if opt.is_train and train is None:
        raise ConfigError(f"{src}: 'datasets.train' is missing")
    if train is not None:
        for key in ("gt_size", "num_frame", "batch_size_per_gpu"):
            value = train.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{src}: 'datasets.train.{key}' must be a positive integer, got {value!r}")
        if train["gt_size"] % opt.scale:
            raise ConfigError(f"{src}: 'datasets.train.gt_size' ({train['gt_size']}) must be a multiple of "
                              f"'scale' ({opt.scale})")
        workers = train.get("num_worker_per_gpu", 0)
        if not isinstance(workers, int) or workers < 0:
            raise ConfigError(f"{src}: 'datasets.train.num_worker_per_gpu' must be an integer >= 0, got {workers!r}")


def load_options(path: str | Path, overrides: Sequence[str] = ()) -> Options:
    """Read, override (`--set a.b=c`), type-check and value-check an options file."""
    source = str(path)
    data = apply_overrides(read_yaml(path), overrides)
    opt = from_dict(Options, data, source)
    opt = dataclasses.replace(opt, source=source)
    _check_values(opt)
    return opt
