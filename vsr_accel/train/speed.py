"""The training step's speed switches: precision, memory layout, compilation, activation
checkpointing, and the hardware facts their defaults depend on.

Shared by `train.py` (which picks its defaults here) and `benchmarks/` (which measured those
defaults), so the step that is benchmarked is the step that trains.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from vsr_accel.core.errors import ConfigError

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_supports_bf16() -> bool:
    """oneDNN runs bf16 convolutions natively (AVX512-BF16 / AMX); elsewhere it emulates them
    slowly, so bf16 autocast would be a slowdown there."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_prefers_channels_last() -> bool:
    """NHWC convolutions pay off where oneDNN has AVX-512 kernels: on the 2-core Xeon (AVX-512,
    AMX) channels_last alone made a BasicVSR-M step 1.1-1.4x faster, on the 2-core AMD EPYC
    (AVX2 only) 0.74-0.82x as fast (benchmarks/bench_step.py, fp32, interleaved rounds)."""
    try:
        return torch.backends.cpu.get_cpu_capability() in ("AVX512", "AMX")
    except (AttributeError, RuntimeError):
        return False


def channels_last_clip(clip: torch.Tensor) -> torch.Tensor:
    """(b, t, c, h, w) stored so that every frame clip[:, i] is NHWC, like a channels_last model's
    features: each trunk's first convolution then needs no layout conversion."""
    return clip.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)


@dataclass(frozen=True)
class SpeedSettings:
    channels_last: bool
    amp_dtype: torch.dtype | None


def resolve_speed(amp: str, channels_last: bool | None, device: torch.device) -> SpeedSettings:
    """`train.amp: auto` / `train.channels_last: ~` pick what benchmarks/bench_step.py measured as
    faster on two 2-core CPUs: bf16 autocast where the CPU runs bf16 natively (AMX / AVX512-BF16;
    1.8-2.1x alone on the Xeon), channels_last where it has AVX-512 (1.1-1.4x alone, 2.6-3.1x with
    bf16 on the Xeon; 0.74-0.82x on the AVX2-only AMD EPYC, so NCHW there). Nothing was measured
    on CUDA, so there `auto` stays fp32 and NCHW unless asked."""
    on_cpu = device.type == "cpu"
    layout = (on_cpu and cpu_prefers_channels_last()) if channels_last is None else channels_last
    if amp == "auto":
        amp = "bf16" if on_cpu and cpu_supports_bf16() else "none"
    return SpeedSettings(layout, AMP_DTYPES.get(amp))


def apply_layout(model: torch.nn.Module, settings: SpeedSettings) -> torch.nn.Module:
    return model.to(memory_format=torch.channels_last) if settings.channels_last else model


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
