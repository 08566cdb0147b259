"""The trainer's flow and propagation guard (`train.health`): is the network still using its
neighbouring frames?

A recurrent VSR network fails silently in two ways that no loss curve shows:

- **flow diverged**: its flow network (SpyNet), trained with too high an LR, from zero, or on
  crops it cannot handle, predicts displacements larger than the frame. Every warp then samples
  outside the frame (zeros), and the network becomes a single-frame network that still trains.
- **propagation dead**: for that or any other reason, the output no longer depends on the
  neighbouring frames: restoring a clip gives the same frames as restoring each frame alone.

The probes are `vsr_accel.eval.probes`; this is the trainer's guard around them: the flow is
measured on a training batch at log intervals only, `FlowWatch` decides when a divergence is
sustained, the propagation gap is measured at every validation, and a failure is logged or stops
the run (`train.health`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from vsr_accel.core.distributed import DistContext, all_reduce_max_, all_reduce_mean_, broadcast_object
from vsr_accel.core.errors import VSRError
from vsr_accel.eval.probes import FlowStats, flow_magnitude, flow_network, propagation_gap

FLOW_DIVERGED = "flow diverged"
PROPAGATION_DEAD = "propagation dead"
ADVICE = ("set network_g.spynet_path to a pretrained SpyNet (BasicSR's spynet_sintel_final-3d2a1287.pth, or "
          "scripts/pretrain_spynet.py without a download), keep it frozen for the first train.fix_flow "
          "iterations, lower train.flow_lr_mul (the recipes use 0.125), or train on larger crops (SpyNet "
          "has no reference behaviour below 33 px)")


@dataclass
class FlowWatch:
    """Flags a flow that exceeds the frame at `patience` log intervals in a row (one interval's
    batch can be a freak; a sustained divergence is a broken flow network)."""
    patience: int = 2
    streak: int = field(default=0, init=False)

    def update(self, stats: FlowStats | None) -> bool:
        """True when the divergence reaches `patience` intervals in a row, and every 10 intervals
        while it lasts (a reminder, not a line per interval); None (nothing measured) changes nothing."""
        if stats is None:
            return False
        self.streak = self.streak + 1 if stats.exceeds_frame else 0
        return self.streak == self.patience or (self.streak > self.patience and (self.streak - self.patience) % 10 == 0)


def diverged_message(stats: FlowStats, it: int, stage: str, patience: int) -> str:
    return (f"{FLOW_DIVERGED} at iteration {it} ({stage}): mean |flow| {stats.mean_px:.1f} px, max "
            f"{stats.max_px:.1f} px on {stats.frame_px}-px LR frames, beyond the frame for {patience} log windows "
            f"in a row; warps now sample outside the frame and the network restores frames alone. To fix: {ADVICE}")


def dead_message(gap: float, threshold: float, it: int, frames: int) -> str:
    return (f"{PROPAGATION_DEAD} at iteration {it}: restoring the validation clip's first {frames} frames "
            f"together and one by one differs by at most {gap:.2e} (< {threshold:g}), so the output no longer "
            f"depends on the neighbouring frames. To fix: {ADVICE}")


class HealthGuard:
    """The trainer's side of `train.health` (options `check`, `on_failure`, `flow_patience`,
    `probe_frames`, `min_propagation`): `flow` at every log interval (every rank measures its batch,
    the ranks agree on the numbers, so a stop happens on all of them together), `propagation` at
    every validation (rank 0 probes, the others receive its result). A failure is a `warning:`
    line, or with `on_failure: stop` a VSRError that ends the run (the checkpoints are kept)."""

    def __init__(self, options: Any, model: torch.nn.Module, recurrent: bool, ctx: DistContext, log: Any) -> None:
        self.options, self.ctx, self.log = options, ctx, log
        self.watch_flow = options.check and flow_network(model) is not None
        self.probe_propagation = options.check and recurrent
        self.flow_watch = FlowWatch(options.flow_patience)

    def flow(self, model: torch.nn.Module, lq: torch.Tensor) -> FlowStats | None:
        """This interval's batch flow: the mean over ranks of the mean |flow|, the largest |flow| of any rank."""
        stats = flow_magnitude(model, lq) if self.watch_flow else None
        if stats is None or not self.ctx.is_distributed:
            return stats
        mean = all_reduce_mean_(torch.tensor([stats.mean_px], device=self.ctx.device), self.ctx).item()
        top = all_reduce_max_(torch.tensor([stats.max_px], device=self.ctx.device), self.ctx).item()
        return FlowStats(mean, top, stats.frame_px)

    def check_flow(self, stats: FlowStats | None, it: int, stage: str) -> None:
        if self.flow_watch.update(stats):
            self.fail(diverged_message(stats, it, stage, self.options.flow_patience))

    def propagation(self, restore: Callable[[torch.Tensor], torch.Tensor], clip: Callable[[], torch.Tensor | None],
                    it: int) -> float | None:
        """Rank 0 restores the first `probe_frames` frames of `clip()` (the first validation clip;
        None without one) whole and frame by frame; logged, and checked against `min_propagation`."""
        if not self.probe_propagation:
            return None
        gap = None
        if self.ctx.is_main:
            frames = clip()
            frames = None if frames is None else frames[:self.options.probe_frames]
            gap = propagation_gap(restore, frames) if frames is not None and frames.shape[0] >= 2 else None
        gap = broadcast_object(gap, self.ctx)
        if gap is None:
            return None
        self.log.info(f"propagation @ {it}: max |whole clip - frame by frame| {gap:.3e} on the first "
                      f"{self.options.probe_frames} validation frames")
        self.log.scalars("health", {"propagation_max_abs_diff": gap}, it)
        if gap < self.options.min_propagation:
            self.fail(dead_message(gap, self.options.min_propagation, it, self.options.probe_frames))
        return gap

    def fail(self, message: str) -> None:
        if self.options.on_failure == "stop":
            raise VSRError(f"{message}. Stopped (train.health.on_failure: stop); the checkpoints written so far "
                           f"are kept")
        self.log.info(f"warning: {message} (train.health.on_failure: stop ends the run instead)")
