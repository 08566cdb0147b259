"""The precision and memory-layout switches that training and inference share (`train.amp`,
`train.channels_last`; `infer.py --amp`, `--channels-last`), and the hardware facts behind their
defaults. One place decides what `auto` means: the trainer's defaults, measured by
benchmarks/bench_step.py, and inference's, measured by benchmarks/bench_infer_speed.py, come from
`resolve_speed` alone.

Moved down from `vsr_accel/train/speed.py` (which still offers these names to the trainer) so that
inference, which may not import the trainer, uses the same rule.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
AMP_CHOICES = ("auto", "none", *AMP_DTYPES)


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

    def describe(self) -> str:
        """For start lines: e.g. 'bf16 autocast, channels_last' or 'fp32, NCHW'."""
        precision = {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[self.amp_dtype]
        return f"{precision}, {'channels_last' if self.channels_last else 'NCHW'}"


FP32_NCHW = SpeedSettings(channels_last=False, amp_dtype=None)


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
