"""Array operations on frame stacks: crop origin, flips, transposes.

The semantics follow BasicSR's `paired_random_crop` and `augment`: the GT crop is the LR crop
scaled by `scale` at the same location, and one draw of (hflip, vflip, rot90) is applied to every
frame of a sample, LR and GT alike. 'Rotation' is BasicSR's vertical flip plus h/w transpose,
which together with hflip gives all eight dihedral orientations.

`augment` works on interleaved stacks (..., h, w, c) with numpy views (BasicSR's reference
form); `augment_planar` is what the training datasets use on their (T, 3, h, w) uint8 samples:
the same result, made with one OpenCV call per plane, since numpy's strided copy of a flipped
or transposed uint8 stack costs ~10x more (2-4 ms for a 64x64x15 GT sample, measured).
"""
from __future__ import annotations

import cv2
import numpy as np


def random_crop_origin(rng: np.random.Generator, frame_hw: tuple[int, int],
                       crop_hw: tuple[int, int]) -> tuple[int, int]:
    """(top, left) of a crop, uniform over every position where it fits (caller checks fit)."""
    (h, w), (ch, cw) = frame_hw, crop_hw
    return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))


def crop(frame: np.ndarray, top: int, left: int, crop_hw: tuple[int, int]) -> np.ndarray:
    return frame[top:top + crop_hw[0], left:left + crop_hw[1]]


def draw_augmentation(rng: np.random.Generator, use_hflip: bool, use_rot: bool) -> tuple[bool, bool, bool]:
    """(hflip, vflip, rot90), each with probability 1/2 when enabled, as BasicSR's `augment`."""
    hflip = use_hflip and rng.random() < 0.5
    vflip = use_rot and rng.random() < 0.5
    rot90 = use_rot and rng.random() < 0.5
    return bool(hflip), bool(vflip), bool(rot90)


def augment(frames: np.ndarray, hflip: bool, vflip: bool, rot90: bool) -> np.ndarray:
    """Apply BasicSR's augmentation to a stack (..., h, w, c): horizontal flip, then vertical
    flip, then h/w transpose, in that order (the order changes the result)."""
    if hflip:
        frames = frames[..., :, ::-1, :]
    if vflip:
        frames = frames[..., ::-1, :, :]
    if rot90:
        frames = np.swapaxes(frames, -3, -2)
    return frames


SMALL_PLANE = 64 * 64  # pixels per plane up to which numpy's one strided copy beats per-plane OpenCV calls


def augment_planar(frames: np.ndarray, hflip: bool, vflip: bool, rot90: bool) -> np.ndarray:
    """`augment` for planar stacks (n, c, h, w) of uint8 planes, e.g. (T, 3, h, w): horizontal
    flip, vertical flip, then h/w transpose. Always returns a new C-contiguous array, so `frames`
    may be a strided read-only view (a raw store's map): the crop is read once, while flipping.

    Small planes (up to 64x64: LR crops) and a vertical flip alone are one numpy copy of the
    flipped/transposed view: per call, OpenCV's overhead is larger than the data. Larger planes
    get one OpenCV call each (numpy's strided copy is 1.5-3x slower there): flips, and for a
    transpose after a vertical flip a clockwise rotation, after a horizontal flip an anticlockwise
    one."""
    n, c, h, w = frames.shape
    if h * w <= SMALL_PLANE or not (hflip or rot90):
        view = frames[..., ::-1] if hflip else frames
        view = view[:, :, ::-1] if vflip else view
        return np.array(np.swapaxes(view, -1, -2) if rot90 else view, order="C", copy=True)
    out = np.empty((n * c, w, h) if rot90 else (n * c, h, w), np.uint8)
    sources = _planes(frames)
    if not rot90:
        code = -1 if vflip else 1
        for src, dst in zip(sources, out):
            cv2.flip(src, code, dst=dst)
    elif hflip and vflip:  # transpose of the 180-degree turn = the anti-transpose
        for src, dst in zip(sources, out):
            cv2.flip(cv2.transpose(src), -1, dst=dst)
    elif vflip or hflip:
        turn = cv2.ROTATE_90_CLOCKWISE if vflip else cv2.ROTATE_90_COUNTERCLOCKWISE
        for src, dst in zip(sources, out):
            cv2.rotate(src, turn, dst=dst)
    else:
        for src, dst in zip(sources, out):
            cv2.transpose(src, dst=dst)
    return out.reshape(n, c, *out.shape[1:])


def _planes(frames: np.ndarray):
    """The (h, w) planes of (n, c, h, w) in order, without copying: one (n*c, h, w) view when
    the strides allow it (a raw clip's frames read forwards), else plane by plane."""
    n, c, h, w = frames.shape
    merged = frames.view()
    try:
        merged.shape = (n * c, h, w)  # raises instead of copying
    except AttributeError:
        return (frames[i, j] for i in range(n) for j in range(c))
    return merged


def mod_crop(image: np.ndarray, scale: int) -> np.ndarray:
    """Drop the bottom/right rows and columns that make h or w not a multiple of `scale`."""
    h, w = image.shape[:2]
    return image[:h - h % scale, :w - w % scale]
