"""Vid4 / UDM10 / Vimeo-90K-T layouts, their protocols (centre frame, flip_seq, Y), the BD
degradation against a hand computation, and scripts/evaluate.py --testsets' six-column table."""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import models
from datasets import Vimeo90KTestDataset, VideoRecurrentTestDataset, build_dataset
from datasets.degradations import bd_downsample, bd_downsample_uint8, bd_kernel_size, gaussian_kernel_1d
from datasets.matlab_resize import imresize, imresize_uint8
from datasets.test_sets import STANDARD_TEST_SETS, find_test_sets
from tests.conftest import load_script, tiny_options, write_options
from vsr_accel.eval import metrics
from vsr_accel.core.errors import ConfigError, DataError
from vsr_accel.eval.evaluation import ScoreTable, evaluate, format_benchmark_table, restore_flipped, score_clip
from vsr_accel.eval.protocols import Protocol



# ------------------------------------------------------------------------------------------
# tiny test sets in their usual layouts
# ------------------------------------------------------------------------------------------
def smooth_frames(count: int, hw: tuple[int, int], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    h, w = hw
    base = cv2.resize(rng.random((h // 4 + 2, w // 4 + 2, 3)).astype(np.float32), (w + 16, h + 16),
                      interpolation=cv2.INTER_CUBIC)
    return [np.clip(base[i:i + h, i:i + w] * 255, 0, 255).astype(np.uint8) for i in range(count)]


def write_clip_set(folder: Path, clips: dict[str, tuple[int, tuple[int, int]]], name_fmt: str,
                   degradations: dict[str, object]) -> None:
    """`folder/GT/<clip>/<name>.png` and one LR folder per degradation (`BIx4`, `BDx4`)."""
    for seed, (clip, (count, hw)) in enumerate(clips.items()):
        for i, frame in enumerate(smooth_frames(count, hw, seed)):
            name = name_fmt.format(i)
            for sub, image in [("GT", frame)] + [(lr, degrade(frame)) for lr, degrade in degradations.items()]:
                path = folder / sub / clip / f"{name}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                assert cv2.imwrite(str(path), image)


BI = lambda f: imresize_uint8(f, 1 / 4)  # noqa: E731
BD = lambda f: bd_downsample_uint8(f, 4)  # noqa: E731
# Vid4's clips differ in length and size (calendar 41 x 576x720, city 34 x 576x704, ...): scaled down
VID4 = {"calendar": (5, (36, 48)), "city": (3, (36, 44)), "foliage": (4, (32, 48)), "walk": (4, (32, 48))}
UDM10 = {"archpeople": (3, (32, 48)), "auditorium": (4, (32, 40))}


@pytest.fixture(scope="module")
def testsets_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("testsets")
    write_clip_set(root / "Vid4", VID4, "{:08d}", {"BIx4": BI, "BDx4": BD})
    write_clip_set(root / "UDM10", UDM10, "{:04d}", {"BDx4": BD})
    vimeo = root / "vimeo90k"
    for seed, clip in enumerate(["00001/0266", "00002/0010"]):
        for i, frame in enumerate(smooth_frames(7, (32, 48), 10 + seed), 1):
            for sub, image in (("vimeo_septuplet/sequences", frame), ("BIx4", BI(frame)), ("BDx4", BD(frame))):
                path = vimeo / sub / clip / f"im{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                assert cv2.imwrite(str(path), image)
    (vimeo / "meta_info_Vimeo90K_test_GT.txt").write_text("00001/0266 7 (32,48,3)\n00002/0010 7 (32,48,3)\n")
    return root


def test_vid4_layout_reads_clips_of_different_lengths_and_sizes(testsets_root):
    vid4 = testsets_root / "Vid4"
    ds = VideoRecurrentTestDataset(dataroot_gt=vid4 / "GT", dataroot_lq=vid4 / "BIx4")
    assert ds.clips == ["calendar", "city", "foliage", "walk"]
    city = ds[1]
    assert city["clip"] == "city" and city["frame_names"] == ["00000000", "00000001", "00000002"]
    assert tuple(city["lq"].shape) == (3, 3, 9, 11) and tuple(city["gt"].shape) == (3, 3, 36, 44)
    assert tuple(ds[0]["gt"].shape) == (5, 3, 36, 48)
    expected = cv2.imread(str(vid4 / "GT" / "city" / "00000002.png"))[..., ::-1] / 255.0
    assert np.allclose(city["gt"][2].permute(1, 2, 0).numpy(), expected, atol=1e-6)


def test_vid4_meta_info_is_optional_selects_clips_and_its_counts_are_checked(testsets_root, tmp_path):
    vid4 = testsets_root / "Vid4"
    meta = tmp_path / "meta_info_Vid4_GT.txt"
    meta.write_text("walk 4 (32,48,3)\ncity 3 (36,44,3)\n")  # MMagic's format, in its own order
    ds = VideoRecurrentTestDataset(dataroot_gt=vid4 / "GT", dataroot_lq=vid4 / "BDx4", meta_info_file=meta)
    assert ds.clips == ["walk", "city"] and len(ds[0]["frame_names"]) == 4
    meta.write_text("calendar 41 (576,720,3)\n")  # the real count, but only 5 frames unpacked here
    with pytest.raises(DataError, match=r"lists 41 frames for clip 'calendar', but .*calendar holds 5"):
        VideoRecurrentTestDataset(dataroot_gt=vid4 / "GT", dataroot_lq=vid4 / "BDx4", meta_info_file=meta)


def test_udm10_layout_through_the_registry(testsets_root):
    udm = testsets_root / "UDM10"
    ds = build_dataset({"type": "VideoRecurrentTestDataset", "dataroot_gt": str(udm / "GT"),
                        "dataroot_lq": str(udm / "BDx4"), "io_backend": {"type": "disk"}}, phase="test_1")
    assert ds.clips == ["archpeople", "auditorium"]
    assert ds[1]["frame_names"] == ["0000", "0001", "0002", "0003"]
    assert tuple(ds[1]["lq"].shape) == (4, 3, 8, 10)


def test_vimeo_test_dataset_accepts_basicsr_cache_data_false_only(testsets_root):
    vimeo = testsets_root / "vimeo90k"
    kwargs = dict(dataroot_gt=vimeo / "vimeo_septuplet/sequences", dataroot_lq=vimeo / "BIx4",
                  meta_info_file=vimeo / "meta_info_Vimeo90K_test_GT.txt")
    ds = Vimeo90KTestDataset(**kwargs, cache_data=False)
    assert ds.clips == ["00001/0266", "00002/0010"] and ds[0]["frame_names"][3] == "im4"
    with pytest.raises(ConfigError, match="cache_data: caching is not supported"):
        Vimeo90KTestDataset(**kwargs, cache_data=True)


def test_find_test_sets_reports_present_and_missing_in_column_order(testsets_root, tmp_path):
    found = find_test_sets(testsets_root)
    assert [f.test_set.column for f in found] == ["REDS4 (BI)", "Vimeo-90K-T (BI)", "Vid4 (BI)", "UDM10 (BD)",
                                                  "Vimeo-90K-T (BD)", "Vid4 (BD)"]
    present = {f.test_set.key: f.spec for f in found if f.spec}
    assert set(present) == {"vimeo_bi", "vid4_bi", "udm10_bd", "vimeo_bd", "vid4_bd"}
    assert found[0].missing == f"no {testsets_root / 'REDS4' / 'GT'}"
    assert present["vid4_bd"]["dataroot_lq"] == str(testsets_root / "Vid4" / "BDx4")
    assert "meta_info_file" not in present["vid4_bi"]  # optional, absent here
    assert present["vimeo_bi"]["meta_info_file"].endswith("meta_info_Vimeo90K_test_GT.txt")
    protocols = {t.key: t.protocol for t in STANDARD_TEST_SETS}
    assert protocols["reds4_bi"] == Protocol(test_y_channel=False, crop_border=0)
    assert protocols["vimeo_bd"] == Protocol(test_y_channel=True, crop_border=0, center_frame_only=True, flip_seq=True)
    assert protocols["vid4_bi"] == protocols["udm10_bd"] == Protocol(test_y_channel=True, crop_border=0)
    # a Vimeo LR folder without the test list would score train septuplets too: refused, named
    (tmp_path / "vimeo90k" / "GT").mkdir(parents=True)
    (tmp_path / "vimeo90k" / "BDx4").mkdir()
    with pytest.raises(DataError, match=r"Vimeo-90K-T \(BD\) needs its clip list"):
        find_test_sets(tmp_path, only=["vimeo_bd"])
    with pytest.raises(ConfigError, match="test set 'vid4': unknown"):
        find_test_sets(tmp_path, only=["vid4"])


# ------------------------------------------------------------------------------------------
# protocols: centre frame only, flip_seq
# ------------------------------------------------------------------------------------------
def clip_item(t: int, seed: int = 0, gt_frames: slice = slice(None)) -> dict:
    gen = torch.Generator().manual_seed(seed)
    gt = torch.rand(t, 3, 16, 16, generator=gen)
    return {"lq": gt[:, :, ::4, ::4].clone(), "gt": gt[gt_frames], "clip": f"c{seed}",
            "frame_names": [f"im{i + 1}" for i in range(t)]}


def test_center_frame_only_scores_output_frame_t_over_2_against_im4(testsets_root):
    item = clip_item(7)
    gt = clip_item(7)["gt"]
    good = gt.clone()
    good[3] = (gt[3] + 0.02).clamp(0, 1)      # im4: a small known error
    good[[0, 1, 2, 4, 5, 6]] = 1.0 - gt[[0, 1, 2, 4, 5, 6]]  # every other frame: wrong
    restore = lambda lq: good  # noqa: E731
    expected = score_clip(good[3:4], gt[3:4], "c0", test_y_channel=True)
    table = evaluate(restore, [item], test_y_channel=True, center_frame_only=True)
    assert table.rows[0].frames == 1 and table.psnr == pytest.approx(expected.psnr, abs=1e-9) and table.psnr > 30
    assert evaluate(restore, [item], test_y_channel=True).psnr < 15  # all frames would count the wrong ones
    # BasicSR's VideoTestVimeo90KDataset gives only im4 as GT: still compared with output frame 3
    only_im4 = clip_item(7, gt_frames=slice(3, 4))
    assert evaluate(restore, [only_im4], test_y_channel=True, center_frame_only=True).psnr == \
        pytest.approx(expected.psnr, abs=1e-9)


def causal_mean(lq: torch.Tensor) -> torch.Tensor:
    """A 'recurrent model' that only looks back: output t is the mean of inputs 0..t."""
    counts = torch.arange(1, lq.shape[0] + 1, dtype=lq.dtype).view(-1, 1, 1, 1)
    return lq.cumsum(0) / counts


def test_flip_seq_is_one_pass_over_clip_and_reverse_averaged():
    lq = torch.tensor([0.1, 0.2, 0.6]).view(3, 1, 1, 1)
    # by hand: the pass sees 0.1 0.2 0.6 0.6 0.2 0.1 -> causal means 0.1 0.15 0.3 0.375 0.34 0.3;
    # frame t = (out[t] + out[5 - t]) / 2
    expected = torch.tensor([(0.1 + 0.3) / 2, (0.15 + 0.34) / 2, (0.3 + 0.375) / 2]).view(3, 1, 1, 1)
    assert torch.allclose(restore_flipped(causal_mean, lq), expected, atol=1e-7)
    two_passes = 0.5 * (causal_mean(lq) + causal_mean(lq.flip(0)).flip(0))  # [0.2, 0.275, 0.45]: not BasicSR's
    assert not torch.allclose(two_passes, expected, atol=1e-3)
    with pytest.raises(ValueError, match="restore returned 3 frames for a 6-frame clip"):
        restore_flipped(lambda x: x[:3], lq)


def test_evaluate_flip_seq_scores_the_averaged_output_before_quantisation():
    item = clip_item(7, seed=1)
    upsample = lambda x: torch.nn.functional.interpolate(causal_mean(x), scale_factor=4, mode="nearest")  # noqa: E731
    seq = torch.cat([item["lq"], item["lq"].flip(0)])
    out = upsample(seq)
    averaged = 0.5 * (out[:7] + out[7:].flip(0))
    expected = score_clip(averaged[3:4], item["gt"][3:4], "c1", test_y_channel=True)
    table = evaluate(upsample, [item], test_y_channel=True, center_frame_only=True, flip_seq=True)
    assert table.psnr == pytest.approx(expected.psnr, abs=1e-9)
    assert table.psnr != pytest.approx(evaluate(upsample, [item], test_y_channel=True, center_frame_only=True).psnr,
                                       abs=1e-3)


def test_benchmark_table_shows_protocols_and_dashes_for_missing_sets():
    columns = [(t.column, t.protocol) for t in STANDARD_TEST_SETS]
    table = ScoreTable()
    table.rows.append(score_clip(torch.full((1, 3, 16, 16), 0.5), torch.full((1, 3, 16, 16), 0.52), "walk"))
    text = format_benchmark_table(columns, {"BasicVSR": {"Vid4 (BI)": table}})
    lines = text.splitlines()
    assert lines[0] == ("| method | REDS4 (BI) | Vimeo-90K-T (BI) | Vid4 (BI) | UDM10 (BD) | Vimeo-90K-T (BD) "
                        "| Vid4 (BD) |")
    assert lines[2].startswith("| protocol | RGB, crop 0, all frames | Y, crop 0, centre frame, flip | "
                               "Y, crop 0, all frames |")
    psnr = 10 * math.log10(255 ** 2 / (133 - 128) ** 2)  # 0.5 -> 128, 0.52 -> 133 on every pixel
    assert lines[3] == f"| BasicVSR | - | - | {psnr:.2f}/{table.ssim:.4f} | - | - | - |"


# ------------------------------------------------------------------------------------------
# BD degradation
# ------------------------------------------------------------------------------------------
def bd_by_hand(image: np.ndarray, sigma: float = 1.6, scale: int = 4) -> np.ndarray:
    """BD_degradation.m written out with loops: fspecial('gaussian', 12, 1.6) built tap by tap,
    imfilter's correlation with its centre at floor((12+1)/2) (1-based) and replicate padding,
    then the 1-based samples 2:4:end-2."""
    size = math.ceil(sigma * 3) * 2 + 2
    kernel = np.zeros((size, size))
    for a in range(size):
        for b in range(size):
            y, x = a - (size - 1) / 2, b - (size - 1) / 2
            kernel[a, b] = math.exp(-(x * x + y * y) / (2 * sigma * sigma))
    kernel /= kernel.sum()
    centre = (size + 1) // 2  # 1-based
    h, w = image.shape[:2]
    rows = list(range(scale // 2, h - scale // 2 + 1, scale))  # 1-based 2:4:end-2
    cols = list(range(scale // 2, w - scale // 2 + 1, scale))
    out = np.zeros((len(rows), len(cols)) + image.shape[2:])
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            total = 0.0
            for a in range(size):
                for b in range(size):
                    rr = min(max(r + (a + 1) - centre, 1), h)  # replicate
                    cc = min(max(c + (b + 1) - centre, 1), w)
                    total = total + kernel[a, b] * image[rr - 1, cc - 1].astype(np.float64)
            out[i, j] = total
    return out


def test_bd_kernel_is_matlabs_12x12_for_sigma_1_6():
    assert bd_kernel_size(1.6) == 12
    g = gaussian_kernel_1d(12, 1.6)
    by_hand = np.array([math.exp(-((k - 5.5) ** 2) / (2 * 1.6 ** 2)) for k in range(12)])
    assert np.allclose(g, by_hand / by_hand.sum(), atol=1e-15) and g.sum() == pytest.approx(1.0)


def test_bd_matches_a_hand_computed_case():
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    expected = bd_by_hand(image)
    assert bd_downsample(image).shape == (3, 4, 3)
    assert np.allclose(bd_downsample(image), expected, atol=1e-9)
    rounded = np.clip(np.floor(expected + 0.5), 0, 255).astype(np.uint8)  # MATLAB: half away from zero
    assert np.array_equal(bd_downsample_uint8(image), rounded)
    grey = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    assert np.array_equal(bd_downsample_uint8(grey), np.clip(np.floor(bd_by_hand(grey) + 0.5), 0, 255))


def test_bd_alignment_lr_pixel_m_is_centred_on_hr_4m_plus_1_5():
    # one bright HR pixel at (5, 5): the kernel tap for LR (1, 1) is at offset -0.5 in both axes
    impulse = np.zeros((16, 16), dtype=np.uint8)
    impulse[5, 5] = 255
    w = math.exp(-0.25 / (2 * 1.6 ** 2)) / sum(math.exp(-((k - 5.5) ** 2) / (2 * 1.6 ** 2)) for k in range(12))
    lr = bd_downsample_uint8(impulse)
    assert lr[1, 1] == math.floor(255 * w * w + 0.5) == lr.max()  # 14
    # the four centre pixels of HR block rows/cols 4..7 are equivalent for LR (1, 1) ...
    responses = {}
    for p in range(4, 8):
        hr = np.zeros((16, 16))
        hr[p, p] = 1.0
        responses[p] = bd_downsample(hr)[1, 1]
    assert responses[5] == pytest.approx(responses[6], abs=1e-15)
    assert responses[4] == pytest.approx(responses[7], abs=1e-15) and responses[4] < responses[5]
    # ... and a bright block on 4..7 gives an LR image symmetric about (1, 1); the DUF / offset-0
    # grid (samples at HR 0, 4, 8) would centre LR (1, 1) on HR 4 and break this symmetry
    block = np.zeros((16, 16))
    block[4:8, 4:8] = 1.0
    lr_block = bd_downsample(block)
    assert lr_block[0, 1] == pytest.approx(lr_block[2, 1], abs=1e-15)
    assert lr_block[1, 0] == pytest.approx(lr_block[1, 2], abs=1e-15)
    assert np.unravel_index(lr_block.argmax(), lr_block.shape) == (1, 1)


def test_generate_lr_script_bd(tmp_path, capsys):
    frame = smooth_frames(1, (32, 48), 3)[0]
    (tmp_path / "gt" / "walk").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "gt" / "walk" / "00000000.png"), frame)
    script = load_script("generate_lr")
    assert script.main(["--kind", "bd", "--input", str(tmp_path / "gt"), "--output", str(tmp_path / "lr")]) == 0
    assert "wrote 1 BD x4 LR frames (Gaussian sigma 1.6, 12x12 kernel)" in capsys.readouterr().out
    lr = cv2.imread(str(tmp_path / "lr" / "walk" / "00000000.png"))
    assert np.array_equal(lr, bd_downsample_uint8(frame))
    cv2.imwrite(str(tmp_path / "gt" / "walk" / "00000001.png"), frame[:-2])
    assert script.main(["--kind", "bd", "--input", str(tmp_path / "gt"), "--output", str(tmp_path / "lr2")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "30x48 is not a multiple of the scale 4" in err and err.count("\n") == 1
    with pytest.raises(SystemExit):
        script.main(["--kind", "bd", "--input", str(tmp_path / "gt"), "--output", str(tmp_path / "lr3"),
                     "--scale", "3"])


# ------------------------------------------------------------------------------------------
# scripts/evaluate.py --testsets
# ------------------------------------------------------------------------------------------
def test_evaluate_script_prints_the_six_column_table_with_each_protocol(testsets_root, tmp_path, capsys):
    data = tiny_options(tmp_path / "unused", tmp_path / "exp")
    opt = write_options(tmp_path / "o.yml", data)
    torch.manual_seed(0)
    net = models.build_network(data["network_g"])
    torch.save({"params": net.state_dict()}, tmp_path / "w.pth")
    evaluate_script = load_script("evaluate")
    out_json = tmp_path / "scores.json"
    assert evaluate_script.main(["-opt", opt, "--checkpoint", str(tmp_path / "w.pth"), "--testsets",
                                 str(testsets_root), "--bicubic", "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert ("| method | REDS4 (BI) | Vimeo-90K-T (BI) | Vid4 (BI) | UDM10 (BD) | Vimeo-90K-T (BD) | Vid4 (BD) |"
            in printed)
    assert "REDS4 (BI): - (no " in printed
    rows = [line for line in printed.splitlines() if line.startswith(("| BasicVSR | -", "| bicubic | -"))]
    assert len(rows) == 2 and all(row.count(" - ") == 1 for row in rows)
    scores = json.loads(out_json.read_text())
    vimeo = scores["testsets"]["Vimeo-90K-T (BI)"]
    assert vimeo["protocol"] == {"test_y_channel": True, "crop_border": 0, "center_frame_only": True,
                                 "flip_seq": True}
    assert [c["frames"] for c in vimeo["BasicVSR"]["clips"]] == [1, 1]
    assert [c["frames"] for c in scores["testsets"]["Vid4 (BI)"]["BasicVSR"]["clips"]] == [5, 3, 4, 4]
    assert scores["missing"] == {"REDS4 (BI)": f"no {testsets_root / 'REDS4' / 'GT'}"}
    # the bicubic Vimeo number, recomputed here: Y-channel PSNR of im4 only, averaged over the septuplets
    vimeo_root = testsets_root / "vimeo90k"
    psnrs = []
    for clip in ("00001/0266", "00002/0010"):
        lr = cv2.imread(str(vimeo_root / "BIx4" / clip / "im4.png"))[..., ::-1].astype(np.float32) / 255
        up = torch.from_numpy(np.ascontiguousarray(imresize(lr, 4))).permute(2, 0, 1).clamp(0, 1)
        gt = cv2.imread(str(vimeo_root / "vimeo_septuplet/sequences" / clip / "im4.png"))[..., ::-1]
        psnrs.append(metrics.calculate_psnr(metrics.tensor_to_uint8_image(up), np.ascontiguousarray(gt), 0,
                                            test_y_channel=True, channel_order="rgb"))
    assert vimeo["bicubic"]["average"]["psnr"] == pytest.approx(float(np.mean(psnrs)), abs=1e-6)


def test_evaluate_script_testsets_errors_are_one_line(testsets_root, tmp_path, capsys):
    opt = write_options(tmp_path / "o.yml", tiny_options(tmp_path / "unused", tmp_path / "exp"))
    evaluate_script = load_script("evaluate")
    assert evaluate_script.main(["-opt", opt, "--testsets", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nowhere: test-set root does not exist" in err and err.count("\n") == 1
    (tmp_path / "empty").mkdir()
    assert evaluate_script.main(["-opt", opt, "--testsets", str(tmp_path / "empty")]) == 2
    assert "none of the standard test sets is there" in capsys.readouterr().err
    assert evaluate_script.main(["-opt", opt, "--only", "vid4_bi"]) == 2
    assert "--only selects among --testsets" in capsys.readouterr().err
