"""Checkpoint files (vsr_accel/core/checkpoint.py), no training: atomic saves, damaged and unsafe
training states, the newest good state, pruning, and every weights layout the loader reads."""
from __future__ import annotations

import errno
import os
import pickle
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

import models
from tests.conftest import sample_state
from vsr_accel.core import checkpoint as ckpt
from vsr_accel.core.checkpoint import read_network_weights
from vsr_accel.core.errors import CheckpointError


def test_atomic_save_never_replaces_with_a_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "5.state"
    ckpt.atomic_save(sample_state(), path)
    before = path.read_bytes()
    def failing_rename(*args):
        raise OSError(errno.EIO, os.strerror(errno.EIO))
    monkeypatch.setattr(os, "replace", failing_rename)
    with pytest.raises(CheckpointError, match=r"5\.state: checkpoint not written \(Input/output error\)"):
        ckpt.atomic_save(sample_state(6), path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["5.state"]


def test_atomic_save_keeps_bugs_as_ordinary_errors(tmp_path):
    with pytest.raises(Exception) as info:
        ckpt.atomic_save({"f": lambda: 0}, tmp_path / "x.pth")  # not picklable: a bug, not the disk
    assert not isinstance(info.value, CheckpointError) and not list(tmp_path.iterdir())


def test_saved_files_follow_the_umask_not_0600(tmp_path):
    path = tmp_path / "w.pth"
    ckpt.atomic_save({"a": torch.zeros(1)}, path)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def damaged_copies(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.state"
    ckpt.atomic_save(sample_state(), good)
    blob = good.read_bytes()
    out = {"truncated": blob[: len(blob) // 2], "empty": b""}
    flipped = bytearray(blob)
    with zipfile.ZipFile(good) as archive:  # flip one byte inside the tensor record
        info = next(i for i in archive.infolist() if i.filename.endswith("/data/0"))
    flipped[info.header_offset + 30 + len(info.filename) + len(info.extra) + 100] ^= 0xFF
    out["bit flip"] = bytes(flipped)
    paths = {}
    for name, data in out.items():
        paths[name] = tmp_path / f"{name.replace(' ', '_')}.state"
        paths[name].write_bytes(data)
    return paths


def test_read_training_state_detects_truncation_bit_flips_and_missing_entries(tmp_path):
    for name, path in damaged_copies(tmp_path).items():
        with pytest.raises(CheckpointError, match=f"{path.name}: corrupt training state") as info:
            ckpt.read_training_state(path)
        assert "\n" not in str(info.value), name
    no_iter = tmp_path / "no_iter.state"
    ckpt.atomic_save({"network": {}}, no_iter)
    with pytest.raises(CheckpointError, match="no 'iter' entry"):
        ckpt.read_training_state(no_iter)
    half = tmp_path / "half.state"
    ckpt.atomic_save({"iter": 3, "network": {}}, half)
    with pytest.raises(CheckpointError, match="incomplete training state .no 'optimizer', 'sampler' entry"):
        ckpt.read_training_state(half)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pickle_with_code_is_refused_and_never_run(tmp_path, monkeypatch):
    path = tmp_path / "9.state"
    torch.save({"iter": 9, "payload": _Exploit()}, path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="corrupt or unsafe training state"):
        ckpt.read_training_state(path)
    assert not (tmp_path / "pwned").exists()


def test_latest_good_state_falls_back_past_damaged_newer_states(tmp_path):
    ckpt.atomic_save(sample_state(2), tmp_path / "2.state")
    ckpt.atomic_save(sample_state(4), tmp_path / "4.state")
    blob = (tmp_path / "4.state").read_bytes()
    (tmp_path / "4.state").write_bytes(blob[:1000])  # a state truncated by something outside our control
    (tmp_path / "6.state").write_bytes(pickle.dumps({"iter": 6}))  # not a torch zip
    (tmp_path / ".8.state.abcd.tmp").write_bytes(blob)  # a killed save: ignored
    skipped = []
    path, state = ckpt.latest_good_state(tmp_path, on_skip=skipped.append)
    assert path.name == "2.state" and state["iter"] == 2
    assert [s.split(": ")[1].rsplit("/", 1)[-1] for s in skipped] == ["6.state", "4.state"]
    assert (tmp_path / "4.state").exists()  # reported, never deleted


def test_prune_keeps_the_newest(tmp_path):
    for it in (2, 4, 6, 8):
        (tmp_path / f"{it}.state").write_bytes(b"x")
    (tmp_path / "notes.txt").write_bytes(b"x")
    ckpt.prune(tmp_path, "{iter}.state", keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["6.state", "8.state", "notes.txt"]


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A tiny BasicVSR's weights in BasicSR's format."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = models.build_network({"type": "BasicVSR", "num_feat": 8, "num_block": 1})
    path = tmp_path / "tiny_basicvsr.pth"
    torch.save({"params": net.state_dict()}, path)
    return path


@pytest.mark.parametrize("layout", ["bare", "params_ema", "training_state"])
def test_checkpoint_layouts_give_the_same_weights(checkpoint: Path, tmp_path: Path, layout: str):
    params = torch.load(checkpoint, weights_only=True)["params"]
    ema = {k: v + 1 for k, v in params.items()}  # distinguishable from params
    blob = {"bare": params, "params_ema": {"params": params, "params_ema": ema},
            "training_state": {"iter": 10, "network": {"params": params, "params_ema": ema}, "optimizer": {},
                               "sampler": {}}}[layout]  # what train.py's `<iter>.state` holds
    path = tmp_path / "weights.pth"
    torch.save(blob, path)
    loaded = read_network_weights(path, param_key=None)
    expected = params if layout == "bare" else ema  # params_ema wins, as in BasicSR's test scripts
    assert loaded.keys() == expected.keys() and all(torch.equal(loaded[k], expected[k]) for k in expected)
    if layout != "bare":
        chosen = read_network_weights(path, param_key="params")
        assert all(torch.equal(chosen[k], params[k]) for k in params)
