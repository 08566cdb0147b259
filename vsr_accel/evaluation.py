"""Restoring whole clips and scoring them, shared by validation during training and the eval script.

Model-agnostic: a recurrent model sees the whole clip at once (`window=None`); a sliding-window
model (EDVR) sees `window` frames around each output frame, padded at the clip ends like
BasicSR's `generate_frame_indices` ('reflection_circle' is BasicSR's REDS4 test default).
Reported numbers are computed on 8-bit frames with BasicSR's definitions (vsr_accel.metrics).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch

from vsr_accel import metrics
from vsr_accel.chunking import window_indices


@torch.no_grad()
def restore_clip(model: torch.nn.Module, lq: torch.Tensor, device: torch.device,
                 window: int | None = None, padding: str = "reflection_circle") -> torch.Tensor:
    """(T,3,h,w) in [0,1] -> (T,3,sh,sw) on the CPU, clamped to [0,1]."""
    was_training = model.training
    model.eval()
    try:
        if window is None:
            out = model(lq.unsqueeze(0).to(device))[0]
        else:
            frames = [model(lq[window_indices(i, lq.shape[0], window, padding)].unsqueeze(0).to(device))[0]
                      for i in range(lq.shape[0])]
            out = torch.stack(frames)
    finally:
        model.train(was_training)
    return out.float().clamp_(0, 1).cpu()


@dataclass
class ClipScores:
    clip: str
    psnr: float
    ssim: float
    frames: int


@dataclass
class ScoreTable:
    rows: list[ClipScores] = field(default_factory=list)

    @property
    def psnr(self) -> float:
        return float(np.mean([r.psnr for r in self.rows])) if self.rows else float("nan")

    @property
    def ssim(self) -> float:
        return float(np.mean([r.ssim for r in self.rows])) if self.rows else float("nan")

    def as_dict(self) -> dict:
        return {"average": {"psnr": self.psnr, "ssim": self.ssim},
                "clips": [r.__dict__ for r in self.rows]}


def score_clip(sr: torch.Tensor, gt: torch.Tensor, clip: str, crop_border: int = 0,
               test_y_channel: bool = False, frame_ids: Iterable[int] | None = None) -> ClipScores:
    """Mean PSNR/SSIM over frames (BasicSR averages per frame, then per clip)."""
    ids = list(range(sr.shape[0])) if frame_ids is None else list(frame_ids)
    psnrs, ssims = [], []
    for i in ids:
        a = metrics.tensor_to_uint8_image(sr[i])
        b = metrics.tensor_to_uint8_image(gt[i])
        psnrs.append(metrics.calculate_psnr(a, b, crop_border, test_y_channel=test_y_channel, channel_order="rgb"))
        ssims.append(metrics.calculate_ssim(a, b, crop_border, test_y_channel=test_y_channel, channel_order="rgb"))
    return ClipScores(clip=clip, psnr=float(np.mean(psnrs)), ssim=float(np.mean(ssims)), frames=len(ids))


def evaluate(restore: Callable[[torch.Tensor], torch.Tensor], dataset, *, crop_border: int = 0,
             test_y_channel: bool = False, center_frame_only: bool = False, max_clips: int | None = None,
             on_clip: Callable[[str, torch.Tensor, dict], None] | None = None) -> ScoreTable:
    """Score `restore(lq) -> sr` on every clip of a test dataset."""
    table = ScoreTable()
    for i in range(len(dataset) if max_clips is None else min(max_clips, len(dataset))):
        item = dataset[i]
        sr = restore(item["lq"])
        gt = item["gt"]
        ids = [gt.shape[0] // 2] if center_frame_only else None
        table.rows.append(score_clip(sr, gt, item["clip"], crop_border, test_y_channel, ids))
        if on_clip is not None:
            on_clip(item["clip"], sr, item)
    return table


def format_table(named: dict[str, ScoreTable]) -> str:
    """Markdown table: one row per clip, one PSNR/SSIM column pair per method, and the average."""
    names = list(named)
    clips = [r.clip for r in next(iter(named.values())).rows]
    header = "| clip | " + " | ".join(f"{n} PSNR | {n} SSIM" for n in names) + " |"
    rule = "|---|" + "---:|---:|" * len(names)
    lines = [header, rule]
    for j, clip in enumerate(clips):
        cells = " | ".join(f"{named[n].rows[j].psnr:.2f} | {named[n].rows[j].ssim:.4f}" for n in names)
        lines.append(f"| {clip} | {cells} |")
    cells = " | ".join(f"**{named[n].psnr:.2f}** | **{named[n].ssim:.4f}**" for n in names)
    lines.append(f"| average | {cells} |")
    return "\n".join(lines)
