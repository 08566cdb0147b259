"""Peak memory of one BasicVSR-M training step, with and without activation checkpointing.

    python benchmarks/bench_memory.py                        # 64x64x15, batch 1, default precision
    python benchmarks/bench_memory.py --tensors --trunk-only --precisions none bf16

Each configuration runs in a fresh subprocess, which builds the model, optimizer and one clip
and measures one training step:

- step RSS (always): the process's peak resident set during the step (`VmHWM` of
  /proc/self/status, reset just before the step through /proc/self/clear_refs) minus its
  resident set just before, with glibc's mmap threshold fixed at 64 KiB
  (MALLOC_MMAP_THRESHOLD_) so freed activations go back to the OS instead of lingering in
  malloc's heap and hiding the peak;
- peak tensors (--tensors): a second, profiled step; the running sum of torch.profiler's
  memory events (every allocation and free through torch's CPU allocator) gives the peak of
  live tensor bytes, what the step needs independent of malloc. (tracemalloc would not see
  torch's allocations at all.)

Checkpointing recomputes each frame's propagation step (warp + trunk) and, unless only the
trunks are checkpointed (--trunk-only adds that row), its upsampler during backward, keeping
only their inputs; see `BasicVSR.set_activation_checkpointing`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import OPTIMISED, REPO, Report, cpu_supports_bf16  # noqa: E402

TARGET_REDUCTION = 0.40

CHILD = r"""
import json, re, sys, time
sys.path.insert(0, sys.argv[1])
import torch
from benchmarks._common import StepOptions, build_model, clip_batch, make_step, setup
setup()
cfg = json.loads(sys.argv[2])

def status(field):
    return int(re.search(field + r":\s+(\d+) kB", open("/proc/self/status").read()).group(1)) * 1024

step = make_step(build_model(), StepOptions(**cfg["options"]))
if cfg["trunk_only"]:
    step.model.set_activation_checkpointing(cfg["options"]["checkpoint"], upsampling=False)
lq, gt = clip_batch(cfg["batch"], cfg["frames"], cfg["crop"])
lq, gt = step.prepare(lq, gt)
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")  # reset VmHWM to the current RSS
start = time.perf_counter()
step(lq, gt)
seconds = time.perf_counter() - start
result = {"rss_before": before, "peak_rss": status("VmHWM"), "seconds": seconds}
if cfg["profile"]:  # a second step, profiled (the profiler's own event buffers would inflate the RSS above)
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step(lq, gt)
    # every allocation/free is attributed to the innermost op running at the time (or to a
    # "[memory]" event outside any op): the running sum of the self amounts in start order
    changes = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events() if e.self_cpu_memory_usage)
    live = peak = 0
    for _, change in changes:
        live += change
        peak = max(peak, live)
    result["peak_tensor_bytes"] = peak
print(json.dumps(result))
"""


def run_child(crop: int, frames: int, batch: int, amp: str, checkpoint: bool, trunk_only: bool, profile: bool) -> dict:
    options = {"channels_last": OPTIMISED.channels_last, "amp": amp, "adam": OPTIMISED.adam, "checkpoint": checkpoint}
    cfg = {"options": options, "crop": crop, "frames": frames, "batch": batch, "trunk_only": trunk_only,
           "profile": profile}
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "131072"}
    out = subprocess.run([sys.executable, "-c", CHILD, str(REPO), json.dumps(cfg)], env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"memory child failed for {cfg}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="64x64x15", help="LR crop x crop x frames")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--precisions", nargs="+", default=[OPTIMISED.amp], choices=("none", "bf16"),
                   help="autocast precision(s) to measure (default: the training default)")
    p.add_argument("--trunk-only", action="store_true", help="also measure checkpointing the trunks only")
    p.add_argument("--tensors", action="store_true",
                   help="also run a second, profiled step per configuration for the peak of live tensor bytes")
    p.add_argument("--name", default="bench_memory")
    args = p.parse_args(argv)
    parts = args.shape.lower().split("x")
    crop, frames = int(parts[0]), int(parts[-1])
    precisions = [a for a in args.precisions if a != "bf16" or cpu_supports_bf16()]

    report = Report(args.name, "Peak training-step memory with and without activation checkpointing (CPU)")
    report.add(f"BasicVSR-M, one training step at {crop}x{crop}x{frames}, batch {args.batch}, "
               f"{'channels_last' if OPTIMISED.channels_last else 'NCHW'}, Adam {OPTIMISED.adam}; each row is a "
               "fresh subprocess. 'step RSS' = peak resident set during the step minus the resident set just before "
               "it (/proc/self/status VmHWM, reset via /proc/self/clear_refs; MALLOC_MMAP_THRESHOLD_=65536)"
               + ("; 'tensors' = peak live torch tensor bytes during a second, profiled step (torch.profiler "
                  "memory events)." if args.tensors else "."))
    rows, results = [], []
    for amp in precisions:
        variants = [("off", False, False), ("propagation + upsampling", True, False)]
        if args.trunk_only:
            variants.insert(1, ("propagation only", True, True))
        measured = {}
        for label, checkpoint, trunk_only in variants:
            print(f"measuring {amp} / checkpointing {label} ...", file=sys.stderr, flush=True)
            measured[label] = run_child(crop, frames, args.batch, amp, checkpoint, trunk_only, args.tensors)
            print(f"  {json.dumps(measured[label])}", file=sys.stderr, flush=True)
        off = measured["off"]
        off_step = off["peak_rss"] - off["rss_before"]
        for label, _, _ in variants:
            m = measured[label]
            step_rss = m["peak_rss"] - m["rss_before"]
            row = ["fp32" if amp == "none" else amp, label, f"{step_rss / 2**20:.0f}", f"{1 - step_rss / off_step:.0%}",
                   f"{m['peak_rss'] / 2**20:.0f}", f"{m['seconds']:.1f}"]
            result = {"amp": amp, "checkpointing": label, **m, "rss_reduction": 1 - step_rss / off_step}
            if args.tensors:
                cut = 1 - m["peak_tensor_bytes"] / off["peak_tensor_bytes"]
                row[4:4] = [f"{m['peak_tensor_bytes'] / 2**20:.0f}", f"{cut:.0%}"]
                result["tensor_reduction"] = cut
            rows.append(row)
            results.append(result)
    headers = ["precision", "checkpointing", "step RSS MiB", "cut", "process peak RSS MiB", "step s"]
    if args.tensors:
        headers[4:4] = ["peak tensors MiB", "cut"]
    report.table(headers, rows, caption=f"Target: checkpointing cuts peak training memory by >= {TARGET_REDUCTION:.0%}.")
    report.data["results"] = results
    report.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
