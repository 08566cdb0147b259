"""`datasets.video_io.write_mp4` (infer.py --mp4): H.264 that browsers play, read back with PyAV
(the codec, profile, pixel format, colour tags, frame count and size) and with OpenCV; odd sizes,
frame rates, atomic writing with the umask's mode, and the MPEG-4 Part 2 fallback without PyAV."""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets import video_io
from datasets.video_io import write_mp4
from vsr_accel.core.errors import DataError

av = pytest.importorskip("av")  # pinned in requirements.txt; the fallback test below runs without it


def frame_files(folder: Path, count: int, hw=(48, 64), seed=0) -> list[Path]:
    rng = np.random.default_rng(seed)
    h, w = hw
    smooth = cv2.resize(rng.integers(0, 256, (3, 4, 3), dtype=np.uint8), (w + count, h), interpolation=cv2.INTER_LINEAR)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{i:08d}.png"
        assert cv2.imwrite(str(path), np.ascontiguousarray(smooth[:, i:i + w]))
        paths.append(path)
    return paths


def probe(path: Path) -> dict:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        decoded = [frame.to_ndarray(format="bgr24") for frame in container.decode(stream)]
        return {"codec": context.name, "profile": context.profile, "pix_fmt": context.pix_fmt,
                "size": (context.width, context.height), "rate": stream.average_rate, "frames": decoded,
                "colorspace": context.colorspace, "format": container.format.name}


def test_mp4_is_h264_with_every_frame(tmp_path):
    files = frame_files(tmp_path / "frames", 9)
    target = tmp_path / "out" / "sr.mp4"
    written = write_mp4(files, target, 25.0)
    info = probe(target)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p" and info["profile"] == "High"
    assert "mp4" in info["format"] and info["colorspace"] == 1  # BT.709, tagged as converted
    assert len(info["frames"]) == 9 and info["size"] == (64, 48) and info["rate"] == 25
    assert (written.codec, written.frames, written.width, written.height, written.path) == ("H.264", 9, 64, 48, target)
    assert str(written).startswith(f"wrote {target} (H.264, 9 frames of 64x48 at 25 fps")
    capture = cv2.VideoCapture(str(target))  # OpenCV decodes it too, honouring the BT.709 tags
    decoded = []
    while (read := capture.read())[0]:
        decoded.append(read[1])
    originals = [cv2.imread(str(p)) for p in files]
    errors = [np.abs(a.astype(int) - b).mean() for a, b in zip(decoded, originals)]
    assert len(decoded) == 9 and max(errors) < 4, errors  # lossy (4:2:0, CRF 18), not garbled
    assert sorted(p.name for p in target.parent.iterdir()) == ["sr.mp4"]  # no temp file left


def test_mp4_moov_first_for_browsers(tmp_path):
    target = tmp_path / "sr.mp4"
    write_mp4(frame_files(tmp_path / "f", 3), target, 25.0)
    head = target.read_bytes()[:4096]
    assert head[4:8] == b"ftyp" and b"moov" in head  # +faststart: playable while downloading


def test_mp4_keeps_the_umask_mode(tmp_path):
    files = frame_files(tmp_path / "f", 2)
    old = os.umask(0o022)
    try:
        write_mp4(files, tmp_path / "a.mp4", 25.0)
    finally:
        os.umask(old)
    assert (tmp_path / "a.mp4").stat().st_mode & 0o777 == 0o644


def test_odd_sizes_are_padded_and_said(tmp_path):
    written = write_mp4(frame_files(tmp_path / "f", 4, hw=(45, 63)), tmp_path / "odd.mp4", 25.0)
    info = probe(tmp_path / "odd.mp4")
    assert info["codec"] == "h264" and info["size"] == (64, 46) and len(info["frames"]) == 4
    assert "padded from 63x45" in str(written)


def test_ntsc_frame_rate(tmp_path):
    written = write_mp4(frame_files(tmp_path / "f", 3), tmp_path / "ntsc.mp4", 30000 / 1001)
    assert probe(tmp_path / "ntsc.mp4")["rate"] == Fraction(30000, 1001)
    assert "29.97 fps" in str(written)


def test_a_frame_of_another_size_is_named_and_nothing_is_left(tmp_path):
    files = frame_files(tmp_path / "f", 3)
    assert cv2.imwrite(str(files[2]), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(DataError, match=f"{files[2]} is 10x10, but .* is 64x48"):
        write_mp4(files, tmp_path / "out" / "x.mp4", 25.0)
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("fps", [0.0, -1.0, float("nan")])
def test_bad_frame_rate_is_refused(tmp_path, fps):
    with pytest.raises(DataError, match="frame rate"):
        write_mp4(frame_files(tmp_path / "f", 1), tmp_path / "x.mp4", fps)


def test_without_pyav_falls_back_to_mpeg4_part2_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(video_io, "h264_available", lambda: False)
    target = tmp_path / "old.mp4"
    written = write_mp4(frame_files(tmp_path / "f", 5), target, 25.0)
    info = probe(target)
    assert info["codec"] == "mpeg4" and len(info["frames"]) == 5
    assert written.codec == "MPEG-4 Part 2" and "pip install av" in str(written)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "old.mp4"]


def test_h264_available_needs_pyav(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_av(name, *args, **kwargs):
        if name == "av":
            raise ImportError("no av")
        return real_import(name, *args, **kwargs)

    assert video_io.h264_available()
    monkeypatch.setattr(builtins, "__import__", no_av)
    assert not video_io.h264_available()
