"""The training step's speed switches: precision, memory layout, compilation, activation
checkpointing, and the hardware facts their defaults depend on. Precision and layout (and the
hardware facts) are decided in `vsr_accel/core/speed_defaults.py`, which inference shares; they
are imported here under the names the trainer has always used.

Shared by `train.py` (which picks its defaults here) and `benchmarks/` (which measured those
defaults), so the step that is benchmarked is the step that trains.
"""
from __future__ import annotations

import torch

from vsr_accel.core.errors import ConfigError
# precision and layout live in core, shared with inference; the trainer keeps its names for them
from vsr_accel.core.speed_defaults import (AMP_DTYPES, SpeedSettings, apply_layout, channels_last_clip,  # noqa: F401
                                           cpu_prefers_channels_last, cpu_supports_bf16, resolve_speed)


def enable_activation_checkpointing(model: torch.nn.Module, net_type: str, source: str) -> None:
    """`train.checkpoint_propagation`: recompute each frame's propagation and upsampling in
    backward: same numbers, ~80% less step memory at 64x64x15 for ~30% more step time
    (benchmarks/bench_memory.py, bench_step.py --sweep). Only networks that implement
    `set_activation_checkpointing` (the recurrent ones) have it."""
    if not hasattr(model, "set_activation_checkpointing"):
        raise ConfigError(f"{source}: 'train.checkpoint_propagation' is only available for recurrent networks "
                          f"(BasicVSR, BasicVSRM, ...), not {net_type}; set it to false")
    model.set_activation_checkpointing(True)


def maybe_compile(net: torch.nn.Module, enabled: bool, stage_count: int) -> torch.nn.Module:
    """`train.compile`: one static graph per curriculum shape (dynamic shapes off), plus one
    recompile when fix_flow unfreezes SpyNet. Off by default: on the 2-core CPU the first call
    took 318-455 s per shape (empty cache) and the compiled step was not faster (bench_step.py
    --sweep --compile)."""
    if not enabled:
        return net
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 2 * stage_count + 2)
    return torch.compile(net, dynamic=False)
