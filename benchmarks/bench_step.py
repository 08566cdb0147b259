"""Training-step throughput: our BasicVSR-M step vs BasicSR's, and what each speed switch buys.

    python benchmarks/bench_step.py                 # ours vs BasicSR at 48x48x7 and 64x64x15, vs unoptimised at 32x32x7
    python benchmarks/bench_step.py --sweep         # each switch alone and together, at one shape (picks the defaults)
    python benchmarks/bench_step.py --sweep --compile   # ... plus torch.compile (first-call cost and steady state)

A step is what train.py does per iteration: zero grads, forward, Charbonnier loss, backward,
Adam (BasicSR's REDS settings: lr 2e-4, betas (0.9, 0.99), SpyNet at lr x 0.125, SpyNet
trainable as after `fix_flow`). Same architecture (BasicVSR, 64 channels, 7 blocks per branch),
same weights, same input and target for both sides.

The reference is BasicSR 1.4.2's own code: its `BasicVSR` (with its SpyNet) and its
`CharbonnierLoss`, imported from the unpacked BasicSR sources with `tests/basicsr_ref.py` (leaf
modules under stub packages; BasicSR's package `__init__` does not import on current
torchvision), run by this venv's torch with the optimizer BasicSR builds (`torch.optim.Adam`
with torch's default kernel choice, the for-loop one on CPU) and the per-iteration
`loss.item()` of BasicSR's `reduce_loss_dict`. BasicSR's SpyNet cannot run 32x32 crops (its
6-level pyramid reaches 0x0), so at 32x32x7 the comparison is against our own step with every
optimisation off. When the sources are not found the script says so and compares against our
unoptimised step everywhere.
"""
from __future__ import annotations

import argparse
import atexit
import dataclasses
import importlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import (OPTIMISED, UNOPTIMISED, Report, StepOptions, Timings, TrainStep,  # noqa: E402
                                build_model, clip_batch, cpu_supports_bf16, interleaved, make_adam, make_step, setup,
                                spread)

DEFAULT_REF_DIRS = ("/tmp/ref/basicsr-fixed-1.4.2",)


# ---------------------------------------------------------------------------------------------
# BasicSR's step
# ---------------------------------------------------------------------------------------------
def load_basicsr() -> tuple[type | None, type | None, str]:
    """(BasicVSR class, CharbonnierLoss class, description) from BasicSR's sources, or Nones and why not."""
    from tests import basicsr_ref

    if "VSR_BASICSR_REF" not in os.environ and basicsr_ref.reference_root() is None:
        for candidate in DEFAULT_REF_DIRS:
            if Path(candidate).is_dir():
                os.environ["VSR_BASICSR_REF"] = candidate
                break
    root = basicsr_ref.reference_root()
    if root is None:
        return None, None, ("BasicSR 1.4.2 sources not found (run `make basicsr-ref` or set VSR_BASICSR_REF); "
                            "comparing against our own step with every optimisation off instead")
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arch = basicsr_ref.load("archs.basicvsr_arch")
            basicsr_ref._namespace("basicsr.losses", root / "basicsr" / "losses")
            losses = importlib.import_module("basicsr.losses.basic_loss")
    except Exception as exc:  # noqa: BLE001 - any import failure means: no reference, say why
        return None, None, f"BasicSR sources at {root} failed to import ({exc}); comparing against our unoptimised step"
    return arch.BasicVSR, losses.CharbonnierLoss, (
        f"BasicSR 1.4.2 itself: basicsr.archs.basicvsr_arch.BasicVSR + basicsr.losses.basic_loss.CharbonnierLoss "
        f"from {root} (loaded by tests/basicsr_ref.py, no install), torch.optim.Adam with torch's default kernel, "
        f"loss.item() every step as BasicSR logs")


class BasicSRStep:
    """BasicSR's `VideoRecurrentModel.optimize_parameters`: zero_grad, forward, loss, backward,
    Adam step, then `reduce_loss_dict` reads the loss back (`.item()`)."""

    def __init__(self, basicvsr_cls: type, loss_cls: type, weights: dict, num_feat: int = 64, num_block: int = 7) -> None:
        self.model = basicvsr_cls(num_feat=num_feat, num_block=num_block, spynet_path=None).train()
        self.model.load_state_dict(weights)
        flow = [p for n, p in self.model.named_parameters() if "spynet" in n]
        normal = [p for n, p in self.model.named_parameters() if "spynet" not in n]
        self.optimizer = torch.optim.Adam([{"params": normal, "lr": 2e-4}, {"params": flow, "lr": 2e-4 * 0.125}],
                                          lr=2e-4, weight_decay=0, betas=(0.9, 0.99))
        self.loss = loss_cls(loss_weight=1.0, reduction="mean")

    def prepare(self, lq: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """BasicSR feeds the batch as it comes (NCHW frames, the whole GT clip)."""
        return lq, gt

    def __call__(self, lq: torch.Tensor, gt: torch.Tensor) -> float:
        self.optimizer.zero_grad()
        output = self.model(lq)
        l_pix = self.loss(output, gt)
        l_pix.backward()
        self.optimizer.step()
        return l_pix.item()


# ---------------------------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------------------------
def timed_pair(steps: dict, batch: int, frames: int, crop: int, rounds: int, warmup: int) -> Timings:
    lq, gt = clip_batch(batch, frames, crop)
    inputs = {name: step.prepare(lq, gt) for name, step in steps.items()}
    print(f"{crop}x{crop}x{frames} (batch {batch}): timing {', '.join(steps)}", file=sys.stderr, flush=True)
    return interleaved({name: (lambda s=step, x=inputs[name]: s(*x)) for name, step in steps.items()},
                       rounds=rounds, warmup=warmup)


def first_step_losses(steps: dict, batch: int, frames: int, crop: int) -> dict[str, float]:
    """Loss of the very first step from identical weights: the numerics check beside the timing."""
    lq, gt = clip_batch(batch, frames, crop, seed=1)
    losses = {}
    for name, step in steps.items():
        with torch.no_grad():
            model = step.model
            if isinstance(step, TrainStep):  # the trainer's loss: computed inside autocast
                x, y = step.prepare(lq, gt)
                with torch.autocast("cpu", dtype=step.amp_dtype or torch.bfloat16, enabled=step.amp_dtype is not None):
                    losses[name] = float(step.criterion(model(x), y))
            else:
                losses[name] = float(step.loss(model(lq), gt))
    return losses


def compare(report: Report, shapes: list[tuple[int, int]], batch: int, rounds: int, warmup: int, ours: StepOptions) -> None:
    basicvsr_cls, loss_cls, route = load_basicsr()
    report.add(f"Reference route: {route}.")
    report.add(f"Our step: {ours.label()}. Unoptimised step: {UNOPTIMISED.label()}.")
    rows, results = [], []
    for crop, frames in shapes:
        ours_model = build_model()
        weights = {k: v.clone() for k, v in ours_model.state_dict().items()}
        use_ref = basicvsr_cls is not None and crop >= 33  # BasicSR's SpyNet fails below 33 px
        if use_ref:
            other_name, other = "BasicSR", BasicSRStep(basicvsr_cls, loss_cls, weights)
        else:
            unopt_model = build_model()
            unopt_model.load_state_dict(weights)
            other_name, other = "ours (unoptimised)", make_step(unopt_model, UNOPTIMISED)
        steps = {other_name: other, "ours": make_step(ours_model, ours)}
        losses = first_step_losses(steps, batch, frames, crop)
        times = timed_pair(steps, batch, frames, crop, rounds, warmup)
        t_other, t_ours = times.median(other_name), times.median("ours")
        cpu_ratio = times.cpu_median(other_name) / times.cpu_median("ours")
        rel = abs(losses["ours"] - losses[other_name]) / abs(losses[other_name])
        rows.append([f"{crop}x{crop}x{frames}", batch, other_name, f"{t_other:.2f} ({spread(times.wall[other_name])})",
                     f"{t_ours:.2f} ({spread(times.wall['ours'])})", f"**{t_other / t_ours:.2f}x**",
                     f"{cpu_ratio:.2f}x", f"{rel:.1e}"])
        results.append({"shape": [crop, frames], "batch": batch, "against": other_name, "wall": times.wall,
                        "cpu": times.cpu, "speedup": t_other / t_ours, "cpu_speedup": cpu_ratio, "first_loss": losses})
    report.table(["LR crop x frames", "batch", "compared with", "their s/step (min-max)", "our s/step (min-max)",
                  "throughput ratio (ours / theirs)", "CPU-time ratio", "first-step loss rel. diff"], rows,
                 caption=f"Median wall-clock seconds per training step over {rounds} interleaved rounds (after {warmup} "
                         "warm-up step each); throughput ratio = their median time / our median time. CPU-time ratio: "
                         "the same from the process's CPU seconds (robust to other users of the machine). "
                         f"Our step: {ours.label()}.")
    report.data["compare"] = results
    report.data["reference_route"] = route


def sweep(report: Report, crop: int, frames: int, batch: int, rounds: int, warmup: int, with_compile: bool) -> None:
    configs = {
        "unoptimised (BasicSR-like)": UNOPTIMISED,
        "Adam fused": StepOptions(adam="fused"),
        "channels_last": StepOptions(channels_last=True),
        "bf16 autocast": StepOptions(amp="bf16"),
        "channels_last + bf16": StepOptions(channels_last=True, amp="bf16"),
        "channels_last + bf16 + fused Adam": StepOptions(channels_last=True, amp="bf16", adam="fused"),
        "... + activation checkpointing (opt-in, memory)": StepOptions(channels_last=True, amp="bf16", adam="fused",
                                                                       checkpoint=True),
    }
    if not cpu_supports_bf16():
        configs = {k: v for k, v in configs.items() if v.amp == "none"}
        report.add("This CPU has no native bf16 (oneDNN reports none): bf16 configurations skipped.")
    first_compile_s = None
    if with_compile:
        configs["all of the above + torch.compile"] = dataclasses.replace(OPTIMISED, compile=True)
        # a fresh inductor cache, so the first call shows what a new machine or torch version pays
        # (with a warm cache from an earlier run it takes seconds instead of minutes)
        cache = tempfile.mkdtemp(prefix="vsr_bench_inductor_")
        atexit.register(shutil.rmtree, cache, ignore_errors=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
    steps = {}
    weights = None
    for name, options in configs.items():
        model = build_model()
        if weights is None:
            weights = model.state_dict()
        model.load_state_dict(weights)
        steps[name] = make_step(model, options)
    lq, gt = clip_batch(batch, frames, crop)
    losses = first_step_losses(steps, batch, frames, crop)  # before any step changes the weights
    if with_compile:  # first call = trace + compile for this shape; timed apart
        step = steps["all of the above + torch.compile"]
        start = time.perf_counter()
        step(*step.prepare(lq, gt))
        first_compile_s = time.perf_counter() - start
    times = interleaved({n: (lambda s=s: s(*s.prepare(lq, gt))) for n, s in steps.items()}, rounds=rounds, warmup=warmup)
    base_name = next(iter(configs))
    rows = []
    for name in configs:
        rel = abs(losses[name] - losses[base_name]) / losses[base_name]
        rows.append([name, f"{times.median(name):.2f}", spread(times.wall[name]),
                     f"**{times.median(base_name) / times.median(name):.2f}x**",
                     f"{times.cpu_median(base_name) / times.cpu_median(name):.2f}x", f"{rel:.1e}"])
    report.table(["configuration", "median s/step", "min-max", "speedup vs unoptimised", "CPU-time speedup",
                  "first-step loss rel. diff"], rows,
                 caption=f"Switch sweep at {crop}x{crop}x{frames}, batch {batch}: {rounds} interleaved rounds "
                         f"after {warmup} warm-up step(s); medians of wall-clock time (and of process CPU time).")
    if first_compile_s is not None:
        report.add(f"torch.compile first call (trace + compile + one step) at this shape, empty inductor cache: "
                   f"{first_compile_s:.1f} s.")
    report.data["sweep"] = {"shape": [crop, frames], "batch": batch, "wall": times.wall, "cpu": times.cpu,
                            "losses": losses, "compile_first_call_s": first_compile_s}


def optimizer_alone(report: Report, rounds: int = 20) -> None:
    """The Adam step by itself (BasicVSR-M's parameters, fixed gradients): within a whole step
    its share is too small to see through the noise of a shared machine."""
    model = build_model()
    generator = torch.Generator().manual_seed(0)
    for param in model.parameters():
        param.grad = torch.randn(param.shape, generator=generator) * 1e-3
    optimizers = {kind: make_adam(model, kind) for kind in ("default", "foreach", "fused")}
    times = interleaved({kind: o.step for kind, o in optimizers.items()}, rounds=rounds, warmup=2, progress=False)
    base = times.median("default")
    rows = [[f"Adam {kind}", f"{times.median(kind) * 1e3:.1f}", f"{min(times.wall[kind]) * 1e3:.1f}",
             f"{base / times.median(kind):.2f}x"] for kind in optimizers]
    params = sum(p.numel() for p in model.parameters())
    report.table(["optimizer step", "median ms", "min ms", "speedup vs torch's default (for-loop on CPU)"], rows,
                 caption=f"Optimizer step alone ({params / 1e6:.2f} M parameters, {rounds} interleaved rounds).")
    report.data["optimizer_ms"] = {k: [t * 1e3 for t in v] for k, v in times.wall.items()}


def parse_shape(text: str) -> tuple[int, int]:
    crop, frames = text.lower().split("x")[0], text.lower().split("x")[-1]
    return int(crop), int(frames)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", default=["48x48x7", "64x64x15", "32x32x7"],
                   help="LR crop x crop x frames to compare at")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--sweep", action="store_true", help="time each speed switch instead of comparing with BasicSR")
    p.add_argument("--sweep-shape", default="48x48x7")
    p.add_argument("--compile", action="store_true", help="with --sweep: include torch.compile")
    p.add_argument("--name", default=None, help="results file name (default bench_step / bench_step_sweep)")
    args = p.parse_args(argv)
    setup()
    if args.sweep:
        report = Report(args.name or "bench_step_sweep", "Training-step speed switches (BasicVSR-M, CPU)")
        crop, frames = parse_shape(args.sweep_shape)
        sweep(report, crop, frames, args.batch, args.rounds, args.warmup, args.compile)
        optimizer_alone(report)
    else:
        report = Report(args.name or "bench_step", "Training step: ours vs BasicSR (BasicVSR-M, CPU)")
        compare(report, [parse_shape(s) for s in args.shapes], args.batch, args.rounds, args.warmup, OPTIMISED)
    report.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
