"""Shared fixtures: the example models, built once per test session."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
MODELS = SPECS / "models"


def _build_models() -> None:
    script = SPECS / "build_models.py"
    stamp = MODELS / ".built"
    if stamp.exists() and stamp.stat().st_mtime >= script.stat().st_mtime:
        return
    spec = importlib.util.spec_from_file_location("build_models", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    module.build_all(MODELS)
    stamp.touch()


@pytest.fixture(scope="session")
def example_models() -> Path:
    """The folder of example ONNX models (built by specs/build_models.py)."""
    _build_models()
    return MODELS
