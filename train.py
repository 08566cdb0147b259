"""Train a video super-resolution model, optionally with the multigrid curriculum.

Launch (the options file holds everything; `--set` overrides any key):

    python train.py -opt options/demo_cpu.yml                      # one device, no torch.distributed
    python -m torch.distributed.run --nproc_per_node=8 train.py -opt options/basicvsr_m_multigrid.yml
    python -m torch.distributed.run --nproc_per_node=2 train.py -opt options/demo_cpu_multigrid.yml  # gloo on CPU
    python train.py -opt options/basicvsr_m_multigrid.yml --plan [--json]   # print the curriculum, train nothing
    python train.py -opt X --auto_resume                             # continue from the newest good state
    python -m torch.distributed.run --standalone --nproc_per_node=8 --max-restarts=3 train.py -opt X --auto_resume
                                                                     # elastic: a dead worker restarts the group
    python train.py -opt X --set train.total_iter=1000 --set datasets.train.batch_size_per_gpu=2

The recipe reads top to bottom: options -> processes -> model, data, curriculum, LR -> resume -> run folder ->
loop (step, log, validate, save) -> finish. Components take explicit arguments.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from vsr_accel import checkpoint as ckpt
from vsr_accel.curriculum import Schedule, build_schedule
from vsr_accel.distributed import (DistContext, all_reduce_mean_, barrier, broadcast_object, init_distributed,
                                   shutdown)
from vsr_accel.ema import EMA
from vsr_accel.errors import CheckpointError, ConfigError, VSRError, report_user_errors
from vsr_accel.evaluation import evaluate, restore_clip
from vsr_accel.layout import channels_last_clip, cpu_supports_bf16
from vsr_accel.losses import build_pixel_loss
from vsr_accel.lr import LRSchedule
from vsr_accel.options import Options, TrainOptions, load_options
from vsr_accel.plan import format_plan, plan_dict
from vsr_accel.prefetch import DevicePrefetcher
from vsr_accel.rng import loader_generator, rng_state, seed_everything, set_rng_state
from vsr_accel.runlog import RunLogger
from vsr_accel.sampler import MultigridBatchSampler

import datasets
import models


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-opt", "--opt", required=True, help="options YAML (BasicSR layout)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override an option, e.g. --set train.total_iter=1000 (repeatable)")
    p.add_argument("--force_yml", nargs="+", default=[], metavar="KEY:PATH=VALUE",
                   help="BasicSR's spelling of --set (train:total_iter=1000)")
    p.add_argument("--auto_resume", action="store_true", help="resume from the newest good training state")
    p.add_argument("--force-resume", action="store_true",
                   help="resume even if the options or curriculum changed (prints what changed)")
    p.add_argument("--plan", action="store_true", help="print the curriculum and exit")
    p.add_argument("--json", action="store_true", help="with --plan: print JSON")
    p.add_argument("--world-size", type=int, default=None, help="with --plan: devices to plan for")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA when present)")
    p.add_argument("--debug", action="store_true", help="show tracebacks for input errors")
    p.add_argument("--launcher", default="none", help="accepted for BasicSR compatibility; torchrun decides")
    p.add_argument("--local_rank", "--local-rank", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return report_user_errors(lambda: run(args), args.debug)
    except torch.OutOfMemoryError as exc:
        if args.debug:
            raise
        print(f"error: {oom_message(exc)}", file=sys.stderr)
        return 3
    except OSError as exc:
        if args.debug or exc.errno not in ckpt.DISK_FULL_ERRNOS:
            raise
        print(f"error: {exc.filename or 'a file'}: {exc.strerror}; free some space, then resume with "
              "--auto_resume (the last complete checkpoint is kept)", file=sys.stderr)
        return 2


def oom_message(exc: BaseException) -> str:
    return ("out of memory during training; reduce datasets.train.batch_size_per_gpu or the crop "
            "(train.curriculum.lr_crops / datasets.train.gt_size), or set train.checkpoint_propagation: true "
            f"({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})")


# --------------------------------------------------------------------------------------------
# building blocks (options -> explicit arguments happens here, at the boundary)
# --------------------------------------------------------------------------------------------
def build_curriculum(opt: Options, max_frames: int | None, crop_multiple: int) -> Schedule:
    section = opt.dataset_section("train")
    cur = opt.train.curriculum
    return build_schedule(
        cur.type, total_iter=opt.train.total_iter, lr_crop=section["gt_size"] // opt.scale,
        num_frames=section["num_frame"], batch_per_device=section["batch_size_per_gpu"],
        lr_crops=cur.lr_crops, frame_counts=cur.frame_counts, stage_iters=cur.stage_iters,
        stage_lrs=cur.stage_lrs, stage_batches=cur.stage_batches, crop_multiple=crop_multiple,
        max_frames=max_frames, key_prefix="train.curriculum")


def build_lr_schedule(opt: Options, schedule: Schedule, world_size: int) -> LRSchedule:
    tr = opt.train
    return LRSchedule(schedule, base_lr=tr.optim_g.lr, base_batch=tr.base_batch, world_size=world_size,
                      grad_accum=tr.grad_accum, eta_min=tr.scheduler.eta_min,
                      warmup_iter=max(tr.warmup_iter, 0), warmup=tr.warmup if tr.warmup_iter > 0 else "none",
                      warmup_factor=tr.warmup_factor)


def flow_parameter_names(model: torch.nn.Module) -> list[str]:
    """BasicSR's VideoRecurrentModel treats `spynet` (BasicVSR) and `edvr` (IconVSR) as the flow part."""
    return [n for n, _ in model.named_parameters() if n.startswith(("spynet.", "edvr."))]


def build_optimizer(opt: Options, model: torch.nn.Module) -> torch.optim.Optimizer:
    tr, o = opt.train, opt.train.optim_g
    flow = set(flow_parameter_names(model))
    groups = [{"params": [p for n, p in model.named_parameters() if n not in flow], "lr_mul": 1.0}]
    if flow:
        groups.append({"params": [p for n, p in model.named_parameters() if n in flow], "lr_mul": tr.flow_lr_mul})
    cls = torch.optim.AdamW if o.type == "AdamW" else torch.optim.Adam
    kwargs: dict[str, Any] = dict(lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
    if o.fused is not None:
        kwargs["fused"] = o.fused
    elif o.foreach is not None:
        kwargs["foreach"] = o.foreach
    elif all(p.device.type == "cpu" for p in model.parameters()):
        # Neither set: on CPU the fused kernel (torch's default there is the per-tensor loop) runs
        # the BasicVSR-M optimizer step ~3x faster (15 -> 5 ms, bench_step.py --sweep). CUDA: torch's default.
        kwargs["fused"] = True
    return cls(groups, **kwargs)


@dataclasses.dataclass(frozen=True)
class SpeedSettings:
    channels_last: bool
    amp_dtype: torch.dtype | None


def resolve_speed(tr: TrainOptions, device: torch.device) -> SpeedSettings:
    """`train.amp: auto` / `train.channels_last: ~` pick what benchmarks/bench_step.py --sweep
    measured as faster on the 2-core Xeon: bf16 autocast where the CPU runs bf16 natively (AMX /
    AVX512-BF16; 1.8-2.1x alone), channels_last on any CPU (1.1-1.4x alone; 2.6-3.1x with bf16).
    Nothing was measured on CUDA, so there `auto` stays fp32 and NCHW unless asked."""
    on_cpu = device.type == "cpu"
    channels_last = on_cpu if tr.channels_last is None else tr.channels_last
    amp = tr.amp
    if amp == "auto":
        amp = "bf16" if on_cpu and cpu_supports_bf16() else "none"
    return SpeedSettings(channels_last, {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp))


def maybe_compile(net: torch.nn.Module, enabled: bool, stage_count: int) -> torch.nn.Module:
    """`train.compile`: one static graph per curriculum shape (dynamic shapes off), plus one
    recompile when fix_flow unfreezes SpyNet. Off by default: on the 2-core CPU the first call
    took 318-455 s per shape (empty cache) and the compiled step was not faster (bench_step.py
    --sweep --compile)."""
    if not enabled:
        return net
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 2 * stage_count + 2)
    return torch.compile(net, dynamic=False)


def enable_activation_checkpointing(model: torch.nn.Module, net_type: str, source: str) -> None:
    """`train.checkpoint_propagation`: recompute each frame's propagation and upsampling in
    backward (BasicVSR only): same numbers, ~80% less step memory at 64x64x15 for ~30% more
    step time (benchmarks/bench_memory.py, bench_step.py --sweep)."""
    if not hasattr(model, "set_activation_checkpointing"):
        raise ConfigError(f"{source}: 'train.checkpoint_propagation' is only available for BasicVSR / BasicVSRM, "
                          f"not {net_type}; set it to false")
    model.set_activation_checkpointing(True)


def default_workers(ctx: DistContext) -> int:
    """`num_worker_per_gpu` when not set: the cores left per rank after one for the step, at
    least 1 and at most 8 (1 on the 2-core CPU, enough for every stage: benchmarks/bench_data.py)."""
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world_size) or 1)
    return max(1, min(8, (os.cpu_count() or 2) // max(1, per_node) - 1))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_mul"]


def set_flow_frozen(model: torch.nn.Module, frozen: bool) -> None:
    """BasicSR's `fix_flow`: the flow network is frozen for the first iterations."""
    names = set(flow_parameter_names(model))
    for name, param in model.named_parameters():
        if name in names:
            param.requires_grad_(not frozen)


def wrap_ddp(model: torch.nn.Module, ctx: DistContext, find_unused: bool) -> torch.nn.Module:
    """DDP registers only parameters that require grad when it is built, so the model is wrapped
    again whenever `fix_flow` freezes or unfreezes the flow network."""
    if not ctx.is_distributed:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def build_sampler(opt: Options, dataset, schedule: Schedule, ctx: DistContext) -> MultigridBatchSampler:
    """Every item's crop/flip seed comes from here: (manual_seed, global sample number)."""
    return MultigridBatchSampler(schedule, len(dataset), rank=ctx.rank, world_size=ctx.world_size,
                                 grad_accum=opt.train.grad_accum, seed=opt.manual_seed)


def build_train_loader(opt: Options, dataset, sampler: MultigridBatchSampler,
                       ctx: DistContext) -> torch.utils.data.DataLoader:
    """Built after the resume, so the workers' seed can follow (seed, rank, start iteration)."""
    section = opt.dataset_section("train")
    workers = int(section.get("num_worker_per_gpu", default_workers(ctx)))
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=workers,
        pin_memory=bool(section.get("pin_memory", ctx.device.type == "cuda")),
        persistent_workers=workers > 0 and bool(section.get("persistent_workers", True)),
        prefetch_factor=2 if workers > 0 else None, worker_init_fn=leave_stop_signals_to_trainer,
        generator=loader_generator(opt.manual_seed, ctx.rank, sampler.start_iter))


def leave_stop_signals_to_trainer(worker_id: int) -> None:
    """A terminal's Ctrl-C reaches the whole process group, and Slurm signals every process of a
    job. A DataLoader worker would quit on it and the trainer would die with 'worker killed by
    signal' instead of saving; workers ignore both, and `workers_stopped` ends them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


# --------------------------------------------------------------------------------------------
# run folder, checkpoints, resume
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RunDirs:
    root: Path

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def states(self) -> Path:
        return self.root / "training_states"

    @property
    def tb(self) -> Path:
        return self.root / "tb_logger"


def prepare_run_dir(opt: Options, dirs: RunDirs, resuming: bool, ctx: DistContext) -> list[Path]:
    """experiments/<name>/ as in BasicSR. Called once everything a bad input can break has been
    checked, so a failed start never touches an earlier run. A fresh (non-resumed) run never
    overwrites an old one: the old folder is renamed `<name>_archived_<time>` (BasicSR's
    behaviour). Returns the temp files of killed saves that were removed."""
    stale: list[Path] = []
    if ctx.is_main:
        if dirs.root.exists() and not resuming and any(dirs.root.iterdir()):
            archived = dirs.root.with_name(f"{dirs.root.name}_archived_{time.strftime('%Y%m%d_%H%M%S')}")
            dirs.root.rename(archived)
            print(f"note: existing {dirs.root} moved to {archived}")
        for folder in (dirs.root, dirs.models, dirs.states):
            folder.mkdir(parents=True, exist_ok=True)
        stale = ckpt.remove_stale_temps(dirs.states) + ckpt.remove_stale_temps(dirs.models)
        resolved = dirs.root / "options.yml"
        tmp = resolved.with_suffix(".yml.tmp")
        tmp.write_text(yaml.safe_dump(opt.to_dict(), sort_keys=False))
        os.replace(tmp, resolved)
    barrier(ctx)
    return stale


def schedule_fingerprint(schedule: Schedule) -> str:
    return json.dumps([dataclasses.asdict(s) for s in schedule.stages], sort_keys=True)


def options_record(opt: Options) -> str:
    """All options as JSON, stored next to the hash so a refused resume can say what changed."""
    return json.dumps(opt.to_dict(), sort_keys=True, default=str)


def find_resume_state(opt: Options, dirs: RunDirs, auto_resume: bool, ctx: DistContext) -> tuple[Path, dict] | None:
    """Rank 0 picks the state (skipping damaged ones) and every rank loads that same file, so an
    elastic restart resumes all ranks from one iteration."""
    if opt.path.resume_state:
        path = Path(opt.path.resume_state)
        if not path.is_file():
            raise CheckpointError(f"{path}: path.resume_state does not exist")
        return path, ckpt.read_training_state(path)
    if not auto_resume:
        return None
    found = ckpt.latest_good_state(dirs.states, on_skip=warn) if ctx.is_main else None
    chosen = broadcast_object(str(found[0]) if found else None, ctx)
    if chosen is None:
        return None
    return found if ctx.is_main else (Path(chosen), ckpt.read_training_state(chosen))


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


# Top-level option sections that do not change results (mirrors Options.results_hash).
RUN_ONLY_SECTIONS = ("name", "logger", "path", "val", "num_gpu", "dist_params", "is_train")


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def changed_options(recorded: str | None, opt: Options) -> list[str]:
    """`key: old -> new` for each result-changing option that differs from the checkpoint's."""
    if not recorded:
        return []
    old, new = _flatten(json.loads(recorded)), _flatten(json.loads(options_record(opt)))
    missing = "(unset)"
    keys = sorted(k for k in old.keys() | new.keys()
                  if old.get(k, missing) != new.get(k, missing) and k.split(".")[0] not in RUN_ONLY_SECTIONS)
    return [f"{k} {old.get(k, missing)!r} -> {new.get(k, missing)!r}" for k in keys]


def describe_stages(fingerprint: str) -> str:
    stages = json.loads(fingerprint)
    return "[" + ", ".join(f"{s['iters']} it at {s['lr_crop']}&{s['num_frames']}" for s in stages) + "]"


def check_resume_compatible(state: dict, opt: Options, schedule: Schedule, source: Path, force: bool) -> None:
    """Refuse to mix two different trainings in one set of weights, and say what differs."""
    changes = []
    if state.get("options_hash") != opt.results_hash():
        diff = changed_options(state.get("options"), opt)
        changes.append("options changed: " + ("; ".join(diff) if diff else "model, data, optimizer, curriculum or LR"))
    fingerprint = schedule_fingerprint(schedule)
    if state.get("schedule") != fingerprint:
        old = describe_stages(state["schedule"]) if state.get("schedule") else "(not recorded)"
        changes.append(f"curriculum stages changed: {old} -> {describe_stages(fingerprint)}")
    if not changes:
        return
    message = f"{source}: cannot resume: {'; '.join(changes)}"
    if not force:
        raise CheckpointError(message + " (pass --force-resume to continue anyway)")
    warn(f"{message}; continuing because of --force-resume")


@dataclasses.dataclass
class TrainState:
    """Everything a resume needs, gathered in one place."""
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    sampler: MultigridBatchSampler
    ema: EMA | None
    scaler: torch.amp.GradScaler | None


def plain_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights saved NCHW-contiguous whatever layout trained them (channels_last on CPU), so
    BasicSR and any other reader gets the layout it expects."""
    return {key: value.contiguous() for key, value in state.items()}


def save_checkpoint(ts: TrainState, it: int, opt: Options, schedule: Schedule, dirs: RunDirs,
                    ctx: DistContext, train_seconds: float) -> None:
    """Weights in BasicSR's format (`models/net_g_<iter>.pth`) and the full training state
    (`training_states/<iter>.state`, written last: it is the commit point of a save)."""
    rngs = rng_state()
    all_rngs = [rngs]
    if ctx.is_distributed:
        all_rngs = [None] * ctx.world_size
        torch.distributed.all_gather_object(all_rngs, rngs)
    if not ctx.is_main:
        return
    weights = {"params": plain_layout(ts.model.state_dict())}
    if ts.ema is not None:
        weights["params_ema"] = plain_layout(ts.ema.state_dict())
    state = {
        "iter": it, "network": weights, "optimizer": ts.optimizer.state_dict(),
        "sampler": ts.sampler.state_dict(next_iter=it), "rng": all_rngs, "world_size": ctx.world_size,
        "scaler": ts.scaler.state_dict() if ts.scaler is not None else None,
        "options_hash": opt.results_hash(), "options": options_record(opt), "schedule": schedule_fingerprint(schedule),
        "train_seconds": train_seconds,
    }
    try:
        ckpt.atomic_save(weights, dirs.models / f"net_g_{it}.pth")
        ckpt.atomic_save(state, dirs.states / f"{it}.state")
    except CheckpointError as exc:
        previous = ckpt.list_training_states(dirs.states)
        kept = f"the last complete state is {previous[0]}" if previous else "no earlier state exists"
        raise CheckpointError(f"{exc}; {kept}; free some space, then resume with --auto_resume") from exc
    ckpt.prune(dirs.states, "{iter}.state", opt.logger.keep_last)
    ckpt.prune(dirs.models, "net_g_{iter}.pth", opt.logger.keep_last)


def restore_state(ts: TrainState, state: dict, ctx: DistContext, source: Path) -> None:
    ckpt.load_weights_strict(ts.model, state["network"]["params"], str(source))
    if ts.ema is not None:
        if "params_ema" in state["network"]:
            ts.ema.load_state_dict(state["network"]["params_ema"])
        else:
            ts.ema.load_state_dict(ts.model.state_dict())
            warn("the training state has no EMA weights (params_ema); the EMA restarts from the weights")
    ts.optimizer.load_state_dict(state["optimizer"])
    ts.sampler.load_state_dict(state["sampler"])
    if ts.scaler is not None and state.get("scaler"):
        ts.scaler.load_state_dict(state["scaler"])
    rngs = state.get("rng") or []
    if len(rngs) == ctx.world_size:
        set_rng_state(rngs[ctx.rank])
    elif ctx.is_main:
        warn(f"the checkpoint was written by {len(rngs)} process(es), this run has {ctx.world_size}: the data "
             f"order continues exactly, the random number streams are not restored")


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------
def validate(model: torch.nn.Module, val_set, opt: Options, device: torch.device, window: int | None) -> dict:
    metric_opts = opt.val.metrics if opt.val else {}
    psnr = metric_opts.get("psnr", {})
    table = evaluate(lambda lq: restore_clip(model, lq, device, window), val_set,
                     crop_border=int(psnr.get("crop_border", 0)),
                     test_y_channel=bool(psnr.get("test_y_channel", False)),
                     center_frame_only=opt.val.center_frame_only if opt.val else False,
                     max_clips=opt.val.max_clips if opt.val else None)
    return {"psnr": table.psnr, "ssim": table.ssim}


# --------------------------------------------------------------------------------------------
# the recipe
# --------------------------------------------------------------------------------------------
class StopFlag:
    """SIGTERM/SIGINT (what schedulers send before preemption) ask for a save and a clean exit.

    On one device the flag is read after every step. Under DDP the ranks must agree on the step
    at which they stop, which costs a collective, so they agree every `check_every` steps. A
    second signal aborts at once (the default action), for a run stuck outside the loop. Used as
    a context manager, it puts the previous handlers back on exit."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, check_every: int = 10) -> None:
        self.requested: str | None = None
        self.check_every = check_every
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopFlag":
        self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.requested = signal.Signals(signum).name  # no printing here: a handler may interrupt a print

    def should_stop(self, done: int, ctx: DistContext) -> bool:
        if not ctx.is_distributed:
            return bool(self.requested)
        if done % self.check_every:
            return False
        flag = torch.tensor([float(bool(self.requested))], device=ctx.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())


class NonFiniteWatch:
    """NaN/Inf loss detection without a host sync per step: each step folds "is the loss finite"
    into a device tensor holding the first bad iteration (no sync); `check` reads it every
    `train.nan_check_freq` steps and before every save, so a NaN never reaches a checkpoint."""

    NONE = 2**62

    def __init__(self, device: torch.device) -> None:
        self.first_bad = torch.full((), self.NONE, dtype=torch.int64, device=device)

    def record(self, loss: torch.Tensor, it: int) -> None:
        bad_here = torch.where(torch.isfinite(loss), self.NONE, it)
        torch.minimum(self.first_bad, bad_here, out=self.first_bad)

    def check(self, done: int, ctx: DistContext, states: Path) -> None:
        first = self.first_bad.clone()
        if ctx.is_distributed:  # every rank stops together, at the earliest bad iteration of any rank
            torch.distributed.all_reduce(first, op=torch.distributed.ReduceOp.MIN)
        bad = int(first.item())
        if bad == self.NONE:
            return
        good = ckpt.list_training_states(states)
        kept = f"the last good checkpoint {good[0]} is kept" if good else "no checkpoint had been written"
        raise VSRError(f"loss became NaN/Inf at iteration {bad} (detected at iteration {done}); stopped without "
                       f"saving: {kept}; lower train.optim_g.lr, set train.grad_clip, or check the data")


def run(args: argparse.Namespace) -> int:
    opt = load_options(args.opt, [*args.overrides, *args.force_yml])
    net_type = opt.network_g["type"]
    crop_multiple = models.required_multiple(net_type)

    if args.plan:  # print the curriculum before anything is launched or loaded
        world = args.world_size or int(os.environ.get("WORLD_SIZE", 1))
        schedule = build_curriculum(opt, max_frames=None, crop_multiple=crop_multiple)
        plan = plan_dict(schedule, build_lr_schedule(opt, schedule, world), scale=opt.scale,
                         world_size=world, grad_accum=opt.train.grad_accum)
        print(json.dumps(plan, indent=2) if args.json else format_plan(plan))
        return 0

    ctx = init_distributed(args.device)
    try:
        return train(opt, args, ctx)
    finally:
        shutdown(ctx)


def train(opt: Options, args: argparse.Namespace, ctx: DistContext) -> int:
    if opt.train.nan_check_freq <= 0:  # (not among the options module's checks yet)
        raise ConfigError(f"{opt.source}: 'train.nan_check_freq' must be positive, got {opt.train.nan_check_freq}")
    if opt.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    seed_everything(opt.manual_seed, ctx.rank)
    dirs = RunDirs(Path(opt.path.experiments_root) / opt.name)

    # model
    model = models.build_network(opt.network_g).to(ctx.device)
    speed = resolve_speed(opt.train, ctx.device)
    if speed.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if opt.train.checkpoint_propagation:
        enable_activation_checkpointing(model, opt.network_g["type"], opt.source)
    if opt.path.pretrain_network_g:
        state = ckpt.read_weights(opt.path.pretrain_network_g, opt.path.param_key_g)
        if opt.path.strict_load_g:
            ckpt.load_weights_strict(model, state, opt.path.pretrain_network_g)
        else:
            model.load_state_dict(state, strict=False)
    recurrent = models.is_recurrent(model)
    window = None if recurrent else getattr(model, "num_frame", None)

    # data and curriculum
    train_set = datasets.build_dataset(opt.dataset_kwargs("train"), phase="train")
    schedule = build_curriculum(opt, max_frames=getattr(train_set, "max_frames", None),
                                crop_multiple=models.required_multiple(opt.network_g["type"]))
    lr_schedule = build_lr_schedule(opt, schedule, ctx.world_size)
    val_set = None
    validating = "val" in opt.datasets and opt.val is not None  # the same answer on every rank
    if validating and ctx.is_main:
        val_set = datasets.build_dataset(opt.dataset_kwargs("val"), phase="val")

    # optimisation
    optimizer = build_optimizer(opt, model)
    criterion = build_pixel_loss(**dataclasses.asdict(opt.train.pixel_opt))
    ema = EMA(model, opt.train.ema_decay) if opt.train.ema_decay > 0 else None
    use_fp16 = speed.amp_dtype == torch.float16
    scaler = torch.amp.GradScaler(ctx.device.type) if use_fp16 else None
    amp_dtype = speed.amp_dtype

    # resume; every input is checked before the run folder is touched, so a bad start harms no earlier run
    start_iter, train_seconds = 0, 0.0
    sampler = build_sampler(opt, train_set, schedule, ctx)
    ts = TrainState(model, optimizer, sampler, ema, scaler)
    found = find_resume_state(opt, dirs, args.auto_resume, ctx)
    if found is not None:
        check_resume_compatible(found[1], opt, schedule, found[0], args.force_resume)
        restore_state(ts, found[1], ctx, found[0])
        start_iter, train_seconds = int(found[1]["iter"]), float(found[1].get("train_seconds", 0.0))
    stale = prepare_run_dir(opt, dirs, resuming=args.auto_resume or found is not None, ctx=ctx)
    log = RunLogger(dirs.root / "train.log", dirs.tb if opt.logger.use_tb_logger else None, enabled=ctx.is_main)
    for path in stale:
        log.info(f"removed {path}: the temp file of an interrupted save")
    if found is not None:
        log.info(f"resumed from {found[0]} at iteration {start_iter}")
    if start_iter >= schedule.total_iter:
        log.info(f"nothing to do: already at iteration {start_iter} of {schedule.total_iter}")
        return 0
    loader = build_train_loader(opt, train_set, sampler, ctx)

    log.info(f"training {opt.network_g['type']} on {ctx.device} x{ctx.world_size}: {schedule.total_iter} iterations, "
             f"{len(schedule.stages)} stage(s), compute ratio {schedule.compute_ratio():.2f}x")
    fix_flow = opt.train.fix_flow or 0
    flow_frozen = start_iter < fix_flow and bool(flow_parameter_names(model))
    set_flow_frozen(model, flow_frozen)
    net = maybe_compile(wrap_ddp(model, ctx, opt.find_unused_parameters), opt.train.compile, len(schedule.stages))
    stop = StopFlag()
    nonfinite = NonFiniteWatch(ctx.device)

    accum = opt.train.grad_accum
    loss_sum = torch.zeros((), device=ctx.device)
    window_loss = torch.zeros((), device=ctx.device)
    it = start_iter
    last_log_time = time.perf_counter()
    data_wait = 0.0
    window_samples = 0
    tick = time.perf_counter()
    batches = iter(loader)
    with stop, workers_stopped(batches), oom_context(lambda: schedule.stage_at(min(it, schedule.total_iter - 1))):
        for micro, batch in enumerate(DevicePrefetcher(batches, ctx.device)):
            got_batch = time.perf_counter()
            data_wait += got_batch - tick
            it = start_iter + micro // accum
            first_micro, last_micro = micro % accum == 0, micro % accum == accum - 1
            stage = schedule.stage_at(it)
            if first_micro:
                if flow_frozen and it >= fix_flow:
                    flow_frozen = False
                    set_flow_frozen(model, False)
                    net = maybe_compile(wrap_ddp(model, ctx, opt.find_unused_parameters), opt.train.compile,
                                        len(schedule.stages))
                set_lr(optimizer, lr_schedule.lr_at(it))
                optimizer.zero_grad(set_to_none=True)
                loss_sum.zero_()

            lq = batch["lq"].to(ctx.device, non_blocking=True)  # already there (prefetched on CUDA, CPU as is)
            gt = batch["gt"].to(ctx.device, non_blocking=True)
            if speed.channels_last and lq.dim() == 5:
                lq = channels_last_clip(lq)
            if not recurrent and gt.dim() == 5:
                gt = gt[:, gt.shape[1] // 2]
            sync = contextlib.nullcontext() if (last_micro or not ctx.is_distributed) else net.no_sync()
            with sync:
                with torch.autocast(ctx.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    loss = criterion(net(lq), gt) / accum
                (scaler.scale(loss) if scaler else loss).backward()
            loss_sum += loss.detach()
            window_samples += lq.shape[0] * ctx.world_size
            if not last_micro:
                tick = time.perf_counter()
                continue

            if opt.train.grad_clip:
                if scaler:
                    scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), opt.train.grad_clip)
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            if ema is not None:
                ema.update(model)
            window_loss += loss_sum
            done = it + 1
            nonfinite.record(loss_sum, done)
            ckpt.fault_injection_point(f"step:{done}", ctx.rank)
            now = time.perf_counter()
            train_seconds += now - got_batch  # wall-clock training time excluding data loading

            log_now = done % opt.logger.print_freq == 0 or done == schedule.total_iter
            save_now = done % opt.logger.save_checkpoint_freq == 0 or done == schedule.total_iter
            stop_now = stop.should_stop(done, ctx)
            if done % opt.train.nan_check_freq == 0 or log_now or save_now or stop_now:
                nonfinite.check(done, ctx, dirs.states)  # one host sync every few steps, never per step
            if log_now:
                mean_loss = all_reduce_mean_(window_loss.clone(), ctx).item() / max(1, _steps_in_window(done, opt.logger.print_freq, start_iter))
                elapsed = now - last_log_time
                log.step(done, schedule.total_iter, {
                    "loss": mean_loss, "lr": optimizer.param_groups[0]["lr"],
                    "samples_per_s": window_samples / max(elapsed, 1e-9),
                    "data_wait_frac": data_wait / max(elapsed, 1e-9),
                    "stage": stage.index, "lr_crop": stage.lr_crop, "frames": stage.num_frames,
                    "train_seconds_excl_data": train_seconds,
                })
                window_loss.zero_()
                window_samples, data_wait, last_log_time = 0, 0.0, time.perf_counter()

            if save_now or stop_now:
                save_checkpoint(ts, done, opt, schedule, dirs, ctx, train_seconds)
            val_now = validating and (done % opt.val.val_freq == 0 or done == schedule.total_iter)
            if val_now and val_set is not None:  # rank 0 validates; the others wait at the barrier
                scores = validate(ema.model if ema else model, val_set, opt, ctx.device, window)
                log.val(done, scores)
            if val_now or save_now:
                barrier(ctx)
            if stop_now and done < schedule.total_iter:
                log.info(f"stopped by {stop.requested or 'a signal on another rank'} at iteration {done}; checkpoint "
                         f"{dirs.states / f'{done}.state'} saved; resume with the same command plus --auto_resume "
                         f"(python train.py -opt {opt.source} --auto_resume)")
                log.close()
                return 0
            tick = time.perf_counter()

    log.info(f"done: {schedule.total_iter} iterations; weights in {dirs.models}")
    log.close()
    return 0


@contextlib.contextmanager
def workers_stopped(batches):
    """Workers ignore SIGTERM, and multiprocessing's exit handler stops leftover daemon processes
    with SIGTERM and then waits for them: so stop them here, on every way out of the loop (end,
    graceful stop, error), and kill any that do not stop, or the process could never exit."""
    try:
        yield
    finally:
        shutdown = getattr(batches, "_shutdown_workers", None)  # only multi-process iterators have workers
        if shutdown is not None:
            shutdown()
        for worker in getattr(batches, "_workers", ()):
            if worker.is_alive():
                worker.kill()
                worker.join()


@contextlib.contextmanager
def oom_context(current_stage):
    """Out-of-memory errors name the curriculum stage (shape and batch) that did not fit."""
    try:
        yield
    except torch.OutOfMemoryError as exc:
        stage = current_stage()
        raise torch.OutOfMemoryError(
            f"stage {stage.index + 1} (LR crop {stage.lr_crop}, {stage.num_frames} frames, "
            f"{stage.batch_per_device} clips per device): {str(exc).strip().splitlines()[0] if str(exc).strip() else 'OOM'}"
        ) from exc


def _steps_in_window(done: int, print_freq: int, start_iter: int) -> int:
    """Optimizer steps since the previous log line (the first window after a resume is shorter)."""
    window_start = max(start_iter, ((done - 1) // print_freq) * print_freq)
    return done - window_start


if __name__ == "__main__":
    sys.exit(main())
