"""Options -> the trainer's components: the one translation that `train.py`, `experiments/`,
`benchmarks/` and `scripts/` share, so that `--plan`, the ablation runner, the benchmarks and the
trainer can never disagree about what an options file means.

Components take explicit arguments; this module reads the options and passes them on
(torchtune's recipe/builder split). The network itself is `models.load_network`'s (the core may
not import `models`), so callers pass what only `models` knows: the network's crop multiple and
whether it is recurrent. Once the data is open they also pass its longest clip and smallest LR
frame, so that a curriculum the data cannot feed is refused at start-up instead of failing inside
a DataLoader worker.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch

from vsr_accel.core.distributed import DistContext
from vsr_accel.core.rng import loader_generator
from vsr_accel.schedule.curriculum import Schedule, build_schedule
from vsr_accel.schedule.lr import LRSchedule
from vsr_accel.schedule.plan import plan_dict
from vsr_accel.schedule.sampler import MultigridBatchSampler
from vsr_accel.train.ema import EMA
from vsr_accel.train.guards import ignore_stop_signals
from vsr_accel.train.losses import build_pixel_loss
from vsr_accel.train.options import Options, TrainOptions
from vsr_accel.train.speed import SpeedSettings, apply_layout, enable_activation_checkpointing, resolve_speed
from vsr_accel.train.step import TrainStep, build_optimizer


# -- the schedule ------------------------------------------------------------------------------
def build_curriculum(opt: Options, *, crop_multiple: int, max_frames: int | None = None,
                     min_lr_size: tuple[int, int] | None = None) -> Schedule:
    section = opt.dataset_section("train")
    cur = opt.train.curriculum
    return build_schedule(
        cur.type, total_iter=opt.train.total_iter, lr_crop=section["gt_size"] // opt.scale,
        num_frames=section["num_frame"], batch_per_device=section["batch_size_per_gpu"],
        lr_crops=cur.lr_crops, frame_counts=cur.frame_counts, stage_iters=cur.stage_iters,
        stage_lrs=cur.stage_lrs, stage_batches=cur.stage_batches, crop_multiple=crop_multiple,
        max_frames=max_frames, max_lr_crop=min(min_lr_size) if min_lr_size else None,
        stages=None if cur.stages is None else [dataclasses.asdict(s) for s in cur.stages],
        key_prefix="train.curriculum",
        baseline_keys=(f"datasets.train.gt_size {section['gt_size']} (LR crop {section['gt_size'] // opt.scale})",
                       f"datasets.train.num_frame {section['num_frame']}"))


def build_lr_schedule(opt: Options, schedule: Schedule, world_size: int) -> LRSchedule:
    tr = opt.train
    return LRSchedule(schedule, base_lr=tr.optim_g.lr, base_batch=tr.base_batch, world_size=world_size,
                      grad_accum=tr.grad_accum, eta_min=tr.scheduler.eta_min,
                      warmup_iter=tr.warmup_iter, warmup=tr.warmup,
                      warmup_factor=tr.warmup_factor, scheduler=tr.scheduler.type, periods=tr.scheduler.periods,
                      restart_weights=tr.scheduler.restart_weights)


def build_plan(opt: Options, *, world_size: int, crop_multiple: int, world_size_given: bool = True,
               network: torch.nn.Module | None = None, sec_per_iter: float | None = None) -> dict[str, Any]:
    """What `train.py --plan` prints: every stage's shape, batch, LRs and relative cost; with
    `network` (built on the meta device: no memory, no weights) its parameters and forward FLOPs
    per training sample of each stage; with `sec_per_iter` (measured seconds of one iteration at
    the baseline shape) each stage's and the run's time. Without `world_size_given`, a note that
    the LRs are those of `world_size` devices and how many the recipe's LR was tuned for."""
    schedule = build_curriculum(opt, crop_multiple=crop_multiple)
    plan = plan_dict(schedule, build_lr_schedule(opt, schedule, world_size), scale=opt.scale,
                     world_size=world_size, grad_accum=opt.train.grad_accum)
    if network is not None:
        plan["parameters"] = sum(p.numel() for p in network.parameters())
        flops: dict[tuple[int, int], float] = {}
        for stage in plan["stages"]:
            shape = (stage["frames"], stage["lr_crop"])
            if shape not in flops:
                flops[shape] = forward_flops(network, *shape)
            stage["gflops_per_sample"] = flops[shape] / 1e9
    if sec_per_iter is not None:
        for stage in plan["stages"]:
            stage["est_seconds"] = stage["iters"] * stage["relative_compute"] * sec_per_iter
        plan["est_seconds"] = sum(stage["est_seconds"] for stage in plan["stages"])
        plan["sec_per_iter"] = sec_per_iter
    if not world_size_given:
        plan["devices_note"] = devices_note(opt, world_size)
    return plan


def forward_flops(network: torch.nn.Module, frames: int, lr_crop: int) -> float:
    """FLOPs of one forward pass over one training clip (`frames` LR frames of lr_crop^2; a
    multiply-add counts 2), counted by torch's FlopCounterMode; on the meta device this costs
    no compute. A training step is about 3x this (forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next(network.parameters()).device
    clip = torch.empty(1, frames, 3, lr_crop, lr_crop, device=device)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        network(clip)
    return float(counter.get_total_flops())


def devices_note(opt: Options, world_size: int) -> str:
    """Why `--plan` without `--world-size` may show a small LR: each LR is scaled linearly with
    the global batch, which counts the devices; say so, with what the recipe's LR is tuned for."""
    per_device = opt.dataset_section("train")["batch_size_per_gpu"] * opt.train.grad_accum
    planned = (f"planned for {world_size} device(s) because --world-size was not given "
               f"(global batch {per_device * world_size})")
    devices = "" if opt.num_gpu == "auto" else f"; the recipe's num_gpu is {opt.num_gpu}"
    if opt.train.base_batch is None:
        return f"{planned}; train.base_batch is not set, so the LRs are optim_g.lr on any number of devices{devices}"
    return (f"{planned}: every LR is optim_g.lr {opt.train.optim_g.lr:g} x {per_device * world_size}/"
            f"{opt.train.base_batch} (linear scaling from train.base_batch, the global batch that LR is tuned for); "
            f"on N devices it is x {per_device}N/{opt.train.base_batch}: pass --world-size N to plan for them{devices}")


# -- the model and the step ----------------------------------------------------------------------
def speed_settings(train: TrainOptions, device: torch.device) -> SpeedSettings:
    """`train.amp` and `train.channels_last`, resolved for this device (`auto` / `~` pick the
    measured defaults, `vsr_accel.train.speed.resolve_speed`)."""
    return resolve_speed(train.amp, train.channels_last, device)


def prepare_model(model: torch.nn.Module, train: TrainOptions, speed: SpeedSettings, *, network: str = "",
                  source: str = "") -> torch.nn.Module:
    """The network as the step trains it: in the speed settings' memory layout, with activation
    checkpointing when `train.checkpoint_propagation` asks for it (`network`, `source`: for the
    message when the network has none)."""
    model = apply_layout(model, speed)
    if train.checkpoint_propagation:
        enable_activation_checkpointing(model, network or type(model).__name__, source)
    return model


def build_step(train: TrainOptions, model: torch.nn.Module, speed: SpeedSettings, *, recurrent: bool) -> TrainStep:
    """The training step `train.py` runs and every benchmark times: BasicSR's optimizer groups,
    the pixel loss, precision, accumulation, clipping and EMA from `train.*`. `recurrent` is
    `models.is_recurrent(model)` (sliding-window networks are trained on the centre GT frame)."""
    o = train.optim_g
    optimizer = build_optimizer(model, type=o.type, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay,
                                flow_lr_mul=train.flow_lr_mul, dcn_lr_mul=train.dcn_lr_mul, fused=o.fused,
                                foreach=o.foreach)
    return TrainStep(model, optimizer, build_pixel_loss(**dataclasses.asdict(train.pixel_opt)),
                     amp_dtype=speed.amp_dtype, channels_last=speed.channels_last, grad_accum=train.grad_accum,
                     grad_clip=train.grad_clip, ema=EMA(model, train.ema_decay) if train.ema_decay > 0 else None,
                     recurrent=recurrent)


# -- the data ------------------------------------------------------------------------------------
def build_sampler(opt: Options, schedule: Schedule, dataset_len: int, ctx: DistContext) -> MultigridBatchSampler:
    section = opt.dataset_section("train")
    return MultigridBatchSampler(schedule, dataset_len, rank=ctx.rank, world_size=ctx.world_size,
                                 grad_accum=opt.train.grad_accum, seed=opt.manual_seed,
                                 enlarge_ratio=section.get("dataset_enlarge_ratio", 1),
                                 shuffle=section.get("use_shuffle", True))


def default_workers(ctx: DistContext) -> int:
    """`num_worker_per_gpu` when not set: the cores left per rank after one for the step, at
    least 1 and at most 8 (1 on the 2-core CPU, enough for every stage: benchmarks/bench_data.py)."""
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world_size) or 1)
    return max(1, min(8, (os.cpu_count() or 2) // max(1, per_node) - 1))


def make_loader(dataset, sampler: MultigridBatchSampler, *, workers: int, pin_memory: bool,
                persistent_workers: bool = True, prefetch_factor: int = 2,
                generator: torch.Generator | None = None) -> torch.utils.data.DataLoader:
    """The trainer's DataLoader: one for the whole run (the sampler carries every batch's shape),
    workers that leave stop signals to the trainer (`guards.ignore_stop_signals`)."""
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=workers, pin_memory=pin_memory,
        persistent_workers=workers > 0 and persistent_workers, prefetch_factor=prefetch_factor if workers > 0 else None,
        worker_init_fn=ignore_stop_signals, generator=generator)


def build_loader(opt: Options, dataset, sampler: MultigridBatchSampler,
                 ctx: DistContext) -> torch.utils.data.DataLoader:
    """Built after the resume, so the workers' seed can follow (seed, rank, start iteration)."""
    section = opt.dataset_section("train")
    return make_loader(dataset, sampler, workers=int(section.get("num_worker_per_gpu", default_workers(ctx))),
                       pin_memory=bool(section.get("pin_memory", ctx.device.type == "cuda")),
                       persistent_workers=bool(section.get("persistent_workers", True)),
                       generator=loader_generator(opt.manual_seed, ctx.rank, sampler.start_iter))


def validation_phases(opt: Options) -> dict[str, str]:
    """BasicSR validates on `datasets.val` and every `datasets.val_*`: phase -> its `name` (the
    phase itself when unnamed); none when the options have no `val` section."""
    if opt.val is None:
        return {}
    return {p: opt.datasets[p].get("name", p) for p in opt.datasets if p == "val" or p.startswith("val_")}
