"""The worker's core and its gRPC servicer, with fake backends: no sockets, no processes.

The servicer's coroutines (and `InferStream`'s async generator) are driven
directly on an event loop here, with a fake context; tests/integration runs
them behind a real grpc.aio server.

The plan here is built with `model_construct`, holding only what the worker
reads (names, signature, shards, artifact hash, precision, target), so these
tests do not depend on the compiler or on model files.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import grpc
import numpy as np
import pytest

from inferplane.backends import tensors
from inferplane.backends.host_location import HostLocation
from inferplane.backends.logfmt import kv
from inferplane.backends.runtime import BadBatch, LoadFailed, RuntimeInfo, WrongDevice
from inferplane.backends.worker import (
    Draining,
    HardwareMissing,
    ModelNotFound,
    ModelNotReady,
    ModelState,
    TargetError,
    WorkerCore,
    warm_up_sizes,
)
from inferplane.backends.worker_service import (
    QUICK_NS,
    STATUS,
    WorkerService,
    check_listen,
    ready_line,
    status_of,
)
from inferplane.compiler import plan
from inferplane.protos import worker_pb2 as pb

# -- a plan with what the worker reads ---------------------------------------------------


def _tensor(name: str, datatype: str, *dims: int) -> plan.TensorSpec:
    return plan.TensorSpec(name=name, datatype=datatype, shape=list(dims))


def _model(name: str, version: int, targets: dict[str, int], signature: plan.Signature):
    shards = [
        plan.Shard.model_construct(
            target=target,
            batching=plan.Batching(max_batch_size=size, window_s=0.001, adaptive=True),
        )
        for target, size in targets.items()
    ]
    return plan.Model.model_construct(
        name=name,
        version=version,
        precision="fp32",
        artifact=plan.Artifact(path=f"models/{name}.onnx", sha256=f"sha-{name}-{version}"),
        signature=signature,
        shards=shards,
    )


VECTOR = plan.Signature(inputs=[_tensor("x", "FP32", -1, 3)], outputs=[_tensor("y", "FP32", -1, 3)])
TEXT = plan.Signature(
    inputs=[_tensor("text", "BYTES", -1)], outputs=[_tensor("length", "INT64", -1)]
)
TWO_OUT = plan.Signature(
    inputs=[_tensor("a", "FP32", -1, 2), _tensor("b", "INT64", -1)],
    outputs=[_tensor("sum", "FP32", -1), _tensor("count", "INT64", -1)],
)


def _target(name: str, hardware: str = "cpu") -> plan.Target:
    return plan.Target.model_construct(
        name=name,
        hardware=hardware,
        location=plan.Location(kind="onprem", site="fra-dc1"),
        workers=[],
    )


def make_plan(*models: plan.Model, hardware: str = "cpu") -> plan.Plan:
    return plan.Plan.model_construct(
        content_hash="sha256:abc",
        targets=[_target("box", hardware), _target("elsewhere")],
        models=list(models),
    )


DEFAULT_PLAN = make_plan(
    _model("echo", 1, {"box": 8}, VECTOR),
    _model("echo", 2, {"box": 5}, VECTOR),
    _model("text", 1, {"box": 4}, TEXT),
    _model("remote", 1, {"elsewhere": 4}, VECTOR),
)

# -- fake backends -----------------------------------------------------------------------


class Echo:
    """y = x; text → lengths; records its warm-up sizes."""

    device = "cpu"
    fallback = False

    def __init__(self, model: plan.Model, target: plan.Target, base_dir, **options):
        self.model, self.target, self.options = model, target, options
        self.warmed: list[int] = []

    def load(self) -> None:
        pass

    def warm_up(self, batch_sizes: Sequence[int]) -> None:
        self.warmed = list(batch_sizes)

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if "text" in inputs:
            return {"length": np.array([len(t) for t in inputs["text"]], dtype=np.int64)}
        return {"y": inputs["x"] * 1}

    def describe(self) -> RuntimeInfo:
        return RuntimeInfo("fake 1.0", self.device, ("FakeProvider",), self.fallback)


class FailsToLoad(Echo):
    def load(self) -> None:
        raise LoadFailed("model echo@2: the artifact's signature differs from the plan's")


class CrashesOnLoad(Echo):
    def load(self) -> None:
        raise RuntimeError("segfault avoided")


class CrashesOnWarmUp(Echo):
    def warm_up(self, batch_sizes: Sequence[int]) -> None:
        raise MemoryError("out of memory at batch 8")


class OnCpuOnly(Echo):
    """What onnxruntime reports on a host without the gpu."""

    fallback = True


class RefusesDevice(Echo):
    def load(self) -> None:
        raise WrongDevice("model echo@1 on target box: no CUDA here; or run with --cpu-fallback")


class RejectsBatch(Echo):
    def infer(self, inputs):
        raise BadBatch("onnxruntime rejected the batch: bad values")


class Broken(Echo):
    def infer(self, inputs):
        raise ZeroDivisionError("division by zero")


class ForgetsOutput(Echo):
    def infer(self, inputs):
        return {}


class Slow(Echo):
    """Blocks inside `infer` until released: a batch in flight."""

    started = threading.Event()
    release = threading.Event()

    def infer(self, inputs):
        Slow.started.set()
        assert Slow.release.wait(10)
        return super().infer(inputs)


def factory(kinds: dict[tuple[str, int], type[Echo]] | None = None, made: list | None = None):
    kinds = kinds or {}

    def create(model, target, base_dir, **options):
        backend = kinds.get((model.name, model.version), Echo)(model, target, base_dir, **options)
        if made is not None:
            made.append(backend)
        return backend

    return create


def core_with(kinds=None, the_plan=DEFAULT_PLAN, made=None, **options) -> WorkerCore:
    core = WorkerCore(the_plan, "box", Path("."), backend_factory=factory(kinds, made), **options)
    core.load_all()
    return core


def batch(*rows: list[float]) -> dict[str, np.ndarray]:
    return {"x": np.array(rows, dtype=np.float32)}


def states(core: WorkerCore) -> dict[str, ModelState]:
    return {f"{m.name}@{m.version}": m.state for m in core.health().models}


# -- targets and loading -----------------------------------------------------------------


def test_unknown_target_is_refused_with_the_known_ones():
    with pytest.raises(TargetError, match=r"no target `nope`; its targets are: box, elsewhere"):
        WorkerCore(DEFAULT_PLAN, "nope", Path("."), backend_factory=factory())


def test_a_target_without_models_is_refused():
    the_plan = make_plan(_model("remote", 1, {"elsewhere": 4}, VECTOR))
    with pytest.raises(TargetError, match="`box` serves no model"):
        WorkerCore(the_plan, "box", Path("."), backend_factory=factory())


def test_only_the_targets_models_load_and_become_ready():
    made: list[Echo] = []
    core = core_with(made=made)
    assert states(core) == {
        "echo@1": ModelState.READY,
        "echo@2": ModelState.READY,
        "text@1": ModelState.READY,
    }
    assert {(b.model.name, b.model.version) for b in made} == {
        ("echo", 1),
        ("echo", 2),
        ("text", 1),
    }
    assert all(b.target.name == "box" for b in made)
    assert core.health().ready


def test_models_are_loading_before_load_all():
    core = WorkerCore(DEFAULT_PLAN, "box", Path("."), backend_factory=factory())
    assert set(states(core).values()) == {ModelState.LOADING}
    assert not core.health().ready
    with pytest.raises(ModelNotReady, match="`echo@1` is still loading"):
        core.infer("echo", 1, batch([1, 2, 3]))


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        (FailsToLoad, "signature differs from the plan's"),
        (CrashesOnLoad, "loading failed: RuntimeError: segfault avoided"),
        (CrashesOnWarmUp, "warming up failed: MemoryError: out of memory at batch 8"),
    ],
)
def test_a_model_that_fails_to_load_fails_alone(kind, reason):
    core = core_with({("echo", 2): kind})
    health = {f"{m.name}@{m.version}": m for m in core.health().models}
    assert health["echo@2"].state is ModelState.FAILED
    assert reason in health["echo@2"].reason
    assert health["echo@1"].state is ModelState.READY
    assert not core.health().ready
    with pytest.raises(ModelNotReady, match=r"`echo@2` failed to load: .*" + reason.split(":")[0]):
        core.infer("echo", 2, batch([1, 2, 3]))
    assert core.infer("echo", 1, batch([1, 2, 3])).batch_size == 1


def test_a_factory_that_raises_fails_the_model():
    def create(model, target, base_dir, **options):
        if model.name == "text":
            raise ModuleNotFoundError("No module named 'inferplane.backends.jax_backend'")
        return Echo(model, target, base_dir, **options)

    core = WorkerCore(DEFAULT_PLAN, "box", Path("."), backend_factory=create)
    core.load_all()
    text = next(m for m in core.health().models if m.name == "text")
    assert text.state is ModelState.FAILED
    assert text.reason.startswith("creating its backend failed: ModuleNotFoundError")


def test_warm_up_sizes_are_powers_of_two_then_the_maximum():
    assert warm_up_sizes(1) == [1]
    assert warm_up_sizes(2) == [1, 2]
    assert warm_up_sizes(5) == [1, 2, 4, 5]
    assert warm_up_sizes(8) == [1, 2, 4, 8]
    assert warm_up_sizes(128) == [1, 2, 4, 8, 16, 32, 64, 128]


def test_each_model_warms_up_at_its_shards_batch_sizes():
    made: list[Echo] = []
    core_with(made=made)
    warmed = {(b.model.name, b.model.version): b.warmed for b in made}
    assert warmed == {("echo", 1): [1, 2, 4, 8], ("echo", 2): [1, 2, 4, 5], ("text", 1): [1, 2, 4]}


def test_backends_get_the_fallback_flag_and_cache_dir(tmp_path):
    made: list[Echo] = []
    core_with(made=made, cpu_fallback=True, cache_dir=tmp_path)
    assert all(b.options == {"cpu_fallback": True, "cache_dir": tmp_path} for b in made)


# -- hardware ------------------------------------------------------------------------------

GPU_PLAN = make_plan(
    _model("echo", 1, {"box": 8}, VECTOR), _model("text", 1, {"box": 4}, TEXT), hardware="gpu"
)


def test_a_gpu_target_on_a_cpu_host_refuses_to_start():
    core = WorkerCore(GPU_PLAN, "box", Path("."), backend_factory=factory({}, None))
    with pytest.raises(HardwareMissing, match=r"refuses to start: .*hardware gpu.*--cpu-fallback"):
        core.load_all()


def test_a_backend_that_refuses_the_device_counts_as_missing_hardware():
    kinds = {("echo", 1): RefusesDevice, ("text", 1): RefusesDevice}
    core = WorkerCore(GPU_PLAN, "box", Path("."), backend_factory=factory(kinds))
    with pytest.raises(HardwareMissing, match="no CUDA here"):
        core.load_all()


def test_one_model_on_the_wrong_device_fails_alone():
    class OnGpu(Echo):
        device = "gpu"

    core = WorkerCore(GPU_PLAN, "box", Path("."), backend_factory=factory({("echo", 1): OnGpu}))
    core.load_all()
    assert states(core) == {"echo@1": ModelState.READY, "text@1": ModelState.FAILED}
    health = core.health()
    assert health.device == "gpu"
    assert not health.cpu_fallback


def test_cpu_fallback_serves_a_gpu_target_and_says_so():
    kinds = {("echo", 1): OnCpuOnly, ("text", 1): OnCpuOnly}
    core = core_with(kinds, the_plan=GPU_PLAN, cpu_fallback=True)
    health = core.health()
    assert health.ready
    assert (health.hardware, health.device, health.cpu_fallback) == ("gpu", "cpu", True)
    assert core.infer("echo", 1, batch([1, 2, 3])).batch_size == 1


# -- batches -------------------------------------------------------------------------------


def test_infer_returns_outputs_batch_size_and_compute_time():
    ticks = iter([100, 350])
    core = WorkerCore(
        DEFAULT_PLAN, "box", Path("."), backend_factory=factory(), clock=lambda: next(ticks)
    )
    core.load_all()
    result = core.infer("echo", 1, batch([1, 2, 3], [4, 5, 6]))
    np.testing.assert_array_equal(result.outputs["y"], [[1, 2, 3], [4, 5, 6]])
    assert (result.batch_size, result.compute_ns) == (2, 250)


def test_bytes_inputs_reach_the_backend_as_bytes():
    core = core_with()
    text = np.array([b"hello", b"", "caf\u00e9".encode()], dtype=object)
    result = core.infer("text", 1, {"text": text})
    assert result.outputs["length"].tolist() == [5, 0, 5]


def test_version_0_means_the_highest_version():
    core = core_with({("echo", 1): FailsToLoad})
    assert core.infer("echo", 0, batch([1, 2, 3])).batch_size == 1  # echo@2 is ready


def test_unknown_model_or_version_names_what_the_target_serves():
    core = core_with()
    with pytest.raises(ModelNotFound, match=r"no model `nope`; it serves echo@1, echo@2, text@1"):
        core.infer("nope", 1, batch([1, 2, 3]))
    with pytest.raises(
        ModelNotFound, match=r"no version 7 of model `echo`; it serves echo@1, echo@2"
    ):
        core.infer("echo", 7, batch([1, 2, 3]))
    with pytest.raises(ModelNotFound, match=r"no model `remote`"):
        core.infer("remote", 1, batch([1, 2, 3]))  # in the plan, on another target


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            {"x": np.zeros((2, 3), np.float64)},
            r"model echo@1: input `x`: expected FP32\[-1, 3\], got FP64\[2, 3\]",
        ),
        (
            {"x": np.zeros((2, 4), np.float32)},
            r"input `x`: expected FP32\[-1, 3\], got FP32\[2, 4\]",
        ),
        ({"x": np.zeros(3, np.float32)}, r"got FP32\[3\]"),
        (
            {"z": np.zeros((1, 3), np.float32)},
            r"unknown input `z`; the model takes `x` FP32\[-1, 3\]",
        ),
        ({}, r"missing input `x` FP32\[-1, 3\]"),
        ({"x": np.zeros((0, 3), np.float32)}, "the batch is empty"),
        ({"x": np.zeros((9, 3), np.float32)}, r"batch of 9 is above its max_batch_size of 8"),
        ({"x": np.zeros((2, 3), ">f4")}, r"got FP32 \(big-endian\)\[2, 3\]"),
    ],
)
def test_a_batch_that_does_not_fit_is_refused_with_the_tensor_named(inputs, message):
    core = core_with()
    with pytest.raises(BadBatch, match=message):
        core.infer("echo", 1, inputs)
    assert core.infer("echo", 1, batch([1, 2, 3])).batch_size == 1  # and it still serves


def test_inputs_must_agree_on_the_batch_size():
    core = core_with(the_plan=make_plan(_model("two", 1, {"box": 8}, TWO_OUT)))
    inputs = {"a": np.zeros((2, 2), np.float32), "b": np.zeros(3, np.int64)}
    with pytest.raises(BadBatch, match=r"disagree on the batch size: `a` has 2, `b` has 3"):
        core.infer("two", 1, inputs)


def test_outputs_can_be_picked_and_unknown_ones_are_refused():
    core = core_with()
    assert list(core.infer("echo", 1, batch([1, 2, 3]), ["y"]).outputs) == ["y"]
    with pytest.raises(
        BadBatch, match=r"unknown output `score`; the model gives `y` FP32\[-1, 3\]"
    ):
        core.infer("echo", 1, batch([1, 2, 3]), ["score"])


def test_backend_errors_propagate_and_count_as_failures():
    kinds = {("echo", 1): RejectsBatch, ("echo", 2): Broken, ("text", 1): ForgetsOutput}
    core = core_with(kinds)
    with pytest.raises(BadBatch, match="rejected the batch"):
        core.infer("echo", 1, batch([1, 2, 3]))
    with pytest.raises(ZeroDivisionError):
        core.infer("echo", 2, batch([1, 2, 3]))
    with pytest.raises(RuntimeError, match="returned no output `length`"):
        core.infer("text", 1, {"text": np.array([b"a"], dtype=object)})
    failures = {(m.name, m.version): m.failure_count for m in core.statistics()}
    assert failures == {("echo", 1): 1, ("echo", 2): 1, ("text", 1): 1}
    assert core.in_flight == 0


# -- statistics ----------------------------------------------------------------------------


def test_statistics_count_batches_by_size():
    ticks = iter(range(0, 10_000, 10))
    core = WorkerCore(
        DEFAULT_PLAN, "box", Path("."), backend_factory=factory(), clock=lambda: next(ticks)
    )
    core.load_all()
    for rows in (1, 2, 2, 4):
        core.infer("echo", 1, {"x": np.zeros((rows, 3), np.float32)})
    with pytest.raises(BadBatch):
        core.infer("echo", 1, {"x": np.zeros((1, 4), np.float32)})
    stats = {(m.name, m.version): m for m in core.statistics()}
    echo = stats[("echo", 1)]
    assert (echo.inference_count, echo.execution_count, echo.failure_count) == (9, 4, 1)
    assert echo.compute_ns == 40
    assert [(b.batch_size, b.count, b.compute_ns) for b in echo.batches] == [
        (1, 1, 10),
        (2, 2, 20),
        (4, 1, 10),
    ]
    assert stats[("text", 1)].execution_count == 0  # listed, with nothing yet


# -- health ---------------------------------------------------------------------------------


def test_health_describes_the_target_and_each_model():
    core = core_with({("echo", 2): FailsToLoad})
    health = core.health()
    assert (health.target, health.hardware, health.device) == ("box", "cpu", "cpu")
    assert (health.location_kind, health.location_site) == ("onprem", "fra-dc1")
    assert health.plan_hash == "sha256:abc"
    assert health.worker_version
    assert not health.ready and not health.draining and not health.cpu_fallback
    echo = next(m for m in health.models if (m.name, m.version) == ("echo", 1))
    assert (echo.runtime, echo.providers, echo.device) == ("fake 1.0", ("FakeProvider",), "cpu")
    assert (echo.artifact_sha256, echo.precision, echo.max_batch_size) == ("sha-echo-1", "fp32", 8)
    failed = next(m for m in health.models if (m.name, m.version) == ("echo", 2))
    assert (failed.runtime, failed.device) == ("", "")


def test_health_reports_the_hosts_location_else_the_declared_one():
    declared = core_with().health()
    assert (declared.location_kind, declared.location_site) == ("onprem", "fra-dc1")
    assert declared.location_source == "declared"
    host = core_with(location=HostLocation("cloud", "gcp:europe-west1")).health()
    assert (host.location_kind, host.location_site) == ("cloud", "gcp:europe-west1")
    assert host.location_source == "host"
    kind_only = core_with(location=HostLocation("onprem")).health()
    assert (kind_only.location_kind, kind_only.location_site) == ("onprem", "")


# -- draining -------------------------------------------------------------------------------


def test_draining_refuses_new_batches_and_waits_for_running_ones():
    Slow.started.clear()
    Slow.release.clear()
    core = core_with({("echo", 1): Slow})
    results = []
    runner = threading.Thread(
        target=lambda: results.append(core.infer("echo", 1, batch([1, 2, 3])))
    )
    runner.start()
    assert Slow.started.wait(10)
    core.begin_drain()
    assert core.health().draining
    assert core.in_flight == 1
    with pytest.raises(Draining, match="is draining"):
        core.infer("echo", 2, batch([1, 2, 3]))
    assert not core.wait_idle(0.05)
    Slow.release.set()
    assert core.wait_idle(10)
    runner.join(10)
    assert results and results[0].batch_size == 1


# -- the servicer: conversion and the status table ----------------------------------------


class Aborted(Exception):
    pass


class FakeContext:
    async def abort(self, code, details):
        self.code, self.details = code, details
        raise Aborted(details)


def _request(model="echo", version=1, inputs=(), outputs=(), seq=0):
    return pb.InferRequest(
        model=model, version=version, inputs=list(inputs), outputs=list(outputs), id="r1", seq=seq
    )


def _pb_tensor(name: str, array: np.ndarray, **override) -> pb.Tensor:
    datatype, shape, raw = tensors.to_raw(array)
    fields = {"name": name, "datatype": datatype, "shape": shape, "raw": raw, **override}
    return pb.Tensor(**fields)


def _row(model="echo", version=1, seq=0) -> pb.InferRequest:
    return _request(model, version, [_pb_tensor("x", np.zeros((1, 3), np.float32))], seq=seq)


def _call(service, method, request):
    context = FakeContext()

    async def call():
        return await getattr(service, method)(request, context)

    try:
        return asyncio.run(call()), None
    except Aborted:
        return None, context


@pytest.fixture
def service_of():
    """`service_of(core)`: a servicer whose batch pool is shut down after the test."""
    made: list[WorkerService] = []

    def make(core: WorkerCore) -> WorkerService:
        made.append(WorkerService(core, threads=4))
        return made[-1]

    yield make
    for service in made:
        service.close()


def test_the_servicer_runs_a_batch_in_the_raw_layout(service_of):
    service = service_of(core_with())
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    response, _ = _call(service, "Infer", _request(inputs=[_pb_tensor("x", x)]))
    (out,) = response.outputs
    assert (out.name, out.datatype, list(out.shape), response.batch_size) == (
        "y",
        "FP32",
        [2, 3],
        2,
    )
    np.testing.assert_array_equal(tensors.from_raw(out.name, out.datatype, out.shape, out.raw), x)
    text = np.array([b"ab", b"xyz"], dtype=object)
    response, _ = _call(service, "Infer", _request("text", 1, [_pb_tensor("text", text)]))
    assert tensors.from_raw("length", "INT64", [2], response.outputs[0].raw).tolist() == [2, 3]


# A request, the status it gets and its message: the same on Infer and InferStream.
ERROR_CASES = [
    (
        _request(inputs=[_pb_tensor("x", np.zeros((1, 3), np.float32), raw=b"\0" * 5)]),
        grpc.StatusCode.INVALID_ARGUMENT,
        r"tensor `x`: FP32\[1, 3\] needs 12 bytes, got 5",
    ),
    (
        _request(inputs=[_pb_tensor("x", np.zeros((1, 3), np.int32))]),
        grpc.StatusCode.INVALID_ARGUMENT,
        r"model echo@1: input `x`: expected FP32\[-1, 3\], got INT32\[1, 3\]",
    ),
    (
        _request(inputs=[_pb_tensor("x", np.zeros((1, 3), np.float32), datatype="FP99")]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "unknown datatype 'FP99'",
    ),
    (
        _request(inputs=[_pb_tensor("x", np.zeros((1, 3), np.float32))] * 2),
        grpc.StatusCode.INVALID_ARGUMENT,
        "tensor `x` appears twice",
    ),
    (_request("nope"), grpc.StatusCode.NOT_FOUND, "serves no model `nope`"),
    (
        _request("echo", 2, [_pb_tensor("x", np.zeros((1, 3), np.float32))]),
        grpc.StatusCode.UNAVAILABLE,
        "failed to load",
    ),
    (
        _request("text", 1, [_pb_tensor("text", np.array([b"a"], dtype=object))]),
        grpc.StatusCode.INTERNAL,
        "internal error in the worker: ZeroDivisionError",
    ),
]
ERROR_KINDS = {
    ("echo", 2): FailsToLoad,  # UNAVAILABLE
    ("text", 1): Broken,  # INTERNAL
}


@pytest.mark.parametrize(("request_", "code", "message"), ERROR_CASES)
def test_errors_map_to_statuses_through_one_table(request_, code, message, caplog, service_of):
    service = service_of(core_with(ERROR_KINDS))
    response, context = _call(service, "Infer", request_)
    assert response is None
    assert context.code == code
    assert re.search(message, context.details), context.details
    if code is grpc.StatusCode.INTERNAL:
        assert "Traceback" in caplog.text
    ok, _ = _call(service, "Infer", _row())
    assert ok.batch_size == 1  # the worker serves on


def test_draining_is_unavailable_and_unknown_errors_are_internal():
    assert status_of(Draining("x")) is grpc.StatusCode.UNAVAILABLE
    assert status_of(ModelNotReady("x")) is grpc.StatusCode.UNAVAILABLE
    assert status_of(KeyError("x")) is grpc.StatusCode.INTERNAL
    assert STATUS[BadBatch] is STATUS[tensors.TensorError] is grpc.StatusCode.INVALID_ARGUMENT


def test_health_and_statistics_convert_every_field(service_of):
    core = core_with({("echo", 2): FailsToLoad})
    service = service_of(core)
    _call(service, "Infer", _request(inputs=[_pb_tensor("x", np.zeros((2, 3), np.float32))]))
    health, _ = _call(service, "Health", pb.HealthRequest())
    assert (health.target, health.hardware, health.device, health.location_site) == (
        "box",
        "cpu",
        "cpu",
        "fra-dc1",
    )
    assert health.location_source == "declared"
    assert not health.ready
    by_name = {(m.name, m.version): m for m in health.models}
    assert by_name[("echo", 1)].state == pb.MODEL_STATE_READY
    assert list(by_name[("echo", 1)].providers) == ["FakeProvider"]
    assert by_name[("echo", 2)].state == pb.MODEL_STATE_FAILED
    assert "signature differs" in by_name[("echo", 2)].reason
    stats, _ = _call(service, "Statistics", pb.StatisticsRequest())
    echo = next(m for m in stats.models if (m.name, m.version) == ("echo", 1))
    assert (echo.inference_count, echo.execution_count) == (2, 1)
    assert [(b.batch_size, b.count) for b in echo.batches] == [(2, 1)]


# -- InferStream, driven in-process ------------------------------------------------------

STREAM_WAIT_S = 10.0  # the longest a stream test waits for an answer


class StreamDriver:
    """One InferStream on the servicer, read as a client would: `send` feeds it,
    `close` half-closes, `answer` takes the next answer, `end` the way it ended.
    Construct it on the running loop."""

    _OK = object()

    def __init__(self, service: WorkerService) -> None:
        self.context = FakeContext()
        self._requests: asyncio.Queue = asyncio.Queue()
        self._answers: asyncio.Queue = asyncio.Queue()
        self._reader = asyncio.ensure_future(self._read(service))

    async def _feed(self):
        while (request := await self._requests.get()) is not None:
            yield request

    async def _read(self, service: WorkerService) -> None:
        try:
            async for answer in service.InferStream(self._feed(), self.context):
                self._answers.put_nowait(answer)
        except Aborted:
            self._answers.put_nowait(self.context)
        else:
            self._answers.put_nowait(self._OK)

    def send(self, request: pb.InferRequest) -> None:
        self._requests.put_nowait(request)

    def close(self) -> None:
        self._requests.put_nowait(None)

    async def answer(self) -> pb.InferResponse:
        item = await asyncio.wait_for(self._answers.get(), STREAM_WAIT_S)
        assert isinstance(item, pb.InferResponse), f"the stream ended: {item}"
        return item

    async def end(self) -> FakeContext | None:
        """None when the stream ended OK, else the context it was aborted with."""
        item = await asyncio.wait_for(self._answers.get(), STREAM_WAIT_S)
        assert not isinstance(item, pb.InferResponse), f"an answer, not the end: {item}"
        await self._reader
        return None if item is self._OK else item


@pytest.fixture
def slow_model():
    """echo@1 blocks inside `infer` until the test releases it (always, at the end)."""
    Slow.started.clear()
    Slow.release.clear()
    yield {("echo", 1): Slow}
    Slow.release.set()


async def _started() -> None:
    assert await asyncio.to_thread(Slow.started.wait, STREAM_WAIT_S)


def test_a_stream_answers_batches_with_their_seqs_as_they_finish(service_of, slow_model):
    async def scenario():
        stream = StreamDriver(service_of(core_with(slow_model)))
        stream.send(_row("echo", 1, seq=7))  # slow
        await _started()
        stream.send(_row("echo", 2, seq=8))
        stream.send(_request("text", 1, [_pb_tensor("text", np.array([b"abc"], dtype=object))]))
        first, second = await stream.answer(), await stream.answer()
        assert {first.seq, second.seq} == {8, 0}  # both overtake the slow batch
        assert (first.error_code, second.error_code) == (0, 0)
        Slow.release.set()
        last = await stream.answer()
        assert (last.seq, last.error_code, last.batch_size) == (7, 0, 1)
        assert last.outputs[0].name == "y"
        stream.close()
        assert await stream.end() is None  # half-closed and answered: OK

    asyncio.run(scenario())


@pytest.mark.parametrize(("request_", "code", "message"), ERROR_CASES)
def test_a_failed_batch_is_answered_in_band_as_unary_would_and_the_stream_serves_on(
    request_, code, message, caplog, service_of
):
    caplog.set_level(logging.INFO, "inferplane.worker")  # UNAVAILABLE is logged at INFO

    async def scenario():
        stream = StreamDriver(service_of(core_with(ERROR_KINDS)))
        failed = pb.InferRequest()
        failed.CopyFrom(request_)
        failed.seq = 41
        stream.send(failed)
        answer = await stream.answer()
        assert (answer.seq, answer.error_code) == (41, code.value[0])
        assert re.search(message, answer.error_message), answer.error_message
        assert not answer.outputs
        stream.send(_row(seq=42))
        ok = await stream.answer()
        assert (ok.seq, ok.error_code, ok.batch_size) == (42, 0, 1)
        stream.close()
        assert await stream.end() is None

    asyncio.run(scenario())
    assert f"rpc=InferStream model={request_.model} id=r1 code={code.name}" in caplog.text
    if code is grpc.StatusCode.INTERNAL:
        assert "Traceback" in caplog.text


def test_a_half_closed_stream_answers_what_is_in_flight_then_ends(service_of, slow_model):
    async def scenario():
        stream = StreamDriver(service_of(core_with(slow_model)))
        stream.send(_row("echo", 1, seq=1))
        stream.send(_row("echo", 2, seq=2))
        stream.close()
        await _started()
        assert (await stream.answer()).seq == 2
        Slow.release.set()
        assert (await stream.answer()).seq == 1
        assert await stream.end() is None

    asyncio.run(scenario())


def test_draining_refuses_new_batches_in_band_and_ends_the_stream_after_running_ones(
    service_of, slow_model
):
    async def scenario():
        service = service_of(core_with(slow_model))
        stream = StreamDriver(service)
        stream.send(_row("echo", 1, seq=1))
        await _started()
        service.begin_drain()
        stream.send(_row("echo", 2, seq=2))
        refused = await stream.answer()
        assert (refused.seq, refused.error_code) == (2, grpc.StatusCode.UNAVAILABLE.value[0])
        assert "is draining" in refused.error_message
        Slow.release.set()
        finished = await stream.answer()
        assert (finished.seq, finished.error_code, finished.batch_size) == (1, 0, 1)
        ended = await stream.end()
        assert ended is not None and ended.code is grpc.StatusCode.UNAVAILABLE
        assert "is draining: the stream ends" in ended.details

    asyncio.run(scenario())


def test_idle_streams_and_new_ones_end_at_once_when_the_worker_drains(service_of):
    async def scenario():
        service = service_of(core_with())
        idle = StreamDriver(service)
        idle.send(_row(seq=1))
        assert (await idle.answer()).seq == 1
        service.begin_drain()
        assert (await idle.end()).code is grpc.StatusCode.UNAVAILABLE
        late = StreamDriver(service)
        assert (await late.end()).code is grpc.StatusCode.UNAVAILABLE

    asyncio.run(scenario())


# -- small pieces ---------------------------------------------------------------------------


def test_the_ready_line_names_the_address_and_any_failed_model():
    assert (
        ready_line(core_with(), "127.0.0.1:5000") == "worker box ready on 127.0.0.1:5000 (3 models)"
    )
    line = ready_line(core_with({("echo", 2): FailsToLoad}), "unix:/tmp/w.sock")
    assert line == "worker box ready on unix:/tmp/w.sock (2 of 3 models; failed: echo@2)"


@pytest.mark.parametrize(
    "good", ["127.0.0.1:0", "localhost:9100", "[::1]:50051", "unix:/tmp/a.sock"]
)
def test_listen_addresses(good):
    assert check_listen(good) == good


@pytest.mark.parametrize("bad", ["9100", "host:", ":9100", "host:99999", "unix:", "host:port"])
def test_bad_listen_addresses_say_what_is_expected(bad):
    with pytest.raises(ValueError, match=r"HOST:PORT .* or unix:PATH"):
        check_listen(bad)


def test_log_lines_are_key_value_and_quote_spaces():
    assert kv("rpc", model=None, id="") == 'event=rpc id=""'
    assert kv("ready", target="box", models=3, ok=True) == "event=ready target=box models=3 ok=true"
    assert kv("failed", reason='no "cuda" here', sizes=[1, 2]) == (
        'event=failed reason="no \\"cuda\\" here" sizes=1,2'
    )


class RecordsThread(Echo):
    """Echo that records the thread each batch ran on, and can be made slow."""

    threads: ClassVar[list[str]] = []
    compute_s = 0.0

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        RecordsThread.threads.append(threading.current_thread().name)
        if RecordsThread.compute_s:
            time.sleep(RecordsThread.compute_s)
        return super().infer(inputs)


def test_a_quick_model_runs_on_the_event_loop_and_a_slow_one_in_the_pool(service_of):
    RecordsThread.threads = []

    async def scenario(compute_s: float) -> list[str]:
        RecordsThread.compute_s = compute_s
        RecordsThread.threads = []
        stream = StreamDriver(service_of(core_with({("echo", 1): RecordsThread})))
        for seq in range(12):  # one at a time: the first one is measured in the pool
            stream.send(_row("echo", 1, seq=seq))
            assert (await stream.answer()).error_code == 0
        stream.close()
        assert await stream.end() is None
        return RecordsThread.threads

    loop_thread = threading.current_thread().name
    quick = asyncio.run(scenario(0.0))
    assert quick[0] != loop_thread  # not measured yet: the pool
    # Then the loop. Most, not all: on a loaded machine one echo can take over
    # QUICK_NS of wall time, and the decayed mean sends the next one to the pool.
    assert quick[1:].count(loop_thread) >= 8, quick
    slow = asyncio.run(scenario(3 * QUICK_NS / 1e9))
    assert loop_thread not in slow
