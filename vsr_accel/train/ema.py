"""Exponential moving average of weights (BasicSR's `params_ema`)."""
from __future__ import annotations

import copy

import torch


class EMA:
    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        ema = self.model.state_dict()
        for name, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                ema[name].mul_(self.decay).add_(value, alpha=1 - self.decay)
            else:
                ema[name].copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
