"""The training step (vsr_accel/train/step.py): accumulation adds micro-batch gradients, and its
freezing and LR groups follow BasicSR's VideoRecurrentModel and EDVRModel."""
from __future__ import annotations

import warnings

import pytest
import torch

from tests.model_helpers import tiny_basicvsr_with_flow
from vsr_accel.train.losses import CharbonnierLoss
from vsr_accel.train.step import FreezePlan, TrainStep, build_optimizer, set_frozen, set_lr


def tiny_edvr() -> torch.nn.Module:
    import models
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return models.build_network({"type": "EDVR", "num_feat": 8, "num_frame": 3, "num_extract_block": 1,
                                     "num_reconstruct_block": 1, "deformable_groups": 1, "with_tsa": True})


def basicsr_edvr_trainable(model: torch.nn.Module, tsa_iter: int, iters: int) -> list[set[str]]:
    """BasicSR's EDVRModel.optimize_parameters(current_iter), replayed: which names train."""
    requires = {name: True for name, _ in model.named_parameters()}
    out = []
    for current_iter in range(1, iters + 1):
        if current_iter == 1:
            requires = {name: "fusion" in name for name in requires}
        elif current_iter == tsa_iter:
            requires = {name: True for name in requires}
        out.append({name for name, on in requires.items() if on})
    return out


def test_tsa_iter_trains_only_the_fusion_module_first_as_basicsrs_edvr_model():
    model = tiny_edvr()
    plan = FreezePlan(tsa_iter=3)
    expected = basicsr_edvr_trainable(model, 3, 5)
    assert any("fusion" in n for n in expected[0]) and len(expected[0]) < len(expected[-1])
    for t in range(5):
        set_frozen(model, plan.frozen(model, t))
        assert {n for n, p in model.named_parameters() if p.requires_grad} == expected[t], t
    assert [t for t in range(5) if plan.may_change_at(t)] == [2]


def test_fix_flow_and_tsa_iter_combine_and_none_freezes_nothing():
    model = tiny_edvr()
    assert FreezePlan().frozen(model, 0) == frozenset()
    assert not any(FreezePlan().may_change_at(t) for t in range(10))


def test_dcn_lr_mul_puts_deformable_convolutions_in_their_own_group():
    model = tiny_edvr()
    optimizer = build_optimizer(model, lr=4e-4, dcn_lr_mul=0.5, fused=False)
    set_lr(optimizer, lambda mul: 4e-4 * mul)
    by_param = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    names = dict(model.named_parameters())
    dcn = [n for n in names if "dcn" in n]
    assert dcn and all(by_param[id(names[n])] == 2e-4 for n in dcn)
    assert all(by_param[id(p)] == 4e-4 for n, p in names.items() if "dcn" not in n)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(names)


@pytest.mark.parametrize("accum", [1, 3])
def test_step_accumulation_adds_micro_batch_gradients(accum):
    """grad_accum micro-steps of one sample each give the gradient of the mean over them."""
    generator = torch.Generator().manual_seed(2)
    lq = torch.rand(accum, 2, 3, 8, 8, generator=generator)
    gt = torch.rand(accum, 2, 3, 32, 32, generator=generator)
    whole, parts = tiny_basicvsr_with_flow(), tiny_basicvsr_with_flow()
    for model, batches, n in ((whole, [(lq, gt)], 1), (parts, [(lq[i:i + 1], gt[i:i + 1]) for i in range(accum)], accum)):
        step = TrainStep(model, build_optimizer(model, lr=1e-3, fused=False), CharbonnierLoss(), grad_accum=n)
        step.zero_grad()
        for i, (x, y) in enumerate(batches):
            step.micro_step(x, y, last=i == n - 1)
        model.loss = step.loss_sum.clone()
        model.grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    assert torch.allclose(whole.loss, parts.loss, rtol=1e-5)
    assert whole.grads.keys() == parts.grads.keys()
    assert all(torch.allclose(whole.grads[k], parts.grads[k], rtol=1e-4, atol=1e-7) for k in whole.grads)
