"""Train a video super-resolution model, optionally with the multigrid curriculum.

Launch (the options file holds everything; `--set` overrides any key):

    python train.py -opt options/demo_cpu.yml                      # one device, no torch.distributed
    python -m torch.distributed.run --nproc_per_node=8 train.py -opt options/basicvsr_m_multigrid.yml
    python -m torch.distributed.run --nproc_per_node=2 train.py -opt options/demo_cpu.yml  # gloo on CPU
    python train.py -opt options/basicvsr_m_multigrid.yml --plan [--json]   # print the curriculum, train nothing
    python train.py -opt X --auto_resume                             # continue from the newest good state
    python -m torch.distributed.run --standalone --nproc_per_node=8 --max-restarts=3 train.py -opt X --auto_resume
                                                                     # elastic: a dead worker restarts the group
    python train.py -opt X --set train.total_iter=1000 --set datasets.train.batch_size_per_gpu=2

The recipe reads top to bottom: options -> processes -> model, data, curriculum, LR, step -> resume
-> run folder -> the loop (step, log, save, validate) -> finish. The recipe owns *when*; the
components in `vsr_accel/` own *how* (see docs/DESIGN.md).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from pathlib import Path

import torch

from vsr_accel.core import test_hooks
from vsr_accel.core.checkpoint import STATE_NAME
from vsr_accel.core.cli import ArgumentParser, resume_command
from vsr_accel.core.distributed import DistContext, all_reduce_mean_, barrier, init_distributed, shutdown, wrap_ddp
from vsr_accel.core.errors import ConfigError, run_guarded
from vsr_accel.core.rng import seed_everything
from vsr_accel.eval.evaluation import evaluate
from vsr_accel.eval.probes import FlowStats
from vsr_accel.infer.restore import restore_clip
from vsr_accel.schedule.curriculum import describe_stage
from vsr_accel.schedule.plan import format_plan
from vsr_accel.train import builders
from vsr_accel.train import guards
from vsr_accel.train.guards import NonFiniteWatch, StopFlag, oom_names_stage, workers_stopped
from vsr_accel.train.health import HealthGuard
from vsr_accel.train.meter import Clocks, TrainMeter, eta_seconds
from vsr_accel.train.options import METRIC_TYPES, Options, load_options
from vsr_accel.train.prefetch import DevicePrefetcher
from vsr_accel.train.run_state import CheckpointClient, LiveObjects, RunDirs, RunRecord
from vsr_accel.train.runlog import RunLogger, require_wandb, wandb_run
from vsr_accel.train.speed import maybe_compile
from vsr_accel.train.step import FreezePlan, TrainStep, set_frozen, set_lr

import datasets
import models
from datasets.video_io import save_restored_clip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    p.add_argument("--sec-per-iter", type=float, default=None, metavar="S",
                   help="with --plan: measured seconds per iteration at the baseline shape (from a run's log or "
                        "python -m experiments.run --estimate): prints each stage's and the run's time")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA when present)")
    p.add_argument("--debug", action="store_true", help="show tracebacks for input errors")
    p.add_argument("--launcher", default="none", help="accepted for BasicSR compatibility; torchrun decides")
    p.add_argument("--local_rank", "--local-rank", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the resume command a stop prints
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_guarded(lambda: run(args), args.debug, out_of_memory=guards.OUT_OF_MEMORY, disk_full=guards.DISK_FULL)


def run(args: argparse.Namespace) -> int:
    opt = load_options(args.opt, [*args.overrides, *args.force_yml])
    if args.plan:  # print the curriculum before anything is launched or loaded
        world = args.world_size or int(os.environ.get("WORLD_SIZE", 1))
        plan = builders.build_plan(opt, world_size=world, crop_multiple=models.required_multiple(opt.network_g),
                                   world_size_given=args.world_size is not None or "WORLD_SIZE" in os.environ,
                                   network=models.meta_network(opt.network_g), sec_per_iter=args.sec_per_iter)
        print(json.dumps(plan, indent=2) if args.json else format_plan(plan))
        return 0
    device = check_launch(opt, int(os.environ.get("WORLD_SIZE", 1)), args.device)
    ctx = init_distributed(device, backend=opt.dist_params.backend)
    try:
        return train(opt, args, ctx)
    finally:
        shutdown(ctx)


def script_path() -> str:
    """This script as a user in the current folder would type it (for the resume command)."""
    relative = os.path.relpath(__file__)
    return __file__ if relative.startswith("..") else relative


def check_launch(opt: Options, world_size: int, device: str | None) -> str | None:
    """BasicSR's launch keys, each checked against what torchrun started: `is_train`,
    `model_type` (against the network), `num_gpu` (auto, 0 = CPU, or the number of processes:
    there is no DataParallel here) and `dist_params.port`. Returns the device to use."""
    if not opt.is_train:
        raise ConfigError(f"{opt.source}: 'is_train' is false, which is for test options; train.py trains")
    models.check_model_type(opt.model_type, opt.network_g)
    models.check_scale(opt.scale, opt.network_g, where=f"{opt.source}: ")  # before any data is read
    if opt.num_gpu == 0:
        return device or "cpu"
    if opt.num_gpu != "auto" and opt.num_gpu != world_size:
        raise ConfigError(f"{opt.source}: 'num_gpu' is {opt.num_gpu!r} but this run has {world_size} process(es): "
                          f"vsr-accel runs one process per GPU (no DataParallel), so launch with python -m "
                          f"torch.distributed.run --nproc_per_node={opt.num_gpu} or set num_gpu: auto")
    port = os.environ.get("MASTER_PORT")
    if world_size > 1 and opt.dist_params.port is not None and port and int(port) != opt.dist_params.port:
        print(f"note: dist_params.port {opt.dist_params.port} is not used: torchrun's --master_port ({port}) decides")
    return device


def validate(model: torch.nn.Module, name: str, val_set, opt: Options, device: torch.device, it: int,
             visualization: Path) -> dict[str, float]:
    """The scores `val.metrics` lists (PSNR and SSIM when it lists none), one protocol for all;
    `val.save_img` writes the restored frames to visualization/<set>/<clip>/<frame>_<iter>.png."""
    metrics = opt.val.metrics or {"psnr": None, "ssim": None}
    first = next((m for m in metrics.values() if m is not None), None)
    window = models.input_window(model)
    save = (lambda clip, sr, item: save_restored_clip(visualization / name / clip, sr, item["frame_names"], str(it))) \
        if opt.val.save_img else None
    table = evaluate(lambda lq: restore_clip(model, lq, device, window), val_set,
                     crop_border=first.crop_border if first else 0, test_y_channel=first.test_y_channel if first else False,
                     center_frame_only=opt.val.center_frame_only, flip_seq=opt.val.flip_seq, max_clips=opt.val.max_clips,
                     on_clip=save)
    return {key: getattr(table, METRIC_TYPES[m.type] if m else key) for key, m in metrics.items()}


def log_interval(log: RunLogger, meter: TrainMeter, done: int, schedule, start_iter: int, lr: float, stage,
                 ctx: DistContext, flow: FlowStats | None) -> None:
    interval = meter.take_interval()
    eta = eta_seconds(schedule, start_iter, done, meter.wall_seconds - meter.resumed_wall_seconds)
    log.step(done, schedule.total_iter, {
        "loss": all_reduce_mean_(interval["loss_sum"], ctx).item() / interval["steps"], "lr": lr,
        "samples_per_s": interval["samples_per_s"], "data_wait_frac": interval["data_wait_frac"],
        "stage": stage.index + 1, "lr_crop": stage.lr_crop, "frames": stage.num_frames,  # stages count from 1
        **({"eta_seconds": eta} if eta is not None else {}),
        "train_seconds_excl_data": meter.train_seconds, "train_seconds_incl_data": meter.wall_seconds,
        **({"flow_mean_px": flow.mean_px, "flow_max_px": flow.max_px} if flow else {}),
    })


# -- the recipe --------------------------------------------------------------------------------
def train(opt: Options, args: argparse.Namespace, ctx: DistContext) -> int:
    dirs = RunDirs(Path(opt.path.experiments_root) / opt.name)
    if ctx.is_main:  # a run folder that cannot be written fails now, not after the model and data are built
        dirs.check_writable(resuming=args.auto_resume or bool(opt.path.resume_state))
    if opt.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    seed_everything(opt.manual_seed, ctx.rank)
    speed = builders.speed_settings(opt.train, ctx.device)
    untrained: list[str] = []  # parts without pretrained weights: news only if this run does not resume
    model = models.load_network(opt.network_g, opt.path.pretrain_network_g, param_key=opt.path.param_key_g,
                                strict=opt.path.strict_load_g, on_untrained=untrained.append)
    model = builders.prepare_model(model.to(ctx.device), opt.train, speed, network=opt.network_g["type"],
                                   source=opt.source)
    train_set = datasets.build_dataset(opt.dataset_kwargs("train"), phase="train")
    schedule = builders.build_curriculum(opt, crop_multiple=models.required_multiple(opt.network_g),
                                         max_frames=getattr(train_set, "max_frames", None),
                                         min_lr_size=getattr(train_set, "min_lr_size", None))
    lr_schedule = builders.build_lr_schedule(opt, schedule, ctx.world_size)
    val_sets = {phase: (name, datasets.build_dataset(opt.dataset_kwargs(phase), phase="val"))  # rank 0 validates
                for phase, name in builders.validation_phases(opt).items()} if ctx.is_main else {}
    step = builders.build_step(opt.train, model, speed, recurrent=models.is_recurrent(model))
    sampler = builders.build_sampler(opt, schedule, len(train_set), ctx)
    live = LiveObjects(model, step.optimizer, sampler, step.ema, step.scaler)

    # resume; every input is checked before the run folder is touched, so a bad start harms no earlier run
    record = RunRecord.of(opt.to_dict(), opt.results_hash(), schedule, opt.train.grad_accum)
    checkpoints = CheckpointClient(dirs, record, ctx, opt.logger.keep_last, is_regular=lambda it: (
        it % opt.logger.save_checkpoint_freq == 0 or it == schedule.total_iter))
    found = checkpoints.find(opt.path.resume_state, args.auto_resume)
    if found is not None:
        checkpoints.check_compatible(found, args.force_resume)
        checkpoints.restore(found, live)
    start_iter = found.iteration if found else 0
    for note in untrained if found is None and ctx.is_main else ():
        print(f"note: {note}", flush=True)
    if found is not None and start_iter >= schedule.total_iter:  # finished: say so, write nothing into it
        if ctx.is_main:
            print(f"nothing to do: {dirs.root} is finished ({found.path} is iteration {start_iter} of "
                  f"{schedule.total_iter}); to train again into a new folder, change 'name' (--set name=...) or "
                  f"leave out --auto_resume (the finished run is then moved aside)")
        return 0
    if ctx.is_main:
        require_wandb(opt.logger.wandb.project, opt.source)
    batches = iter(builders.build_loader(opt, train_set, sampler, ctx))
    with workers_stopped(batches):
        first = next(batches, None)  # the first batch is read (and checked) before the run folder is touched
        stale = checkpoints.prepare_dir(resuming=args.auto_resume or found is not None, options=opt.to_dict())
        log = RunLogger(dirs.log_file, dirs.tb if opt.logger.use_tb_logger else None, enabled=ctx.is_main,
                        better={k: m.better for k, m in opt.val.metrics.items()} if opt.val else None,
                        wandb=wandb_run(opt.logger.wandb.project, resume_id=opt.logger.wandb.resume_id, name=opt.name,
                                        config=opt.to_dict(), folder=dirs.root, source=opt.source)
                        if ctx.is_main else None)
        try:
            for path in stale:
                log.info(f"removed {path}: the temp file of an interrupted save")
            if found is not None:
                log.info(f"resumed from {found.path} at iteration {start_iter}")
            if first is None:
                log.info(f"nothing to do: already at iteration {start_iter} of {schedule.total_iter}")
                return 0
            log.info(f"training {opt.network_g['type']} on {ctx.device} x{ctx.world_size}: {schedule.total_iter} "
                     f"iterations, {len(schedule.stages)} stage(s), compute ratio {schedule.compute_ratio():.2f}x")
            meter = TrainMeter(ctx.device, found.clocks if found else Clocks())
            return loop(opt, ctx, schedule, lr_schedule, step, live, checkpoints, log, meter,
                        itertools.chain([first], batches), val_sets, start_iter, resume_command(script_path(), args.argv))
        finally:
            log.close()


def loop(opt: Options, ctx: DistContext, schedule, lr_schedule, step: TrainStep, live: LiveObjects,
         checkpoints: CheckpointClient, log: RunLogger, meter: TrainMeter, batches, val_sets: dict,
         start_iter: int, resume: str) -> int:
    """Iterations start_iter .. total_iter: one optimizer step per `grad_accum` batches; a stop
    prints `resume`, the command that continues the run."""
    model, total, accum = step.model, schedule.total_iter, opt.train.grad_accum
    validating = bool(builders.validation_phases(opt))  # the same on every rank; rank 0 holds the sets
    freeze = FreezePlan(fix_flow=opt.train.fix_flow, tsa_iter=opt.train.tsa_iter)
    frozen = freeze.frozen(model, start_iter)
    set_frozen(model, frozen)
    wrap = lambda: maybe_compile(wrap_ddp(model, ctx, opt.find_unused_parameters), opt.train.compile,  # noqa: E731
                                 len(schedule.stages))
    step.net, nonfinite, it = wrap(), NonFiniteWatch(ctx.device), start_iter
    kill_after_step = test_hooks.step_hook(ctx.rank)
    health = HealthGuard(opt.train.health, model, models.is_recurrent(model), ctx, log)
    with StopFlag() as stop, oom_names_stage(lambda: describe_stage(schedule.stage_at(min(it, total - 1)))):
        meter.start()
        for micro, batch in enumerate(meter.batches(DevicePrefetcher(batches, ctx.device))):
            it, last_micro = start_iter + micro // accum, micro % accum == accum - 1
            stage = schedule.stage_at(it)
            if micro % accum == 0:
                if freeze.may_change_at(it) and freeze.frozen(model, it) != frozen:
                    frozen = freeze.frozen(model, it)
                    set_frozen(model, frozen)
                    step.net = wrap()  # DDP registers only trainable parameters
                set_lr(step.optimizer, lambda mul: lr_schedule.lr_at(it, mul))
                step.zero_grad()
            lq = batch["lq"].to(ctx.device, non_blocking=True)  # already there (prefetched on CUDA, CPU as is)
            gt = batch["gt"].to(ctx.device, non_blocking=True)
            step.micro_step(*step.prepare(lq, gt), last=last_micro)
            if not last_micro:
                continue
            loss, done = step.finish(), it + 1
            meter.add_step(loss, lr_schedule.global_batch(stage))
            nonfinite.record(loss, done)
            kill_after_step(done)  # test_hooks: a no-op unless a kill test armed this step

            log_now = done % opt.logger.print_freq == 0 or done == total
            save_now = done % opt.logger.save_checkpoint_freq == 0 or done == total
            val_now = validating and (done % opt.val.val_freq == 0 or done == total)  # the same on every rank
            stop_now = stop.should_stop(done, ctx)
            if not (log_now or save_now or val_now or stop_now or done % opt.train.nan_check_freq == 0):
                continue
            meter.pause()  # interval boundary: clocks read here, never per step
            nonfinite.check(done, ctx, checkpoints.dirs.states)  # one host sync every few steps, never per step
            if log_now:
                flow = health.flow(model, lq)
                log_interval(log, meter, done, schedule, start_iter, step.optimizer.param_groups[0]["lr"], stage, ctx,
                             flow)
                health.check_flow(flow, done, describe_stage(stage))
            if save_now or stop_now:  # a stop between regular saves never prunes one of them (logger.keep_last)
                checkpoints.save(live, done, meter.clocks, regular=save_now)
            scored = step.ema.model if step.ema else model  # what validation scores
            for phase, (name, val_set) in val_sets.items() if val_now else ():  # rank 0; the others wait
                scores = validate(scored, name, val_set, opt, ctx.device, done, checkpoints.dirs.root / "visualization")
                log.val(done, scores, dataset=phase if phase == "val" else name)
            if val_now:
                health.propagation(lambda lq: restore_clip(scored, lq, ctx.device),
                                   lambda: next(iter(val_sets.values()))[1][0]["lq"] if val_sets else None, done)
            if val_now or save_now:
                barrier(ctx)
            if stop_now and done < total:
                saved = checkpoints.dirs.states / STATE_NAME.format(iter=done)
                log.info(f"stopped by {stop.requested or 'a signal on another rank'} at iteration {done}; checkpoint "
                         f"{saved} saved; resume with: {resume}")
                return 0
            meter.start()
    log.info(f"done: {total} iterations in {meter.wall_seconds:.1f} s of training ({meter.train_seconds:.1f} s "
             f"excluding data loading); weights in {checkpoints.dirs.models}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
