"""Options: BasicSR layout, typed validation, one-line errors that name file, key and closest key."""
from __future__ import annotations


import pytest
import yaml

from tests.conftest import REPO
from vsr_accel.core.config import apply_overrides, parse_override, read_yaml
from vsr_accel.core.errors import ConfigError
from vsr_accel.train.options import load_options

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


# -- reading files: UTF-8, duplicate keys, directories -------------------------------------------


def test_every_options_file_of_the_repo_reads_as_safe_load_does():
    """The duplicate-key check changes nothing else: BasicSR's `!!float 5e3`, anchors, merges."""
    files = sorted((REPO / "options").glob("*.yml"))
    assert len(files) >= 10
    for path in files:
        assert read_yaml(path) == yaml.safe_load(path.read_text(encoding="utf-8")), path


def test_yaml_types_anchors_and_merges_load_as_safe_load_does(tmp_path):
    text = ("a: !!float 5e3\nlr: 2e-4\nbase: &b {x: 1, y: 2}\nchild:\n  <<: *b\n  y: 3\n"
            "list: [1, {k: v}]\nsame: [*b, *b]\n'1': str\n1: int\n")
    path = tmp_path / "o.yml"
    path.write_text(text)
    assert read_yaml(path) == yaml.safe_load(text)
    assert read_yaml(path)["child"] == {"x": 1, "y": 3} and read_yaml(path)["a"] == 5000.0


@pytest.mark.parametrize("text, key, lines", [
    ("name: a\ntrain:\n  total_iter: 300\n  warmup_iter: 1\n  total_iter: 40\n", "train.total_iter", (3, 5)),
    ("name: a\nname: b\n", "name", (1, 2)),
    ("stages:\n  - {lr_crop: 8, lr_crop: 16}\n", "stages[0].lr_crop", (2, 2)),
])
def test_a_key_given_twice_is_refused_naming_the_key_and_both_lines(tmp_path, text, key, lines):
    path = tmp_path / "dup.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        read_yaml(path)
    assert str(err.value) == (f"{path}: '{key}' is given twice (lines {lines[0]} and {lines[1]}); YAML would keep "
                              f"only the last one, so delete one of them")


def test_utf8_with_a_byte_order_mark_loads_and_other_encodings_are_named(tmp_path):
    data = {**BASE, "name": "réglage"}
    text = yaml.safe_dump(data, allow_unicode=True)
    path = tmp_path / "bom.yml"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert load_options(path).name == "réglage"
    for encoding, reason in (("utf-16", "(saved as UTF-16?)"), ("utf-16-be", "(saved as UTF-16?)"),
                             ("utf-16-le", "saved as UTF-16?"), ("cp1252", "(byte 0xe9 at offset")):
        path = tmp_path / f"{encoding}.yml"
        path.write_bytes(text.encode(encoding))
        with pytest.raises(ConfigError) as err:
            load_options(path)
        assert str(err.value).startswith(f"{path}: not UTF-8 text ") and reason in str(err.value), encoding


def test_a_directory_is_named_as_such(tmp_path):
    with pytest.raises(ConfigError, match="is a directory, not an options file"):
        load_options(tmp_path)


def test_seed_range_is_basicsrs(tmp_path):
    path = write(tmp_path, BASE)
    assert load_options(path, ["manual_seed=4294967295"]).manual_seed == 2**32 - 1
    for seed in (2**32, 2**70, -1):
        with pytest.raises(ConfigError, match=f"'manual_seed' must be an integer from 0 to 4294967295.*got {seed}$"):
            load_options(path, [f"manual_seed={seed}"])


# -- --set <section>=null ----------------------------------------------------------------------

def test_null_removes_a_section_and_sets_none_elsewhere():
    data = {"datasets": {"train": {"type": "A", "val_partition": "REDS4"}, "val": {"type": "B"}},
            "val": {"val_freq": 1}, "logger": {"wandb": {"project": "p"}}, "path": {"pretrain_network_g": "w.pth"}}
    apply_overrides(data, ["datasets.val=null", "val=~", "logger.wandb=null", "datasets.train.val_partition=null",
                           "path.pretrain_network_g=~", "datasets.test=null"])
    assert data == {"datasets": {"train": {"type": "A", "val_partition": None}, "test": None},
                    "logger": {}, "path": {"pretrain_network_g": None}}


def test_validation_switched_off_the_basicsr_way(tmp_path):
    with_val = {**BASE, "datasets": {**BASE["datasets"], "val": {"type": "VideoRecurrentTestDataset",
                                                                 "dataroot_gt": "g", "dataroot_lq": "l"}}}
    path = write(tmp_path, with_val)
    assert "val" in load_options(path).datasets and load_options(path).val is not None
    assert "val" not in load_options(path, ["datasets.val=null"]).datasets
    assert load_options(path, ["val=null"]).val is None
    assert load_options(write(tmp_path, {**with_val, "val": None})).val is None  # `val: ~` in the file: off too
    with pytest.raises(ConfigError, match="required option 'train' is missing"):
        load_options(path, ["train=null"])
    with pytest.raises(ConfigError, match="'datasets.train' is missing"):
        load_options(path, ["datasets.train=~"])


@pytest.mark.parametrize("override", ["datasets.val=null", "val=~"])
def test_training_runs_without_validation_when_a_section_is_set_to_null(tiny_reds, tmp_path, override):
    import train
    from tests.conftest import tiny_options, write_options

    options = tiny_options(tiny_reds, tmp_path / "exp", total_iter=2, curriculum={"type": "none"})
    options["val"]["val_freq"] = 1
    opt = write_options(tmp_path / "o.yml", options)
    assert train.main(["-opt", opt, "--set", override]) == 0
    log = (tmp_path / "exp" / "tiny" / "train.log").read_text()
    assert "iter       2/2" in log and "val @" not in log


def test_a_null_dataset_phase_is_no_phase(tmp_path):
    """`--set datasets.val=null` on a file without datasets.val (or `val: ~` in the file) means no
    validation set, not a section without a type."""
    data = dict(BASE)
    data["datasets"] = {k: v for k, v in BASE["datasets"].items() if k != "val"}
    path = write(tmp_path, data)
    assert "val" not in load_options(path, ["datasets.val=null"]).datasets
