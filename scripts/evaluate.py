"""Evaluate a checkpoint: PSNR/SSIM per clip and on average, as tables and JSON.

    python scripts/evaluate.py -opt options/demo_cpu.yml --bicubic          # newest checkpoint of that run
    python scripts/evaluate.py -opt options/basicvsr_reds_baseline.yml --checkpoint net_g_300000.pth --phase val
    python scripts/evaluate.py -opt X --checkpoint BasicVSR_REDS4.pth --param-key params --save-frames out/
    python scripts/evaluate.py -opt X --checkpoint W.pth --testsets data --bicubic       # the six-column table

One phase (`--phase`, default val) is scored with the options' protocol: `val.metrics.psnr.test_y_channel`
and `crop_border`, `val.center_frame_only`, `val.flip_seq` (BasicSR's names). `--testsets ROOT` instead
scores every standard test set found under ROOT in BasicSR's folder layout (REDS4/GT + sharp_bicubic,
vimeo90k/vimeo_septuplet/sequences + BIx4/BDx4 + meta_info_Vimeo90K_test_GT.txt, Vid4/GT + BIx4/BDx4,
UDM10/GT + BDx4; see datasets/test_sets.py), each with its published protocol, and prints the table of
REDS4 (BI), Vimeo-90K-T (BI), Vid4 (BI), UDM10 (BD), Vimeo-90K-T (BD), Vid4 (BD), "-" for absent sets.
`--bicubic` adds MATLAB-bicubic upsampling as a baseline row, the number every VSR paper's table starts from.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import datasets  # noqa: E402
import models  # noqa: E402
from vsr_accel.eval import metrics  # noqa: E402
from vsr_accel.core.checkpoint import WEIGHTS_NAME, numbered_files  # noqa: E402
from vsr_accel.core.distributed import pick_device  # noqa: E402
from vsr_accel.core.errors import CheckpointError, ConfigError, DataError, run_guarded  # noqa: E402
from datasets.matlab_resize import imresize  # noqa: E402
from datasets.test_sets import STANDARD_TEST_SETS, find_test_sets  # noqa: E402
from vsr_accel.eval.evaluation import ScoreTable, evaluate, format_benchmark_table, format_table, score_clip  # noqa: E402
from vsr_accel.eval.protocols import Protocol  # noqa: E402
from vsr_accel.infer.restore import restore_clip  # noqa: E402
from vsr_accel.core.fsio import atomic_write_text  # noqa: E402
from vsr_accel.eval.probes import ProbeResult, probe  # noqa: E402
from vsr_accel.train.options import Options, load_options  # noqa: E402
from vsr_accel.train.run_state import RunDirs  # noqa: E402
from vsr_accel.core.cli import ArgumentParser  # noqa: E402


def matlab_bicubic(lq: torch.Tensor, scale: int) -> torch.Tensor:
    """The "Bicubic" row of VSR papers: MATLAB's imresize (antialiased bicubic) of each LR frame."""
    frames = [imresize(frame.permute(1, 2, 0).numpy(), scale) for frame in lq]
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).clamp_(0, 1)


def newest_checkpoint(opt: Options) -> Path:
    folder = RunDirs(Path(opt.path.experiments_root) / opt.name).models
    found = numbered_files(folder, WEIGHTS_NAME)
    if not found:
        raise CheckpointError(f"{folder}: no net_g_<iter>.pth checkpoint; train first or pass --checkpoint")
    return found[0]


def save_frames(folder: Path, clip: str, sr: torch.Tensor, names: list[str]) -> None:
    out = folder / clip
    out.mkdir(parents=True, exist_ok=True)
    for frame, name in zip(sr, names):
        cv2.imwrite(str(out / f"{Path(name).stem}.png"), cv2.cvtColor(metrics.tensor_to_uint8_image(frame), cv2.COLOR_RGB2BGR))


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-opt", "--opt", required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--checkpoint", default=None, help="weights file (default: newest of the run): BasicSR .pth, "
                   "a bare state_dict, MMagic's state_dict, or a vsr-accel training state (<iter>.state)")
    p.add_argument("--param-key", default=None, help="params / params_ema (default: params_ema if present)")
    p.add_argument("--phase", default="val", help="datasets.<phase> to evaluate on")
    p.add_argument("--testsets", default=None, metavar="ROOT",
                   help="score the standard test sets found under ROOT (Vid4/, UDM10/, vimeo90k/, REDS4/) "
                        "with their published protocols instead of --phase")
    p.add_argument("--only", default=None, metavar="KEYS",
                   help="with --testsets: comma-separated subset of " + ",".join(t.key for t in STANDARD_TEST_SETS))
    p.add_argument("--bicubic", action="store_true", help="also score bicubic upsampling")
    p.add_argument("--probe", action="store_true",
                   help="also check that the network uses its neighbouring frames, on the first clip: the largest "
                        "difference between restoring it whole and frame by frame, and the flow network's mean and "
                        "max |flow| (vsr_accel.train.health); written to the JSON as 'propagation'")
    p.add_argument("--probe-frames", type=int, default=None, metavar="N",
                   help="with --probe: only the clip's first N frames (default: all)")
    p.add_argument("--save-frames", default=None, help="folder for the SR frames (png)")
    p.add_argument("--json", default=None, help="write the scores here (default: beside the run)")
    p.add_argument("--device", default=None)
    p.add_argument("--debug", action="store_true")
    args = p.parse_args(argv)
    return run_guarded(lambda: run(args), args.debug,
                       out_of_memory="out of memory while restoring a whole clip; evaluate on a device with more "
                                     "memory (--device cpu) or on shorter clips",
                       disk_full="free some space, then run it again")


def phase_protocol(opt: Options) -> Protocol:
    """The protocol the options file asks for (BasicSR's keys: `val.metrics.*.test_y_channel` /
    `crop_border`, one protocol for every metric, `val.center_frame_only`, `val.flip_seq`)."""
    if opt.val is None:
        return Protocol()
    metric = next(iter(opt.val.metrics.values()), None)
    return Protocol(test_y_channel=metric.test_y_channel if metric else False,
                    crop_border=metric.crop_border if metric else 0,
                    center_frame_only=opt.val.center_frame_only, flip_seq=opt.val.flip_seq)


def run(args: argparse.Namespace) -> int:
    opt = load_options(args.opt, args.overrides)
    models.check_scale(opt.scale, opt.network_g, where=f"{opt.source}: ")  # before any data is read
    device = pick_device(0, args.device)
    if args.only and not args.testsets:
        raise ConfigError("--only selects among --testsets; give --testsets ROOT too")
    found = None
    if args.testsets:  # locate and open every set before the model runs: mistakes surface at once
        only = [k.strip() for k in args.only.split(",") if k.strip()] if args.only else None
        found = find_test_sets(args.testsets, opt.scale, only)
        if not any(f.spec for f in found):
            raise DataError(f"{args.testsets}: none of the standard test sets is there "
                            f"({'; '.join(f.missing for f in found)})")
        opened = [(f, datasets.build_dataset(f.spec, phase=f"test_{f.test_set.key}")) for f in found if f.spec]
    else:
        test_set = datasets.build_dataset(opt.dataset_kwargs(args.phase), phase=args.phase)
    path = Path(args.checkpoint) if args.checkpoint else newest_checkpoint(opt)
    model = models.load_network(opt.network_g, path, param_key=args.param_key).to(device)
    window = models.input_window(model)
    restore = lambda lq: restore_clip(model, lq, device, window)  # noqa: E731
    if found is not None:
        return run_testsets(args, opt, path, restore, found, opened)

    protocol = phase_protocol(opt)
    on_clip = None
    if args.save_frames:
        on_clip = lambda clip, sr, item: save_frames(Path(args.save_frames), clip, sr, item["frame_names"])  # noqa: E731
    tables: dict[str, ScoreTable] = {}
    with torch.inference_mode():
        tables[opt.network_g["type"]] = evaluate(restore, test_set, on_clip=on_clip, **dataclasses.asdict(protocol))
        if args.bicubic:
            tables["bicubic"] = evaluate(lambda lq: matlab_bicubic(lq, opt.scale), test_set,
                                         **dataclasses.asdict(protocol))

    probed = probe_first_clip(model, restore, test_set, device, args.probe_frames, protocol) if args.probe else None

    channel = "Y" if protocol.test_y_channel else "RGB"
    print(f"\n{opt.name}: {path} on datasets.{args.phase} ({protocol.describe()})\n")
    print(format_table(tables))
    if args.bicubic:
        gain = tables[opt.network_g["type"]].psnr - tables["bicubic"].psnr
        print(f"\nmodel - bicubic: {gain:+.2f} dB PSNR")
    if probed is not None:
        flow = (f"; flow mean {probed.flow_mean_px:.3f} px, max {probed.flow_max_px:.2f} px"
                if probed.flow_mean_px is not None else "")
        gain = (f"; PSNR {probed.psnr_whole:.3f} dB restored whole vs {probed.psnr_per_frame:.3f} frame by frame"
                if probed.psnr_whole is not None else "")
        print(f"propagation ({probed.frames} frames of the first clip): max |whole - frame by frame| "
              f"{probed.max_abs_diff_vs_per_frame:.3e}{flow}{gain}")
    out = Path(args.json) if args.json else Path(opt.path.experiments_root) / opt.name / f"eval_{args.phase}.json"
    write_json(out, {"checkpoint": str(path), "phase": args.phase, "channel": channel,
                     "protocol": dataclasses.asdict(protocol), **{name: t.as_dict() for name, t in tables.items()},
                     **({"propagation": probed.as_dict()} if probed is not None else {})})
    return 0


def probe_first_clip(model: torch.nn.Module, restore, test_set, device: torch.device,
                     frames: int | None, protocol: Protocol) -> ProbeResult:
    """`--probe`: propagation and flow of the model on the first clip (vsr_accel.eval.probes), and
    the clip's PSNR restored whole vs frame by frame (every frame, the protocol's channel and border)."""
    if not models.is_recurrent(model):
        raise ConfigError(f"--probe: {type(model).__name__} is not a recurrent network; it restores each frame "
                          f"from a window of its neighbours, so there is no propagation to probe")
    if frames is not None and frames < 2:
        raise ConfigError(f"--probe-frames must be >= 2 (a propagation needs two frames), got {frames}")
    item = test_set[0]
    gt = item["gt"] if item["gt"].shape[0] == item["lq"].shape[0] else None  # a centre-frame-only GT: no PSNR
    psnr = lambda sr, hr: score_clip(sr, hr, item["clip"], protocol.crop_border, protocol.test_y_channel).psnr  # noqa: E731
    return probe(model, restore, item["lq"], device, frames, gt=gt, psnr=psnr)


def run_testsets(args: argparse.Namespace, opt: Options, path: Path, restore, found, opened) -> int:
    """Score each present standard set (`opened`: its dataset) with its own protocol; print
    per-clip tables for the small sets, then the six-column table."""
    method = opt.network_g["type"]
    results: dict[str, dict[str, ScoreTable]] = {method: {}}
    if args.bicubic:
        results["bicubic"] = {}
    with torch.inference_mode():
        for f, test_set in opened:
            t = f.test_set
            kwargs = dataclasses.asdict(t.protocol)
            on_clip = None
            if args.save_frames:
                folder = Path(args.save_frames) / t.key
                on_clip = lambda clip, sr, item, folder=folder: save_frames(folder, clip, sr, item["frame_names"])  # noqa: E731
            results[method][t.column] = evaluate(restore, test_set, on_clip=on_clip, **kwargs)
            if args.bicubic:
                results["bicubic"][t.column] = evaluate(lambda lq: matlab_bicubic(lq, opt.scale), test_set, **kwargs)
            named = {m: tables[t.column] for m, tables in results.items()}
            print(f"\n{t.column} ({t.protocol.describe()}): {f.spec['dataroot_lq']}\n")
            if len(test_set) <= 20:
                print(format_table(named))
            else:
                print(f"{len(test_set)} clips; per-clip scores are in the JSON")
    print(f"\n{opt.name}: {path}\n")
    print(format_benchmark_table([(f.test_set.column, f.test_set.protocol) for f in found], results))
    for f in found:
        if f.missing:
            print(f"{f.test_set.column}: - ({f.missing})")
    out = Path(args.json) if args.json else Path(opt.path.experiments_root) / opt.name / "eval_testsets.json"
    write_json(out, {"checkpoint": str(path), "testsets_root": str(args.testsets),
                     "testsets": {f.test_set.column: {"protocol": dataclasses.asdict(f.test_set.protocol),
                                                      **{m: tables[f.test_set.column].as_dict()
                                                         for m, tables in results.items()}}
                                  for f in found if f.spec},
                     "missing": {f.test_set.column: f.missing for f in found if f.missing}})
    return 0


def write_json(out: Path, data: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(data, indent=2))
    print(f"scores written to {out}")


if __name__ == "__main__":
    sys.exit(main())
