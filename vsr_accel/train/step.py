"""The training step: what `train.py` does per iteration, and exactly what `benchmarks/` time.

One optimizer step is `grad_accum` micro-steps (forward under autocast, loss inside autocast,
backward through the grad scaler; DDP's gradient all-reduce only on the last one) and then one
`finish()` (unscale, clip, optimizer step, scaler update, EMA). The grad scaler exists always and
is `enabled` only for fp16, so the step has no precision branches (nanoGPT's
`GradScaler(enabled=...)`). Nothing here reads a value back to the host: the loss stays a device
tensor, so a step never waits for the device.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import torch

from vsr_accel.train.ema import EMA
from vsr_accel.train.speed import channels_last_clip

FROZEN_BY_FIX_FLOW = ("spynet", "edvr")
"""BasicSR's VideoRecurrentModel freezes parameters whose names contain `spynet` (BasicVSR,
BasicVSR++) or `edvr` (IconVSR's keyframe extractor) for the first `fix_flow` iterations..."""
TRAINED_AT_FLOW_LR_MUL = ("spynet",)
"""...and trains only the `spynet` ones at `flow_lr_mul` x the LR (basicsr/models/video_recurrent_model.py)."""
TRAINED_BY_TSA_ITER = ("fusion",)
"""BasicSR's EDVRModel trains only parameters whose names contain `fusion` (the TSA module) for the
first `tsa_iter` iterations..."""
TRAINED_AT_DCN_LR_MUL = ("dcn",)
"""...and the deformable convolutions (names containing `dcn`) at `dcn_lr_mul` x the LR
(basicsr/models/edvr_model.py)."""


def _named(model: torch.nn.Module, parts: tuple[str, ...]) -> list[str]:
    return [name for name, _ in model.named_parameters() if any(part in name for part in parts)]


def flow_parameter_names(model: torch.nn.Module) -> list[str]:
    """The parameters `fix_flow` freezes."""
    return _named(model, FROZEN_BY_FIX_FLOW)


@dataclass(frozen=True)
class FreezePlan:
    """Which parameters are frozen at each iteration: BasicSR's `fix_flow` (VideoRecurrentModel:
    the flow part) and `tsa_iter` (EDVRModel: everything but the TSA fusion). Both freeze at
    1-based iteration 1 and release at 1-based iteration N, i.e. while the 0-based it + 1 < N."""
    fix_flow: int | None = None
    tsa_iter: int | None = None

    def frozen(self, model: torch.nn.Module, it: int) -> frozenset[str]:
        names: set[str] = set()
        if frozen_at(it, self.fix_flow):
            names.update(flow_parameter_names(model))
        if frozen_at(it, self.tsa_iter):
            names.update(n for n, _ in model.named_parameters() if not any(p in n for p in TRAINED_BY_TSA_ITER))
        return frozenset(names)

    def may_change_at(self, it: int) -> bool:
        """True where `frozen` can differ from the iteration before (no per-step scan otherwise)."""
        return any(n and it + 1 == n for n in (self.fix_flow, self.tsa_iter))


def set_frozen(model: torch.nn.Module, frozen: frozenset[str]) -> None:
    for name, param in model.named_parameters():
        param.requires_grad_(name not in frozen)


def frozen_at(it: int, release_iter: int | None) -> bool:
    """Whether a part BasicSR freezes until 1-based iteration `release_iter` (`fix_flow` for the
    flow network, `tsa_iter` for all but EDVR's TSA fusion) is frozen at 0-based iteration `it`.
    BasicSR freezes at 1-based iteration 1 and releases at `release_iter` (`optimize_parameters`:
    frozen while current_iter < fix_iter), so the part is frozen while `it` + 1 < release_iter:
    fix_flow 5000 trains 4999 iterations with a frozen SpyNet. None or 0: never frozen."""
    return bool(release_iter) and it + 1 < release_iter


def build_optimizer(model: torch.nn.Module, *, type: str = "Adam", lr: float, betas: tuple[float, ...] = (0.9, 0.99),
                    eps: float = 1e-8, weight_decay: float = 0.0, flow_lr_mul: float = 1.0, dcn_lr_mul: float = 1.0,
                    fused: bool | None = None, foreach: bool | None = None) -> torch.optim.Optimizer:
    """Adam/AdamW over the network, its SpyNet (`flow_lr_mul`) and its deformable convolutions
    (`dcn_lr_mul`), BasicSR's groupings; each group carries `lr_mul`, which `set_lr` applies
    (with multipliers of 1 the result equals BasicSR's single group: Adam is per-parameter).
    With neither `fused` nor `foreach` set, CPU models
    get the fused kernel (torch's CPU default is the per-tensor loop; the fused one runs the
    BasicVSR-M optimizer step ~3x faster, 15 -> 5 ms, bench_step.py --sweep); CUDA keeps torch's
    default."""
    flow = set(_named(model, TRAINED_AT_FLOW_LR_MUL))
    dcn = set(_named(model, TRAINED_AT_DCN_LR_MUL)) - flow
    groups = [{"params": [p for n, p in model.named_parameters() if n not in flow | dcn], "lr_mul": 1.0}]
    for names, mul in ((flow, flow_lr_mul), (dcn, dcn_lr_mul)):
        if names:
            groups.append({"params": [p for n, p in model.named_parameters() if n in names], "lr_mul": mul})
    kwargs: dict[str, Any] = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
    if fused is not None:
        kwargs["fused"] = fused
    elif foreach is not None:
        kwargs["foreach"] = foreach
    elif all(p.device.type == "cpu" for p in model.parameters()):
        kwargs["fused"] = True
    cls = torch.optim.AdamW if type == "AdamW" else torch.optim.Adam
    return cls(groups, **kwargs)


def set_lr(optimizer: torch.optim.Optimizer, lr_for: Callable[[float], float]) -> None:
    """Each group's LR for this step: `lr_for(group's lr_mul)`, e.g. `lambda mul: schedule.lr_at(t, mul)`
    (the multiplier scales the peak; `eta_min` stays absolute, as in BasicSR)."""
    for group in optimizer.param_groups:
        group["lr"] = lr_for(group.get("lr_mul", 1.0))


class TrainStep:
    """Micro-steps and the optimizer step of one training iteration.

    `model` is the bare network (clipping, EMA and checkpoints use it); `net` is what the forward
    runs: the model itself, or its DDP / torch.compile wrapper. The recipe replaces `net` when
    the wrapper must be rebuilt (DDP registers only trainable parameters, so unfreezing the flow
    network means wrapping again)."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *,
                 amp_dtype: torch.dtype | None = None, channels_last: bool = False, grad_accum: int = 1,
                 grad_clip: float | None = None, ema: EMA | None = None, recurrent: bool = True,
                 net: torch.nn.Module | None = None) -> None:
        self.model = model
        self.net = model if net is None else net
        self.optimizer = optimizer
        self.criterion = criterion
        self.amp_dtype = amp_dtype
        self.channels_last = channels_last
        self.grad_accum = grad_accum
        self.grad_clip = grad_clip
        self.ema = ema
        self.recurrent = recurrent
        self.device_type = next(model.parameters()).device.type
        self.scaler = torch.amp.GradScaler(self.device_type, enabled=amp_dtype == torch.float16)
        self.loss_sum = torch.zeros((), device=next(model.parameters()).device)

    def prepare(self, lq: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch as the network wants it: NHWC frames for a channels_last model, and the
        centre GT frame for sliding-window networks (EDVR restores one frame per clip)."""
        if self.channels_last and lq.dim() == 5:
            lq = channels_last_clip(lq)
        if not self.recurrent and gt.dim() == 5:
            gt = gt[:, gt.shape[1] // 2]
        return lq, gt

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.loss_sum.zero_()

    def micro_step(self, lq: torch.Tensor, gt: torch.Tensor, *, last: bool = True) -> None:
        """Forward and backward of one micro-batch; gradients add up over the accumulation.
        Under DDP only the last micro-step all-reduces (`no_sync` before it)."""
        no_sync = getattr(self.net, "no_sync", None)
        sync = contextlib.nullcontext() if last or no_sync is None else no_sync()
        with sync:
            with torch.autocast(self.device_type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                loss = self.criterion(self.net(lq), gt) / self.grad_accum
            self.scaler.scale(loss).backward()
        self.loss_sum += loss.detach()

    def finish(self) -> torch.Tensor:
        """Clip, step, update the scaler and the EMA; returns this iteration's loss (a device tensor)."""
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
        return self.loss_sum

    def __call__(self, lq: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """A whole iteration on one batch (grad_accum 1), as the benchmarks time it; returns a
        copy of the loss (still on the device)."""
        self.zero_grad()
        self.micro_step(lq, gt, last=True)
        return self.finish().clone()
