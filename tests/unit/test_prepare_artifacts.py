"""The `prepare_artifacts` pass: built artifacts in the plan, eval sets (E0406), W0504, E0402."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from inferplane.backends import precision
from inferplane.compiler import ast
from inferplane.compiler.compilation import Compilation
from inferplane.compiler.passes.prepare_artifacts import _mismatches
from inferplane.compiler.spans import NO_SPAN

SPEC = """\
target cpu-a {{
  hardware cpu
  location onprem "lab"
}}
target gpu-a {{
  hardware gpu
  location onprem "lab"
}}

model scorer {{
  source    "models/fraud.onnx"
  precision {precision}
  {eval}
  input  features {features}
  output score    fp32[batch, 2]
  shard  {target}
  batch  max 32 window 1ms
}}
"""


@pytest.fixture()
def folder(example_models: Path, tmp_path: Path) -> Path:
    (tmp_path / "models").mkdir()
    for name in ("fraud.onnx", "fraud-eval.npz"):
        shutil.copy(example_models / name, tmp_path / "models" / name)
    return tmp_path


def compile_spec(
    folder: Path,
    precision: str = "int8",
    eval: str = 'eval      "models/fraud-eval.npz"',
    target: str = "cpu-a",
    features: str = "fp32[batch, 30]",
) -> Compilation:
    text = SPEC.format(precision=precision, eval=eval, target=target, features=features)
    return Compilation(text, "spec.infer", folder)


def codes(compilation: Compilation) -> list[tuple[int, str]]:
    return [(d.span.line, d.code.code) for d in compilation.diagnostics]


def test_int8_artifact_and_its_agreement_are_in_the_plan(folder: Path):
    compilation = compile_spec(folder)
    assert codes(compilation) == []
    model = compilation.plan.model("scorer", 1)
    assert model.source.path == "models/fraud.onnx"
    assert model.artifact.path.startswith(".inferplane/cache/") and "-int8-" in model.artifact.path
    built = folder / model.artifact.path
    assert model.artifact.sha256 == hashlib.sha256(built.read_bytes()).hexdigest()
    agreement = model.agreement
    assert (agreement.eval, agreement.samples, agreement.batch_size) == (
        "models/fraud-eval.npz",
        143,
        32,
    )
    assert agreement.top1_agreement >= 0.99 and agreement.max_abs_diff > 0


def test_without_an_eval_set_nothing_is_measured(folder: Path):
    model = compile_spec(folder, eval="").plan.model("scorer", 1)
    assert "-int8-" in model.artifact.path and model.agreement is None


def test_fp16_on_gpu(folder: Path):
    compilation = compile_spec(folder, precision="fp16", target="gpu-a")
    assert codes(compilation) == []
    model = compilation.plan.model("scorer", 1)
    assert "-fp16-io32-" in model.artifact.path
    assert model.agreement.top1_agreement == 1.0


def test_fp32_serves_its_source_but_its_eval_set_is_still_checked(folder: Path):
    model = compile_spec(folder, precision="fp32").plan.model("scorer", 1)
    assert model.artifact == model.source and model.agreement is None
    assert not (folder / ".inferplane").exists()
    bad = compile_spec(folder, precision="fp32", eval='eval "models/none.npz"')
    assert codes(bad) == [(13, "E0406")]


def test_a_model_with_errors_is_not_built(folder: Path):
    compilation = compile_spec(folder, precision="int8", target="gpu-a", features="fp32[batch, 31]")
    assert codes(compilation) == [(14, "E0403")]  # and no E0406 echoing it
    assert not (folder / ".inferplane").exists()


def test_eval_sets_that_do_not_fit(folder: Path):
    models = folder / "models"
    np.save(models / "single.npy", np.zeros((4, 30), np.float32))
    np.savez(models / "pickled.npz", features=np.array([{"a": 1}], dtype=object))
    np.savez(models / "empty.npz", features=np.zeros((0, 30), np.float32))
    found = {}
    for name in ("single.npy", "pickled.npz", "empty.npz"):
        compilation = compile_spec(folder, eval=f'eval "models/{name}"')
        (diagnostic,) = compilation.diagnostics
        assert (diagnostic.span.line, diagnostic.code.code) == (13, "E0406")
        found[name] = diagnostic.message
    assert "is a single array, not an .npz archive" in found["single.npy"]
    assert "unreadable array `features`" in found["pickled.npz"]
    assert "array `features` has no samples" in found["empty.npz"]


def test_an_eval_set_needs_the_batch_axis(folder: Path):
    compilation = compile_spec(folder, precision="fp32", features="fp32[1, 30]")
    assert codes(compilation) == [(13, "E0406"), (14, "E0404")]
    diagnostic = compilation.diagnostics[0]
    assert "input `features` has no `batch` axis" in diagnostic.message


def test_eval_must_be_a_string(folder: Path):
    compilation = compile_spec(folder, eval="eval fraud")
    assert [d.code.code for d in compilation.diagnostics] == ["E0201"]


def _tensor(name: str, dtype: str, *dims: int | str) -> ast.Tensor:
    return ast.Tensor(
        ast.Spanned(name), ast.Spanned(dtype), tuple(ast.Spanned(d) for d in dims), NO_SPAN
    )


def test_mismatches_name_every_problem():
    inputs = (_tensor("ids", "int64", "batch", 8), _tensor("text", "bytes", "batch"))
    fits = {"ids": np.zeros((5, 8), np.int64), "text": np.array(["a"] * 5)}
    assert _mismatches(inputs, fits) == []
    assert _mismatches(inputs, {**fits, "text": np.array([b"a"] * 5)}) == []
    assert _mismatches(inputs, {**fits, "text": np.array(["a"] * 4)}) == [
        "the arrays hold different numbers of samples ([4, 5])"
    ]
    assert _mismatches(inputs, {"ids": np.zeros((5, 8), np.int32), "extra": np.zeros(5)}) == [
        "no array `text`",
        "array `extra` is not an input",
        "array `ids` holds int32, the input is int64[batch, 8]",
    ]
    assert _mismatches(inputs, {**fits, "text": np.zeros(5)}) == [
        "array `text` holds float64, the input is bytes[batch]"
    ]


def test_low_agreement_points_at_precision_and_eval(example_models: Path):
    negative = Path(__file__).resolve().parents[1] / "data" / "negative" / "precision.infer"
    warning = next(d for d in Compilation.from_path(negative).diagnostics if d.code.code == "W0504")
    assert warning.span.line == 10 and warning.notes[0].span.line == 11
    assert (
        "agrees with fp32 on" in warning.message and "(batches of 16), below 99%" in warning.message
    )
    assert warning.label.endswith("of 200 top-1 answers change")


def test_a_missing_runtime_is_an_error_only_where_it_is_needed(
    folder: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert codes(compile_spec(folder, precision="fp32")) == []  # never imports it
    (error,) = compile_spec(folder).diagnostics
    assert (error.code.code, error.span.line) == ("E0402", 12)
    assert error.message == (
        "cannot build the int8 artifact of model `scorer@1`: onnxruntime is not installed"
    )
    assert "pip install 'inferplane[cpu]'" in error.help


def test_an_unwritable_cache_is_reported(folder: Path):
    (folder / ".inferplane").write_text("a file where the cache folder goes")
    (error,) = compile_spec(folder).diagnostics
    assert error.code.code == "E0402" and "cannot write the int8 artifact" in error.message


def test_a_measurement_that_cannot_run_is_reported(folder: Path, monkeypatch: pytest.MonkeyPatch):
    def cannot(*args, **kwargs):
        raise precision.PrecisionError("onnxruntime (CPU) could not run both models: no kernel")

    monkeypatch.setattr(precision, "measure_agreement", cannot)
    (error,) = compile_spec(folder).diagnostics
    assert (error.code.code, error.span.line) == ("E0406", 13)
    assert "cannot measure the int8 artifact" in error.message and "no kernel" in error.message
