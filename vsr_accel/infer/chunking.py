"""Planning for long-video inference: temporal chunks with context, rank shares, the input
frames of sliding-window models, spatial tiles, and the forward-only frame buffer.
`vsr_accel.infer.inference` carries the plans out.

Recurrent VSR models (BasicVSR) propagate features through the whole clip in both directions,
so feeding a long video at once makes memory grow with its length. We cut the video into
chunks of `chunk` output frames and feed each with `context` extra frames on both sides (whose
outputs are thrown away): the propagated state at a chunk's edge has then already "warmed up"
over `context` frames, and peak memory depends on `chunk + 2 * context` only.

Everything here is pure planning: no model, no decoder, no torch, no files. That keeps it
unit-testable and lets every rank compute the same plan on its own, so clip-parallel inference
needs no communication to agree on who writes which frame.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Generic, Iterable, Sequence, TypeVar

T = TypeVar("T")

# BasicSR's EDVR test options (e.g. test_EDVR_M_x4_SR_REDS.yml) use `padding: reflection_circle`.
EDVR_TEST_PADDING = "reflection_circle"
PADDING_MODES = ("replicate", "reflection", "reflection_circle", "circle")


@dataclass(frozen=True)
class Chunk:
    """Output frames [start, stop) computed from input frames [ctx_start, ctx_stop)."""

    start: int
    stop: int
    ctx_start: int
    ctx_stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def ctx_size(self) -> int:
        return self.ctx_stop - self.ctx_start

    @property
    def offset(self) -> int:
        """Position of output frame `start` among the chunk's context frames."""
        return self.start - self.ctx_start


def plan_chunks(num_frames: int, chunk: int, context: int, start: int = 0, stop: int | None = None) -> list[Chunk]:
    """Split frames [start, stop) (default: all `num_frames`) into consecutive chunks of `chunk`
    frames (the last may be shorter), each read with `context` frames either side, clamped at the
    video's ends, not the range's: a range's edge frames get the same context as a whole run's.

    The chunk grid starts at `start`. A recurrent network's frame comes out the same in two runs
    over different ranges (say frames 64-73, and the whole video) exactly when the chunk holding
    it is the same chunk in both (same first and last frame, hence the same context frames):
    ranges that start on the other run's grid (a multiple of `chunk` apart) and whose frame count
    is a multiple of `chunk`, or which run to the video's end. A sliding-window network reads only
    each frame's window, so its frames are the same in any range.

    Context ranges only ever move forward, which is what lets the reader stream the video
    through a bounded buffer (`ForwardBuffer`)."""
    stop = num_frames if stop is None else stop
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if context < 0:
        raise ValueError(f"context must be >= 0, got {context}")
    if not 0 <= start <= stop <= num_frames:
        raise ValueError(f"frames [{start}, {stop}) are not a range of a {num_frames}-frame video")
    chunks = []
    for first in range(start, stop, chunk):
        last = min(first + chunk, stop)
        chunks.append(Chunk(first, last, max(0, first - context), min(num_frames, last + context)))
    return chunks


def rank_share(chunks: Sequence[Chunk], rank: int, world_size: int) -> list[Chunk]:
    """A contiguous, balanced share of `chunks` for `rank` (the first `len % world_size` ranks
    take one extra). Contiguity keeps each rank's reading a single forward pass."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of {world_size}")
    base, extra = divmod(len(chunks), world_size)
    begin = rank * base + min(rank, extra)
    end = begin + base + (1 if rank < extra else 0)
    return list(chunks[begin:end])


def max_buffered(chunks: Iterable[Chunk]) -> int:
    """The most input frames any chunk holds at once: the bound on the reader's buffer."""
    return max((c.ctx_size for c in chunks), default=0)


def window_indices(center: int, num_frames: int, window: int, padding: str = EDVR_TEST_PADDING) -> list[int]:
    """Input indices of the `window` frames centred on `center`, padded at the video's ends
    with BasicSR's `generate_frame_indices` semantics.

    Unlike BasicSR we clamp into [0, num_frames) afterwards, so clips shorter than the window
    (where 'reflection_circle' would point past the end) still work instead of crashing."""
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number, got {window}")
    if padding not in PADDING_MODES:
        raise ValueError(f"padding must be one of {PADDING_MODES}, got {padding!r}")
    last = num_frames - 1
    half = window // 2
    indices = []
    for i in range(center - half, center + half + 1):
        if i < 0:
            idx = {"replicate": 0, "reflection": -i, "reflection_circle": center + half - i,
                   "circle": window + i}[padding]
        elif i > last:
            idx = {"replicate": last, "reflection": 2 * last - i,
                   "reflection_circle": (center - half) - (i - last), "circle": i - window}[padding]
        else:
            idx = i
        indices.append(min(max(idx, 0), last))
    return indices


def window_positions(chunk: Chunk, num_frames: int, window: int, padding: str = EDVR_TEST_PADDING) -> list[list[int]]:
    """For each output frame of `chunk`, where its window's frames sit inside the chunk's context
    frames (what a sliding-window model reads for that output frame)."""
    positions = []
    for center in range(chunk.start, chunk.stop):
        local = [i - chunk.ctx_start for i in window_indices(center, num_frames, window, padding)]
        if not all(0 <= i < chunk.ctx_size for i in local):
            raise ValueError(f"frame {center}'s window reaches outside {chunk}: plan it with window_context()")
        positions.append(local)
    return positions


def window_context(window: int, padding: str = EDVR_TEST_PADDING) -> int:
    """Context a sliding-window model needs so every window of a chunk lies inside the chunk's
    context range. Interior windows reach `window // 2` frames out; the padded windows at the
    video's ends reach up to `window - 1` ('reflection_circle', 'circle', 'reflection')."""
    return window // 2 if padding == "replicate" else window - 1


@dataclass(frozen=True)
class TileSpan:
    """One tile along an axis: read input [start, stop), keep its outputs for [keep_start, keep_stop)."""

    start: int
    stop: int
    keep_start: int
    keep_stop: int


def tile_spans(length: int, tile: int, overlap: int) -> list[TileSpan]:
    """Overlapping tiles covering [0, length); each keeps the part of its output nearest its
    centre (split at the middle of each overlap), so every output pixel comes from exactly one
    tile and the result does not depend on blending order."""
    if tile <= 0 or tile >= length:
        return [TileSpan(0, length, 0, length)]
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap must be in [0, tile), got overlap={overlap} tile={tile}")
    starts = list(range(0, length - tile, tile - overlap)) + [length - tile]
    spans = []
    for i, start in enumerate(starts):
        stop = start + tile
        keep_start = 0 if i == 0 else (spans[-1].stop + start) // 2
        spans.append(TileSpan(start, stop, keep_start, length))
        if i > 0:
            prev = spans[-2]
            spans[-2] = TileSpan(prev.start, prev.stop, prev.keep_start, keep_start)
    return spans


class ForwardBuffer(Generic[T]):
    """Frames [lo, hi) of a stream that can only go forward, for context ranges that only go
    forward (see `plan_chunks`).

    `read_next()` decodes the next frame, `skip_next()` passes over one without decoding work we
    would throw away. Frames before `lo` are dropped as soon as it moves, so at most
    `hi - lo` frames are ever held; `peak` records the most held at once (tests assert on it)."""

    def __init__(self, read_next: Callable[[], T], skip_next: Callable[[], None]):
        self._read_next = read_next
        self._skip_next = skip_next
        self._frames: deque[T] = deque()
        self._lo = 0  # index of self._frames[0]
        self._next = 0  # index of the next frame the stream would give
        self.peak = 0

    def frames(self, lo: int, hi: int) -> list[T]:
        if lo < self._lo or hi < lo:
            raise ValueError(f"frames [{lo}, {hi}) move backwards from [{self._lo}, {self._next})")
        while self._frames and self._lo < lo:
            self._frames.popleft()
            self._lo += 1
        if not self._frames:
            while self._next < lo:
                self._skip_next()
                self._next += 1
            self._lo = self._next
        while self._next < hi:
            self._frames.append(self._read_next())
            self._next += 1
            self.peak = max(self.peak, len(self._frames))
        return list(self._frames)[: hi - lo]

