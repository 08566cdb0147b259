"""The project's shape: arrows run one way, every module has a room in docs/DESIGN.md, the recipe
stays short, and the benchmarks time the step that trains."""
from __future__ import annotations

import ast
import copy
import re
from pathlib import Path

import torch

from tests.model_helpers import tiny_basicvsr_with_flow

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


def design_rooms() -> dict[str, str]:
    """docs/DESIGN.md's rooms section: every `vsr_accel/...py` it names -> the room heading it is under."""
    text = (REPO / "docs" / "DESIGN.md").read_text()
    section = text.split("## Rooms", 1)[1].split("\n## ", 1)[0]
    named: dict[str, str] = {}
    heading = ""
    for line in section.splitlines():
        if line.startswith("### "):
            heading = line
        named.update((path, heading) for path in re.findall(r"`(vsr_accel/[\w/]+\.py)`", line))
    return named


def test_design_names_every_core_module_under_its_room():
    named = design_rooms()
    modules = {p.relative_to(REPO).as_posix() for p in python_files("vsr_accel") if p.name != "__init__.py"}
    assert sorted(modules - named.keys()) == [], "modules missing from docs/DESIGN.md"
    assert sorted(named.keys() - modules) == [], "docs/DESIGN.md names modules that do not exist"
    misplaced = [path for path, heading in named.items() if f"`vsr_accel/{path.split('/')[1]}/`" not in heading]
    assert not misplaced, misplaced


def test_train_py_is_a_short_recipe():
    source = (REPO / "train.py").read_text()
    assert len(source.splitlines()) < 350
    long = [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno + 1 > 80]
    assert not long, long


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
    base = tiny_basicvsr_with_flow()
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
