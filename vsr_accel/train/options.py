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

from vsr_accel.core.config import apply_overrides, from_dict, read_yaml, unknown_key_message
from vsr_accel.core.checks import is_int
from vsr_accel.core.errors import ConfigError
from vsr_accel.schedule.lr.schedule import check_lr_options

LOADER_KEYS = ("name", "type", "num_worker_per_gpu", "batch_size_per_gpu", "gt_size", "num_frame",
               "use_shuffle", "dataset_enlarge_ratio", "prefetch_mode", "pin_memory", "persistent_workers")
"""Keys of `datasets.<phase>` that configure loading and the curriculum, not the dataset class."""

RUN_ONLY_SECTIONS = ("name", "logger", "path", "val", "num_gpu", "dist_params", "is_train")
"""Top-level sections that do not change results: left out of `Options.results_hash`, and not
reported as changes when a resume compares options."""

GEOMETRY_KEYS = ("train.grad_accum",)
"""Left out of the hash too: with the number of processes it makes the global batch, which a
resume compares as a whole (`vsr_accel.train.run_state`), so 8 GPUs x 1 may continue as 4 x 2."""

MONITORING_KEYS = ("train.health",)
"""Left out of the hash as well: what the trainer watches and reports changes no result (a run
stopped by `train.health.on_failure: stop` ends; it does not train differently)."""

MAX_SEED = 2**32 - 1
"""`manual_seed` seeds Python, numpy (0 .. 2**32 - 1, as in BasicSR) and torch (`seed + rank`, at
most 2**64 - 1); a larger seed would end in torch's 'Overflow when unpacking long long'."""


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
    See `vsr_accel.schedule.lr.schedule`."""
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
class StageOptions:
    """One stage of a `custom` curriculum."""
    lr_crop: int
    num_frames: int
    iters: int
    batch_per_device: int | None = None
    lr: float | None = None


@dataclass(frozen=True)
class CurriculumOptions:
    """See `vsr_accel.schedule.curriculum.build_schedule`. A list left out (or `~`) means the paper's
    defaults; an empty list is refused. `stages` is the explicit list of type `custom`."""
    type: str = "none"
    lr_crops: tuple[int, ...] | None = None
    frame_counts: tuple[int, ...] | None = None
    stage_iters: tuple[int, ...] | None = None
    stage_lrs: tuple[float | None, ...] | None = None
    stage_batches: tuple[int, ...] | None = None
    stages: tuple[StageOptions, ...] | None = None


@dataclass(frozen=True)
class HealthOptions:
    """`train.health`: the flow and propagation guard of recurrent models with a flow network
    (vsr_accel.train.health). At every log interval the trainer measures the mean and max |flow| on
    the batch; a mean beyond the LR crop for `flow_patience` intervals in a row is reported as `flow
    diverged`. At every validation it restores the first `probe_frames` frames of the first
    validation clip whole and frame by frame; a largest difference below `min_propagation` is
    reported as `propagation dead`. `on_failure`: warn (a log line) or stop (exit with an error)."""
    check: bool = True
    on_failure: str = "warn"
    flow_patience: int = 2
    probe_frames: int = 3
    min_propagation: float = 1e-4


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
    tsa_iter: int | None = None  # BasicSR's EDVRModel: only the TSA fusion trains for the first tsa_iter iterations
    dcn_lr_mul: float = 1.0  # BasicSR's EDVRModel: LR multiplier of the deformable convolutions
    ema_decay: float = 0.0
    grad_clip: float | None = None
    # speed switches (measured defaults; see benchmarks/)
    channels_last: bool | None = None  # None: on for CPUs with AVX-512 (measured faster), off elsewhere
    amp: str = "auto"  # auto | none | bf16 | fp16; auto: bf16 on CPUs with native bf16 (measured), else none
    compile: bool = False
    checkpoint_propagation: bool = False
    nan_check_freq: int = 50
    health: HealthOptions = field(default_factory=HealthOptions)


METRIC_TYPES = {"calculate_psnr": "psnr", "calculate_ssim": "ssim"}
"""BasicSR's metric `type`s -> the score `vsr_accel.eval.evaluation` computes."""


@dataclass(frozen=True)
class MetricOptions:
    """One entry of `val.metrics` (BasicSR's layout: `psnr: {type: calculate_psnr, ...}`)."""
    type: str
    crop_border: int = 0
    test_y_channel: bool = False
    better: str = "higher"  # which way is best, for the best-score record in the log (BasicSR's)


@dataclass(frozen=True)
class WandbOptions:
    """BasicSR's `logger.wandb`: logging to Weights & Biases when `project` is set."""
    project: str | None = None
    resume_id: str | None = None


@dataclass(frozen=True)
class ValOptions:
    val_freq: int = 5000
    save_img: bool = False
    metrics: dict[str, MetricOptions] = field(default_factory=dict)
    max_clips: int | None = None
    center_frame_only: bool = False  # BasicSR's Vimeo-90K-T protocol: score output frame T//2 only
    flip_seq: bool = False  # BasicSR's: average the outputs of the clip and of its reverse (one pass)


@dataclass(frozen=True)
class LoggerOptions:
    print_freq: int = 100
    save_checkpoint_freq: int = 5000
    use_tb_logger: bool = True
    keep_last: int = 3
    wandb: WandbOptions = field(default_factory=WandbOptions)


@dataclass(frozen=True)
class PathOptions:
    experiments_root: str = "experiments"
    pretrain_network_g: str | None = None
    param_key_g: str | None = "params"  # ~: the first of params_ema, params, state_dict (MMagic) in the file
    strict_load_g: bool = True
    resume_state: str | None = None


@dataclass(frozen=True)
class DistOptions:
    """BasicSR's `dist_params`. torchrun's environment decides the launch; `backend` is used where
    it can run (nccl needs CUDA: gloo on CPU, with a note), and `port`, BasicSR's Slurm port, is
    compared with torchrun's --master_port (a note when they differ)."""
    backend: str | None = None  # ~: nccl on CUDA, gloo on CPU
    port: int | None = None


@dataclass(frozen=True)
class Options:
    name: str
    scale: int
    network_g: dict
    datasets: dict
    train: TrainOptions
    model_type: str | None = None  # BasicSR's training-loop name; checked against the network (models.check_model_type)
    num_gpu: int | str = "auto"  # auto, or the number of processes (one per GPU); 0: CPU, as in BasicSR
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
        for path in (*GEOMETRY_KEYS, *MONITORING_KEYS):
            section, name = path.split(".")
            data[section].pop(name, None)
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def check_run_name(name: Any, src: str) -> None:
    """`name` is the run folder inside `path.experiments_root`, which a fresh run moves aside when
    it holds an earlier run: so it must be one plain folder name there. Empty, `.`, `..` or a name
    with a separator would make the run folder the root itself, its parent or a folder elsewhere,
    and move that aside."""
    plain = isinstance(name, str) and name.strip() == name and name not in ("", ".", "..") \
        and not any(c in name for c in "/\\\0")
    if not plain:
        raise ConfigError(f"{src}: 'name' must be one plain folder name inside path.experiments_root (not empty, "
                          f"not '.' or '..', no '/' or '\\', no spaces around it), got {name!r}")


def _check_values(opt: Options) -> None:
    src, tr = opt.source, opt.train
    check_run_name(opt.name, src)
    positive = {"scale": opt.scale, "train.total_iter": tr.total_iter, "train.grad_accum": tr.grad_accum,
                "logger.print_freq": opt.logger.print_freq,
                "logger.save_checkpoint_freq": opt.logger.save_checkpoint_freq,
                "train.nan_check_freq": tr.nan_check_freq}
    if opt.val is not None:
        positive["val.val_freq"] = opt.val.val_freq
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{src}: '{key}' must be positive, got {value}")
    if not 0 <= opt.manual_seed <= MAX_SEED:
        raise ConfigError(f"{src}: 'manual_seed' must be an integer from 0 to {MAX_SEED} (2**32 - 1, the range "
                          f"BasicSR's numpy seeding takes), got {opt.manual_seed}")
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
    if tr.health.on_failure not in ("warn", "stop"):
        raise ConfigError(f"{src}: 'train.health.on_failure' = {tr.health.on_failure!r} is not one of warn, stop")
    if tr.health.flow_patience < 1:
        raise ConfigError(f"{src}: 'train.health.flow_patience' must be positive, got {tr.health.flow_patience}")
    if tr.health.min_propagation < 0:
        raise ConfigError(f"{src}: 'train.health.min_propagation' must be >= 0, got {tr.health.min_propagation}")
    if tr.health.probe_frames < 2:
        raise ConfigError(f"{src}: 'train.health.probe_frames' must be >= 2 (a propagation needs two frames), "
                          f"got {tr.health.probe_frames}")
    if not 0.0 <= tr.ema_decay < 1.0:
        raise ConfigError(f"{src}: 'train.ema_decay' must be in [0, 1), got {tr.ema_decay}")
    for key, value in (("train.flow_lr_mul", tr.flow_lr_mul), ("train.dcn_lr_mul", tr.dcn_lr_mul)):
        if value < 0:
            raise ConfigError(f"{src}: '{key}' must be >= 0, got {value}")
    for key, value in (("train.fix_flow", tr.fix_flow), ("train.tsa_iter", tr.tsa_iter)):
        if value is not None and value < 0:
            raise ConfigError(f"{src}: '{key}' must be >= 0 (or ~ for none), got {value}")
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
            if not is_int(value) or value <= 0:
                raise ConfigError(f"{src}: 'datasets.train.{key}' must be a positive integer, got {value!r}")
        if train["gt_size"] % opt.scale:
            raise ConfigError(f"{src}: 'datasets.train.gt_size' ({train['gt_size']}) must be a multiple of "
                              f"'scale' ({opt.scale})")
        workers = train.get("num_worker_per_gpu", 0)
        if not isinstance(workers, int) or workers < 0:
            raise ConfigError(f"{src}: 'datasets.train.num_worker_per_gpu' must be an integer >= 0, got {workers!r}")
        _check_loader_keys(train, src)
    for phase, section in opt.datasets.items():
        if phase != "train":
            unused = [k for k in LOADER_KEYS if k in section and k not in ("name", "type")]
            if unused:
                raise ConfigError(f"{src}: 'datasets.{phase}.{unused[0]}' is not used: validation and test clips are "
                                  f"restored one whole clip at a time in the training process; remove it")
    if opt.val is not None:
        _check_metrics(opt.val, src)


def _check_loader_keys(train: dict[str, Any], src: str) -> None:
    """BasicSR's loader keys, each meaning what it means there (see MultigridBatchSampler)."""
    ratio = train.get("dataset_enlarge_ratio", 1)
    if not is_int(ratio) or ratio <= 0:
        raise ConfigError(f"{src}: 'datasets.train.dataset_enlarge_ratio' must be a positive integer, got {ratio!r}")
    shuffle = train.get("use_shuffle", True)
    if not isinstance(shuffle, bool):
        raise ConfigError(f"{src}: 'datasets.train.use_shuffle' must be true or false, got {shuffle!r}")
    mode = train.get("prefetch_mode")
    if mode not in (None, "cuda"):
        raise ConfigError(f"{src}: 'datasets.train.prefetch_mode' = {mode!r}: vsr-accel always prefetches (DataLoader "
                          f"workers on the CPU, one batch ahead on a side stream on CUDA); use ~ or cuda")
    for key in ("pin_memory", "persistent_workers"):
        if key in train and not isinstance(train[key], bool):
            raise ConfigError(f"{src}: 'datasets.train.{key}' must be true or false, got {train[key]!r}")


def _check_metrics(val: ValOptions, src: str) -> None:
    """BasicSR's `val.metrics`: calculate_psnr / calculate_ssim, scored with one protocol."""
    protocols = set()
    for name, metric in val.metrics.items():
        if metric.type not in METRIC_TYPES:
            raise ConfigError(f"{src}: 'val.metrics.{name}.type' = {metric.type!r} is not one of "
                              f"{', '.join(METRIC_TYPES)}")
        if metric.better not in ("higher", "lower"):
            raise ConfigError(f"{src}: 'val.metrics.{name}.better' must be higher or lower, got {metric.better!r}")
        protocols.add((metric.crop_border, metric.test_y_channel))
    if len(protocols) > 1:
        raise ConfigError(f"{src}: 'val.metrics' score with different crop_border / test_y_channel; every metric of "
                          f"a validation uses one protocol here, so give them the same values")


def load_options(path: str | Path, overrides: Sequence[str] = ()) -> Options:
    """Read, override (`--set a.b=c`), type-check and value-check an options file."""
    source = str(path)
    data = apply_overrides(read_yaml(path), overrides)
    if isinstance(data.get("datasets"), dict):  # `datasets.val: ~` (or --set datasets.val=null): no such phase
        data["datasets"] = {phase: section for phase, section in data["datasets"].items() if section is not None}
    opt = from_dict(Options, data, source)
    opt = dataclasses.replace(opt, source=source)
    _check_values(opt)
    return opt
