"""The shipped recipes as a whole: data paths under the one data root (`data/`, never the `datasets/`
code package), pretrained files under `data/pretrained/`."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml


REPO = Path(__file__).resolve().parents[1]
OPTION_FILES = sorted((REPO / "options").glob("*.yml"))
DATA_ROOT = "data/"
PATH_KEYS = ("dataroot_gt", "dataroot_lq", "meta_info_file", "spynet_path", "edvr_path", "pretrain_network_g",
             "resume_state")
RUN_OUTPUT_KEYS = ("pretrain_network_g", "resume_state")  # may also name a run of this project (experiments/<name>/)
# A data path under the code package (`datasets/REDS`), or BasicSR's weights folder; code references
# such as `datasets/test_sets.py` are fine.
OLD_DATA_PATH = re.compile(r"(?<![\w/])datasets/(?![\w/]*\.py\b)|experiments/pretrained_models")


def path_values(node, trail=""):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in PATH_KEYS and (value is None or isinstance(value, str)):
                yield f"{trail}{key}", value
            else:
                yield from path_values(value, f"{trail}{key}.")


@pytest.mark.parametrize("path", OPTION_FILES, ids=lambda p: p.name)
def test_recipe_paths_are_under_the_data_root(path):
    wrong = [(key, value) for key, value in path_values(yaml.safe_load(path.read_text()))
             if value is not None and not value.startswith(DATA_ROOT)
             and not (key.rsplit(".", 1)[-1] in RUN_OUTPUT_KEYS and value.startswith("experiments/"))]
    assert not wrong, f"{path.name}: paths outside {DATA_ROOT}: {wrong}"


def test_no_recipe_script_or_definition_names_the_old_data_paths():
    files = [*OPTION_FILES, *(REPO / "experiments").rglob("*.yml"), *(REPO / "experiments").glob("*.py"),
             *(REPO / "scripts").glob("*.py"), *(REPO / "benchmarks").glob("*.*"), REPO / "Makefile"]
    offenders = [f"{p.relative_to(REPO)}:{n}: {line.strip()}" for p in files if p.is_file()
                 for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
                 if OLD_DATA_PATH.search(line)]
    assert not offenders, "\n".join(offenders)
