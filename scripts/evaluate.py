"""Evaluate a checkpoint on a test set: PSNR/SSIM per clip and on average, as a table and JSON.

    python scripts/evaluate.py -opt options/demo_cpu.yml --bicubic          # newest checkpoint of that run
    python scripts/evaluate.py -opt options/basicvsr_reds.yml --checkpoint net_g_300000.pth --phase val
    python scripts/evaluate.py -opt X --checkpoint BasicVSR_REDS4.pth --param-key params --save-frames out/

Metrics follow BasicSR's definitions on 8-bit frames (RGB on REDS4, Y channel on Vimeo-90K-T: set
`val.metrics.psnr.test_y_channel` in the options). `--bicubic` adds MATLAB-bicubic upsampling as a baseline
column, the number every VSR paper's table starts from.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import datasets  # noqa: E402
import models  # noqa: E402
from vsr_accel import metrics  # noqa: E402
from vsr_accel.checkpoint import load_weights_strict, read_weights  # noqa: E402
from vsr_accel.distributed import pick_device  # noqa: E402
from vsr_accel.errors import CheckpointError, report_user_errors  # noqa: E402
from datasets.matlab_resize import imresize  # noqa: E402
from vsr_accel.evaluation import ScoreTable, evaluate, format_table, restore_clip  # noqa: E402
from vsr_accel.options import Options, load_options  # noqa: E402


def matlab_bicubic(lq: torch.Tensor, scale: int) -> torch.Tensor:
    """The "Bicubic" row of VSR papers: MATLAB's imresize (antialiased bicubic) of each LR frame."""
    frames = [imresize(frame.permute(1, 2, 0).numpy(), scale) for frame in lq]
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).clamp_(0, 1)


def newest_checkpoint(opt: Options) -> Path:
    folder = Path(opt.path.experiments_root) / opt.name / "models"
    found = sorted(((int(m.group(1)), p) for p in folder.glob("net_g_*.pth")
                    if (m := re.match(r"net_g_(\d+)\.pth$", p.name))), reverse=True)
    if not found:
        raise CheckpointError(f"{folder}: no net_g_<iter>.pth checkpoint; train first or pass --checkpoint")
    return found[0][1]


def save_frames(folder: Path, clip: str, sr: torch.Tensor, names: list[str]) -> None:
    out = folder / clip
    out.mkdir(parents=True, exist_ok=True)
    for frame, name in zip(sr, names):
        cv2.imwrite(str(out / f"{Path(name).stem}.png"), cv2.cvtColor(metrics.tensor_to_uint8_image(frame), cv2.COLOR_RGB2BGR))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-opt", "--opt", required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--checkpoint", default=None, help="weights file (default: newest of the run)")
    p.add_argument("--param-key", default=None, help="params / params_ema (default: params_ema if present)")
    p.add_argument("--phase", default="val", help="datasets.<phase> to evaluate on")
    p.add_argument("--bicubic", action="store_true", help="also score bicubic upsampling")
    p.add_argument("--save-frames", default=None, help="folder for the SR frames (png)")
    p.add_argument("--json", default=None, help="write the scores here (default: beside the run)")
    p.add_argument("--device", default=None)
    p.add_argument("--debug", action="store_true")
    args = p.parse_args(argv)
    return report_user_errors(lambda: run(args), args.debug)


def run(args: argparse.Namespace) -> int:
    opt = load_options(args.opt, args.overrides)
    device = pick_device(0, args.device)
    test_set = datasets.build_dataset(opt.dataset_kwargs(args.phase), phase=args.phase)
    model = models.build_network(opt.network_g).to(device)
    path = Path(args.checkpoint) if args.checkpoint else newest_checkpoint(opt)
    load_weights_strict(model, read_weights(path, args.param_key), str(path))
    window = None if models.is_recurrent(model) else getattr(model, "num_frame", None)
    psnr_opt = (opt.val.metrics.get("psnr", {}) if opt.val else {}) or {}
    common = dict(crop_border=int(psnr_opt.get("crop_border", 0)),
                  test_y_channel=bool(psnr_opt.get("test_y_channel", False)),
                  center_frame_only=bool(opt.val.center_frame_only) if opt.val else False)

    on_clip = None
    if args.save_frames:
        on_clip = lambda clip, sr, item: save_frames(Path(args.save_frames), clip, sr, item["frame_names"])  # noqa: E731
    tables: dict[str, ScoreTable] = {}
    with torch.inference_mode():
        tables[opt.network_g["type"]] = evaluate(lambda lq: restore_clip(model, lq, device, window), test_set,
                                                 on_clip=on_clip, **common)
        if args.bicubic:
            tables["bicubic"] = evaluate(lambda lq: matlab_bicubic(lq, opt.scale), test_set, **common)

    channel = "Y" if common["test_y_channel"] else "RGB"
    print(f"\n{opt.name}: {path} on datasets.{args.phase} ({channel}, crop_border {common['crop_border']})\n")
    print(format_table(tables))
    if args.bicubic:
        gain = tables[opt.network_g["type"]].psnr - tables["bicubic"].psnr
        print(f"\nmodel - bicubic: {gain:+.2f} dB PSNR")
    out = Path(args.json) if args.json else Path(opt.path.experiments_root) / opt.name / f"eval_{args.phase}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"checkpoint": str(path), "phase": args.phase, "channel": channel,
                               **{name: t.as_dict() for name, t in tables.items()}}, indent=2))
    print(f"scores written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
