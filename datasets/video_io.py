"""Video frames in and out, for long-video inference (`infer.py`): read through OpenCV, and the
`--mp4` written as H.264 through PyAV (OpenCV's pip wheels cannot encode H.264; see `write_mp4`).

Kept apart from `vsr_accel.infer.inference` so that OpenCV stays out of the torch-only core: the core
asks a `FrameSource` for a forward stream of frames and hands restored frames to a
`FrameFolder`. Decoded frames are BGR uint8 (h, w, 3) arrays, as OpenCV gives them; restored
frames arrive as uint8 RGB (3, H, W) tensors.
"""
from __future__ import annotations

import itertools
import math
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np
import torch

from vsr_accel.core.errors import DataError
from vsr_accel.core.fsio import atomic_write_bytes, fsync_dir, remove_stale_temps, temp_path_for
from vsr_accel.core.pixels import quantize_like_tensor2img

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
FRAME_NAME = "{:08d}.png"


def read_image(path: Path) -> np.ndarray:
    frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if frame is None:
        raise DataError(f"{path}: cannot be read as an image")
    return frame


class FrameSource:
    """A video file or a folder of images, read forward as a stream of BGR uint8 frames."""

    num_frames: int
    fps: float | None
    path: Path

    def open_stream(self) -> tuple[Callable[[], np.ndarray], Callable[[], None], Callable[[], None]]:
        """(read_next, skip_next, close) for one forward pass from frame 0."""
        raise NotImplementedError

    def frames(self) -> Iterator[np.ndarray]:
        read_next, _, close = self.open_stream()
        try:
            for _ in range(self.num_frames):
                yield read_next()
        finally:
            close()


class FolderSource(FrameSource):
    def __init__(self, folder: Path):
        self.path = folder
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.files:
            raise DataError(f"{folder}: no image frames ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        self.num_frames = len(self.files)
        self.fps = None

    def open_stream(self):
        position = [0]

        def read_next() -> np.ndarray:
            path = self.files[position[0]]
            position[0] += 1
            return read_image(path)

        def skip_next() -> None:
            position[0] += 1

        return read_next, skip_next, lambda: None


class VideoSource(FrameSource):
    """Frames are counted by decoding once: container frame counts are estimates (variable
    frame rate, damaged tails), and every rank must agree exactly on the chunk plan."""

    def __init__(self, path: Path):
        self.path = path
        capture = self._capture()
        try:
            self.fps = capture.get(cv2.CAP_PROP_FPS) or None
            count = 0
            while capture.grab():
                count += 1
        finally:
            capture.release()
        if count == 0:
            raise DataError(f"{path}: the video has no decodable frames")
        self.num_frames = count

    def _capture(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            capture.release()
            raise DataError(f"{self.path}: cannot be opened as a video (unknown format or damaged file)")
        return capture

    def open_stream(self):
        capture = self._capture()
        position = [0]

        def read_next() -> np.ndarray:
            ok, frame = capture.read()
            if not ok:
                raise DataError(f"{self.path}: frame {position[0]} cannot be decoded")
            position[0] += 1
            return frame

        def skip_next() -> None:
            # Seeking (CAP_PROP_POS_FRAMES) is not frame-exact for every codec; grabbing is.
            if not capture.grab():
                raise DataError(f"{self.path}: frame {position[0]} cannot be decoded")
            position[0] += 1

        return read_next, skip_next, capture.release


def open_source(path: Path, what: str = "--input") -> FrameSource:
    """A folder of images or a video file; `what` names the option in the error message."""
    if not path.exists():
        raise DataError(f"{path}: {what} not found")
    if path.is_dir():
        return FolderSource(path)
    return VideoSource(path)


def rgb_to_bgr(frame_rgb: torch.Tensor) -> np.ndarray:
    """uint8 RGB (3, H, W) tensor -> BGR (H, W, 3) array, OpenCV's layout."""
    return np.ascontiguousarray(frame_rgb.permute(1, 2, 0).numpy()[..., ::-1])


def encode_png(frame_rgb: torch.Tensor) -> bytes:
    """uint8 RGB (3, H, W) -> PNG bytes (OpenCV's default compression)."""
    ok, buffer = cv2.imencode(".png", rgb_to_bgr(frame_rgb))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buffer.tobytes()



class FrameFolder:
    """Restored frames as `%08d.png` (0-based frame index) in one folder, each written atomically
    through `vsr_accel.core.fsio` (temp file, fsync, rename, the umask's mode); the folder is fsync'd
    once per `write` call (a chunk), not once per frame. A restarted run asks `has_all` and skips
    what exists."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def prepare(self) -> None:
        """Create the folder and prove we can write into it, before any compute is spent."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"{self.folder}: output folder cannot be created ({exc.strerror or exc})") from None
        if not self.folder.is_dir():
            raise DataError(f"{self.folder}: output path exists and is not a folder")
        try:
            fd, probe = tempfile.mkstemp(prefix=".write-probe.", suffix=".tmp", dir=self.folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise DataError(f"{self.folder}: output folder is not writable ({exc.strerror or exc})") from None

    def path(self, index: int) -> Path:
        return self.folder / FRAME_NAME.format(index)

    def has_all(self, indices: range) -> bool:
        return all(self.path(i).is_file() for i in indices)

    def remove_stale_temps(self, indices: Iterable[int]) -> None:
        """Temp files a killed run left for these frames (call only where no one else writes them)."""
        remove_stale_temps(self.folder, [FRAME_NAME.format(i) for i in indices])

    def write(self, indices: range, frames: torch.Tensor) -> int:
        """Write the frames (uint8 RGB (3, H, W) each) that do not exist yet; returns how many."""
        written = 0
        for i, frame in zip(indices, frames):
            target = self.path(i)
            if not target.is_file():
                atomic_write_bytes(target, encode_png(frame), sync_dir=False)
                written += 1
        fsync_dir(self.folder)
        return written

    def read(self, index: int) -> np.ndarray:
        return read_image(self.path(index))

def save_restored_clip(folder: Path, frames: torch.Tensor, names: Sequence[str], suffix: str) -> list[Path]:
    """`val.save_img`: a validation's restored clip (float (T, 3, H, W) in [0, 1]) as
    `<folder>/<frame name>_<suffix>.png` (BasicSR's visualization layout; the suffix is the
    iteration during training), quantised like BasicSR's tensor2img, each written atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}_{suffix}.png" for name in names]
    for path, frame in zip(paths, quantize_like_tensor2img(frames)):
        atomic_write_bytes(path, encode_png(frame), sync_dir=False)
    fsync_dir(folder)
    return paths


H264_ENCODER = "libx264"
H264_CRF = 18  # visually lossless for most content; x264's default (23) smears fine SR detail
MP4_FALLBACK_HINT = "pip install av (requirements.txt pins it) for H.264"


@dataclass(frozen=True)
class Mp4Written:
    """What `write_mp4` wrote, for the entry point's summary line (`str()` is that line)."""

    path: Path
    codec: str          # "H.264" (libx264, yuv420p, BT.709) or "MPEG-4 Part 2" (OpenCV's mp4v fallback)
    frames: int
    width: int
    height: int
    fps: float
    note: str = ""      # padding to even sides, or why the fallback was used

    def __str__(self) -> str:
        note = f"; {self.note}" if self.note else ""
        return (f"wrote {self.path} ({self.codec}, {self.frames} frames of {self.width}x{self.height} "
                f"at {self.fps:g} fps{note})")


def h264_available() -> bool:
    """Whether PyAV is installed with an H.264 encoder (its wheels ship libx264). OpenCV's pip
    wheels cannot write H.264: their FFmpeg has no software H.264 encoder (only h264_v4l2m2m,
    which needs a hardware device), so 'avc1' fails to open there."""
    try:
        import av
    except ImportError:
        return False
    return H264_ENCODER in av.codecs_available


def write_mp4(frames: Sequence[Path], target: Path, fps: float) -> Mp4Written:
    """Encode the image files `frames` (in order) into `target`: H.264 (High profile, yuv420p,
    BT.709, `movflags +faststart`), which browsers and players accept, when PyAV is installed;
    otherwise OpenCV's MPEG-4 Part 2 ('mp4v'), which many refuse, and the result says so. Written
    atomically (`vsr_accel.core.fsio`): a kill never leaves a truncated `target`. H.264 4:2:0 needs even
    sides: an odd one is padded by repeating the last row/column (the result names the new size)."""
    if not frames:
        raise DataError(f"{target}: no frames to encode")
    if not (math.isfinite(fps) and fps > 0):
        raise DataError(f"{target}: frame rate {fps!r} is not a positive number")
    target = Path(target)
    if h264_available():
        return _write_h264(frames, target, fps)
    return _write_mp4v(frames, target, fps, note=f"MPEG-4 Part 2, which browsers refuse: {MP4_FALLBACK_HINT}")


def _frames_of_one_size(frames: Sequence[Path]) -> Iterator[np.ndarray]:
    first = read_image(frames[0])
    yield first
    for path in frames[1:]:
        frame = read_image(path)
        if frame.shape != first.shape:
            raise DataError(f"{path} is {frame.shape[1]}x{frame.shape[0]}, but {frames[0]} is "
                            f"{first.shape[1]}x{first.shape[0]} (one size per video)")
        yield frame


@contextmanager
def _atomic_path(target: Path, temp: Path) -> Iterator[Path]:
    """`vsr_accel.core.fsio.atomic_writer` for encoders that write a file by name (FFmpeg reopens it to
    move the index to the front): `temp` is created first with the umask's mode, filled by the
    caller, then fsync'd, renamed over `target` and the folder fsync'd; on any exception it goes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        yield temp
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
        fsync_dir(target.parent)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _write_h264(frames: Sequence[Path], target: Path, fps: float) -> Mp4Written:
    import av
    from av.video.reformatter import ColorRange, Colorspace, Interpolation

    rate = Fraction(fps).limit_denominator(1001)  # 29.97... -> 30000/1001
    images = _frames_of_one_size(frames)
    first = next(images)
    height, width = first.shape[:2]
    even_h, even_w = height + height % 2, width + width % 2
    note = f"padded from {width}x{height} (H.264 4:2:0 needs even sides)" if (even_h, even_w) != (height, width) else ""
    rounding = Interpolation.BILINEAR | Interpolation.ACCURATE_RND  # swscale's fast path biases U/V by -1 (blue -3)
    with _atomic_path(target, temp_path_for(target)) as temp:
        with av.open(str(temp), "w", format="mp4", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream(H264_ENCODER, rate=rate, options={"crf": str(H264_CRF)})
            stream.width, stream.height, stream.pix_fmt = even_w, even_h, "yuv420p"
            context = stream.codec_context
            context.colorspace = context.color_primaries = context.color_trc = 1  # BT.709, as converted below
            context.color_range = 1  # limited ('MPEG'), what players expect
            for index, image in enumerate(itertools.chain([first], images)):
                if note:
                    image = np.pad(image, ((0, even_h - height), (0, even_w - width), (0, 0)), mode="edge")
                frame = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(
                    format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG,
                    interpolation=rounding)
                frame.pts = index
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
    return Mp4Written(target, "H.264", len(frames), even_w, even_h, float(rate), note)


def _write_mp4v(frames: Sequence[Path], target: Path, fps: float, note: str) -> Mp4Written:
    """OpenCV's writer picks the container from the file name, so its temp name ends in .mp4."""
    images = _frames_of_one_size(frames)
    first = next(images)
    height, width = first.shape[:2]
    temp = target.with_name(f".{target.stem}.{os.getpid()}.tmp{target.suffix or '.mp4'}")
    with _atomic_path(target, temp):
        writer = cv2.VideoWriter(str(temp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise DataError(f"{target}: OpenCV cannot open an mp4 writer here ({MP4_FALLBACK_HINT})")
        try:
            for image in itertools.chain([first], images):
                writer.write(image)
        finally:
            writer.release()
    return Mp4Written(target, "MPEG-4 Part 2", len(frames), width, height, fps, note)
