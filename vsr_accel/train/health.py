"""Is the network still using its neighbouring frames? Flow and propagation probes.

A recurrent VSR network fails silently in two ways that no loss curve shows:

- **flow diverged**: its flow network (SpyNet), trained with too high an LR, from zero, or on
  crops it cannot handle, predicts displacements larger than the frame. Every warp then samples
  outside the frame (zeros), and the network becomes a single-frame network that still trains.
- **propagation dead**: for that or any other reason, the output no longer depends on the
  neighbouring frames: restoring a clip gives the same frames as restoring each frame alone.

`flow_magnitude` measures the first on a training batch (one extra flow-network forward, at log
windows only), `FlowWatch` decides when it is sustained, and `propagation_gap` measures the second
(a clip restored whole vs frame by frame). The trainer logs both and warns or stops
(`train.health`); the ablation records keep both for every run's final weights.

Models are duck-typed: a recurrent model with a `spynet` attribute (BasicVSR, BasicVSR++,
IconVSR) has a flow network; others (EDVR) are skipped.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from vsr_accel.core.distributed import DistContext, all_reduce_max_, all_reduce_mean_, broadcast_object
from vsr_accel.core.errors import VSRError

FLOW_DIVERGED = "flow diverged"
PROPAGATION_DEAD = "propagation dead"
ADVICE = ("set network_g.spynet_path to a pretrained SpyNet (BasicSR's spynet_sintel_final-3d2a1287.pth, or "
          "scripts/pretrain_spynet.py without a download), keep it frozen for the first train.fix_flow "
          "iterations, lower train.flow_lr_mul (the recipes use 0.125), or train on larger crops (SpyNet "
          "has no reference behaviour below 33 px)")


def flow_network(model: torch.nn.Module) -> torch.nn.Module | None:
    """The model's flow network (its `spynet`), or None for models without one."""
    net = getattr(model, "spynet", None)
    return net if isinstance(net, torch.nn.Module) else None


@dataclass(frozen=True)
class FlowStats:
    mean_px: float  # mean |flow| in LR pixels
    max_px: float
    frame_px: int  # the shorter side of the frames the flow was measured on

    @property
    def exceeds_frame(self) -> bool:
        """The average displacement is larger than the frame: almost every warp leaves it."""
        return self.mean_px > self.frame_px


@torch.no_grad()
def flow_magnitude(model: torch.nn.Module, lq: torch.Tensor) -> FlowStats | None:
    """Mean and max |flow| between consecutive frames of a (b, t, 3, h, w) batch, one direction
    (frame i+1 onto frame i, what the backward branch warps with), in LR pixels; None for a
    model without a flow network or a one-frame clip. Reads the result back (one host sync)."""
    net = flow_network(model)
    if net is None or lq.dim() != 5 or lq.shape[1] < 2:
        return None
    b, t, c, h, w = lq.shape
    dtype = next(net.parameters()).dtype
    earlier = lq[:, :-1].reshape(-1, c, h, w).to(dtype)
    later = lq[:, 1:].reshape(-1, c, h, w).to(dtype)
    magnitude = net(earlier, later).float().norm(dim=1)
    magnitude = magnitude.nan_to_num(nan=float("inf"))
    mean, top = torch.stack([magnitude.mean(), magnitude.max()]).tolist()
    return FlowStats(mean_px=mean, max_px=top, frame_px=min(h, w))


@dataclass
class FlowWatch:
    """Flags a flow that exceeds the frame at `patience` log windows in a row (one window can
    be a freak batch; a sustained one is a broken flow network)."""
    patience: int = 2
    streak: int = field(default=0, init=False)

    def update(self, stats: FlowStats | None) -> bool:
        """True when the divergence reaches `patience` windows in a row, and every 10 windows
        while it lasts (a reminder, not a line per window); None (nothing measured) changes nothing."""
        if stats is None:
            return False
        self.streak = self.streak + 1 if stats.exceeds_frame else 0
        return self.streak == self.patience or (self.streak > self.patience and (self.streak - self.patience) % 10 == 0)


def diverged_message(stats: FlowStats, it: int, stage: str, patience: int) -> str:
    return (f"{FLOW_DIVERGED} at iteration {it} ({stage}): mean |flow| {stats.mean_px:.1f} px, max "
            f"{stats.max_px:.1f} px on {stats.frame_px}-px LR frames, beyond the frame for {patience} log windows "
            f"in a row; warps now sample outside the frame and the network restores frames alone. To fix: {ADVICE}")


@torch.no_grad()
def propagation_gap(restore: Callable[[torch.Tensor], torch.Tensor], clip: torch.Tensor) -> float:
    """Max |restored whole - restored frame by frame| over a (t, 3, h, w) clip (t >= 2), on the
    [0, 1] outputs: 0 when the output ignores the neighbouring frames."""
    whole = restore(clip)
    alone = torch.cat([restore(clip[i:i + 1]) for i in range(clip.shape[0])])
    return float((whole.float() - alone.float()).abs().max())


def dead_message(gap: float, threshold: float, it: int, frames: int) -> str:
    return (f"{PROPAGATION_DEAD} at iteration {it}: restoring the validation clip's first {frames} frames "
            f"together and one by one differs by at most {gap:.2e} (< {threshold:g}), so the output no longer "
            f"depends on the neighbouring frames. To fix: {ADVICE}")


@dataclass(frozen=True)
class ProbeResult:
    """What `result.json`'s `propagation` records for a run's final weights on a held-out clip."""
    max_abs_diff_vs_per_frame: float
    flow_mean_px: float | None
    flow_max_px: float | None
    frames: int

    def as_dict(self) -> dict[str, float | int | None]:
        return {"max_abs_diff_vs_per_frame": self.max_abs_diff_vs_per_frame, "flow_mean_px": self.flow_mean_px,
                "flow_max_px": self.flow_max_px, "frames": self.frames}


def probe(model: torch.nn.Module, restore: Callable[[torch.Tensor], torch.Tensor], clip: torch.Tensor,
          device: torch.device, frames: int | None = None) -> ProbeResult:
    """Propagation gap and flow statistics of `model` on the first `frames` frames of a clip
    (all when None)."""
    clip = clip if frames is None else clip[:frames]
    gap = propagation_gap(restore, clip)
    was_training = model.training
    model.eval()
    try:
        stats = flow_magnitude(model, clip[None].to(device))
    finally:
        model.train(was_training)
    return ProbeResult(gap, stats.mean_px if stats else None, stats.max_px if stats else None, clip.shape[0])


class HealthGuard:
    """The trainer's side of `train.health` (options `check`, `on_failure`, `flow_patience`,
    `probe_frames`, `min_propagation`): `flow` at every log window (every rank measures its batch,
    the ranks agree on the numbers, so a stop happens on all of them together), `propagation` at
    every validation (rank 0 probes, the others receive its result). A failure is a `warning:`
    line, or with `on_failure: stop` a VSRError that ends the run (the checkpoints are kept)."""

    def __init__(self, options: Any, model: torch.nn.Module, recurrent: bool, ctx: DistContext, log: Any) -> None:
        self.options, self.ctx, self.log = options, ctx, log
        self.watch_flow = options.check and flow_network(model) is not None
        self.probe_propagation = options.check and recurrent
        self.flow_watch = FlowWatch(options.flow_patience)

    def flow(self, model: torch.nn.Module, lq: torch.Tensor) -> FlowStats | None:
        """This window's batch flow: the mean over ranks of the mean |flow|, the largest |flow| of any rank."""
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
