"""`infc worker` as a real process: health, batches, bad input, failures, hardware, drain.

Each test starts its workers on free ports (`--listen 127.0.0.1:0`, the
address read from the ready line) or on a unix socket in tmp_path; every wait
is bounded and every process is killed when its test ends (conftest.py).
Results are compared with onnxruntime run in this process on the same files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from inferplane.backends import tensors
from inferplane.compiler.compilation import Compilation
from inferplane.protos import worker_pb2 as pb

ort = pytest.importorskip("onnxruntime")

SPECS = Path(__file__).resolve().parents[2] / "specs"
WAIT_S = 60.0  # the longest a test waits for a worker to start or stop
INFC = [sys.executable, "-c", "from inferplane.cli.main import main; main()"]
RPC_TIMEOUT_S = 30.0


# -- helpers ---------------------------------------------------------------------------------


def tensor(name: str, array: np.ndarray, **override) -> pb.Tensor:
    datatype, shape, raw = tensors.to_raw(array)
    return pb.Tensor(**{"name": name, "datatype": datatype, "shape": shape, "raw": raw, **override})


def decode(response: pb.InferResponse) -> dict[str, np.ndarray]:
    return {t.name: tensors.from_raw(t.name, t.datatype, t.shape, t.raw) for t in response.outputs}


def infer(worker, model: str, version: int, **inputs: np.ndarray) -> pb.InferResponse:
    request = pb.InferRequest(
        model=model, version=version, inputs=[tensor(n, a) for n, a in inputs.items()], id="t"
    )
    return worker.stub().Infer(request, timeout=RPC_TIMEOUT_S)


def reference(model_file: Path, **inputs: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    return session.run(None, inputs)


def health(worker) -> pb.HealthResponse:
    return worker.stub().Health(pb.HealthRequest(), timeout=RPC_TIMEOUT_S)


def states(response: pb.HealthResponse) -> dict[str, int]:
    return {f"{m.name}@{m.version}": m.state for m in response.models}


def features(rows: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, 30)).astype(np.float32)


def spec_copy(tmp_path: Path, spec: str, models: Path) -> Path:
    """A spec in tmp_path beside a copy of the models (its caches land there too)."""
    shutil.copytree(models, tmp_path / "models", dirs_exist_ok=True)
    shutil.copy(SPECS / spec, tmp_path / spec)
    return tmp_path / spec


def write_spec(folder: Path, text: str) -> Path:
    path = folder / "test.infer"
    path.write_text(text, encoding="utf-8")
    assert not Compilation.from_path(path).has_errors, Compilation.from_path(path).diagnostics
    return path


def save_model(path: Path, nodes, inputs, outputs, initializers=(), domains=()) -> None:
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, path.stem, inputs, outputs, list(initializers))
    opsets = [helper.make_opsetid("", 17), *(helper.make_opsetid(d, 1) for d in domains)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)


def fp32(name: str, *dims):
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(dims))


# -- the demo worker: health, batches, bad input, statistics ----------------------------------


def test_health_reports_ready_models_device_location_and_package(demo_worker):
    assert demo_worker.ready_line.startswith("worker laptop ready on 127.0.0.1:")
    assert demo_worker.ready_line.endswith("(4 models)")
    plan = Compilation.from_path(SPECS / "demo.infer").plan
    response = health(demo_worker)
    assert response.ready and not response.draining and not response.cpu_fallback
    assert (response.target, response.hardware, response.device) == ("laptop", "cpu", "cpu")
    assert (response.location_kind, response.location_site) == ("onprem", "localhost")
    assert response.plan_hash == plan.content_hash
    assert response.worker_version
    assert states(response) == {
        "fraud-lite@1": pb.MODEL_STATE_READY,
        "fraud-scorer@1": pb.MODEL_STATE_READY,
        "fraud-scorer@2": pb.MODEL_STATE_READY,
        "support-intent@1": pb.MODEL_STATE_READY,
    }
    shas = {(m.name, m.version): m.artifact.sha256 for m in plan.models}
    for model in response.models:
        assert "CPUExecutionProvider" in model.providers
        assert model.runtime.startswith("onnxruntime ")
        assert "(package onnxruntime)" in model.runtime  # which build: cpu or gpu
        assert model.artifact_sha256 == shas[(model.name, model.version)]
        assert model.precision == "fp32"


def test_fraud_scores_equal_onnxruntime_in_process(demo_worker, example_models: Path):
    batch = features(7)
    response = infer(demo_worker, "fraud-scorer", 1, features=batch)
    assert response.batch_size == 7
    assert response.compute_ns > 0
    (score,) = reference(example_models / "fraud.onnx", features=batch)
    np.testing.assert_allclose(decode(response)["score"], score, rtol=1e-5, atol=1e-6)


def test_intent_over_bytes_equals_onnxruntime_in_process(demo_worker, example_models: Path):
    texts = ["I was charged twice for my order", "how do I reset my password?", "caf\u00e9 \u2615"]
    batch = np.array([t.encode() for t in texts], dtype=object)
    response = infer(demo_worker, "support-intent", 1, text=batch)
    (intent,) = reference(example_models / "intent.onnx", text=np.array(texts, dtype=object))
    assert response.batch_size == 3
    np.testing.assert_allclose(decode(response)["intent"], intent, rtol=1e-5, atol=1e-6)


def _fraud_request(**override) -> pb.InferRequest:
    fields = {"model": "fraud-scorer", "version": 1, "inputs": [tensor("features", features(2))]}
    return pb.InferRequest(**{**fields, **override})


BAD_BATCHES = {
    "wrong dtype": (
        _fraud_request(inputs=[tensor("features", features(2).astype(np.float64))]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "model fraud-scorer@1: input `features`: expected FP32[-1, 30], got FP64[2, 30]",
    ),
    "wrong shape": (
        _fraud_request(inputs=[tensor("features", np.zeros((2, 29), np.float32))]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "input `features`: expected FP32[-1, 30], got FP32[2, 29]",
    ),
    "raw length": (
        _fraud_request(inputs=[tensor("features", features(2), raw=b"\0" * 100)]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "tensor `features`: FP32[2, 30] needs 240 bytes, got 100",
    ),
    "unknown input": (
        _fraud_request(inputs=[tensor("feature", features(2))]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "unknown input `feature`; the model takes `features` FP32[-1, 30]",
    ),
    "bytes prefix": (
        pb.InferRequest(
            model="support-intent",
            version=1,
            inputs=[pb.Tensor(name="text", datatype="BYTES", shape=[1], raw=b"\x05\0")],
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "tensor `text`: truncated length prefix at byte 0",
    ),
    "above max batch": (
        _fraud_request(inputs=[tensor("features", features(33))]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "model fraud-scorer@1: input `features`: batch of 33 is above its max_batch_size of 32",
    ),
    "unknown model": (
        _fraud_request(model="nope"),
        grpc.StatusCode.NOT_FOUND,
        "target `laptop` serves no model `nope`",
    ),
    "unknown version": (
        _fraud_request(version=9),
        grpc.StatusCode.NOT_FOUND,
        "serves no version 9 of model `fraud-scorer`",
    ),
}


@pytest.mark.parametrize("case", list(BAD_BATCHES))
def test_a_bad_batch_gets_a_clear_status_and_the_worker_serves_on(demo_worker, case: str):
    request, code, message = BAD_BATCHES[case]
    with pytest.raises(grpc.RpcError) as caught:
        demo_worker.stub().Infer(request, timeout=RPC_TIMEOUT_S)
    assert caught.value.code() == code
    assert message in caught.value.details()
    assert demo_worker.process.poll() is None
    assert infer(demo_worker, "fraud-lite", 1, features=features(1)).batch_size == 1


def test_statistics_count_batches_by_size(demo_worker):
    def snapshot() -> pb.ModelStatistics:
        response = demo_worker.stub().Statistics(pb.StatisticsRequest(), timeout=RPC_TIMEOUT_S)
        return next(m for m in response.models if (m.name, m.version) == ("fraud-scorer", 2))

    before = snapshot()
    for rows in (1, 3, 3):
        infer(demo_worker, "fraud-scorer", 2, features=features(rows))
    with pytest.raises(grpc.RpcError):
        infer(demo_worker, "fraud-scorer", 2, features=np.zeros((1, 4), np.float32))
    after = snapshot()
    assert after.execution_count - before.execution_count == 3
    assert after.inference_count - before.inference_count == 7
    assert after.failure_count - before.failure_count == 1
    assert after.compute_ns > before.compute_ns
    counts = {b.batch_size: b.count for b in after.batches}
    old = {b.batch_size: b.count for b in before.batches}
    assert counts[3] - old.get(3, 0) == 2
    assert counts[1] - old.get(1, 0) == 1


def test_a_taken_port_is_refused(demo_worker, workers):
    second = workers(SPECS / "demo.infer", "laptop", demo_worker.address)
    assert second.process.wait(timeout=WAIT_S) == 1
    assert f"cannot listen on {demo_worker.address}" in second.stderr()


# -- listening on a unix socket ----------------------------------------------------------


def test_a_worker_listens_on_a_unix_socket(workers, tmp_path: Path, example_models: Path):
    socket_path = tmp_path / "w.sock"
    worker = workers(SPECS / "demo.infer", "laptop", f"unix:{socket_path}")
    assert worker.wait_ready().startswith(f"worker laptop ready on unix:{socket_path} ")
    assert health(worker).ready
    assert infer(worker, "fraud-lite", 1, features=features(4)).batch_size == 4
    assert worker.terminate() == 0


# -- a model that fails to load fails alone ------------------------------------------------


def test_a_model_that_fails_to_load_is_failed_and_the_others_serve(
    workers, tmp_path: Path, example_models: Path
):
    from onnx import helper

    # Valid ONNX with the declared signature, which the compiler accepts, but an
    # op that no runtime implements: onnxruntime refuses it at load.
    save_model(
        tmp_path / "models" / "mystery.onnx",
        [helper.make_node("Mystery", ["features"], ["score"], domain="com.example")],
        [fp32("features", "batch", 30)],
        [fp32("score", "batch", 2)],
        domains=["com.example"],
    )
    shutil.copy(example_models / "fraud-lite.onnx", tmp_path / "models")
    spec = write_spec(
        tmp_path,
        """
target box {
  hardware cpu
  threads  1
  location onprem "test"
  replicas 1
}

model fraud-lite {
  source "models/fraud-lite.onnx"
  input  features fp32[batch, 30]
  output score    fp32[batch, 2]
  shard  box
  batch  max 8 window 1ms
}

model mystery {
  source "models/mystery.onnx"
  input  features fp32[batch, 30]
  output score    fp32[batch, 2]
  shard  box
  batch  max 8 window 1ms
}
""",
    )
    worker = workers(spec, "box")
    assert worker.wait_ready().endswith("(1 of 2 models; failed: mystery@1)")
    response = health(worker)
    assert not response.ready
    assert states(response) == {"fraud-lite@1": pb.MODEL_STATE_READY, "mystery@1": 3}
    failed = next(m for m in response.models if m.name == "mystery")
    assert "Mystery" in failed.reason and "onnxruntime cannot load" in failed.reason
    with pytest.raises(grpc.RpcError) as caught:
        infer(worker, "mystery", 1, features=features(1))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "`mystery@1` failed to load" in caught.value.details()
    assert infer(worker, "fraud-lite", 1, features=features(2)).batch_size == 2
    assert "event=model_failed model=mystery@1" in worker.stderr()
    assert worker.terminate() == 0


# -- hardware: gpu and tpu targets on this CPU host --------------------------------------------


def test_a_gpu_target_on_a_cpu_host_refuses_to_start(workers, tmp_path: Path, example_models: Path):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this host has CUDA: the gpu target would start")
    spec = spec_copy(tmp_path, "payments.infer", example_models)
    worker = workers(spec, "gpu-fra")
    with pytest.raises(AssertionError, match="exited with 1"):
        worker.wait_ready()
    stderr = worker.stderr()
    assert "infc: worker for target `gpu-fra` refuses to start" in stderr
    assert "--cpu-fallback" in stderr


def test_a_gpu_target_serves_on_the_cpu_with_cpu_fallback(
    workers, tmp_path: Path, example_models: Path
):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this host has CUDA: no fallback would happen")
    spec = spec_copy(tmp_path, "payments.infer", example_models)
    worker = workers(spec, "gpu-fra", "127.0.0.1:0", "--cpu-fallback")
    assert worker.wait_ready().endswith("(2 models)")
    response = health(worker)
    assert response.ready and response.cpu_fallback
    assert (response.hardware, response.device) == ("gpu", "cpu")
    assert all(list(m.providers) == ["CPUExecutionProvider"] for m in response.models)
    history = np.random.default_rng(1).random((5, 64), dtype=np.float32)
    (ranking,) = reference(example_models / "recs.onnx", history=history)
    got = decode(infer(worker, "recs", 1, history=history))["ranking"]
    np.testing.assert_allclose(got, ranking, rtol=1e-5, atol=1e-6)
    assert "event=cpu_fallback target=gpu-fra hardware=gpu" in worker.stderr()
    assert worker.terminate() == 0


def test_a_tpu_target_serves_through_jax_on_the_cpu_with_cpu_fallback(
    workers, tmp_path: Path, example_models: Path
):
    pytest.importorskip("jax")
    pytest.importorskip("inferplane.backends.jax_backend")
    spec = spec_copy(tmp_path, "payments.infer", example_models)
    worker = workers(spec, "tpu-us", "127.0.0.1:0", "--cpu-fallback")
    assert worker.wait_ready().endswith("(1 model)")
    response = health(worker)
    assert response.ready and response.cpu_fallback
    assert (response.hardware, response.device) == ("tpu", "cpu")
    assert (response.location_kind, response.location_site) == ("cloud", "gcp:us-central1")
    (recs,) = response.models
    assert list(recs.providers) == ["jax:cpu"]
    assert recs.runtime.startswith("jax ")
    history = np.random.default_rng(2).random((3, 64), dtype=np.float32)
    (ranking,) = reference(example_models / "recs.onnx", history=history)
    got = decode(infer(worker, "recs", 1, history=history))["ranking"]
    np.testing.assert_allclose(got, ranking, rtol=1e-4, atol=1e-5)
    assert worker.terminate() == 0


# -- SIGTERM: running batches finish, then the process exits 0 ----------------------------------

WIDTH, LAYERS, ROWS = 1024, 16, 512


def _slow_spec(folder: Path) -> Path:
    """A model whose batches of 512 rows take a good part of a second on one thread.

    Its layers share one weight matrix, which keeps the file at 4 MiB.
    """
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = (rng.normal(size=(WIDTH, WIDTH)) / np.sqrt(WIDTH)).astype(np.float32)
    head = (rng.normal(size=(WIDTH, 4)) / np.sqrt(WIDTH)).astype(np.float32)
    initializers = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(head, "head")]
    nodes, current = [], "x"
    for i in range(LAYERS):
        nodes.append(helper.make_node("MatMul", [current, "w"], [f"h{i}"]))
        nodes.append(helper.make_node("Relu", [f"h{i}"], [f"r{i}"]))
        current = f"r{i}"
    nodes.append(helper.make_node("MatMul", [current, "head"], ["y"]))
    save_model(
        folder / "models" / "slow.onnx",
        nodes,
        [fp32("x", "batch", WIDTH)],
        [fp32("y", "batch", 4)],
        initializers,
    )
    return write_spec(
        folder,
        f"""
target box {{
  hardware cpu
  threads  1
  location onprem "test"
  replicas 1
}}

model slow {{
  source "models/slow.onnx"
  input  x fp32[batch, {WIDTH}]
  output y fp32[batch, 4]
  shard  box
  batch  max {ROWS} window 1ms
}}
""",
    )


def test_sigterm_lets_running_batches_finish_and_exits_0(workers, tmp_path: Path):
    """Three clients stream slow batches; SIGTERM arrives while some are running.

    Every batch the worker had started finishes OK after the signal; later ones
    are refused UNAVAILABLE (draining, then connection refused). A request
    sent after the signal that meets the server's shutdown itself may be
    CANCELLED by gRPC: that race is the transport's, and retryable like
    UNAVAILABLE.
    """
    worker = workers(_slow_spec(tmp_path), "box", "127.0.0.1:0", "--grace", "20")
    worker.wait_ready()
    x = np.ones((ROWS, WIDTH), np.float32)
    request = pb.InferRequest(model="slow", version=1, inputs=[tensor("x", x)])
    outcomes: list[tuple[float, grpc.StatusCode, float]] = []  # sent, code, answered
    lock = threading.Lock()

    def client() -> None:
        stub = worker.stub()
        code = grpc.StatusCode.OK
        while code is grpc.StatusCode.OK:
            sent = time.monotonic()
            try:
                stub.Infer(request, timeout=RPC_TIMEOUT_S)
            except grpc.RpcError as error:
                code = error.code()
            with lock:
                outcomes.append((sent, code, time.monotonic()))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + WAIT_S
    while len(outcomes) < 3 and time.monotonic() < deadline:  # the stream is flowing
        time.sleep(0.05)
    assert outcomes, "no batch finished"
    signalled = time.monotonic()
    assert worker.terminate(timeout_s=WAIT_S) == 0
    assert time.monotonic() - signalled < 20
    for thread in threads:
        thread.join(WAIT_S)
    retryable = {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}
    for sent, code, _ in outcomes:
        allowed = retryable if sent < signalled else {*retryable, grpc.StatusCode.CANCELLED}
        assert code in allowed, (code, sent - signalled)
    finished_after_signal = [
        answered
        for sent, code, answered in outcomes
        if code is grpc.StatusCode.OK and sent < signalled < answered
    ]
    assert finished_after_signal, "no batch that was running at SIGTERM finished"
    stderr = worker.stderr()
    assert "event=draining target=box" in stderr
    assert "event=stopped target=box" in stderr
    assert "drain_timeout" not in stderr


# -- refusals before serving ----------------------------------------------------------------


def test_an_unknown_target_exits_1_naming_the_known_ones(workers):
    worker = workers(SPECS / "demo.infer", "nope")
    assert worker.process.wait(timeout=WAIT_S) == 1
    assert "the plan has no target `nope`; its targets are: laptop" in worker.stderr()


def test_a_spec_with_errors_exits_1_with_its_diagnostics(workers, tmp_path: Path):
    spec = tmp_path / "broken.infer"
    spec.write_text("target box {\n  hardware quantum\n}\n", encoding="utf-8")
    worker = workers(spec, "box")
    assert worker.process.wait(timeout=WAIT_S) == 1
    assert "error[" in worker.stderr()


PARENT = """
import subprocess, sys, time
worker = subprocess.Popen(
    [*sys.argv[3:], "--parent-pid", str(__import__("os").getpid())],
    stdout=open(sys.argv[1], "w"), stderr=open(sys.argv[2], "w"), stdin=subprocess.DEVNULL,
    start_new_session=True,
)
print(worker.pid, flush=True)
time.sleep(600)
"""


def test_a_worker_stops_when_its_parent_is_killed(example_models: Path, tmp_path: Path):
    """`--parent-pid` (what `infc serve` passes): SIGKILL the parent, the worker drains."""
    out, err = tmp_path / "worker.out", tmp_path / "worker.err"
    argv = [*INFC, "worker", str(SPECS / "demo.infer"), "--target", "laptop"]
    argv += ["--listen", "127.0.0.1:0", "--grace", "1"]
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(out), str(err), *argv],
        stdout=subprocess.PIPE,
        text=True,
    )
    worker_pid = None
    try:
        worker_pid = int(parent.stdout.readline())
        deadline = time.monotonic() + WAIT_S
        while "ready on" not in out.read_text():
            assert time.monotonic() < deadline, err.read_text()
            assert parent.poll() is None
            time.sleep(0.1)
        parent.kill()
        parent.wait(timeout=WAIT_S)
        deadline = time.monotonic() + WAIT_S
        while Path(f"/proc/{worker_pid}").exists() and _state(worker_pid) != "Z":
            assert time.monotonic() < deadline, "the worker outlived its parent"
            time.sleep(0.1)
        assert "event=draining" in err.read_text()  # SIGTERM: an orderly stop, not a kill
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=WAIT_S)
        if worker_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker_pid, signal.SIGKILL)
        parent.stdout.close()


def _state(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return "gone"


def test_a_worker_whose_parent_is_already_gone_does_not_start():
    argv = [*INFC, "worker", str(SPECS / "demo.infer"), "--target", "laptop"]
    argv += ["--listen", "127.0.0.1:0", "--parent-pid", "1"]  # init: never our parent
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr == "infc: --parent-pid 1: that process is gone; not starting\n"
    assert done.stdout == ""


def test_standard_health_for_kubelet_probes(demo_worker):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(demo_worker.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inferplane.worker.v1.Worker"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as unknown:
            health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
