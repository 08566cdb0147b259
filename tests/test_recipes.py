"""The shipped recipes as a whole: data paths under the one data root (`data/`, never the `datasets/`
code package), pretrained files under `data/pretrained/`, and every Vimeo-90K-T validation scored
with the published protocol of `datasets.test_sets`."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from datasets.test_sets import STANDARD_TEST_SETS
from vsr_accel.eval.protocols import Protocol
from vsr_accel.train.options import load_options

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


def published_protocol(dataset_type: str) -> Protocol | None:
    """The one protocol `datasets.test_sets` gives the sets read by `dataset_type`, if only one
    (Vimeo90KTestDataset: Vimeo-90K-T BI and BD); None when the type serves several protocols."""
    protocols = {t.protocol for t in STANDARD_TEST_SETS if t.dataset_type == dataset_type}
    return protocols.pop() if len(protocols) == 1 else None


def test_vimeo_test_type_has_one_published_protocol():
    protocol = published_protocol("Vimeo90KTestDataset")
    assert protocol is not None and protocol.center_frame_only and protocol.flip_seq and protocol.test_y_channel


@pytest.mark.parametrize("path", OPTION_FILES, ids=lambda p: p.name)
def test_validation_on_a_standard_test_set_uses_its_published_protocol(path):
    opt = load_options(path)
    for phase, section in opt.datasets.items():
        expected = published_protocol(section.get("type", "")) if phase.startswith("val") else None
        if expected is None:
            continue
        assert opt.val is not None and opt.val.metrics, f"{path.name}: {phase} is scored by no metric"
        for name, metric in opt.val.metrics.items():
            got = Protocol(test_y_channel=metric.test_y_channel, crop_border=metric.crop_border,
                           center_frame_only=opt.val.center_frame_only, flip_seq=opt.val.flip_seq)
            assert got == expected, (f"{path.name}: datasets.{phase} ({section['type']}) is scored with "
                                     f"{got.describe()} by val.metrics.{name}, published: {expected.describe()}")


def test_every_vimeo_recipe_validates_on_vimeo_90k_t():
    vimeo = [p for p in OPTION_FILES if "vimeo" in p.name]
    assert len(vimeo) == 6
    for path in vimeo:
        assert load_options(path).datasets["val"]["type"] == "Vimeo90KTestDataset", path.name
