"""The project's shape: arrows run one way, the recipe stays short, and the benchmarks time the
step that trains (docs/DESIGN.md)."""
from __future__ import annotations

import ast
import copy
import warnings
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
LIBRARY_DIRS = ("vsr_accel", "models", "datasets", "experiments", "benchmarks", "scripts")
ENTRY_SCRIPTS = {"train", "infer", "evaluate"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)  # and `from package import module` names the module too
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def python_files(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs for p in (REPO / d).rglob("*.py"))


def test_nothing_imports_an_entry_script():
    offenders = [f"{p.relative_to(REPO)}: {m}" for p in python_files(*LIBRARY_DIRS)
                 for m in imported_modules(p) if m.split(".")[0] in ENTRY_SCRIPTS]
    assert not offenders, offenders


def test_the_core_never_imports_models_datasets_or_opencv():
    offenders = [f"{p.relative_to(REPO)}: {m}" for p in python_files("vsr_accel")
                 for m in imported_modules(p) if m.split(".")[0] in ("models", "datasets", "cv2", "lmdb")]
    assert not offenders, offenders


ROOMS = {  # room of vsr_accel/ -> the rooms its modules may import (docs/DESIGN.md, "Layering")
    "core": {"core"},
    "schedule": {"core", "schedule"},
    "eval": {"core", "eval"},
    "infer": {"core", "eval", "infer"},
    "train": {"core", "schedule", "eval", "train"},
}
SHARED_WITH_MODELS_AND_DATASETS = ("vsr_accel.core", "vsr_accel.eval.protocols")


def room_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "vsr_accel" and len(parts) > 1 else None


def test_every_core_module_lives_in_a_room():
    loose = [p.name for p in (REPO / "vsr_accel").glob("*.py") if p.name != "__init__.py"]
    assert not loose, loose
    assert sorted(p.name for p in (REPO / "vsr_accel").iterdir() if p.is_dir() and p.name != "__pycache__") == \
        sorted(ROOMS)


def test_rooms_import_only_the_rooms_below_them():
    offenders = [f"{p.relative_to(REPO)}: {m}" for p in python_files("vsr_accel") for m in imported_modules(p)
                 if room_of(m) is not None and room_of(m) not in ROOMS[p.relative_to(REPO / "vsr_accel").parts[0]]]
    assert not offenders, offenders


def test_eval_does_not_import_the_inference_engine():
    """Validation and `datasets/test_sets.py` score clips without the YAML and checkpoint readers."""
    offenders = [f"{p.relative_to(REPO)}: {m}" for p in python_files("vsr_accel/eval") for m in imported_modules(p)
                 if m.startswith("vsr_accel.infer") or m in ("vsr_accel.core.config", "vsr_accel.core.checkpoint")]
    assert not offenders, offenders


def test_nothing_but_the_trainer_imports_its_components():
    offenders = [f"{p.relative_to(REPO)}: {m}" for p in python_files("vsr_accel", "models", "datasets")
                 for m in imported_modules(p) if room_of(m) == "train"
                 and p.relative_to(REPO).parts[:2] != ("vsr_accel", "train")]
    assert not offenders, offenders


def test_models_and_datasets_import_only_the_shared_ground():
    offenders = [f"{p.relative_to(REPO)}: {m}" for p in python_files("models", "datasets")
                 for m in imported_modules(p) if m.startswith("vsr_accel")
                 and not m.startswith(SHARED_WITH_MODELS_AND_DATASETS)]
    assert not offenders, offenders


def test_train_py_is_a_short_recipe():
    source = (REPO / "train.py").read_text()
    assert len(source.splitlines()) < 350
    long = [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno + 1 > 80]
    assert not long, long


def tiny_model(seed: int = 0) -> torch.nn.Module:
    import models
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = models.build_network({"type": "BasicVSR", "num_feat": 4, "num_block": 1})
    with torch.no_grad():  # non-zero flow, so SpyNet's gradients (and its LR group) matter
        for name, param in model.named_parameters():
            param.add_(torch.randn_like(param) * (0.002 if "spynet" in name else 0.02))
    return model.train()


def test_benchmarks_time_the_step_train_py_runs(tiny_reds, tmp_path):
    """One iteration through train.py's builders and through the benchmarks' step, from the same
    weights on the same batch: the same class, and bit-identical weights afterwards."""
    import models
    from benchmarks._common import ADAM_LR, FLOW_LR_MUL, StepOptions, make_step
    from tests.conftest import tiny_options, write_options
    from vsr_accel.train import builders
    from vsr_accel.train.options import load_options
    from vsr_accel.train.step import TrainStep, set_lr

    data = tiny_options(tiny_reds, tmp_path, flow_lr_mul=FLOW_LR_MUL)
    data["train"]["optim_g"].update(lr=ADAM_LR, betas=[0.9, 0.99], fused=True)
    opt = load_options(write_options(tmp_path / "o.yml", data))
    speed = builders.speed_settings(opt.train, torch.device("cpu"))
    model = builders.prepare_model(models.load_network(opt.network_g), opt.train, speed)
    ours = builders.build_step(opt.train, model, speed, recurrent=models.is_recurrent(model))
    base = tiny_model()
    ours.model.load_state_dict(base.state_dict())
    set_lr(ours.optimizer, lambda mul: ADAM_LR * mul)
    bench = make_step(copy.deepcopy(base), StepOptions(channels_last=speed.channels_last,
                                                       amp={None: "none", torch.bfloat16: "bf16"}[speed.amp_dtype],
                                                       adam="fused"))
    assert type(ours) is type(bench) is TrainStep
    assert [g["lr"] for g in ours.optimizer.param_groups] == [g["lr"] for g in bench.optimizer.param_groups]
    generator = torch.Generator().manual_seed(1)
    lq = torch.rand(1, 3, 3, 12, 12, generator=generator)
    gt = torch.rand(1, 3, 3, 48, 48, generator=generator)
    loss_ours, loss_bench = ours(*ours.prepare(lq, gt)), bench(*bench.prepare(lq, gt))
    assert torch.equal(loss_ours, loss_bench)
    after = bench.model.state_dict()
    moved = max((v - base.state_dict()[k]).abs().max().item() for k, v in after.items())
    assert moved > 0
    assert all(torch.equal(v, after[k]) for k, v in ours.model.state_dict().items())


@pytest.mark.parametrize("accum", [1, 3])
def test_step_accumulation_adds_micro_batch_gradients(accum):
    """grad_accum micro-steps of one sample each give the gradient of the mean over them."""
    from vsr_accel.train.losses import CharbonnierLoss
    from vsr_accel.train.step import TrainStep, build_optimizer

    generator = torch.Generator().manual_seed(2)
    lq = torch.rand(accum, 2, 3, 8, 8, generator=generator)
    gt = torch.rand(accum, 2, 3, 32, 32, generator=generator)
    whole, parts = tiny_model(), tiny_model()
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
