"""Speed features change speed, not results: activation checkpointing, reduced precision, the
device prefetcher; and the benchmark helpers that the speed claims rest on (FLOP bound, timing)."""
from __future__ import annotations

import copy
import inspect
import json
import os
import warnings
from collections import namedtuple

import cv2
import numpy as np
import pytest
import torch

from benchmarks._common import (OPTIMISED, Report, StepOptions, clip_batch, cpu_supports_bf16, make_step,
                                interleaved, training_flops)
from benchmarks.bench_multigrid import reds_schedule, shapes_of, speedup
from models.basicvsr import BasicVSR
from vsr_accel.schedule.curriculum import build_schedule
from vsr_accel.train.prefetch import DevicePrefetcher, move_to_device

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = {"num_feat": 8, "num_block": 1}


def tiny_basicvsr(seed: int = 0) -> BasicVSR:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = BasicVSR(**TINY)
    with torch.no_grad():  # non-zero flow heads, so the warps (and their gradients) are exercised
        generator = torch.Generator().manual_seed(seed)
        for name, param in model.named_parameters():
            param.add_(torch.randn(param.shape, generator=generator) * (0.02 if "spynet" not in name else 0.002))
    return model.train()


def count_calls(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def forward_backward(model: BasicVSR, lq: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, dict]:
    model.zero_grad(set_to_none=True)
    out = model(lq)
    torch.sqrt((out - gt) ** 2 + 1e-12).mean().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


# -- activation checkpointing ------------------------------------------------------------------

def test_checkpointing_gives_identical_outputs_and_gradients_and_really_recomputes():
    plain = tiny_basicvsr()
    ckpt = copy.deepcopy(plain)
    ckpt.set_activation_checkpointing(True)
    lq, gt = clip_batch(1, 4, 12, seed=3)
    trunk_calls, upsample_calls = count_calls(ckpt.forward_trunk), count_calls(ckpt.upconv2)

    out_plain, grads_plain = forward_backward(plain, lq, gt)
    out_ckpt, grads_ckpt = forward_backward(ckpt, lq, gt)

    torch.testing.assert_close(out_ckpt, out_plain, rtol=0, atol=0)
    assert grads_ckpt.keys() == grads_plain.keys() and "spynet.basic_module.5.basic_module.0.weight" in grads_plain
    for name, grad in grads_plain.items():
        torch.testing.assert_close(grads_ckpt[name], grad, rtol=1e-6, atol=1e-9, msg=name)
    # 4 frames: once in forward, once more when backward recomputes each checkpointed step
    assert trunk_calls[0] == 8 and upsample_calls[0] == 8


def test_checkpointing_trunk_only_and_off_outside_training():
    model = tiny_basicvsr()
    lq, gt = clip_batch(1, 3, 12, seed=4)
    trunk_calls, upsample_calls = count_calls(model.backward_trunk), count_calls(model.upconv2)
    model.set_activation_checkpointing(True, upsampling=False)
    forward_backward(model, lq, gt)
    assert (trunk_calls[0], upsample_calls[0]) == (6, 3)

    model.set_activation_checkpointing(True)
    trunk_calls[0] = upsample_calls[0] = 0
    with torch.no_grad():
        reference = model(lq)
    model.eval()
    torch.testing.assert_close(model(lq).detach(), reference, rtol=0, atol=0)
    assert (trunk_calls[0], upsample_calls[0]) == (6, 6)  # two forwards, no recomputation

    model.set_activation_checkpointing(False)
    assert not model.checkpoint_propagation and not model.checkpoint_upsampling


def test_checkpointing_keeps_basicsr_constructor_and_keys():
    # BasicSR's arguments first; ours after them default to BasicSR's network (tests/test_models.py checks the values)
    assert list(inspect.signature(BasicVSR.__init__).parameters)[:4] == ["self", "num_feat", "num_block", "spynet_path"]
    model = tiny_basicvsr()
    keys = list(model.state_dict())
    model.set_activation_checkpointing(True)
    assert list(model.state_dict()) == keys


# -- reduced precision: the loss curve of the chosen default ---------------------------------------

def smooth_clips(count: int, frames: int, lr: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Moving smooth texture (something flow and SR can learn), GT and area-downsampled LR."""
    rng = np.random.default_rng(seed)
    gt_side = lr * 4
    clips = []
    for _ in range(count):
        base = cv2.resize(rng.random((8, 8, 3)).astype(np.float32), (gt_side + 2 * frames, gt_side + 2 * frames),
                          interpolation=cv2.INTER_CUBIC).clip(0, 1)
        gts = [base[i:i + gt_side, 2 * i:2 * i + gt_side] for i in range(frames)]
        lqs = [cv2.resize(g, (lr, lr), interpolation=cv2.INTER_AREA) for g in gts]
        to_tensor = lambda images: torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()  # noqa: E731
        clips.append((to_tensor(lqs), to_tensor(gts)))
    return clips


def loss_curve(options: StepOptions, steps: int = 50) -> list[float]:
    """50 Adam steps (lr 1e-3, SpyNet trainable) of a tiny BasicVSR on 2-frame 6x6 clips: every
    part runs (flow, warps, both branches, upsampler) while the test stays within seconds; the
    step is op-overhead bound, so bigger clips only cost time."""
    step = make_step(tiny_basicvsr(seed=1), options)
    for group in step.optimizer.param_groups:
        group["lr"] *= 5
    data = smooth_clips(4, 2, 6)
    losses = []
    for i in range(steps):
        lq, gt = data[i % len(data)]
        losses.append(step(*step.prepare(lq[None], gt[None])))
    return [float(v) for v in losses]


@pytest.mark.skipif(OPTIMISED.amp == "none", reason="the default precision is fp32: nothing to compare")
def test_default_precision_loss_curve_stays_within_one_percent_of_fp32():
    if OPTIMISED.amp == "bf16" and not cpu_supports_bf16():
        pytest.skip("this CPU has no native bf16; the default falls back to fp32 here")
    reference = loss_curve(StepOptions(adam=OPTIMISED.adam))
    fast = loss_curve(OPTIMISED)
    assert reference[-1] < 0.85 * reference[0], "the reference did not train; the comparison would be vacuous"
    relative = [abs(a - b) / b for a, b in zip(fast, reference)]
    assert max(relative) < 0.01, f"worst step {int(np.argmax(relative))}: {max(relative):.2%}"


# -- prefetcher ----------------------------------------------------------------------------------

Pair = namedtuple("Pair", "lq gt")


def test_prefetcher_on_cpu_passes_batches_through_in_order():
    batches = [{"lq": torch.full((2, 3), float(i)), "key": [f"clip/{i}"]} for i in range(5)]
    prefetcher = DevicePrefetcher(batches, "cpu")
    assert not prefetcher.overlaps_copies and len(prefetcher) == 5
    seen = list(prefetcher)
    assert all(a is b for a, b in zip(seen, batches)) and len(seen) == 5
    assert [b["key"][0] for b in prefetcher] == [f"clip/{i}" for i in range(5)]  # a second pass starts over


def test_prefetcher_with_a_dataloader_keeps_order():
    dataset = torch.utils.data.TensorDataset(torch.arange(10.0))
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, shuffle=False)
    got = [batch[0].tolist() for batch in DevicePrefetcher(loader, torch.device("cpu"))]
    assert got == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0], [9.0]]


def test_move_to_device_keeps_structure_and_non_tensors():
    batch = {"pair": Pair(torch.ones(2), torch.zeros(2)), "keys": ("a", "b"), "list": [torch.ones(1), 3]}
    moved = move_to_device(batch, torch.device("cpu"))
    assert isinstance(moved["pair"], Pair) and moved["keys"] == ("a", "b") and moved["list"][1] == 3
    assert torch.equal(moved["pair"].lq, torch.ones(2))
    assert DevicePrefetcher([], "cuda:0").overlaps_copies  # constructing needs no GPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_prefetcher_on_cuda_copies_ahead_in_order():
    batches = [{"lq": torch.full((4, 4), float(i)), "key": [str(i)]} for i in range(4)]
    out = [(b["lq"].device.type, float(b["lq"][0, 0]), b["key"][0]) for b in DevicePrefetcher(batches, "cuda")]
    assert out == [("cuda", float(i), str(i)) for i in range(4)]


# -- benchmark helpers -----------------------------------------------------------------------------

def test_training_flops_scale_with_batch_and_area():
    spec = {"type": "BasicVSR", **TINY}
    small = training_flops(spec, batch=1, frames=3, crop=16)
    assert training_flops(spec, batch=2, frames=3, crop=16) == 2 * small
    # convolutions scale with area exactly; SpyNet adds one 1-px level from 16 to 32 px (340 -> 1364 units)
    assert 4.0 <= training_flops(spec, batch=1, frames=3, crop=32) / small < 4.02


@pytest.mark.slow
def test_training_flops_of_the_reds_extremes():
    spec = {"type": "BasicVSR", **TINY}
    ratio = training_flops(spec, batch=1, frames=15, crop=64) / training_flops(spec, batch=1, frames=7, crop=32)
    # between pixels x frames (4 x 15/7 = 8.57) and SpyNet's pixels x frame pairs (4 x 14/6 = 9.33)
    assert 8.5 < ratio < 9.4, ratio


def test_speedup_bound_matches_the_schedule_pixel_ratio_and_counts_each_stage():
    schedule = reds_schedule(batch=1)
    pixels = {shape: float(shape[0] ** 2 * shape[1] * shape[2]) for shape in shapes_of(schedule)}
    assert speedup(schedule, pixels) == pytest.approx(schedule.compute_ratio())
    assert speedup(schedule, pixels) == pytest.approx(2.18, abs=0.01)
    uneven = build_schedule("multigrid", total_iter=60, lr_crop=64, num_frames=15, batch_per_device=1,
                            stage_iters=[50, 2, 2, 2, 2, 2])
    assert speedup(uneven, pixels) > speedup(schedule, pixels)
    assert len(shapes_of(schedule)) == 6  # the baseline 64&15 is also the last stage: timed once


def test_interleaved_alternates_order_and_times_every_run():
    calls = []
    times = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3, warmup=1,
                        progress=False)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert {k: len(v) for k, v in times.wall.items()} == {"a": 3, "b": 3} == {k: len(v) for k, v in times.cpu.items()}
    assert times.median("a") >= 0 and times.cpu_median("b") >= 0


def test_report_writes_markdown_with_command_date_and_machine(tmp_path):
    report = Report("unit", "Unit report", argv=["benchmarks/x.py", "--flag"])
    report.table(["a", "b"], [[1, 2.5]])
    text = report.write(tmp_path).read_text()
    assert text.startswith("# Unit report") and "benchmarks/x.py --flag" in text and "UTC" in text
    assert "- cpu:" in text and "| 1 | 2.5 |" in text and (tmp_path / "unit.json").is_file()


def test_bench_step_times_basicsrs_step_and_ours_on_the_same_batch():
    """`make bench`'s headline comparison runs end to end: BasicSR's own BasicVSR step (from the
    unpacked 1.4.2 sources) and the trainer's step, from the same weights, on one tiny batch."""
    from benchmarks import bench_step

    basicvsr_cls, loss_cls, route = bench_step.load_basicsr()
    if basicvsr_cls is None:
        if os.environ.get("VSR_REQUIRE_BASICSR_REF") == "1":
            pytest.fail(route)
        pytest.skip(route)
    ours_model = BasicVSR(**TINY)
    weights = {k: v.clone() for k, v in ours_model.state_dict().items()}
    theirs = bench_step.BasicSRStep(basicvsr_cls, loss_cls, weights, **TINY)
    steps = {"BasicSR": theirs, "ours": make_step(ours_model, OPTIMISED)}
    losses = bench_step.first_step_losses(steps, batch=1, frames=2, crop=40)
    assert losses["ours"] == pytest.approx(losses["BasicSR"], rel=1e-2)  # bf16 where the CPU has it
    times = bench_step.timed_pair(steps, batch=1, frames=2, crop=40, rounds=1, warmup=0)
    assert set(times.wall) == {"BasicSR", "ours"} and all(len(t) == 1 for t in times.wall.values())


def test_a_partial_benchmark_run_keeps_the_other_rows_of_the_summary(tmp_path):
    from benchmarks import run_all

    (tmp_path / "summary.json").write_text(json.dumps({"date": "2026-11-22T05:07:23+00:00"}))
    (tmp_path / "summary.md").write_text("# Benchmark summary\n\n| benchmark | status | seconds | headline |\n"
                                         "|---|---|---|---|\n| multigrid | ok | 54 | 2.18x |\n| step | ok | 88 | 2.9x |\n")
    assert run_all.earlier_rows({"step"}, tmp_path) == [["multigrid", "ok", "54", "2.18x", "2026-11-22 05:07 UTC"]]
    rows = [["multigrid", "ok", "60", "2.2x", "2026-12-02 04:00 UTC"], ["step", "ok", "90", "3x", "2026-12-02 04:00 UTC"]]
    (tmp_path / "summary.json").write_text(json.dumps({"date": "2026-12-02T04:00:00+00:00", "rows": rows}))
    assert run_all.earlier_rows({"multigrid"}, tmp_path) == [rows[1]]
    assert run_all.earlier_rows(set(run_all.BENCHMARKS), tmp_path) == []
