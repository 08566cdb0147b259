"""Pixel losses with BasicSR's definitions (so loss values are comparable with BasicSR logs)."""
from __future__ import annotations

import torch
from torch import nn


class CharbonnierLoss(nn.Module):
    """sqrt((x - y)^2 + eps), BasicSR's form (eps inside the root, default 1e-12): a smooth L1
    that VSR papers, BasicVSR and EDVR included, train with."""

    def __init__(self, loss_weight: float = 1.0, reduction: str = "mean", eps: float = 1e-12):
        super().__init__()
        self.loss_weight, self.reduction, self.eps = loss_weight, reduction, eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = torch.sqrt((pred - target) ** 2 + self.eps)
        loss = loss.mean() if self.reduction == "mean" else loss.sum()
        return self.loss_weight * loss


class _Reduced(nn.Module):
    def __init__(self, fn, loss_weight: float = 1.0, reduction: str = "mean", eps: float = 0.0):
        super().__init__()
        self.fn, self.loss_weight, self.reduction = fn, loss_weight, reduction

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss_weight * self.fn(pred, target, reduction=self.reduction)


def build_pixel_loss(type: str, loss_weight: float = 1.0, reduction: str = "mean", eps: float = 1e-12) -> nn.Module:
    if type == "CharbonnierLoss":
        return CharbonnierLoss(loss_weight, reduction, eps)
    if type == "L1Loss":
        return _Reduced(nn.functional.l1_loss, loss_weight, reduction)
    if type == "MSELoss":
        return _Reduced(nn.functional.mse_loss, loss_weight, reduction)
    raise ValueError(f"unknown pixel loss {type!r}")
