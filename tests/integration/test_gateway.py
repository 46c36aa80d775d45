"""The gateway end to end: real `infc worker` processes, an in-process gateway and
server on 127.0.0.1:0, and clients over gRPC.

The unmodified `tritonclient.grpc` client, sync and asyncio, runs in a
subprocess (tests/integration/triton_calls.py and triton_aio_calls.py: it
cannot share a process with our own `inference` stubs); its answers are
compared here with onnxruntime run in this process on the same model files.
Requests tritonclient's API cannot build (typed contents, tampered messages)
are sent here with our own stubs. Every wait is bounded and every process is
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
from inferplane.gateway.domain import InferRequest
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
MAX_BATCH = 32  # fraud-scorer's `batch max` in specs/demo.infer
TEXTS = ["please refund jane.doe@example.com, charged twice", "reset my password"]


def reference(model_file: Path, **inputs: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    return session.run(None, inputs)[0]


def intent_reference(plan, models: Path, text: np.ndarray) -> np.ndarray:
    """support-intent's answer on `text` as its worker sees it: redacted."""
    model = plan.model("support-intent", 1)
    redacted = redactors_for(model.privacy)["text"].redact_array(text, tensor="text").array
    assert b"[EMAIL]" in redacted[0] and b"jane.doe" not in redacted[0]
    decoded = np.array([t.decode() for t in redacted], dtype=object)
    return reference(models / "intent.onnx", text=decoded)


def status(answer) -> tuple[str, str]:
    """(code name, message) of a client script's failure record."""
    record = json.loads(str(answer))
    return record["status"].removeprefix("StatusCode."), record["message"]


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
    # demo.infer's `laptop` serves on-prem-only models: a probe places each worker first.
    assert await gateway.placement_checked(30.0)
    server, address = await start_server(gateway, "127.0.0.1:0", max_message_bytes=1 << 26)
    return gateway, server, address


async def shutdown(gateway, server):
    await gateway.drain(5.0)
    await server.stop(grace=1.0)


async def run_client(script: str, address: str, inputs: Path, out: Path) -> None:
    """Run a tritonclient script (see the module docstring) against `address`, bounded."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / script),
        address,
        str(inputs),
        str(out),
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


def against_gateway(plan, started, script: str, inputs: Path, out: Path) -> None:
    """Serve `plan` over the started workers and run `script` against it."""

    async def scenario():
        gateway, server, address = await serving(plan, [w.address for w in started])
        try:
            await run_client(script, address, inputs, out)
        finally:
            await shutdown(gateway, server)

    asyncio.run(scenario())


def test_tritonclient_against_real_workers(laptop, tmp_path, example_models):
    plan, started = laptop
    rng = np.random.default_rng(3)
    x = rng.random((5, 30), dtype=np.float32)
    full = rng.random((MAX_BATCH, 30), dtype=np.float32)
    over = rng.random((MAX_BATCH + 1, 30), dtype=np.float32)
    text = np.array([t.encode() for t in TEXTS], dtype=object)
    np.savez(tmp_path / "in.npz", features=x, text=text, max_batch=full, over_batch=over)
    out_path = tmp_path / "out.npz"
    against_gateway(plan, started, "triton_calls.py", tmp_path / "in.npz", out_path)
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
    np.testing.assert_allclose(
        out["intent"], intent_reference(plan, example_models, text), rtol=1e-5, atol=1e-6
    )

    bad = json.loads(str(out["bad_shape"]))
    assert bad["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "features" in bad["message"] and "[-1, 30]" in bad["message"]
    assert json.loads(str(out["not_found"]))["status"] == "StatusCode.NOT_FOUND"
    stats = json.loads(str(out["statistics"]))["model_stats"]
    assert {s["version"] for s in stats} == {"1", "2"}

    # Every refusal tritonclient's API can produce: the code, the tensor, both sides.
    invalid = {case: status(answer) for case, answer in json.loads(str(out["invalid"])).items()}
    expected_refusals = {
        "unknown_model": ("NOT_FOUND", ["`no-such-model`"]),
        "unknown_version": ("NOT_FOUND", ["`fraud-scorer`", "version `9`", "1, 2"]),
        "route_version": ("INVALID_ARGUMENT", ["`payments`", "`1`"]),
        "wrong_datatype": ("INVALID_ARGUMENT", ["`features`", "FP32[-1, 30]", "FP64[5, 30]"]),
        "bytes_for_fp32": ("INVALID_ARGUMENT", ["`features`", "FP32[-1, 30]", "BYTES[2]"]),
        "wrong_shape": ("INVALID_ARGUMENT", ["`features`", "FP32[-1, 30]", "FP32[5, 29]"]),
        "wrong_rank": ("INVALID_ARGUMENT", ["`features`", "FP32[-1, 30]", "FP32[150]"]),
        "raw_length": ("INVALID_ARGUMENT", ["`features`", "[4, 30]", "480 bytes", "got 600"]),
        "bytes_raw_length": ("INVALID_ARGUMENT", ["`text`", "BYTES[3]", "3 elements", "got 2"]),
        "missing_input": ("INVALID_ARGUMENT", ["missing input `features`", "FP32[-1, 30]"]),
        "extra_input": ("INVALID_ARGUMENT", ["unknown input `extra`", "`features` FP32[-1, 30]"]),
        "duplicate_input": ("INVALID_ARGUMENT", ["`features`", "twice"]),
        "unknown_output": ("INVALID_ARGUMENT", ["unknown output `nope`", "`score` FP32[-1, 2]"]),
        # The tensor's name is not in these two yet: see test_over_batch_names_the_tensor.
        "over_batch": ("INVALID_ARGUMENT", ["fraud-scorer@1", "batch of 33", "of 32"]),
        "over_batch_bytes": ("INVALID_ARGUMENT", ["support-intent@1", "batch of 17", "of 16"]),
    }
    assert invalid.keys() == expected_refusals.keys()
    for case, (code, parts) in expected_refusals.items():
        assert invalid[case][0] == code, (case, invalid[case])
        for part in parts:
            assert part in invalid[case][1], (case, part, invalid[case])

    # Batches of fraud-scorer@1: one row, five, its max; max + 1 is refused.
    v1 = example_models / "fraud.onnx"
    for name, rows in (("one_row", x[:1]), ("rows", x), ("max_batch", full)):
        assert out[name].shape == (len(rows), 2), name
        np.testing.assert_allclose(
            out[name], reference(v1, features=rows), rtol=1e-5, atol=1e-6, err_msg=name
        )
    assert str(out["max_batch_version"]) == "1"
    code, message = status(out["over_batch"])
    assert code == "INVALID_ARGUMENT" and "33" in message and "32" in message

    # ModelStatistics grew by exactly those three requests (the refused one ran nothing).
    (before,) = json.loads(str(out["stats_before"]))["model_stats"]
    (after,) = json.loads(str(out["stats_after"]))["model_stats"]
    assert (after["name"], after["version"]) == ("fraud-scorer", "1")

    def count(row, *path) -> int:
        for key in path:
            row = row.get(key, {})
        return int(row or 0)

    assert count(after, "inference_count") - count(before, "inference_count") == 1 + 5 + MAX_BATCH
    assert count(after, "execution_count") - count(before, "execution_count") == 3
    success = ("inference_stats", "success", "count")
    assert count(after, *success) - count(before, *success) == 3
    # Before the snapshot version 1 may not have served yet (the `payments` route
    # picks versions at random), so only the snapshot after must carry a time.
    assert int(after["last_inference"]) >= int(before.get("last_inference", 0))
    assert int(after["last_inference"]) > 0
    sizes = {int(b["batch_size"]) for b in after["batch_stats"]}
    assert {1, 5, MAX_BATCH} <= sizes and MAX_BATCH + 1 not in sizes
    every = json.loads(str(out["stats_all"]))["model_stats"]
    assert {(s["name"], s["version"]) for s in every} == {
        ("fraud-lite", "1"),
        ("fraud-scorer", "1"),
        ("fraud-scorer", "2"),
        ("support-intent", "1"),
    }

    # The stream: answers in order with their ids, the bad third one in-band.
    answers = json.loads(str(out["stream"]))
    assert [a.get("id") for a in answers] == ["t0", "t1", None, "t3", "t4"]
    assert all(a["version"] == "1" for a in answers if "id" in a)
    assert "`features`" in answers[2]["error"] and "FP32[-1, 30]" in answers[2]["error"]
    assert "FP32[5, 29]" in answers[2]["error"]
    expected = reference(v1, features=x)
    np.testing.assert_allclose(
        out["stream_scores"],
        np.concatenate([expected, expected[1:], expected[1:], expected]),
        rtol=1e-5,
        atol=1e-6,
    )


def test_tritonclient_aio_against_real_workers(laptop, tmp_path, example_models):
    plan, started = laptop
    x = np.random.default_rng(4).random((5, 30), dtype=np.float32)
    text = np.array([t.encode() for t in TEXTS], dtype=object)
    np.savez(tmp_path / "in.npz", features=x, text=text)
    out_path = tmp_path / "out.npz"
    against_gateway(plan, started, "triton_aio_calls.py", tmp_path / "in.npz", out_path)
    out = np.load(out_path)
    assert out["live"] and out["ready"] and out["model_ready"]
    meta = json.loads(str(out["metadata"]))
    assert meta["name"] == "support-intent" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": ["-1"]}]
    config = json.loads(str(out["config"]))["config"]
    assert config["name"] == "fraud-scorer" and config["max_batch_size"] == MAX_BATCH
    assert config["input"] == [{"name": "features", "data_type": "TYPE_FP32", "dims": ["30"]}]

    expected = reference(example_models / "fraud.onnx", features=x)
    assert str(out["fraud_served"]) == "a0 fraud-scorer@1"
    np.testing.assert_allclose(out["fraud"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        out["intent"], intent_reference(plan, example_models, text), rtol=1e-5, atol=1e-6
    )
    assert json.loads(str(out["concurrent_ids"])) == [f"c{i}" for i in range(len(x))]
    np.testing.assert_allclose(out["concurrent"], expected, rtol=1e-5, atol=1e-6)

    code, message = status(out["not_found"])
    assert code == "NOT_FOUND" and "`no-such-model`" in message
    code, message = status(out["bad_shape"])
    assert code == "INVALID_ARGUMENT"
    assert "`features`" in message and "FP32[-1, 30]" in message and "FP32[5, 29]" in message

    answers = json.loads(str(out["stream"]))
    assert [a.get("id") for a in answers] == ["s0", None, "s2"]
    assert "`features`" in answers[1]["error"] and "FP32[5, 29]" in answers[1]["error"]
    np.testing.assert_allclose(
        out["stream_scores"], np.concatenate([expected, expected]), rtol=1e-5, atol=1e-6
    )

    # a0 (5 rows), c0..c4 (1 row each), s0 and s2 (5 rows each): all on fraud-scorer@1.
    (row,) = json.loads(str(out["statistics"]))["model_stats"]
    assert (row["name"], row["version"]) == ("fraud-scorer", "1")
    assert int(row["inference_stats"]["success"]["count"]) == 1 + len(x) + 2
    assert int(row["inference_count"]) == 4 * len(x)


def test_typed_contents_and_requests_tritonclient_cannot_send(laptop, example_models):
    """Our own stubs: typed `contents` answer as raw does; malformed requests are refused."""
    plan, started = laptop
    x = np.random.default_rng(6).random((4, 30), dtype=np.float32)
    text = np.array([t.encode() for t in TEXTS], dtype=object)

    def request(model: str, inputs: dict, *, raw: bool, id: str = "") -> pb.ModelInferRequest:
        domain = InferRequest(model, "1", id, inputs)
        return converters.infer_request_to_proto(domain, raw=raw)

    async def refused(stub, message: pb.ModelInferRequest) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ModelInfer(message, timeout=30)
        return caught.value.code(), caught.value.details()

    async def scenario():
        gateway, server, address = await serving(plan, [w.address for w in started])
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                answers = {}
                for raw in (True, False):
                    typed = request("fraud-scorer", {"features": x}, raw=raw, id=f"f{raw}")
                    assert bool(typed.raw_input_contents) == raw
                    assert typed.inputs[0].HasField("contents") != raw
                    reply = await stub.ModelInfer(typed, timeout=30)
                    assert reply.id == f"f{raw}" and reply.model_version == "1"
                    answers["fraud", raw] = converters.infer_response_from_proto(reply)["score"]
                    words = request("support-intent", {"text": text}, raw=raw)
                    if not raw:
                        assert list(words.inputs[0].contents.bytes_contents) == list(text)
                    reply = await stub.ModelInfer(words, timeout=30)
                    answers["intent", raw] = converters.infer_response_from_proto(reply)["intent"]

                # Requests tritonclient's API cannot build.
                cases = {}
                message = request("fraud-scorer", {"features": x}, raw=False)
                message.inputs[0].contents.fp32_contents.pop()
                cases["typed_count"] = message
                message = request("fraud-scorer", {"features": x}, raw=True)
                message.inputs[0].contents.fp32_contents.extend([0.0])
                cases["raw_and_typed"] = message
                message = request("fraud-scorer", {"features": x}, raw=True)
                message.raw_input_contents.append(b"")
                cases["raw_entries"] = message
                message = request("fraud-scorer", {"features": x.astype(np.float64)}, raw=False)
                message.inputs[0].datatype = "FP32"  # values in fp64_contents
                cases["typed_field"] = message
                message = request("fraud-scorer", {"features": x}, raw=True)
                message.inputs[0].datatype = "FLOAT"
                cases["unknown_datatype"] = message
                message = request("fraud-scorer", {"features": x}, raw=True)
                message.inputs[0].shape[1] = -30
                cases["negative_dim"] = message
                message = request("fraud-scorer", {"features": x}, raw=True)
                message.raw_input_contents[0] = message.raw_input_contents[0][:-4]
                cases["raw_length"] = message
                message = request("fraud-scorer", {"features": x}, raw=True)
                message.model_version = "7"
                cases["unknown_version"] = message
                big = np.resize(x, (MAX_BATCH + 1, 30))
                cases["over_batch_typed"] = request("fraud-scorer", {"features": big}, raw=False)
                outcomes = {case: await refused(stub, m) for case, m in cases.items()}
                stats = gateway.statistics("fraud-scorer", "1")
                return answers, outcomes, stats
        finally:
            await shutdown(gateway, server)

    answers, outcomes, stats = asyncio.run(asyncio.wait_for(scenario(), 60))
    np.testing.assert_array_equal(answers["fraud", False], answers["fraud", True])
    np.testing.assert_allclose(
        answers["fraud", True],
        reference(example_models / "fraud.onnx", features=x),
        rtol=1e-5,
        atol=1e-6,
    )
    np.testing.assert_array_equal(answers["intent", False], answers["intent", True])
    np.testing.assert_allclose(
        answers["intent", True], intent_reference(plan, example_models, text), rtol=1e-5, atol=1e-6
    )

    invalid = grpc.StatusCode.INVALID_ARGUMENT
    expected = {
        "typed_count": (invalid, ["`features`", "[4, 30]", "120 FP32 values", "got 119"]),
        "raw_and_typed": (invalid, ["`features`", "raw_input_contents"]),
        "raw_entries": (invalid, ["2 entries", "1 input"]),
        "typed_field": (invalid, ["`features`", "fp32_contents", "fp64_contents"]),
        "unknown_datatype": (invalid, ["`features`", "'FLOAT'"]),
        "negative_dim": (invalid, ["`features`", "[4, -30]"]),
        "raw_length": (invalid, ["`features`", "[4, 30]", "480 bytes", "got 476"]),
        "unknown_version": (grpc.StatusCode.NOT_FOUND, ["`fraud-scorer`", "`7`", "1, 2"]),
        "over_batch_typed": (invalid, ["batch of 33", "of 32"]),
    }
    assert outcomes.keys() == expected.keys()
    for case, (code, parts) in expected.items():
        assert outcomes[case][0] == code, (case, outcomes[case])
        for part in parts:
            assert part in outcomes[case][1], (case, part, outcomes[case])
    (row,) = stats  # the raw and the typed request; the refused ones ran nothing
    assert row.success.count == 2 and row.inference_count == 2 * len(x)


def test_over_batch_names_the_tensor():
    """No worker needed: the batch check runs before a shard is picked."""
    plan = Compilation.from_path(SPECS / "demo.infer").plan
    big = np.zeros((MAX_BATCH + 1, 30), np.float32)

    async def scenario():
        gateway = Gateway(plan)
        await gateway.start()
        try:
            request = InferRequest("fraud-scorer", "1", "", {"features": big})
            with pytest.raises(Exception) as caught:
                await gateway.infer(request, deadline=None)
            return caught.value
        finally:
            await gateway.drain(1.0)

    error = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert type(error).__name__ == "InvalidArgument"
    message = str(error)
    assert "33" in message and "32" in message
    assert "`features`" in message


def test_stream_health_and_a_worker_killed_mid_run(laptop, example_models):
    plan, started = laptop
    x = np.random.default_rng(5).random((2, 30), dtype=np.float32)
    expected = reference(example_models / "fraud.onnx", features=x)

    def request(i: int, model: str = "fraud-scorer", features=x) -> pb.ModelInferRequest:
        domain = InferRequest(model, "1", f"s{i}", {"features": features})
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
