"""The tpu path on JAX's CPU platform: lowering, export, cache, checks, against onnxruntime.

Tolerances (docs/tpu.md gives the measured figures):
- fp32: every output within rtol 1e-4, atol 1e-5 of onnxruntime's CPU provider;
- bf16, against onnxruntime's fp32 on 1000 real rows per model: probabilities
  within 0.1 absolute (the tail; the mean absolute difference within 2e-3),
  and the top-1 class the same on at least 99% of rows.

Per-op graphs are built here with `onnx.helper` and exported exactly as the
backend exports models (symbolic batch, platforms tpu and cpu), then run at a
concrete batch size, so the symbolic-shape path is what is tested.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
from pathlib import Path

import jax
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from inferplane.backends import jax_artifact
from inferplane.backends.jax_backend import JaxBackend
from inferplane.backends.jax_lowering import LOWERINGS, UnsupportedModel, lower
from inferplane.backends.runtime import BackendError, BadBatch, LoadFailed, WrongDevice
from inferplane.compiler import plan
from inferplane.compiler.jax_subset import JAX_OPS, unsupported_ops
from inferplane.compiler.onnx_model import read_onnx
from inferplane.compiler.schema import DTYPES

FP32_RTOL, FP32_ATOL = 1e-4, 1e-5
BF16_MAX_ABS = 0.1  # on softmax probabilities, against onnxruntime fp32
BF16_MEAN_ABS = 2e-3
BF16_TOP1 = 0.99
BF16_ROWS = 1000  # recs measures 99.6%: enough rows that a few near-ties cannot fail it

TARGET = plan.Target(
    name="tpu-us",
    hardware="tpu",
    location=plan.Location(kind="cloud", site="gcp:us-central1"),
    replicas=plan.ReplicaRange(min=0, max=4),
    accelerator="v5e",
    topology="2x2",
)

HAS_TPU = any(d.platform == "tpu" for d in jax.devices())


# -- helpers ----------------------------------------------------------------------


def plan_model(path: Path, base_dir: Path, precision: str = "fp32", **changes) -> plan.Model:
    """A plan.Model for an ONNX file, its signature read from the file."""
    found = read_onnx(path)

    def spec(tensor) -> plan.TensorSpec:
        dims = [d if isinstance(d, int) else -1 for d in tensor.dims]
        return plan.TensorSpec(name=tensor.name, datatype=DTYPES[tensor.dtype], shape=dims)

    artifact = plan.Artifact(path=str(path.relative_to(base_dir)), sha256=found.sha256)
    fields = {
        "name": path.stem,
        "version": 1,
        "precision": precision,
        "source": artifact,
        "artifact": artifact,
        "signature": plan.Signature(
            inputs=[spec(t) for t in found.inputs], outputs=[spec(t) for t in found.outputs]
        ),
        "shards": [],
        "slos": plan.Slos(),
        "privacy": plan.Privacy(),
        "capacity": plan.Capacity(capacity_rps=1.0, single_latency_s=0.01, basis="estimated"),
    }
    return plan.Model(**{**fields, **changes})


def loaded(model: plan.Model, base_dir: Path, cache: Path, **options) -> JaxBackend:
    backend = JaxBackend(
        model, TARGET, base_dir, cache_dir=cache, **{"cpu_fallback": True, **options}
    )
    backend.load()
    return backend


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # its shape-inference warnings are not ours to read
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, feeds)


def run_exported(model: onnx.ModelProto, feeds: dict[str, np.ndarray], precision="fp32"):
    exported = jax_artifact.build(model, precision, "test")
    names = [v.name for v in model.graph.input]
    return [np.asarray(y) for y in jax.jit(exported.call)(*(feeds[n] for n in names))]


def graph_model(
    nodes, inputs, outputs, initializers=(), opset: int = 17, check: bool = True
) -> onnx.ModelProto:
    """A model whose inputs are `(name, dims)` float tensors ("batch" symbolic).

    Outputs are declared without a shape; `check` runs ONNX's strict shape
    inference, so that the test's own graph is known valid.
    """
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, d) for n, d in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        [numpy_helper.from_array(np.asarray(a), n) for n, a in initializers],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    if check:
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    return model


def assert_matches_ort(model, feeds, precision="fp32", rtol=FP32_RTOL, atol=FP32_ATOL) -> None:
    expected = run_ort(model, feeds)
    got = run_exported(model, feeds, precision)
    assert len(got) == len(expected)
    for want, have in zip(expected, got, strict=True):
        assert have.dtype == want.dtype
        np.testing.assert_allclose(have, want, rtol=rtol, atol=atol)


def one_op(op: str, x_dims, initializers=(), opset: int = 17, **attrs) -> onnx.ModelProto:
    names = ["x", *(n for n, _ in initializers)]
    node = helper.make_node(op, names, ["y"], **attrs)
    return graph_model([node], [("x", ["batch", *x_dims])], ["y"], initializers, opset)


RNG = np.random.default_rng(7)


def normal(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


# -- real inputs for the example models, by input name -----------------------------


def _features(rng: np.random.Generator, rows: int) -> np.ndarray:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer().data
    return data[rng.choice(len(data), rows, replace=rows > len(data))].astype(np.float32)


def _image(rng: np.random.Generator, rows: int) -> np.ndarray:
    from sklearn.datasets import load_digits

    data = load_digits().data
    picked = data[rng.choice(len(data), rows, replace=rows > len(data))]
    return picked.reshape(-1, 1, 8, 8).astype(np.float32)


def _history(rng: np.random.Generator, rows: int) -> np.ndarray:
    """Shares of 20-80 events over 64 categories, as recs was trained on."""
    events = rng.integers(20, 81, size=rows)
    tastes = rng.dirichlet(np.full(64, 0.3), size=rows)
    return (rng.multinomial(events, tastes) / events[:, None]).astype(np.float32)


def _ranges(rng: np.random.Generator, rows: int) -> np.ndarray:
    """32 beams: a far wall, an object on a few beams, noise; 0.05 m to 8 m."""
    ranges = rng.uniform(2.0, 8.0, size=(rows, 1)) * np.ones((1, 32))
    start = rng.integers(0, 28, size=rows)
    beams = np.arange(32)
    near = (beams >= start[:, None]) & (beams < start[:, None] + 4) & (rng.random((rows, 1)) < 0.6)
    ranges = np.where(near, rng.uniform(0.3, 4.0, size=(rows, 1)), ranges)
    return np.clip(ranges + rng.normal(0, 0.03, ranges.shape), 0.05, 8.0).astype(np.float32)


INPUTS = {"features": _features, "image": _image, "history": _history, "ranges": _ranges}


@pytest.fixture(scope="module")
def jax_models(example_models: Path) -> list[Path]:
    """The example models whose ops are all in JAX_OPS."""
    eligible = [
        path
        for path in sorted(example_models.glob("*.onnx"))
        if not unsupported_ops(read_onnx(path))
    ]
    names = {p.stem for p in eligible}
    # recs is the one the example specs place on a tpu; triage brings Flatten.
    assert {"recs", "triage"} <= names, names
    assert "intent" not in names  # its Tokenizer is outside the subset
    return eligible


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("jax-cache")


def feeds_for(model: plan.Model, rng: np.random.Generator, rows: int) -> dict[str, np.ndarray]:
    missing = [s.name for s in model.signature.inputs if s.name not in INPUTS]
    assert not missing, f"no real inputs for {missing}: add a generator to INPUTS"
    return {s.name: INPUTS[s.name](rng, rows) for s in model.signature.inputs}


# -- the lowering covers exactly the subset --------------------------------------------


def test_lowerings_are_exactly_the_compilers_jax_subset() -> None:
    assert set(LOWERINGS) == JAX_OPS


# -- the example models against onnxruntime --------------------------------------------


def test_example_models_fp32_match_onnxruntime(jax_models, example_models, cache) -> None:
    rng = np.random.default_rng(1)
    for path in jax_models:
        model = plan_model(path, example_models)
        backend = loaded(model, example_models, cache)
        proto = onnx.load(str(path))
        for rows in (1, 3, 8):
            feeds = feeds_for(model, rng, rows)
            got = backend.infer(feeds)
            for spec, want in zip(model.signature.outputs, run_ort(proto, feeds), strict=True):
                assert got[spec.name].shape == want.shape == (rows, *spec.shape[1:])
                assert got[spec.name].dtype == np.float32
                np.testing.assert_allclose(
                    got[spec.name], want, rtol=FP32_RTOL, atol=FP32_ATOL, err_msg=path.name
                )


def test_example_models_bf16_agree_with_onnxruntime_fp32(jax_models, example_models, cache) -> None:
    rng = np.random.default_rng(2)
    for path in jax_models:
        model = plan_model(path, example_models, precision="bf16")
        backend = loaded(model, example_models, cache)
        feeds = feeds_for(model, rng, BF16_ROWS)
        (want,) = run_ort(onnx.load(str(path)), feeds)
        got = backend.infer(feeds)[model.signature.outputs[0].name]
        assert got.dtype == np.float32  # the wire dtype stays the signature's
        difference = np.abs(got - want)
        assert difference.max() <= BF16_MAX_ABS, path.name
        assert difference.mean() <= BF16_MEAN_ABS, path.name
        agreement = np.mean(got.argmax(axis=1) == want.argmax(axis=1))
        assert agreement >= BF16_TOP1, f"{path.name}: top-1 agreement {agreement:.3f}"
        assert not np.array_equal(got, want)  # bf16 is really in use


# -- one artifact, any batch; built once -----------------------------------------------


def test_one_artifact_serves_batch_1_and_17(example_models, tmp_path) -> None:
    model = plan_model(example_models / "recs.onnx", example_models)
    backend = loaded(model, example_models, tmp_path)
    (artifact,) = tmp_path.glob("*.stablehlo")
    exported = jax.export.deserialize(bytearray(artifact.read_bytes()))
    assert exported.platforms == ("tpu", "cpu")
    assert str(exported.in_avals[0].shape[0]) == "b"  # symbolic, not a number
    proto = onnx.load(str(example_models / "recs.onnx"))
    for rows in (1, 17):
        feeds = {"history": _history(np.random.default_rng(rows), rows)}
        np.testing.assert_allclose(
            backend.infer(feeds)["ranking"],
            run_ort(proto, feeds)[0],
            rtol=FP32_RTOL,
            atol=FP32_ATOL,
        )
    assert list(tmp_path.glob("*.stablehlo")) == [artifact]


def test_the_cache_is_written_once_and_reused(example_models, tmp_path, monkeypatch) -> None:
    model = plan_model(example_models / "triage.onnx", example_models)
    first = loaded(model, example_models, tmp_path)
    (artifact,) = tmp_path.glob("*.stablehlo")
    sha = hashlib.sha256((example_models / "triage.onnx").read_bytes()).hexdigest()
    assert artifact.name.startswith(f"{sha}-fp32-jax{jax.__version__}-")
    assert any(note.startswith("fp32 StableHLO built") for note in first.describe().notes)
    stamp = artifact.stat().st_mtime_ns

    def no_export(*args, **kwargs):
        raise AssertionError("a cached artifact was exported again")

    monkeypatch.setattr(jax_artifact, "build", no_export)
    second = loaded(model, example_models, tmp_path)
    assert artifact.stat().st_mtime_ns == stamp
    assert any(note.startswith("fp32 StableHLO cached") for note in second.describe().notes)
    x = _image(np.random.default_rng(3), 4)
    np.testing.assert_array_equal(
        first.infer({"image": x})["finding"], second.infer({"image": x})["finding"]
    )
    monkeypatch.undo()
    # Another precision is another artifact.
    loaded(
        plan_model(example_models / "triage.onnx", example_models, "bf16"), example_models, tmp_path
    )
    assert len(list(tmp_path.glob("*.stablehlo"))) == 2
    assert not list(tmp_path.glob("*.tmp"))


def test_an_unreadable_cache_file_is_rebuilt_with_a_warning(example_models, tmp_path, caplog):
    model = plan_model(example_models / "recs.onnx", example_models)
    loaded(model, example_models, tmp_path)
    (artifact,) = tmp_path.glob("*.stablehlo")
    artifact.write_bytes(b"not a serialized export")
    with caplog.at_level(logging.WARNING):
        backend = loaded(model, example_models, tmp_path)
    assert "unreadable" in caplog.text
    assert any("built" in note for note in backend.describe().notes)
    assert artifact.stat().st_size > 1000


def test_warm_up_and_describe(example_models, tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        backend = loaded(
            plan_model(example_models / "recs.onnx", example_models), example_models, tmp_path
        )
    assert "--cpu-fallback" in caplog.text
    backend.warm_up([1, 4, 128])
    info = backend.describe()
    assert info.runtime == f"jax {jax.__version__} (jaxlib {jax.__version__})"
    assert (info.device, info.providers, info.fallback) == ("cpu", ("jax:cpu",), True)
    with pytest.raises(ValueError, match="not positive"):
        backend.warm_up([0])


# -- refusals ------------------------------------------------------------------------


@pytest.mark.skipif(HAS_TPU, reason="this host has a TPU")
def test_no_tpu_without_cpu_fallback_is_wrong_device(example_models, tmp_path) -> None:
    model = plan_model(example_models / "recs.onnx", example_models)
    with pytest.raises(WrongDevice) as error:
        loaded(model, example_models, tmp_path, cpu_fallback=False)
    assert str(error.value) == (
        "model recs@1 on target tpu-us: no TPU: JAX sees platforms [cpu]; run on a TPU host "
        "(install jax[tpu]) or pass --cpu-fallback for development"
    )
    assert not list(tmp_path.iterdir())  # refused before building anything


@pytest.mark.skipif(HAS_TPU, reason="this host has a TPU")
def test_wrong_device_gives_jaxs_reason_when_libtpu_is_there(example_models, tmp_path, monkeypatch):
    """libtpu installed but no TPU came up (say, another process holds it): say why."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: object() if name == "libtpu" else real(name, *a),
    )
    model = plan_model(example_models / "recs.onnx", example_models)
    with pytest.raises(WrongDevice, match=r"libtpu is installed, but the TPU did not start: .*tpu"):
        loaded(model, example_models, tmp_path, cpu_fallback=False)


def test_an_op_outside_the_subset_fails_the_load_naming_it(tmp_path) -> None:
    nodes = [
        helper.make_node("Erf", ["x"], ["e"]),
        helper.make_node("Relu", ["e"], ["r"]),
        helper.make_node("LeakyRelu", ["r"], ["y"]),
    ]
    model = graph_model(nodes, [("x", ["batch", 4])], ["y"])
    model.graph.output[0].CopyFrom(
        helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    )
    onnx.save(model, str(tmp_path / "erf.onnx"))
    with pytest.raises(
        UnsupportedModel, match=r"outside the JAX subset: Erf, LeakyRelu \(supported"
    ):
        lower(model, "fp32")
    backend_model = plan_model(tmp_path / "erf.onnx", tmp_path)
    with pytest.raises(LoadFailed, match="model erf@1: ops outside the JAX subset: Erf, LeakyRelu"):
        loaded(backend_model, tmp_path, tmp_path / "cache")


def test_what_the_lowering_refuses() -> None:
    relu = helper.make_node("Relu", ["x"], ["r"])
    shaped = helper.make_node("Reshape", ["x", "r"], ["y"])
    model = graph_model([relu, shaped], [("x", ["batch", 4])], ["y"], check=False)
    with pytest.raises(UnsupportedModel, match="shape input `r` is computed at run time"):
        lower(model, "fp32")

    add = helper.make_node("Add", ["x", "k"], ["y"])
    model = graph_model(
        [add], [("x", ["batch", 4])], ["y"], [("k", np.ones(4, np.int64))], check=False
    )
    with pytest.raises(
        UnsupportedModel, match="Add node `y`: input `k` is a constant of type int64"
    ):
        lower(model, "fp32")

    model = graph_model([helper.make_node("Relu", ["x"], ["y"])], [("x", ["batch", "seq"])], ["y"])
    with pytest.raises(UnsupportedModel, match="symbolic dimension 'seq' at axis 1"):
        lower(model, "fp32")

    model.graph.input[0].type.tensor_type.elem_type = TensorProto.INT64
    with pytest.raises(UnsupportedModel, match="input `x` is INT64; the JAX path serves FLOAT"):
        lower(model, "fp32")


def test_precisions_other_than_fp32_and_bf16_are_refused() -> None:
    model = one_op("Relu", [4])
    with pytest.raises(UnsupportedModel, match="precision int8 is not served on tpu"):
        lower(model, "int8")


def test_a_reshape_that_cannot_hold_for_every_batch_size_fails_the_export() -> None:
    model = one_op("Reshape", [4], [("s", np.array([-1, 3], np.int64))])
    with pytest.raises(UnsupportedModel, match="Reshape node `y`: InconclusiveDimensionOperation"):
        jax_artifact.build(model, "fp32", "test")


def test_a_signature_unlike_the_plans_fails_the_load(example_models, tmp_path) -> None:
    model = plan_model(example_models / "recs.onnx", example_models)
    outputs = [plan.TensorSpec(name="ranking", datatype="FP32", shape=[-1, 11])]
    wrong = model.model_copy(
        update={"signature": plan.Signature(inputs=model.signature.inputs, outputs=outputs)}
    )
    with pytest.raises(LoadFailed) as error:
        loaded(wrong, example_models, tmp_path)
    assert str(error.value) == (
        "model recs@1: the artifact's signature differs from the plan's: output `ranking`: "
        "plan FP32[-1, 11], model FP32[batch, 10] (fixed dimensions differ)"
    )


def test_a_missing_artifact_fails_the_load(example_models, tmp_path) -> None:
    model = plan_model(example_models / "recs.onnx", example_models)
    moved = model.model_copy(
        update={"artifact": model.artifact.model_copy(update={"path": "gone.onnx"})}
    )
    with pytest.raises(LoadFailed, match=r"model recs@1: artifact .*gone.onnx does not exist"):
        loaded(moved, example_models, tmp_path)


# -- each batch ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def recs(example_models, cache) -> JaxBackend:
    return loaded(plan_model(example_models / "recs.onnx", example_models), example_models, cache)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            {"history": np.zeros((3, 63), np.float32)},
            "model recs@1: input `history`: expected FP32[-1, 64], got FP32[3, 63]",
        ),
        (
            {"history": np.zeros((3, 64), np.float64)},
            "model recs@1: input `history`: expected FP32[-1, 64], got FP64[3, 64]",
        ),
        (
            {"history": np.zeros((64,), np.float32)},
            "model recs@1: input `history`: expected FP32[-1, 64], got FP32[64]",
        ),
        ({}, "model recs@1: missing input `history` FP32[-1, 64]"),
        (
            {"history": np.zeros((1, 64), np.float32), "extra": np.zeros(1)},
            "model recs@1: unknown input `extra`; the model takes `history` FP32[-1, 64]",
        ),
        (
            {"history": np.zeros((0, 64), np.float32)},
            "model recs@1: the batch is empty: each input needs at least one item",
        ),
        (
            {"history": [[0.0] * 64]},
            "model recs@1: input `history`: expected a NumPy array FP32[-1, 64], got list",
        ),
    ],
)
def test_bad_batches_name_the_tensor_and_both_sides(recs, inputs, message) -> None:
    with pytest.raises(BadBatch) as error:
        recs.infer(inputs)
    assert str(error.value) == message


def test_inputs_are_matched_by_name_and_share_the_batch(tmp_path) -> None:
    """Two inputs, declared in the plan in the other order than in the graph."""
    nodes = [
        helper.make_node("Concat", ["a", "b"], ["ab"], axis=1),
        helper.make_node("MatMul", ["ab", "w"], ["y"]),
    ]
    model = graph_model(
        nodes, [("a", ["batch", 2]), ("b", ["batch", 3])], ["y"], [("w", normal(5, 4))]
    )
    model.graph.output[0].CopyFrom(
        helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    )
    onnx.save(model, str(tmp_path / "two.onnx"))
    declared = plan_model(tmp_path / "two.onnx", tmp_path)
    swapped = declared.signature.model_copy(update={"inputs": declared.signature.inputs[::-1]})
    backend = loaded(declared.model_copy(update={"signature": swapped}), tmp_path, tmp_path / "c")
    feeds = {"a": normal(3, 2), "b": normal(3, 3)}
    np.testing.assert_allclose(
        backend.infer(feeds)["y"], run_ort(model, feeds)[0], rtol=FP32_RTOL, atol=FP32_ATOL
    )
    with pytest.raises(BadBatch) as error:
        backend.infer({"a": normal(3, 2), "b": normal(2, 3)})
    assert (
        str(error.value) == "model two@1: inputs disagree on the batch size: `b` has 2, `a` has 3"
    )


def test_an_artifact_changed_since_compiling_is_refused(example_models, tmp_path) -> None:
    """The worker core refuses it before any backend; a backend used alone refuses it too."""
    model = plan_model(example_models / "recs.onnx", example_models)
    stale = model.model_copy(
        update={"artifact": model.artifact.model_copy(update={"sha256": "0" * 64})}
    )
    with pytest.raises(
        LoadFailed,
        match=r"model recs@1: artifact `.*recs\.onnx` changed since the plan was made: "
        r"sha256 [0-9a-f]{12}…, plan says 000000000000…; recompile the spec \(infc plan\)",
    ):
        loaded(stale, example_models, tmp_path)


def test_a_backend_serves_nothing_before_load(example_models, tmp_path) -> None:
    model = plan_model(example_models / "recs.onnx", example_models)
    backend = JaxBackend(model, TARGET, example_models, cpu_fallback=True, cache_dir=tmp_path)
    with pytest.raises(BackendError, match="not loaded"):
        backend.infer({"history": np.zeros((1, 64), np.float32)})


def test_inputs_share_one_batch_size() -> None:
    model = graph_model(
        [helper.make_node("Concat", ["a", "b"], ["y"], axis=1)],
        [("a", ["batch", 2]), ("b", ["n", 3])],
        ["y"],
    )
    exported = jax_artifact.build(model, "fp32", "test")
    assert [str(a.shape[0]) for a in exported.in_avals] == ["b", "b"]


# -- per-op graphs against onnxruntime -------------------------------------------------


@pytest.mark.parametrize(
    ("attrs", "b", "c"),
    [
        ({"transB": 1, "beta": 0.5}, normal(3, 4), normal(3)),
        ({"transA": 1, "alpha": 2.0}, normal(4, 3), normal(1, 3)),
        ({"alpha": 0.3, "beta": 2.0}, normal(4, 3), np.float32(1.5)),
        ({"beta": 0.0}, normal(4, 3), normal(3)),
        ({}, normal(4, 3), None),
    ],
)
def test_gemm_attributes(attrs, b, c) -> None:
    inits = [("b", b)] + ([("c", np.asarray(c))] if c is not None else [])
    if attrs.get("transA"):
        # A is (K, M) = (4, 5) and transposed: its first axis is not a batch axis.
        node = helper.make_node("Gemm", ["x", *(n for n, _ in inits)], ["y"], **attrs)
        model = graph_model([node], [("x", [4, 5])], ["y"], inits)
        assert_matches_ort(model, {"x": normal(4, 5)})
    else:
        assert_matches_ort(one_op("Gemm", [4], inits, **attrs), {"x": normal(5, 4)})


def test_matmul_batched_and_broadcast() -> None:
    assert_matches_ort(one_op("MatMul", [3, 4], [("w", normal(4, 5))]), {"x": normal(2, 3, 4)})
    model = graph_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        [("x", ["batch", 3, 4]), ("w", ["batch", 4, 2])],
        ["y"],
    )
    assert_matches_ort(model, {"x": normal(3, 3, 4), "w": normal(3, 4, 2)})


def test_binary_ops_broadcast() -> None:
    for op in ("Add", "Sub", "Mul", "Div"):
        for constant in (normal(4), normal(3, 1), np.float32(2.5)):
            model = one_op(op, [3, 4], [("k", np.asarray(constant))])
            assert_matches_ort(model, {"x": normal(2, 3, 4)})


def test_activations() -> None:
    for op in ("Relu", "Sigmoid", "Tanh", "Identity"):
        assert_matches_ort(one_op(op, [3, 4]), {"x": normal(5, 3, 4) * 4})


def test_softmax_axis_before_and_since_opset_13() -> None:
    x = normal(2, 3, 4)
    for axis in (0, 1, 2, -1):
        assert_matches_ort(one_op("Softmax", [3, 4], axis=axis), {"x": x})
    # Opset 11: flattened to 2-D at `axis`, normalised over the whole tail.
    for axis in (1, 2):
        assert_matches_ort(one_op("Softmax", [3, 4], opset=11, axis=axis), {"x": x})
    assert_matches_ort(one_op("Softmax", [3, 4], opset=11), {"x": x})  # default axis 1
    flat = run_exported(one_op("Softmax", [3, 4], opset=11, axis=1), {"x": x})[0]
    np.testing.assert_allclose(flat.reshape(2, -1).sum(axis=1), 1.0, rtol=1e-5)


CONVS = {  # attributes, and the weight (M, C/group, kH, kW) for an input of 4 channels
    "pads-strides": ({"pads": [1, 2, 0, 1], "strides": [2, 1]}, (6, 4, 3, 3)),
    "dilations": ({"dilations": [2, 2], "pads": [2, 2, 2, 2]}, (6, 4, 3, 3)),
    "groups": ({"group": 2, "strides": [2, 2]}, (6, 2, 3, 3)),
    "depthwise": ({"group": 4}, (4, 1, 3, 3)),
    "same-upper": ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, (6, 4, 3, 2)),
    "same-lower": ({"auto_pad": "SAME_LOWER", "strides": [2, 2]}, (6, 4, 3, 2)),
    "valid": ({"auto_pad": "VALID", "kernel_shape": [3, 3]}, (6, 4, 3, 3)),
}


@pytest.mark.parametrize("case", CONVS)
def test_conv(case: str) -> None:
    attrs, weight = CONVS[case]
    inits = [("w", normal(*weight)), ("bias", normal(weight[0]))]
    assert_matches_ort(one_op("Conv", [4, 7, 6], inits, **attrs), {"x": normal(2, 4, 7, 6)})


def test_conv_1d_without_bias() -> None:
    model = one_op("Conv", [2, 9], [("w", normal(3, 2, 4))], strides=[3], pads=[1, 2])
    assert_matches_ort(model, {"x": normal(2, 2, 9)})


POOLS = {
    "max": ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2]}),
    "max-pads-ceil": (
        "MaxPool",
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1},
    ),
    # On the axis of 7, ceil_mode's last window would start in the end padding: dropped.
    "max-ceil-last-window-dropped": (
        "MaxPool",
        {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1},
    ),
    "max-dilated-ceil": (
        "MaxPool",
        {"kernel_shape": [2, 2], "dilations": [2, 2], "strides": [3, 3], "ceil_mode": 1},
    ),
    "max-same-lower": (
        "MaxPool",
        {"kernel_shape": [3, 2], "auto_pad": "SAME_LOWER", "strides": [2, 2]},
    ),
    "avg-pads": ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    "avg-pads-counted": (
        "AveragePool",
        {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1},
    ),
    "avg-ceil-counted": (
        "AveragePool",
        {
            "kernel_shape": [3, 3],
            "strides": [2, 2],
            "pads": [0, 1, 1, 0],
            "ceil_mode": 1,
            "count_include_pad": 1,
        },
    ),
    "avg-same-upper": (
        "AveragePool",
        {"kernel_shape": [2, 3], "auto_pad": "SAME_UPPER", "strides": [2, 2]},
    ),
    "global-avg": ("GlobalAveragePool", {}),
}


@pytest.mark.parametrize("case", POOLS)
def test_pools(case: str) -> None:
    op, attrs = POOLS[case]
    assert_matches_ort(one_op(op, [3, 7, 6], **attrs), {"x": normal(2, 3, 7, 6)})


def test_max_pool_indices_are_refused() -> None:
    node = helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2])
    model = graph_model([node], [("x", ["batch", 3, 4, 4])], ["y"])
    with pytest.raises(UnsupportedModel, match="MaxPool node `y`: optional output"):
        jax_artifact.build(model, "fp32", "test")


def test_reshape_with_zero_and_minus_one_keeps_the_batch_symbolic() -> None:
    x = normal(5, 2, 3, 4)
    for shape in ([0, -1], [-1, 12], [0, 3, -1], [0, 0, 12], [-1], [0, 2, 3, 2, 2]):
        model = one_op("Reshape", [2, 3, 4], [("s", np.array(shape, np.int64))])
        assert_matches_ort(model, {"x": x})
        batch_dim = jax_artifact.build(model, "fp32", "test").out_avals[0].shape[0]
        assert not isinstance(batch_dim, int), shape  # b or 24*b, never a number


def test_flatten_axes() -> None:
    x = normal(3, 2, 3, 4)
    for axis in (0, 1, 2, -1, -4, 4):
        assert_matches_ort(one_op("Flatten", [2, 3, 4], axis=axis), {"x": x})


def test_concat_axes() -> None:
    feeds = {"a": normal(3, 2, 4), "b": normal(3, 2, 4)}
    for axis in (0, 1, -1):
        node = helper.make_node("Concat", ["a", "b"], ["y"], axis=axis)
        model = graph_model([node], [("a", ["batch", 2, 4]), ("b", ["batch", 2, 4])], ["y"])
        assert_matches_ort(model, feeds)


def _contractions(model: onnx.ModelProto, precision: str) -> list[str]:
    text = jax_artifact.build(model, precision, "test").mlir_module()
    return [line for line in text.splitlines() if "stablehlo.dot_general" in line]


def test_fp32_contracts_at_highest_precision_and_bf16_in_bfloat16(example_models) -> None:
    """Read from the artifact, what a TPU will do: its default fp32 matmul is a
    single bfloat16 pass, so fp32 must ask for HIGHEST; bf16 must feed bf16 to
    the matrix unit and accumulate in f32."""
    model = onnx.load(str(example_models / "triage.onnx"))
    fp32 = _contractions(model, "fp32")
    assert fp32 and all("precision = [HIGHEST, HIGHEST]" in line for line in fp32)
    bf16 = _contractions(model, "bf16")
    typed = re.compile(r"\(tensor<\S+xbf16>, tensor<\S+xbf16>\) -> tensor<\S+xf32>")
    assert bf16 and all(typed.search(line) for line in bf16)


def test_bf16_keeps_the_wire_dtype_and_stays_close() -> None:
    model = one_op("Gemm", [16], [("w", normal(8, 16)), ("c", normal(8))], transB=1)
    x = normal(6, 16)
    (got,) = run_exported(model, {"x": x}, "bf16")
    (want,) = run_ort(model, {"x": x})
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=2e-2, atol=5e-2)
    assert not np.array_equal(got, want)


def test_cache_files_are_readable_by_other_workers(example_models, tmp_path) -> None:
    loaded(plan_model(example_models / "fraud.onnx", example_models), example_models, tmp_path)
    (artifact,) = tmp_path.glob("*.stablehlo")
    assert os.stat(artifact).st_mode & 0o044 == 0o044
