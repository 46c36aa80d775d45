"""Precision artifacts (`backends/precision.py`): int8 and fp16 builds, the cache, agreement."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from inferplane.backends import precision
from inferplane.compiler.passes import prepare_artifacts


@pytest.fixture()
def fraud(example_models: Path) -> Path:
    return example_models / "fraud.onnx"


@pytest.fixture()
def fraud_eval(example_models: Path) -> dict[str, np.ndarray]:
    with np.load(example_models / "fraud-eval.npz") as archive:
        return {name: archive[name] for name in archive.files}


def _ops(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(path).graph.node}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_int8_is_built_once_into_a_content_addressed_name(
    fraud: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    built = precision.build_artifact(fraud, "int8", tmp_path)
    assert built.parent == tmp_path
    assert built.name == f"{_sha256(fraud)[:16]}-int8-pc7-ort{ort.__version__}.onnx"
    assert [p.name for p in tmp_path.iterdir()] == [built.name]  # no temporary file left
    # the second call reuses the file: building again would fail here
    import onnxruntime.quantization

    def no_rebuild(*args, **kwargs):
        raise AssertionError("rebuilt a cached artifact")

    monkeypatch.setattr(onnxruntime.quantization, "quantize_dynamic", no_rebuild)
    before = built.stat().st_mtime_ns
    assert precision.build_artifact(fraud, "int8", tmp_path) == built
    assert built.stat().st_mtime_ns == before


def test_int8_is_smaller_quantized_and_loads(fraud: Path, tmp_path: Path):
    built = precision.build_artifact(fraud, "int8", tmp_path)
    assert built.stat().st_size < fraud.stat().st_size
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= _ops(built)
    assert "MatMul" not in _ops(built)
    session = ort.InferenceSession(str(built), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in session.get_inputs()] == [("features", "tensor(float)")]
    score = session.run(None, {"features": np.zeros((3, 30), np.float32)})[0]
    assert score.shape == (3, 2) and score.dtype == np.float32


def test_a_changed_source_gets_a_new_artifact(fraud: Path, tmp_path: Path):
    first = precision.build_artifact(fraud, "int8", tmp_path / "cache")
    other = tmp_path / "fraud.onnx"
    model = onnx.load(fraud)
    model.doc_string += " (edited)"
    onnx.save(model, other)
    second = precision.build_artifact(other, "int8", tmp_path / "cache")
    assert second != first and second.name.startswith(_sha256(other)[:16])


def test_fp16_keeps_fp32_inputs_and_outputs(fraud: Path, tmp_path: Path):
    built = precision.build_artifact(fraud, "fp16", tmp_path)
    assert built.name.startswith(f"{_sha256(fraud)[:16]}-fp16-io32-occ")
    model = onnx.load(built)
    fp32 = onnx.TensorProto.FLOAT
    assert [v.type.tensor_type.elem_type for v in model.graph.input] == [fp32]
    assert [v.type.tensor_type.elem_type for v in model.graph.output] == [fp32]
    weights = {numpy_helper.to_array(w).dtype for w in model.graph.initializer}
    assert weights == {np.dtype(np.float16)}
    session = ort.InferenceSession(str(built), providers=["CPUExecutionProvider"])
    assert [i.type for i in session.get_inputs()] == ["tensor(float)"]


def test_fp32_and_bf16_serve_the_source(fraud: Path, tmp_path: Path):
    for kind in ("fp32", "bf16"):
        assert precision.build_artifact(fraud, kind, tmp_path / "cache") == fraud
    assert not (tmp_path / "cache").exists()


def test_int8_agrees_with_fp32_on_the_fraud_eval_set(
    fraud: Path, fraud_eval: dict[str, np.ndarray], tmp_path: Path
):
    built = precision.build_artifact(fraud, "int8", tmp_path)
    found = precision.measure_agreement(fraud, built, fraud_eval, batch_size=64)
    assert found.samples == 143
    assert found.top1_agreement >= 0.99
    assert 0 < found.max_abs_diff < 0.1  # quantized: close, not equal
    same = precision.measure_agreement(fraud, fraud, fraud_eval)
    assert (same.top1_agreement, same.max_abs_diff) == (1.0, 0.0)


def test_fp16_agrees_closely(fraud: Path, fraud_eval: dict[str, np.ndarray], tmp_path: Path):
    built = precision.build_artifact(fraud, "fp16", tmp_path)
    found = precision.measure_agreement(fraud, built, fraud_eval, batch_size=8)
    assert found.top1_agreement == 1.0 and 0 < found.max_abs_diff < 0.01


def test_agreement_detects_a_bad_artifact(
    fraud: Path, fraud_eval: dict[str, np.ndarray], tmp_path: Path
):
    """The last layer's weights and bias negated: the logits flip, so does every top-1."""
    model = onnx.load(fraud)
    *_, weight, bias = model.graph.initializer  # specs/build_models.py adds them in order
    for tensor in (weight, bias):
        tensor.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(tensor), tensor.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(model, bad)
    found = precision.measure_agreement(fraud, bad, fraud_eval, batch_size=64)
    assert found.samples == 143
    assert found.top1_agreement < 0.2
    assert found.max_abs_diff > 0.5


def test_batches_change_int8_answers_not_fp32_ones(example_models: Path, tmp_path: Path):
    """Dynamic quantization takes activation ranges per batch; the batch size is recorded."""
    source = example_models / "recs.onnx"
    with np.load(example_models / "recs-eval.npz") as archive:
        history = {"history": archive["history"]}
    built = precision.build_artifact(source, "int8", tmp_path)
    alone = precision.measure_agreement(source, built, history, batch_size=1)
    full = precision.measure_agreement(source, built, history, batch_size=256)
    assert alone.samples == full.samples == 1500
    assert alone.top1_agreement != full.top1_agreement
    assert precision.measure_agreement(source, source, history, batch_size=256).max_abs_diff == 0


def test_a_failed_build_leaves_nothing_in_the_cache(
    fraud: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import onnxruntime.quantization

    def half_written(model, out, **kwargs):
        Path(out).write_bytes(b"half a model")
        raise RuntimeError("out of memory")

    monkeypatch.setattr(onnxruntime.quantization, "quantize_dynamic", half_written)
    with pytest.raises(precision.PrecisionError, match="dynamic quantization failed: out of"):
        precision.build_artifact(fraud, "int8", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_runtime_names_the_extra(
    fraud: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(precision.MissingDependency, match=r"inferplane\[cpu\]") as found:
        precision.build_artifact(fraud, "int8", tmp_path)
    assert found.value.package == "onnxruntime"
    monkeypatch.setitem(sys.modules, "onnxconverter_common", None)
    with pytest.raises(precision.MissingDependency, match="onnxconverter-common"):
        precision.build_artifact(fraud, "fp16", tmp_path)


def test_the_quantizer_does_not_configure_logging(fraud: Path, tmp_path: Path):
    import logging

    root = logging.getLogger()
    handlers, filters = list(root.handlers), list(root.filters)
    precision.build_artifact(fraud, "int8", tmp_path)
    assert (root.handlers, root.filters) == (handlers, filters)


def test_the_compiler_and_the_backend_build_the_same_precisions():
    assert prepare_artifacts.BUILT == precision.BUILT
