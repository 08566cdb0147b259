"""Is the network still using its neighbouring frames? Flow and propagation probes.

A recurrent VSR network fails silently in two ways that no loss curve shows: its flow network
(SpyNet) predicts displacements larger than the frame, so every warp samples outside it and the
network restores frames alone ("flow diverged"); or, for that or any other reason, its output no
longer depends on the neighbouring frames ("propagation dead").

`flow_magnitude` measures the first on a batch (one extra flow-network forward) and
`propagation_gap` the second (a clip restored whole vs frame by frame); `probe` takes both on a
run's final weights (`scripts/evaluate.py --probe`, the ablation records), and the trainer's guard
(`vsr_accel.train.health`) watches them during training.

Models are duck-typed: a recurrent model with a `spynet` attribute (BasicVSR, BasicVSR++,
IconVSR) has a flow network; others (EDVR) are skipped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


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


@torch.no_grad()
def restore_whole_and_alone(restore: Callable[[torch.Tensor], torch.Tensor],
                            clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A (t, 3, h, w) clip restored whole, and frame by frame (each frame as a one-frame clip)."""
    return restore(clip), torch.cat([restore(clip[i:i + 1]) for i in range(clip.shape[0])])


def propagation_gap(restore: Callable[[torch.Tensor], torch.Tensor], clip: torch.Tensor) -> float:
    """Max |restored whole - restored frame by frame| over a (t, 3, h, w) clip (t >= 2), on the
    [0, 1] outputs: 0 when the output ignores the neighbouring frames."""
    whole, alone = restore_whole_and_alone(restore, clip)
    return float((whole.float() - alone.float()).abs().max())


@dataclass(frozen=True)
class ProbeResult:
    """What `result.json`'s `propagation` records for a run's final weights on a held-out clip."""
    max_abs_diff_vs_per_frame: float
    flow_mean_px: float | None
    flow_max_px: float | None
    frames: int
    # with the clip's GT: PSNR of the clip restored whole and frame by frame, i.e. what propagation adds
    psnr_whole: float | None = None
    psnr_per_frame: float | None = None

    def as_dict(self) -> dict[str, float | int | None]:
        data = {"max_abs_diff_vs_per_frame": self.max_abs_diff_vs_per_frame, "flow_mean_px": self.flow_mean_px,
                "flow_max_px": self.flow_max_px, "frames": self.frames}
        if self.psnr_whole is not None and self.psnr_per_frame is not None:
            data.update(psnr_whole=self.psnr_whole, psnr_per_frame=self.psnr_per_frame,
                        psnr_gain_vs_per_frame=self.psnr_whole - self.psnr_per_frame)
        return data


def probe(model: torch.nn.Module, restore: Callable[[torch.Tensor], torch.Tensor], clip: torch.Tensor,
          device: torch.device, frames: int | None = None, gt: torch.Tensor | None = None,
          psnr: Callable[[torch.Tensor, torch.Tensor], float] | None = None) -> ProbeResult:
    """Propagation gap and flow statistics of `model` on the first `frames` frames of a clip
    (all when None); with the clip's `gt` and a `psnr(sr, gt)` scorer, also the PSNR of the
    clip restored whole and frame by frame (what propagation is worth, not only whether it acts)."""
    clip = clip if frames is None else clip[:frames]
    whole, alone = restore_whole_and_alone(restore, clip)
    gap = float((whole.float() - alone.float()).abs().max())
    scores = (None, None)
    if gt is not None and psnr is not None:
        gt = gt[:clip.shape[0]]
        scores = (psnr(whole, gt), psnr(alone, gt))
    was_training = model.training
    model.eval()
    try:
        stats = flow_magnitude(model, clip[None].to(device))
    finally:
        model.train(was_training)
    return ProbeResult(gap, stats.mean_px if stats else None, stats.max_px if stats else None, clip.shape[0], *scores)
