"""Options: BasicSR layout, typed validation, one-line errors that name file, key and closest key."""
from __future__ import annotations

import pytest
import yaml

from vsr_accel.config import apply_overrides, parse_override
from vsr_accel.errors import ConfigError
from vsr_accel.options import load_options

BASE = {
    "name": "t", "scale": 4, "manual_seed": 0, "num_gpu": 1,
    "network_g": {"type": "BasicVSR", "num_feat": 16, "num_block": 2},
    "datasets": {"train": {"type": "REDSRecurrentDataset", "dataroot_gt": "a", "dataroot_lq": "b",
                           "gt_size": 256, "num_frame": 15, "batch_size_per_gpu": 4, "num_worker_per_gpu": 2}},
    "train": {"total_iter": 1000, "warmup_iter": 100, "optim_g": {"type": "Adam", "lr": "2e-4"},
              "scheduler": {"type": "CosineAnnealingRestartLR", "periods": [1000], "restart_weights": [1],
                            "eta_min": 1e-7},
              "pixel_opt": {"type": "CharbonnierLoss", "loss_weight": 1.0, "reduction": "mean"}},
    "val": {"val_freq": 5000.0, "metrics": {"psnr": {"type": "calculate_psnr", "crop_border": 0}}},
    "logger": {"print_freq": 10, "save_checkpoint_freq": 500.0},
}


def write(tmp_path, data) -> str:
    path = tmp_path / "opt.yml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_basicsr_layout_loads_with_basicsr_spellings(tmp_path):
    opt = load_options(write(tmp_path, BASE))
    assert opt.train.optim_g.lr == pytest.approx(2e-4)  # '2e-4' is a string to PyYAML
    assert opt.val.val_freq == 5000 and isinstance(opt.val.val_freq, int)  # BasicSR's !!float 5e3
    assert opt.dataset_kwargs("train")["scale"] == 4
    assert "batch_size_per_gpu" not in opt.dataset_kwargs("train")


@pytest.mark.parametrize("override, fragment", [
    ("train.totl_iter=5", "unknown option 'train.totl_iter' (did you mean 'total_iter'"),
    ("train.optim_g.lrr=1", "'train.optim_g.lrr' (did you mean 'lr'"),
    ("sclae=4", "did you mean 'scale'"),
    ("train.optim_g.lr=fast", "'train.optim_g.lr' must be float, got 'fast'"),
    ("train.total_iter=0", "'train.total_iter' must be positive, got 0"),
    ("train.total_iter=ten", "'train.total_iter' must be int"),
    ("datasets.train.gt_size=-64", "'datasets.train.gt_size' must be a positive integer"),
    ("datasets.train.gt_size=250", "must be a multiple of 'scale' (4)"),
    ("train.warmup=cosine", "'train.warmup' = 'cosine' is not one of"),
    ("train.scheduler.periods=[500,500]", "'train.scheduler.periods'"),
    ("train.warmup_iter=2000", "'train.warmup_iter' (2000) must be smaller"),
    ("datasets.tran={type: X}", "did you mean 'train'"),
    ("network_g={num_feat: 3}", "'network_g.type' is missing"),
])
def test_bad_options_name_file_and_key(tmp_path, override, fragment):
    path = write(tmp_path, BASE)
    with pytest.raises(ConfigError) as err:
        load_options(path, [override])
    message = str(err.value)
    assert fragment in message
    assert message.startswith(path) and "\n" not in message


def test_overrides_both_spellings_and_nested_creation():
    data = {"train": {"total_iter": 1}}
    apply_overrides(data, ["train.total_iter=7", "train:optim_g:lr=1e-3", "val.save_img=true"])
    assert data == {"train": {"total_iter": 7, "optim_g": {"lr": 1e-3}}, "val": {"save_img": True}}
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    with pytest.raises(ConfigError, match="expected KEY.PATH=VALUE"):
        parse_override("train.total_iter")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="options file not found"):
        load_options(tmp_path / "nope.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_options(bad)


def test_results_hash_ignores_logging_but_not_lr(tmp_path):
    path = write(tmp_path, BASE)
    base = load_options(path).results_hash()
    assert load_options(path, ["logger.print_freq=1"]).results_hash() == base
    assert load_options(path, ["train.optim_g.lr=1e-3"]).results_hash() != base
