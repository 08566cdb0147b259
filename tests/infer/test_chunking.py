"""Inference planning (vsr_accel/infer/chunking.py): chunks with context, rank shares, the
frames a sliding-window network reads, spatial tiles, and the forward-only frame buffer."""
from __future__ import annotations

import pytest

from vsr_accel.infer.chunking import (Chunk, ForwardBuffer, max_buffered, plan_chunks, rank_share, tile_spans,
                                      window_context, window_indices)


@pytest.mark.parametrize("num_frames,chunk,context", [(20, 6, 2), (20, 20, 0), (7, 10, 3), (1, 1, 5), (33, 8, 8)])
def test_plan_chunks_covers_every_frame_once_with_clamped_context(num_frames, chunk, context):
    chunks = plan_chunks(num_frames, chunk, context)
    covered = [i for c in chunks for i in range(c.start, c.stop)]
    assert covered == list(range(num_frames))
    for c in chunks:
        assert 1 <= c.size <= chunk
        assert c.ctx_start == max(0, c.start - context) and c.ctx_stop == min(num_frames, c.stop + context)
    # context ranges only move forward: what lets the reader stream
    assert all(a.ctx_start <= b.ctx_start and a.ctx_stop <= b.ctx_stop for a, b in zip(chunks, chunks[1:]))
    assert max_buffered(chunks) <= chunk + 2 * context


def test_plan_chunks_example_and_bad_arguments():
    assert plan_chunks(10, 4, 1) == [Chunk(0, 4, 0, 5), Chunk(4, 8, 3, 9), Chunk(8, 10, 7, 10)]
    assert plan_chunks(0, 4, 1) == []
    for bad in [(10, 0, 1), (10, 4, -1), (-1, 4, 1)]:
        with pytest.raises(ValueError):
            plan_chunks(*bad)


def test_a_range_is_chunked_from_its_start_with_context_from_the_video():
    """--start/--frames: the grid starts at the range's first frame; context reaches outside the
    range (clamped at the video's ends only), as in a whole run."""
    assert plan_chunks(20, 4, 2, start=5, stop=12) == [Chunk(5, 9, 3, 11), Chunk(9, 12, 7, 14)]
    assert plan_chunks(20, 4, 2, start=18, stop=20) == [Chunk(18, 20, 16, 20)]
    whole = plan_chunks(20, 4, 2)
    assert plan_chunks(20, 4, 2, start=8, stop=16) == whole[2:4]  # on the grid, whole chunks: the same chunks
    assert plan_chunks(20, 4, 2, start=12, stop=20) == whole[3:]  # ... or to the video's end
    assert plan_chunks(20, 4, 2, start=7, stop=7) == []
    for start, stop in [(-1, 5), (6, 5), (0, 21)]:
        with pytest.raises(ValueError):
            plan_chunks(20, 4, 2, start=start, stop=stop)


@pytest.mark.parametrize("num_chunks,world_size", [(4, 2), (5, 2), (7, 3), (2, 4), (0, 2), (9, 1)])
def test_rank_share_is_contiguous_balanced_and_complete(num_chunks, world_size):
    chunks = plan_chunks(num_chunks * 3, 3, 1)
    shares = [rank_share(chunks, r, world_size) for r in range(world_size)]
    assert [c for share in shares for c in share] == chunks  # in order: contiguous and complete
    sizes = [len(s) for s in shares]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    with pytest.raises(ValueError):
        rank_share(chunks, world_size, world_size)


def test_window_indices_follow_basicsr_generate_frame_indices():
    # The examples of BasicSR's docstring (current_idx=0, num_frames=5, 100-frame clip).
    expected = {"replicate": [0, 0, 0, 1, 2], "reflection": [2, 1, 0, 1, 2],
                "reflection_circle": [4, 3, 0, 1, 2], "circle": [3, 4, 0, 1, 2]}
    for padding, indices in expected.items():
        assert window_indices(0, 100, 5, padding) == indices
    assert window_indices(99, 100, 5, "reflection_circle") == [97, 98, 99, 96, 95]
    # Clips shorter than the window are clamped into range rather than crashing.
    assert all(0 <= i < 3 for c in range(3) for i in window_indices(c, 3, 5, "reflection_circle"))


@pytest.mark.parametrize("padding", ["replicate", "reflection", "reflection_circle", "circle"])
def test_window_context_keeps_every_window_inside_its_chunk(padding):
    for num_frames in (5, 9, 17):
        for chunk in (1, 3, 4):
            for c in plan_chunks(num_frames, chunk, window_context(5, padding)):
                for center in range(c.start, c.stop):
                    assert all(c.ctx_start <= i < c.ctx_stop for i in window_indices(center, num_frames, 5, padding))


def test_tile_spans_partition_the_axis():
    for length, tile, overlap in [(100, 40, 8), (72, 40, 8), (33, 16, 4), (10, 16, 4), (50, 0, 0)]:
        spans = tile_spans(length, tile, overlap)
        assert spans[0].keep_start == 0 and spans[-1].keep_stop == length
        for a, b in zip(spans, spans[1:]):
            assert a.keep_stop == b.keep_start
        for s in spans:
            assert 0 <= s.start <= s.keep_start < s.keep_stop <= s.stop <= length
            assert s.stop - s.start == min(tile, length) if tile else s.stop == length


class CountingStream:
    """A fake decoder that records what was decoded and skipped."""

    def __init__(self):
        self.position = 0
        self.decoded: list[int] = []
        self.skipped: list[int] = []

    def read_next(self) -> int:
        self.decoded.append(self.position)
        self.position += 1
        return self.position - 1

    def skip_next(self) -> None:
        self.skipped.append(self.position)
        self.position += 1


def test_forward_buffer_holds_at_most_chunk_plus_two_context_frames():
    stream = CountingStream()
    buffer = ForwardBuffer(stream.read_next, stream.skip_next)
    chunks = plan_chunks(50, 8, 3)
    for c in chunks:
        assert buffer.frames(c.ctx_start, c.ctx_stop) == list(range(c.ctx_start, c.ctx_stop))
    assert buffer.peak == max_buffered(chunks) == 8 + 2 * 3
    assert stream.decoded == list(range(50))  # each frame decoded once, none skipped
    with pytest.raises(ValueError):
        buffer.frames(0, 5)


def test_forward_buffer_skips_without_decoding_chunks_already_done():
    stream = CountingStream()
    buffer = ForwardBuffer(stream.read_next, stream.skip_next)
    chunks = plan_chunks(40, 8, 2)
    for c in (chunks[0], chunks[3]):  # chunks 1 and 2 were done by an earlier run
        assert buffer.frames(c.ctx_start, c.ctx_stop) == list(range(c.ctx_start, c.ctx_stop))
    assert stream.skipped == list(range(10, 22)) and 15 not in stream.decoded
    assert buffer.peak == 12  # the larger of the two context ranges read, never their span
