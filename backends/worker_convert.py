"""Protobuf ↔ domain for the worker service: the only module that knows both.

Tensors travel raw (KServe v2 layout, see `tensors.py`); a request's tensors
become NumPy arrays by name, and a batch's arrays become response tensors
(or, on a stream, a failed batch becomes an in-band error answer).
Health and statistics are the core's frozen records copied field by field.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from inferplane.backends import tensors
from inferplane.backends.worker import Health, InferResult, ModelState
from inferplane.backends.worker_stats import ModelStats
from inferplane.protos import worker_pb2 as pb

_STATES = {
    ModelState.LOADING: pb.MODEL_STATE_LOADING,
    ModelState.READY: pb.MODEL_STATE_READY,
    ModelState.FAILED: pb.MODEL_STATE_FAILED,
}


def inputs_from_proto(items: Iterable[pb.Tensor]) -> dict[str, np.ndarray]:
    """Decode a request's tensors; raises TensorError naming the tensor at fault."""
    arrays: dict[str, np.ndarray] = {}
    for item in items:
        if item.name in arrays:
            raise tensors.TensorError(f"tensor `{item.name}` appears twice in the request")
        arrays[item.name] = tensors.from_raw(item.name, item.datatype, item.shape, item.raw)
    return arrays


def infer_response(result: InferResult) -> pb.InferResponse:
    outputs = []
    for name, array in result.outputs.items():
        datatype, shape, raw = tensors.to_raw(np.asarray(array))
        outputs.append(pb.Tensor(name=name, datatype=datatype, shape=shape, raw=raw))
    return pb.InferResponse(
        outputs=outputs, compute_ns=result.compute_ns, batch_size=result.batch_size
    )


def error_response(code: int, message: str) -> pb.InferResponse:
    """A stream's in-band answer for a failed batch: the numeric gRPC status and why."""
    return pb.InferResponse(error_code=code, error_message=message)


def health_to_proto(health: Health) -> pb.HealthResponse:
    return pb.HealthResponse(
        ready=health.ready,
        draining=health.draining,
        target=health.target,
        hardware=health.hardware,
        device=health.device,
        location_kind=health.location_kind,
        location_site=health.location_site,
        location_source=health.location_source,
        cpu_fallback=health.cpu_fallback,
        plan_hash=health.plan_hash,
        worker_version=health.worker_version,
        models=[
            pb.ModelStatus(
                name=m.name,
                version=m.version,
                state=_STATES[m.state],
                reason=m.reason,
                runtime=m.runtime,
                providers=list(m.providers),
                artifact_sha256=m.artifact_sha256,
                precision=m.precision,
            )
            for m in health.models
        ],
    )


def statistics_to_proto(models: Iterable[ModelStats]) -> pb.StatisticsResponse:
    return pb.StatisticsResponse(
        models=[
            pb.ModelStatistics(
                name=m.name,
                version=m.version,
                inference_count=m.inference_count,
                execution_count=m.execution_count,
                compute_ns=m.compute_ns,
                failure_count=m.failure_count,
                batches=[
                    pb.BatchStatistics(
                        batch_size=b.batch_size, count=b.count, compute_ns=b.compute_ns
                    )
                    for b in m.batches
                ],
            )
            for m in models
        ]
    )
