"""The gateway end to end: real `infc worker` processes, an in-process gateway and
server on 127.0.0.1:0, and clients over gRPC.

The unmodified `tritonclient.grpc` client runs in a subprocess
(tests/integration/triton_calls.py: it cannot share a process with our own
`inference` stubs); its answers are compared here with onnxruntime run in this
process on the same model files. Every wait is bounded and every process is
killed when its test ends (conftest.py).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from inferplane.compiler.compilation import Compilation
from inferplane.gateway import converters
from inferplane.gateway.app import Gateway
from inferplane.gateway.redaction import redactors_for
from inferplane.gateway.server import start_server
from inferplane.protos import grpc_service_pb2 as pb
from inferplane.protos import grpc_service_pb2_grpc as pb_grpc

ort = pytest.importorskip("onnxruntime")
if importlib.util.find_spec("tritonclient") is None:  # never imported here: see above
    pytest.skip("tritonclient is not installed", allow_module_level=True)

HERE = Path(__file__).resolve().parent
SPECS = HERE.parents[1] / "specs"
CLIENT_TIMEOUT_S = 120.0
TEXTS = ["please refund jane.doe@example.com, charged twice", "reset my password"]


def reference(model_file: Path, **inputs: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    return session.run(None, inputs)[0]


@pytest.fixture
def laptop(workers, example_models):
    """Two `infc worker` processes for demo.infer's `laptop`, and the compiled plan."""
    started = [workers(SPECS / "demo.infer", "laptop") for _ in range(2)]
    for worker in started:
        worker.wait_ready()
    plan = Compilation.from_path(SPECS / "demo.infer").plan
    return plan, started


async def serving(plan, endpoints):
    gateway = Gateway(plan)
    await gateway.start()
    gateway.set_replicas("laptop", endpoints)
    server, address = await start_server(gateway, "127.0.0.1:0", max_message_bytes=1 << 26)
    return gateway, server, address


async def shutdown(gateway, server):
    await gateway.drain(5.0)
    await server.stop(grace=1.0)


def test_tritonclient_against_real_workers(laptop, tmp_path, example_models):
    plan, started = laptop
    x = np.random.default_rng(3).random((5, 30), dtype=np.float32)
    text = np.array([t.encode() for t in TEXTS], dtype=object)
    np.savez(tmp_path / "in.npz", features=x, text=text)
    out_path = tmp_path / "out.npz"

    async def scenario():
        gateway, server, address = await serving(plan, [w.address for w in started])
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(HERE / "triton_calls.py"),
                address,
                str(tmp_path / "in.npz"),
                str(out_path),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            try:
                output, _ = await asyncio.wait_for(process.communicate(), CLIENT_TIMEOUT_S)
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            assert process.returncode == 0, output.decode(errors="replace")
            return gateway.statistics("fraud-scorer", "1")
        finally:
            await shutdown(gateway, server)

    asyncio.run(scenario())
    out = np.load(out_path)
    assert out["live"] and out["ready"] and out["model_ready"]
    meta = json.loads(str(out["metadata"]))
    assert meta["name"] == "fraud-scorer" and meta["versions"] == ["1", "2"]
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": ["-1", "30"]}]
    config = json.loads(str(out["config"]))["config"]
    assert config["max_batch_size"] == 32

    assert str(out["fraud_version"]) == "2"  # no version asked: the highest
    np.testing.assert_allclose(
        out["fraud"], reference(example_models / "fraud-v4.onnx", features=x), rtol=1e-5, atol=1e-6
    )

    served = str(out["payments_served"])
    files = {"fraud-scorer@1": "fraud.onnx", "fraud-scorer@2": "fraud-v4.onnx"}
    assert served in files
    np.testing.assert_allclose(
        out["payments"], reference(example_models / files[served], features=x), rtol=1e-5, atol=1e-6
    )

    # The worker saw the redacted text: the answer is the model's on it.
    model = plan.model("support-intent", 1)
    redacted = redactors_for(model.privacy)["text"].redact_array(text, tensor="text").array
    assert b"[EMAIL]" in redacted[0] and b"jane.doe" not in redacted[0]
    expected = reference(
        example_models / "intent.onnx", text=np.array([t.decode() for t in redacted], dtype=object)
    )
    np.testing.assert_allclose(out["intent"], expected, rtol=1e-5, atol=1e-6)

    bad = json.loads(str(out["bad_shape"]))
    assert bad["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "features" in bad["message"] and "[-1, 30]" in bad["message"]
    assert json.loads(str(out["not_found"]))["status"] == "StatusCode.NOT_FOUND"
    stats = json.loads(str(out["statistics"]))["model_stats"]
    assert {s["version"] for s in stats} == {"1", "2"}


def test_stream_health_and_a_worker_killed_mid_run(laptop, example_models):
    plan, started = laptop
    x = np.random.default_rng(5).random((2, 30), dtype=np.float32)
    expected = reference(example_models / "fraud.onnx", features=x)

    def request(i: int, model: str = "fraud-scorer", features=x) -> pb.ModelInferRequest:
        domain = converters.InferRequest(model, "1", f"s{i}", {"features": features})
        return converters.infer_request_to_proto(domain)

    async def scenario():
        gateway, server, address = await serving(plan, [w.address for w in started])
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                checker = health_pb2_grpc.HealthStub(channel)
                status = await checker.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
                assert status.status == health_pb2.HealthCheckResponse.SERVING
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                requests = [
                    request(0),
                    request(1, model="nope"),
                    request(2, features=x[:, :3]),
                    request(3),
                ]
                answers = [a async for a in stub.ModelStreamInfer(iter(requests), timeout=60)]
                assert [a.infer_response.id for a in answers] == ["s0", "s1", "s2", "s3"]
                assert [bool(a.error_message) for a in answers] == [False, True, True, False]
                assert "unknown model or route `nope`" in answers[1].error_message
                assert "features" in answers[2].error_message
                for answer in (answers[0], answers[3]):
                    outputs = converters.infer_response_from_proto(answer.infer_response)
                    np.testing.assert_allclose(outputs["score"], expected, rtol=1e-5, atol=1e-6)

                # One worker dies: every request is still answered, by the other.
                started[0].process.kill()
                started[0].process.wait(timeout=30)
                replies = await asyncio.gather(
                    *(stub.ModelInfer(request(10 + i), timeout=30) for i in range(20))
                )
                for reply in replies:
                    outputs = converters.infer_response_from_proto(reply)
                    np.testing.assert_allclose(outputs["score"], expected, rtol=1e-5, atol=1e-6)
                assert [r.endpoint for r in gateway.fleet.pool("laptop").live()] == [
                    started[1].address
                ]
        finally:
            await shutdown(gateway, server)

    asyncio.run(asyncio.wait_for(scenario(), 120))
