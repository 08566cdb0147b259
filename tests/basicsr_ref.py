"""Load BasicSR's reference implementations for comparison tests, without importing `basicsr`.

BasicSR 1.4.2 cannot be imported as a package here: its `__init__` scans and imports every
module (data, losses, GAN archs) and breaks on current torchvision. Tests only need a few
leaf modules (architectures, metrics, MATLAB-style resize), so we register empty namespace
packages for `basicsr`, `basicsr.archs`, ... that point at the unpacked sdist and import the
leaves directly. The sdist is unpacked by `make test` (see the Makefile's `basicsr-ref`
target) into `.venv/basicsr_ref/`; `VSR_BASICSR_REF` overrides that location.

Nothing here is used at run time: BasicSR is a test-only reference.
"""
from __future__ import annotations

import importlib
import logging
import os
import sys
import types
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REF_DIR = REPO_ROOT / ".venv" / "basicsr_ref"


def reference_root() -> Path | None:
    """Folder that contains the `basicsr` source package, or None when not unpacked."""
    root = Path(os.environ.get("VSR_BASICSR_REF", DEFAULT_REF_DIR))
    for candidate in [root, *sorted(root.glob("basicsr*"))]:
        if (candidate / "basicsr" / "archs" / "basicvsr_arch.py").is_file():
            return candidate
    return None


def _namespace(name: str, path: Path) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = [str(path)]  # a package whose __init__ is never executed
    sys.modules[name] = module
    return module


def _install_stubs(root: Path) -> None:
    if "basicsr" in sys.modules and getattr(sys.modules["basicsr"], "_vsr_stub", False):
        return
    pkg = root / "basicsr"
    top = _namespace("basicsr", pkg)
    top._vsr_stub = True
    for sub in ("archs", "metrics", "ops", "utils", "models"):
        _namespace(f"basicsr.{sub}", pkg / sub)
    utils = sys.modules["basicsr.utils"]
    color_util = importlib.import_module("basicsr.utils.color_util")
    utils.bgr2ycbcr = color_util.bgr2ycbcr
    utils.rgb2ycbcr = color_util.rgb2ycbcr
    utils.get_root_logger = lambda *a, **k: logging.getLogger("basicsr")


def load(module: str) -> types.ModuleType:
    """Import `basicsr.<module>` (e.g. 'archs.basicvsr_arch') or skip/fail when unavailable.

    With VSR_REQUIRE_BASICSR_REF=1 (set by `make test`) a missing reference is a failure,
    so CI can never pass by silently skipping the comparison tests.
    """
    root = reference_root()
    if root is None:
        message = (f"BasicSR reference sources not found under {DEFAULT_REF_DIR} "
                   "(run `make basicsr-ref` or set VSR_BASICSR_REF)")
        if os.environ.get("VSR_REQUIRE_BASICSR_REF") == "1":
            pytest.fail(message)
        pytest.skip(message)
    _install_stubs(root)
    return importlib.import_module(f"basicsr.{module}")
