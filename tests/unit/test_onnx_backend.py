"""OnnxBackend over real onnxruntime CPU sessions and the example models.

The plan objects mirror the example specs (specs/*.infer) and hold only what
a backend reads, so these tests do not depend on the compiler. The GPU cases
run on this CPU-only host: a gpu target must be refused, or served on the CPU
with --cpu-fallback; a GPU build whose CUDA does not load is simulated by
reporting its providers as available and creating the real session on the CPU.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from inferplane.backends import onnx_backend
from inferplane.backends.onnx_backend import OnnxBackend, prepare_batch, session_options
from inferplane.backends.providers import CPU, CUDA, TENSORRT
from inferplane.backends.runtime import BackendError, BadBatch, LoadFailed, WrongDevice
from inferplane.compiler import plan

SPECS = Path(__file__).resolve().parents[2] / "specs"
GPU_BUILD = [TENSORRT, CUDA, CPU]
HAS_GPU_PROVIDERS = any(p in ort.get_available_providers() for p in (TENSORRT, CUDA))
cpu_only_host = pytest.mark.skipif(HAS_GPU_PROVIDERS, reason="this host's onnxruntime has a GPU")


def spec(name: str, datatype: str, *shape: int) -> plan.TensorSpec:
    return plan.TensorSpec(name=name, datatype=datatype, shape=list(shape))


def make_model(name: str, version: int, path: str, inputs, outputs) -> plan.Model:
    # model_construct: the compiler-only fields (shards, SLOs, estimates) are not needed.
    return plan.Model.model_construct(
        name=name,
        version=version,
        precision="fp32",
        artifact=plan.Artifact(path=path, sha256=""),
        signature=plan.Signature(inputs=inputs, outputs=outputs),
    )


def make_target(name: str, hardware: str, threads: int | None = None) -> plan.Target:
    return plan.Target(
        name=name,
        hardware=hardware,
        location=plan.Location(kind="onprem", site="lab"),
        replicas=plan.ReplicaRange(min=1, max=1),
        threads=threads,
    )


FEATURES = ([spec("features", "FP32", -1, 30)], [spec("score", "FP32", -1, 2)])
MODELS = {
    ("fraud-scorer", 1): make_model("fraud-scorer", 1, "models/fraud.onnx", *FEATURES),
    ("fraud-lite", 1): make_model("fraud-lite", 1, "models/fraud-lite.onnx", *FEATURES),
    ("support-intent", 1): make_model(
        "support-intent",
        1,
        "models/intent.onnx",
        [spec("text", "BYTES", -1)],
        [spec("intent", "FP32", -1, 12)],
    ),
    ("obstacle", 1): make_model(
        "obstacle",
        1,
        "models/obstacle.onnx",
        [spec("ranges", "FP32", -1, 32)],
        [spec("hazard", "FP32", -1, 4)],
    ),
    ("triage", 2): make_model(
        "triage",
        2,
        "models/triage.onnx",
        [spec("image", "FP32", -1, 1, 8, 8)],
        [spec("finding", "FP32", -1, 10)],
    ),
}
TARGETS = {
    "laptop": make_target("laptop", "cpu", threads=1),  # demo.infer
    "robot-cpu": make_target("robot-cpu", "cpu", threads=2),  # edge.infer
    "robot-gpu": make_target("robot-gpu", "gpu"),  # edge.infer
    "cpu-radiology": make_target("cpu-radiology", "cpu", threads=8),  # imaging.infer
}


@pytest.fixture
def plans(example_models: Path):
    """`plans(model, version, target)` → (model, target), over the built example models."""
    return lambda name, version, target: (MODELS[(name, version)], TARGETS[target])


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list:
    """Records every session the backend creates (and the providers it asked for)."""
    created = []
    real = onnx_backend._new_session

    def recording(ort_module, path, options, requested):
        session = real(ort_module, path, options, requested)
        created.append((session, [name for name, _ in requested]))
        return session

    monkeypatch.setattr(onnx_backend, "_new_session", recording)
    return created


def loaded(model, target, base_dir: Path = SPECS, **kwargs) -> OnnxBackend:
    backend = OnnxBackend(model, target, base_dir, **kwargs)
    backend.load()
    return backend


def direct(path: Path, feed: dict) -> list:
    session = ort.InferenceSession(str(path), providers=[CPU])
    return session.run(None, feed)


# -- serving ----------------------------------------------------------------------

CASES = [
    ("fraud-scorer", 1, "laptop", "features", (30,)),
    ("fraud-lite", 1, "laptop", "features", (30,)),
    ("obstacle", 1, "robot-cpu", "ranges", (32,)),
    ("triage", 2, "cpu-radiology", "image", (1, 8, 8)),
]


@pytest.mark.parametrize(("name", "version", "target", "input", "dims"), CASES)
def test_outputs_equal_onnxruntime_used_directly(plans, name, version, target, input, dims):
    model, tgt = plans(name, version, target)
    backend = loaded(model, tgt)
    batch = np.random.default_rng(7).normal(size=(5, *dims)).astype(np.float32)
    outputs = backend.infer({input: batch})
    (expected,) = direct(SPECS / model.artifact.path, {input: batch})
    (output,) = model.signature.outputs
    assert list(outputs) == [output.name]
    np.testing.assert_array_equal(outputs[output.name], expected)


def test_text_as_bytes_or_str_gives_the_same_answer(plans):
    backend = loaded(*plans("support-intent", 1, "laptop"))
    texts = ["I lost my card yesterday", "please refund the double charge"]
    as_str = np.array(texts, dtype=object)
    as_bytes = np.array([t.encode() for t in texts], dtype=object)
    by_bytes = backend.infer({"text": as_bytes})["intent"]
    np.testing.assert_array_equal(backend.infer({"text": as_str})["intent"], by_bytes)
    (expected,) = direct(SPECS / "models" / "intent.onnx", {"text": as_str})
    np.testing.assert_array_equal(by_bytes, expected)
    assert by_bytes.shape == (2, 12)
    assert not np.allclose(by_bytes[0], by_bytes[1])  # the text matters


def test_describe_names_the_runtime_package_and_providers(plans):
    backend = loaded(*plans("fraud-scorer", 1, "laptop"))
    info = backend.describe()
    assert info.runtime == f"onnxruntime {ort.__version__} (package onnxruntime)"
    assert (info.device, info.providers, info.fallback) == ("cpu", (CPU,), False)


def test_nothing_serves_before_load(plans):
    backend = OnnxBackend(*plans("fraud-scorer", 1, "laptop"), SPECS)
    for call in (backend.describe, lambda: backend.warm_up([1])):
        with pytest.raises(BackendError, match="not loaded"):
            call()


# -- threads and session options --------------------------------------------------


def test_threads_and_options_reach_the_session(plans, sessions):
    loaded(*plans("obstacle", 1, "robot-cpu"))  # threads 2
    ((session, requested),) = sessions
    assert requested == [CPU]
    options = session.get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.inter_op_num_threads == 1
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def test_no_threads_leaves_onnxruntimes_default(plans):
    _, target = plans("obstacle", 1, "robot-cpu")
    options = session_options(ort, target.model_copy(update={"threads": None}))
    assert options.intra_op_num_threads == ort.SessionOptions().intra_op_num_threads


# -- warm-up ----------------------------------------------------------------------


class Spy:
    """A session that records the batch sizes it runs, then runs them."""

    def __init__(self, session, run=None):
        self._session = session
        self._run = run
        self.sizes: list[int] = []

    def __getattr__(self, name):
        return getattr(self._session, name)

    def run(self, names, feed):
        self.sizes.append(len(next(iter(feed.values()))))
        return (self._run or self._session.run)(names, feed)


def spied(monkeypatch: pytest.MonkeyPatch, run=None) -> list[Spy]:
    spies = []
    real = onnx_backend._new_session

    def spying(*args):
        spies.append(Spy(real(*args), run))
        return spies[-1]

    monkeypatch.setattr(onnx_backend, "_new_session", spying)
    return spies


@pytest.mark.parametrize(
    ("name", "target"), [("fraud-scorer", "laptop"), ("support-intent", "laptop")]
)
def test_warm_up_runs_each_batch_size(plans, monkeypatch, name, target):
    spies = spied(monkeypatch)
    backend = loaded(*plans(name, 1, target))
    backend.warm_up([1, 7, 32])
    assert spies[0].sizes == [1, 7, 32]


def test_warm_up_rejects_a_size_below_one(plans):
    backend = loaded(*plans("fraud-scorer", 1, "laptop"))
    with pytest.raises(ValueError, match="batch size 0"):
        backend.warm_up([1, 0])


def test_a_failing_warm_up_is_a_load_failure(plans, monkeypatch):
    def fail(names, feed):
        raise RuntimeError("out of memory")

    spied(monkeypatch, run=fail)
    backend = loaded(*plans("fraud-scorer", 1, "laptop"))
    with pytest.raises(LoadFailed, match=r"warm-up at batch size 8: .*out of memory"):
        backend.warm_up([8])


# -- bad batches ------------------------------------------------------------------

F32 = np.float32
BAD_FEATURES = [
    (
        {"features": np.zeros((4, 31), F32)},
        "input `features`: expected FP32[-1, 30], got FP32[4, 31]",
    ),
    ({"features": np.zeros((4, 30), np.float64)}, "expected FP32[-1, 30], got FP64[4, 30]"),
    ({"features": np.zeros((4, 30), ">f4")}, "expected FP32[-1, 30], got FP32 (big-endian)[4, 30]"),
    ({"features": np.zeros(30, F32)}, "expected FP32[-1, 30], got FP32[30]"),
    ({"features": np.zeros((2, 3, 30), F32)}, "expected FP32[-1, 30], got FP32[2, 3, 30]"),
    (
        {"features": [[0.0] * 30]},
        "input `features`: expected a NumPy array FP32[-1, 30], got list",
    ),
    ({}, "model fraud-scorer@1: missing input `features` FP32[-1, 30]"),
    ({"features": np.zeros((1, 30), F32), "extra": np.zeros(1, F32)}, "unknown input `extra`"),
    ({"feature": np.zeros((1, 30), F32)}, "unknown input `feature`; the model takes `features`"),
    ({"features": np.zeros((0, 30), F32)}, "the batch is empty"),
]


@pytest.mark.parametrize(("feed", "message"), BAD_FEATURES)
def test_a_bad_batch_names_the_tensor_and_both_sides(plans, feed, message):
    backend = loaded(*plans("fraud-scorer", 1, "laptop"))
    with pytest.raises(BadBatch) as raised:
        backend.infer(feed)
    assert message in str(raised.value)
    # The backend still serves.
    assert backend.infer({"features": np.zeros((2, 30), F32)})["score"].shape == (2, 2)


BAD_TEXT = [
    (np.array(["a", "b"]), "input `text`: expected BYTES[-1] (a NumPy object array of bytes"),
    (np.array([b"a", b"b"]), "got NumPy |S1[2]"),
    (np.array([b"ok", 3], dtype=object), "input `text`: element 1 is int, expected bytes or str"),
    (np.array([[b"a"]], dtype=object), "input `text`: expected BYTES[-1], got BYTES[1, 1]"),
    (np.array([b"ok", b"\xff"], dtype=object), "input `text`: element 1 is not UTF-8"),
    (np.array(["ok", "\udcff"], dtype=object), "input `text`: element 1 holds a lone surrogate"),
]


@pytest.mark.parametrize(("text", "message"), BAD_TEXT)
def test_a_bad_bytes_batch_is_refused(plans, text, message):
    backend = loaded(*plans("support-intent", 1, "laptop"))
    with pytest.raises(BadBatch) as raised:
        backend.infer({"text": text})
    assert message in str(raised.value)


def test_inputs_must_agree_on_the_batch_size():
    specs = [
        plan.TensorSpec(name="a", datatype="FP32", shape=[-1, 3]),
        plan.TensorSpec(name="b", datatype="INT64", shape=[-1]),
    ]
    good = {"a": np.zeros((4, 3), F32), "b": np.zeros(4, np.int64)}
    assert prepare_batch("model ab@1", specs, good)[0] == 4
    with pytest.raises(
        BadBatch, match="ab@1: inputs disagree on the batch size: `a` has 4, `b` has 3"
    ):
        prepare_batch("model ab@1", specs, {"a": np.zeros((4, 3), F32), "b": np.zeros(3, np.int64)})


def test_onnxruntime_rejecting_a_batch_is_a_bad_batch(plans, monkeypatch):
    def reject(names, feed):
        raise ort.capi.onnxruntime_pybind11_state.InvalidArgument("bad value in node Gather")

    spied(monkeypatch, run=reject)
    backend = loaded(*plans("fraud-scorer", 1, "laptop"))
    with pytest.raises(BadBatch, match="onnxruntime rejected the batch: bad value in node Gather"):
        backend.infer({"features": np.zeros((2, 30), F32)})


def test_an_internal_failure_is_a_backend_error_not_a_crash(plans, monkeypatch):
    def crash(names, feed):
        raise RuntimeError("CUDA error: an illegal memory access")

    spied(monkeypatch, run=crash)
    backend = loaded(*plans("fraud-scorer", 1, "laptop"))
    with pytest.raises(
        BackendError, match="onnxruntime failed: RuntimeError: CUDA error"
    ) as raised:
        backend.infer({"features": np.zeros((2, 30), F32)})
    assert not isinstance(raised.value, BadBatch)


def test_an_output_of_the_wrong_batch_size_is_a_backend_error(plans, monkeypatch):
    spied(monkeypatch, run=lambda names, feed: [np.zeros((3, 2), F32)])
    backend = loaded(*plans("fraud-scorer", 1, "laptop"))
    with pytest.raises(BackendError, match=r"output `score` has shape \[3, 2\] for a batch of 2"):
        backend.infer({"features": np.zeros((2, 30), F32)})


# -- BYTES outputs (a model built here) ---------------------------------------------


def echo_model(tmp_path: Path, batch_dim="batch") -> Path:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["text"], ["echo"])],
        "echo",
        [helper.make_tensor_value_info("text", TensorProto.STRING, [batch_dim])],
        [helper.make_tensor_value_info("echo", TensorProto.STRING, [batch_dim])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = tmp_path / "echo.onnx"
    onnx.save(model, str(path))
    return path


def echo_plan(template: plan.Model, path: Path) -> plan.Model:
    return template.model_copy(
        update={
            "artifact": plan.Artifact(path=path.name, sha256=""),
            "signature": plan.Signature(
                inputs=[plan.TensorSpec(name="text", datatype="BYTES", shape=[-1])],
                outputs=[plan.TensorSpec(name="echo", datatype="BYTES", shape=[-1])],
            ),
        }
    )


def test_bytes_reach_the_model_as_their_text_and_come_back_as_bytes(plans, tmp_path):
    # onnxruntime alone would pass b"abc" to the model as "b'abc'" (str() of it).
    template, target = plans("support-intent", 1, "laptop")
    backend = loaded(echo_plan(template, echo_model(tmp_path)), target, tmp_path)
    backend.warm_up([1, 3])  # empty strings
    out = backend.infer({"text": np.array(["héllo", "héllo".encode(), b""], dtype=object)})
    assert out["echo"].dtype == object
    assert out["echo"].tolist() == ["héllo".encode(), "héllo".encode(), b""]


# -- the signature at load ----------------------------------------------------------


def with_signature(model: plan.Model, inputs=None, outputs=None) -> plan.Model:
    signature = plan.Signature(
        inputs=inputs if inputs is not None else model.signature.inputs,
        outputs=outputs if outputs is not None else model.signature.outputs,
    )
    return model.model_copy(update={"signature": signature})


SIGNATURE_MISMATCHES = [
    (
        {"inputs": [spec("features", "FP32", -1, 31)]},
        "input `features`: plan FP32[-1, 31], model FP32[batch, 30] (fixed dimensions differ)",
    ),
    (
        {"inputs": [spec("features", "FP64", -1, 30)]},
        "input `features`: plan FP64[-1, 30], model FP32[batch, 30]",
    ),
    (
        {"inputs": [spec("features", "FP32", -1, 5, 6)]},
        "input `features`: plan FP32[-1, 5, 6], model FP32[batch, 30] (rank 3 against 2)",
    ),
    (
        {"inputs": [spec("x", "FP32", -1, 30)]},
        "input `x`: in the plan (FP32[-1, 30]), not in the model; "
        "input `features`: in the model (FP32[batch, 30]), not in the plan",
    ),
    (
        {"outputs": [spec("score", "FP32", -1, 3)]},
        "output `score`: plan FP32[-1, 3], model FP32[batch, 2]",
    ),
    (
        {"outputs": [spec("score", "FP32", -1, 2), spec("logits", "FP32", -1, 2)]},
        "output `logits`: in the plan (FP32[-1, 2]), not in the model",
    ),
]


@pytest.mark.parametrize(("change", "message"), SIGNATURE_MISMATCHES)
def test_a_signature_mismatch_fails_the_load_naming_both_sides(plans, change, message):
    model, target = plans("fraud-scorer", 1, "laptop")
    with pytest.raises(LoadFailed) as raised:
        loaded(with_signature(model, **change), target)
    text = str(raised.value)
    assert text.startswith("model fraud-scorer@1: the artifact's signature differs from the plan's")
    assert message in text


def test_a_fixed_batch_axis_in_the_model_fails_the_load(plans, tmp_path):
    template, target = plans("support-intent", 1, "laptop")
    model = echo_plan(template, echo_model(tmp_path, batch_dim=1))
    with pytest.raises(LoadFailed, match="model BYTES\\[1\\] \\(the plan's batch axis, -1, must"):
        loaded(model, target, tmp_path)


def test_a_missing_artifact_fails_the_load(plans, tmp_path):
    model, target = plans("fraud-scorer", 1, "laptop")
    with pytest.raises(LoadFailed, match=r"artifact .*models/fraud\.onnx does not exist"):
        loaded(model, target, tmp_path)


def test_an_unreadable_artifact_fails_the_load(plans, tmp_path):
    model, target = plans("fraud-scorer", 1, "laptop")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "fraud.onnx").write_bytes(b"not a model")
    with pytest.raises(LoadFailed, match="onnxruntime cannot load"):
        loaded(model, target, tmp_path)


# -- the device ---------------------------------------------------------------------


@cpu_only_host
def test_a_gpu_target_on_a_cpu_only_host_is_refused(plans):
    with pytest.raises(WrongDevice) as raised:
        loaded(*plans("obstacle", 1, "robot-gpu"))
    message = str(raised.value)
    assert message.startswith("model obstacle@1 on target robot-gpu: the target needs a GPU")
    assert "install inferplane[gpu] (onnxruntime-gpu) instead of inferplane[cpu]" in message
    assert "--cpu-fallback" in message


@cpu_only_host
def test_cpu_fallback_serves_a_gpu_target_and_says_so(plans, caplog):
    model, target = plans("obstacle", 1, "robot-gpu")
    with caplog.at_level(logging.WARNING, logger="inferplane.backends.onnx_backend"):
        backend = loaded(model, target, cpu_fallback=True)
    info = backend.describe()
    assert (info.device, info.fallback, info.providers) == ("cpu", True, (CPU,))
    assert any("--cpu-fallback" in note for note in info.notes)
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "obstacle@1 on target robot-gpu" in record.getMessage()
    assert "--cpu-fallback" in record.getMessage()
    assert backend.infer({"ranges": np.ones((2, 32), F32)})["hazard"].shape == (2, 4)


@pytest.fixture
def gpu_build(monkeypatch: pytest.MonkeyPatch) -> list:
    """onnxruntime-gpu whose CUDA does not load: its providers listed, sessions on the CPU.

    Returns the provider lists the backend asked for, one per session it created.
    """
    asked = []
    real = onnx_backend._new_session

    def cpu_session(ort_module, path, options, requested):
        asked.append([name for name, _ in requested])
        return real(ort_module, path, options, [(CPU, {})])

    monkeypatch.setattr(ort, "get_available_providers", lambda: list(GPU_BUILD))
    monkeypatch.setattr(onnx_backend, "_new_session", cpu_session)
    return asked


def test_the_tensorrt_cache_defaults_to_the_cache_under_base_dir(plans, gpu_build, tmp_path):
    shutil.copytree(SPECS / "models", tmp_path / "models")
    model, target = plans("obstacle", 1, "robot-gpu")
    with pytest.raises(WrongDevice):
        loaded(model, target, tmp_path)
    assert (tmp_path / ".inferplane" / "cache" / "tensorrt").is_dir()


def test_cuda_that_does_not_load_is_refused(plans, gpu_build, tmp_path):
    model, target = plans("obstacle", 1, "robot-gpu")
    with pytest.raises(WrongDevice) as raised:
        loaded(model, target, cache_dir=tmp_path)
    assert gpu_build == [GPU_BUILD]
    assert "CUDA could not load: check the CUDA/cuDNN libraries onnxruntime-gpu" in str(
        raised.value
    )
    assert (tmp_path / "tensorrt").is_dir()  # the engine cache is made ready


def test_a_gpu_provider_that_fails_to_start_is_refused_or_falls_back(plans, monkeypatch, tmp_path):
    model, target = plans("obstacle", 1, "robot-gpu")
    real = onnx_backend._new_session

    def no_device(ort_module, path, options, requested):
        if any(name != CPU for name, _ in requested):
            raise RuntimeError("CUDA failure 100: no CUDA-capable device is detected")
        return real(ort_module, path, options, requested)

    monkeypatch.setattr(ort, "get_available_providers", lambda: list(GPU_BUILD))
    monkeypatch.setattr(onnx_backend, "_new_session", no_device)
    with pytest.raises(WrongDevice, match="onnxruntime said: CUDA failure 100"):
        loaded(model, target, cache_dir=tmp_path)
    backend = loaded(model, target, cache_dir=tmp_path, cpu_fallback=True)
    assert backend.describe().fallback
    assert "CUDA failure 100" in backend.describe().notes[0]
