"""Shared fixtures: tiny REDS-layout datasets made of smooth synthetic frames, and option files."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest
import torch
import yaml

from vsr_accel.core.rng import rng_state


REPO = Path(__file__).resolve().parents[1]


def load_script(name: str) -> ModuleType:
    """`scripts/<name>.py` as a module (scripts are not a package: nothing imports an entry script
    but the tests of that script)."""
    spec = importlib.util.spec_from_file_location(f"vsr_script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def single_thread():
    """For modules of tiny tensors (`pytestmark = pytest.mark.usefixtures("single_thread")`): on a
    shared 2-core machine intra-op threads only add contention (measured: such a file runs ~2-3x
    faster single-threaded under load). The thread count is restored after the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_reds_like(root: Path, clips: dict[str, int], gt_hw=(96, 128), scale: int = 4, seed: int = 0) -> Path:
    """`root/train_sharp/<clip>/%08d.png` + `train_sharp_bicubic/X4/...` + meta_info, with moving
    smooth texture (so flow and SR have something to learn) and area-downsampled LR."""
    rng = np.random.default_rng(seed)
    h, w = gt_hw
    meta = []
    for clip, frames in clips.items():
        base = cv2.resize(rng.random((h // 8, w // 8, 3)).astype(np.float32), (w + 64, h + 64),
                          interpolation=cv2.INTER_CUBIC)
        gt_dir = root / "train_sharp" / clip
        lq_dir = root / "train_sharp_bicubic" / "X4" / clip
        gt_dir.mkdir(parents=True)
        lq_dir.mkdir(parents=True)
        for i in range(frames):
            frame = np.clip(base[i * 2:i * 2 + h, i:i + w] * 255, 0, 255).astype(np.uint8)
            cv2.imwrite(str(gt_dir / f"{i:08d}.png"), frame)
            cv2.imwrite(str(lq_dir / f"{i:08d}.png"),
                        cv2.resize(frame, (w // scale, h // scale), interpolation=cv2.INTER_AREA))
        meta.append(f"{clip} {frames} ({h},{w},3)")
    (root / "meta_info.txt").write_text("\n".join(meta) + "\n")
    return root


@pytest.fixture(scope="session")
def tiny_reds(tmp_path_factory) -> Path:
    return make_reds_like(tmp_path_factory.mktemp("reds"), {"000": 12, "001": 12, "002": 12, "003": 12})


def tiny_options(data: Path, exp_root: Path, **train_overrides) -> dict:
    """A BasicVSR small enough for a step well under a second on 2 cores."""
    train = {"total_iter": 6, "warmup_iter": -1, "optim_g": {"type": "Adam", "lr": 1e-3},
             "curriculum": {"type": "multigrid", "lr_crops": [16, 24], "frame_counts": [3, 5]},
             "base_batch": 2, "fix_flow": 2, "flow_lr_mul": 0.5}
    train.update(train_overrides)
    return {
        "name": "tiny", "scale": 4, "manual_seed": 3,
        "network_g": {"type": "BasicVSR", "num_feat": 4, "num_block": 1},
        "datasets": {
            "train": {"type": "REDSRecurrentDataset", "dataroot_gt": str(data / "train_sharp"),
                      "dataroot_lq": str(data / "train_sharp_bicubic" / "X4"),
                      "meta_info_file": str(data / "meta_info.txt"), "val_partition": None,
                      "gt_size": 96, "num_frame": 5, "batch_size_per_gpu": 2, "num_worker_per_gpu": 0},
            "val": {"type": "VideoRecurrentTestDataset", "dataroot_gt": str(data / "train_sharp"),
                    "dataroot_lq": str(data / "train_sharp_bicubic" / "X4")},
        },
        "path": {"experiments_root": str(exp_root)},
        "train": train,
        "val": {"val_freq": 1000, "max_clips": 1, "metrics": {"psnr": {"type": "calculate_psnr"}}},
        "logger": {"print_freq": 2, "save_checkpoint_freq": 3, "use_tb_logger": False, "keep_last": 10},
    }


def write_options(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def sample_state(it: int = 5) -> dict:
    """A small training state with every entry a resume reads."""
    return {"iter": it, "network": {"params": {"w": torch.arange(4000, dtype=torch.float32)}},
            "optimizer": {"state": {}, "param_groups": []}, "sampler": {"next_iter": it}, "rng": [rng_state()]}
