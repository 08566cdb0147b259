"""No option is accepted and ignored: every key the schema accepts is read by the code, and the
BasicSR keys that used to pass silently now do what they do in BasicSR or are refused."""
from __future__ import annotations

import dataclasses
import re
import sys
import types
import typing
from pathlib import Path

import cv2
import pytest

import train
from tests.conftest import make_reds_like, tiny_options, write_options
from vsr_accel.train.options import LOADER_KEYS, Options

REPO = Path(__file__).resolve().parents[1]
CONSUMERS = [REPO / "train.py", *(REPO / "vsr_accel").rglob("*.py"), *(REPO / "datasets").rglob("*.py"),
             *(REPO / "scripts").glob("*.py"), REPO / "infer.py"]
SCHEMA_MODULES = ("options.py", "config.py")
# Sections passed whole to a component that validates its own keys (network / dataset constructors).
COMPONENT_SECTIONS = {"network_g", "datasets"}
# Keys whose every accepted value means what vsr-accel always does (the others are refused).
CHECKED_ONLY = {"datasets.train.prefetch_mode": "~ and cuda: vsr_accel.train.prefetch.DevicePrefetcher, always on"}


def accepted_keys(cls: type = Options, prefix: str = "") -> list[str]:
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init or f.name == "source":
            continue
        path = f"{prefix}{f.name}"
        inner = [a for a in typing.get_args(hints[f.name]) if dataclasses.is_dataclass(a)]
        target = hints[f.name] if dataclasses.is_dataclass(hints[f.name]) else (inner[0] if inner else None)
        if target is None and typing.get_origin(hints[f.name]) is dict:  # dict[str, MetricOptions]
            values = [a for a in typing.get_args(hints[f.name]) if dataclasses.is_dataclass(a)]
            target = values[0] if values else None
        if target is not None and f.name not in COMPONENT_SECTIONS:
            keys += accepted_keys(target, f"{path}.")
        else:
            keys.append(path)
    return keys


def test_every_accepted_key_is_read_by_the_code():
    """Each leaf key of the schema (and each loader key of datasets.train) is read outside the
    schema: as an attribute (`opt.train.fix_flow`), or as a string key (`section.get("use_shuffle")`)."""
    source = "\n".join(p.read_text() for p in CONSUMERS if p.name not in SCHEMA_MODULES)
    keys = accepted_keys() + [f"datasets.train.{k}" for k in LOADER_KEYS if k != "type"]
    assert len(keys) > 60
    unread = [key for key in keys if key not in CHECKED_ONLY
              and not re.search(rf"\.{key.rsplit('.', 1)[-1]}\b|[\"']{key.rsplit('.', 1)[-1]}[\"']", source)]
    assert not unread, f"accepted but never read: {unread}"


# -- behaviour of the keys that used to be accepted and ignored -----------------------------------------

@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_reds_like(tmp_path_factory.mktemp("reds"), {"000": 6, "001": 6})


def options(data: Path, exp: Path, **train_overrides) -> dict:
    opts = tiny_options(data, exp, total_iter=2, curriculum={"type": "none"}, **train_overrides)
    opts["datasets"]["train"].update(gt_size=32, num_frame=3)
    opts["val"]["val_freq"] = 2
    opts["logger"].update(print_freq=1, save_checkpoint_freq=2)
    return opts


def run(tmp_path: Path, opts: dict, *extra: str) -> int:
    return train.main(["-opt", write_options(tmp_path / "o.yml", opts), *extra])


@pytest.mark.parametrize("edit, fragments", [
    (lambda o: o.update(model_type="EDVRModel"), ["model_type", "'EDVRModel'", "VideoRecurrentModel"]),
    (lambda o: o.update(num_gpu=2), ["num_gpu", "1 process", "--nproc_per_node=2"]),
    (lambda o: o.update(is_train=False), ["is_train"]),
    (lambda o: o["datasets"]["train"].update(prefetch_mode="cpu"), ["datasets.train.prefetch_mode", "'cpu'"]),
    (lambda o: o["datasets"]["train"].update(use_shuffle="yes"), ["datasets.train.use_shuffle"]),
    (lambda o: o["datasets"]["train"].update(dataset_enlarge_ratio=0), ["datasets.train.dataset_enlarge_ratio"]),
    (lambda o: o["datasets"]["val"].update(batch_size_per_gpu=4), ["datasets.val.batch_size_per_gpu", "not used"]),
    (lambda o: o["val"]["metrics"].update(lpips={"type": "calculate_lpips"}), ["val.metrics.lpips.type", "calculate_psnr"]),
    (lambda o: o["val"]["metrics"]["psnr"].update(better="up"), ["val.metrics.psnr.better"]),
    (lambda o: o["val"]["metrics"].update(ssim={"type": "calculate_ssim", "crop_border": 4}), ["val.metrics", "one protocol"]),
    (lambda o: o["train"].update(warmup="none", scheduler={"type": "MultigridCosineLR", "periods": [2]}),
     ["train.scheduler.periods", "not used by MultigridCosineLR"]),
])
def test_basicsr_keys_that_cannot_be_honoured_are_refused(data, tmp_path, capsys, edit, fragments):
    opts = options(data, tmp_path / "exp")
    edit(opts)
    assert run(tmp_path, opts) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert all(f in err for f in fragments), err
    assert not (tmp_path / "exp").exists()


def test_num_gpu_zero_trains_on_the_cpu_and_model_type_of_the_network_is_accepted(data, tmp_path):
    opts = options(data, tmp_path / "exp")
    opts.update(num_gpu=0, model_type="VideoRecurrentModel")
    assert run(tmp_path, opts) == 0
    assert "on cpu x1" in (tmp_path / "exp" / "tiny" / "train.log").read_text()


def test_save_img_writes_basicsrs_visualization_folders(data, tmp_path):
    opts = options(data, tmp_path / "exp")
    opts["val"]["save_img"] = True
    opts["datasets"]["val"]["name"] = "REDS4"
    assert run(tmp_path, opts) == 0
    frames = sorted((tmp_path / "exp" / "tiny" / "visualization" / "REDS4" / "000").glob("*.png"))
    assert [p.name for p in frames] == [f"{i:08d}_2.png" for i in range(6)]
    image = cv2.imread(str(frames[0]))
    assert image.shape == (96, 128, 3)


def test_every_validation_set_is_scored_and_only_the_listed_metrics(data, tmp_path):
    opts = options(data, tmp_path / "exp")
    opts["datasets"]["val_2"] = {**opts["datasets"]["val"], "name": "second"}
    opts["val"]["metrics"] = {"ssim": {"type": "calculate_ssim"}}
    assert run(tmp_path, opts) == 0
    log = (tmp_path / "exp" / "tiny" / "train.log").read_text()
    assert re.search(r"val @ 2: ssim [\d.]+ \| best: ssim [\d.]+ @ 2", log), log
    assert re.search(r"val second @ 2: ssim [\d.]+", log) and "psnr" not in log


def test_wandb_without_the_package_is_refused_before_anything_is_written(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    opts = options(data, tmp_path / "exp")
    opts["logger"]["wandb"] = {"project": "vsr", "resume_id": None}
    assert run(tmp_path, opts) == 2
    err = capsys.readouterr().err
    assert "logger.wandb.project" in err and "pip install wandb" in err and err.count("\n") == 1
    assert not (tmp_path / "exp").exists()


def test_wandb_logs_the_training_scalars_offline(data, tmp_path, monkeypatch):
    calls: dict[str, list] = {"init": [], "log": [], "finish": []}

    class Run:
        def log(self, values, step):
            calls["log"].append((step, values))

        def finish(self):
            calls["finish"].append(True)

    fake = types.ModuleType("wandb")
    fake.init = lambda **kwargs: calls["init"].append(kwargs) or Run()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setenv("WANDB_MODE", "offline")
    opts = options(data, tmp_path / "exp")
    opts["logger"]["wandb"] = {"project": "vsr-accel", "resume_id": "abc123"}
    assert run(tmp_path, opts) == 0
    init = calls["init"][0]
    assert init["project"] == "vsr-accel" and init["id"] == "abc123" and init["resume"] == "allow"
    assert init["mode"] == "offline" and init["name"] == "tiny" and Path(init["dir"]) == tmp_path / "exp" / "tiny"
    logged: dict[int, dict] = {}
    for step, values in calls["log"]:  # wandb merges the calls of one step
        logged.setdefault(step, {}).update(values)
    assert "train/loss" in logged[1] and "val/psnr" in logged[2] and calls["finish"] == [True]


def test_a_bad_first_batch_leaves_an_earlier_run_where_it_was(data, tmp_path, capsys):
    """A fresh run over an old run folder archives it only after the first batch was read: a
    corrupt frame found there ends in one error line, the old run untouched and not renamed."""
    opts = options(data, tmp_path / "exp")
    assert run(tmp_path, opts) == 0
    earlier = {p.relative_to(tmp_path / "exp"): p.read_bytes() for p in (tmp_path / "exp").rglob("*") if p.is_file()}
    broken = make_reds_like(tmp_path / "broken", {"000": 6, "001": 6})
    for clip in ("000", "001"):
        for frame in (broken / "train_sharp_bicubic" / "X4" / clip).glob("*.png"):
            frame.write_bytes(b"")  # 0-byte PNGs: found only when a batch is read
    opts["datasets"]["train"].update(dataroot_gt=str(broken / "train_sharp"),
                                     dataroot_lq=str(broken / "train_sharp_bicubic" / "X4"))
    opts["val"] = None
    opts["datasets"].pop("val")
    capsys.readouterr()
    assert run(tmp_path, opts) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "00000" in err, err
    after = {p.relative_to(tmp_path / "exp"): p.read_bytes() for p in (tmp_path / "exp").rglob("*") if p.is_file()}
    assert after == earlier and not list((tmp_path / "exp").glob("tiny_archived_*"))
