"""The worker refuses an artifact that changed since the plan was made, model by model.

Each test compiles a small spec over copies of the example models in a
temporary folder, then edits a file, as a deploy that copied a new model
over the old one after `infc plan` would. Fake backends record which models
got one: a changed artifact must fail before any backend is created.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from inferplane.backends import artifact_check
from inferplane.backends.artifact_check import check_artifact, file_sha256
from inferplane.backends.runtime import LoadFailed, RuntimeInfo
from inferplane.backends.worker import ModelNotReady, ModelState, WorkerCore
from inferplane.compiler.compilation import Compilation

SPEC = """
target box {
  hardware cpu
  location onprem "here"
}
""" + "".join(
    f"""
model {name} {{
  source "models/{file}"
  input  features fp32[batch, 30]
  output score    fp32[batch, 2]
  shard  box
  batch  max 4 window 1ms
}}
"""
    for name, file in (
        ("scorer", "fraud.onnx"),
        ("lite", "fraud-lite.onnx"),
        ("twin", "fraud.onnx"),
    )
)


class Fake:
    """Serves zeros; never reads the artifact."""

    def __init__(self, model, target, base_dir, **options):
        self.model = model

    def load(self) -> None:
        pass

    def warm_up(self, batch_sizes) -> None:
        pass

    def infer(self, inputs):
        return {"score": np.zeros((len(inputs["features"]), 2), np.float32)}

    def describe(self) -> RuntimeInfo:
        return RuntimeInfo("fake 1.0", "cpu")


@pytest.fixture
def folder(example_models: Path, tmp_path: Path) -> Path:
    (tmp_path / "models").mkdir()
    for name in ("fraud.onnx", "fraud-lite.onnx"):
        shutil.copy(example_models / name, tmp_path / "models" / name)
    artifact_check._sha256.cache_clear()
    return tmp_path


def compiled(folder: Path):
    compilation = Compilation(SPEC, "spec.infer", folder)
    assert compilation.plan is not None, compilation.diagnostics
    return compilation.plan


def loaded(plan, folder: Path, made: list[str]) -> WorkerCore:
    def create(model, target, base_dir, **options):
        made.append(model.name)
        return Fake(model, target, base_dir, **options)

    core = WorkerCore(plan, "box", folder, backend_factory=create)
    core.load_all()
    return core


def states(core: WorkerCore) -> dict[str, tuple[ModelState, str]]:
    return {m.name: (m.state, m.reason) for m in core.health().models}


def test_unchanged_artifacts_load(folder: Path):
    made: list[str] = []
    core = loaded(compiled(folder), folder, made)
    assert {name: state for name, (state, _) in states(core).items()} == {
        "lite": ModelState.READY,
        "scorer": ModelState.READY,
        "twin": ModelState.READY,
    }
    assert sorted(made) == ["lite", "scorer", "twin"]


def test_a_changed_artifact_fails_its_models_before_any_backend_and_the_others_load(folder):
    plan = compiled(folder)
    path = folder / "models" / "fraud.onnx"
    planned = hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_bytes(path.read_bytes() + b"\0")  # copied over after `infc plan`
    found = hashlib.sha256(path.read_bytes()).hexdigest()

    made: list[str] = []
    core = loaded(plan, folder, made)

    reason = (
        f"artifact `{path}` changed since the plan was made: sha256 {found[:12]}…, "
        f"plan says {planned[:12]}…; recompile the spec (infc plan) and restart"
    )
    assert states(core) == {
        "lite": (ModelState.READY, ""),
        "scorer": (ModelState.FAILED, reason),
        "twin": (ModelState.FAILED, reason),
    }
    assert made == ["lite"]
    with pytest.raises(ModelNotReady, match=r"`scorer@1` failed to load: artifact .* changed"):
        core.infer("scorer", 1, {"features": np.zeros((1, 30), np.float32)})
    assert core.infer("lite", 1, {"features": np.zeros((1, 30), np.float32)}).batch_size == 1


def test_a_file_is_hashed_once_per_content_and_again_when_rewritten(folder, monkeypatch):
    hashed: list[str] = []
    digest = hashlib.file_digest

    def counting(file, name):
        hashed.append(Path(file.name).name)
        return digest(file, name)

    monkeypatch.setattr(artifact_check.hashlib, "file_digest", counting)
    plan = compiled(folder)
    loaded(plan, folder, [])
    loaded(plan, folder, [])  # a second replica in the same process
    assert sorted(hashed) == ["fraud-lite.onnx", "fraud.onnx"]

    path = folder / "models" / "fraud-lite.onnx"
    before = path.stat().st_mtime_ns
    path.write_bytes(path.read_bytes()[:-1] + b"\0")  # the same size
    os.utime(path, ns=(before, before + 1_000_000_000))  # a later mtime, whatever the clock's tick
    core = loaded(plan, folder, [])
    assert sorted(hashed) == ["fraud-lite.onnx", "fraud-lite.onnx", "fraud.onnx"]
    assert states(core)["lite"][0] is ModelState.FAILED


def test_a_missing_artifact_is_left_to_the_backend_to_report(folder):
    assert check_artifact(folder / "models" / "gone.onnx", "0" * 64) is None


def test_an_unreadable_artifact_fails_its_model(folder):
    (folder / "models" / "dir.onnx").mkdir()
    with pytest.raises(LoadFailed, match=r"cannot read artifact `.*dir\.onnx`"):
        check_artifact(folder / "models" / "dir.onnx", "0" * 64)


def test_file_sha256_is_the_content_hash(folder):
    path = folder / "models" / "fraud.onnx"
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
