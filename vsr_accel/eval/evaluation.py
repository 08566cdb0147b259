"""Scoring restored clips, shared by validation during training and the eval script.

Model-agnostic: `evaluate` takes any `restore(lq) -> sr` (a network through
`vsr_accel.infer.restore.restore_clip`, or bicubic upsampling). Reported numbers are computed on
8-bit frames with BasicSR's definitions (`vsr_accel.eval.metrics`), under a test set's protocol
(`vsr_accel.eval.protocols.Protocol`: RGB or Y, crop border, centre frame or all, flipped clip or
not), which is what makes a number comparable with a paper's; `format_benchmark_table` prints
the published six-column table with each column's protocol under its name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch

from vsr_accel.eval import metrics
from vsr_accel.eval.protocols import Protocol


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


def restore_flipped(restore: Callable[[torch.Tensor], torch.Tensor], lq: torch.Tensor) -> torch.Tensor:
    """BasicSR's `val.flip_seq` (VideoRecurrentModel.test; MMagic's MirrorSequence does the same):
    ONE pass over the clip followed by its reverse (2T frames: 1..T, T..1), then frame t is the
    mean of output t and output 2T-1-t. Not two separate passes: a recurrent model's forward
    branch carries the first half into the second, so the results differ.

    Averaged in float before any quantisation, as BasicSR does; `restore` should therefore not
    round (a clamp inside `restore` only matters where outputs leave [0, 1])."""
    n = lq.shape[0]
    out = restore(torch.cat([lq, lq.flip(0)], dim=0))
    if out.shape[0] != 2 * n:
        raise ValueError(f"flip_seq: restore returned {out.shape[0]} frames for a {2 * n}-frame clip")
    return 0.5 * (out[:n] + out[n:].flip(0))


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
             test_y_channel: bool = False, center_frame_only: bool = False, flip_seq: bool = False,
             max_clips: int | None = None,
             on_clip: Callable[[str, torch.Tensor, dict], None] | None = None) -> ScoreTable:
    """Score `restore(lq) -> sr` on every clip of a test dataset (keyword names are `Protocol`'s,
    so `evaluate(restore, ds, **dataclasses.asdict(protocol))` works).

    `flip_seq`: see `restore_flipped`. `center_frame_only`: only output frame T//2 is scored
    (BasicSR's `output[:, n // 2]`: im4 of a Vimeo-90K septuplet), against GT frame T//2, or the
    GT itself when the dataset gives only the centre frame. `on_clip` still sees every frame."""
    table = ScoreTable()
    for i in range(len(dataset) if max_clips is None else min(max_clips, len(dataset))):
        item = dataset[i]
        sr = restore_flipped(restore, item["lq"]) if flip_seq else restore(item["lq"])
        gt = item["gt"]
        scored_sr, scored_gt = sr, gt
        if center_frame_only:
            centre = sr.shape[0] // 2
            scored_sr = sr[centre:centre + 1]
            scored_gt = gt if gt.shape[0] == 1 else gt[centre:centre + 1]
        table.rows.append(score_clip(scored_sr, scored_gt, item["clip"], crop_border, test_y_channel))
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


def format_benchmark_table(columns: list[tuple[str, Protocol]], results: dict[str, dict[str, ScoreTable]]) -> str:
    """The published table: one row per method, one `PSNR/SSIM` cell per test set (in `columns`
    order), "-" for a set that was not evaluated; the second row gives each set's protocol."""
    header = "| method | " + " | ".join(name for name, _ in columns) + " |"
    rule = "|---|" + "---:|" * len(columns)
    protocol_row = "| protocol | " + " | ".join(p.describe() for _, p in columns) + " |"
    lines = [header, rule, protocol_row]
    for method, tables in results.items():
        cells = [f"{tables[name].psnr:.2f}/{tables[name].ssim:.4f}" if name in tables else "-"
                 for name, _ in columns]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
