"""The gateway's side of the worker service: one client per worker endpoint.

    client = GrpcWorkerClient("unix:/run/w0.sock", max_message_bytes=64 << 20)
    outputs, compute_ns = await client.infer("fraud-scorer", 1, {"features": x}, timeout=5.0)
    health = await client.health(timeout=1.0)
    await client.close()

`WorkerClient` is the seam: the gateway core (gateway/app.py) only calls this
protocol, so its tests drive fake workers (echo, slow, failing) without a
socket. The real client holds one `grpc.aio` channel per endpoint (unix
socket or host:port) and encodes tensors in the KServe raw layout with
`backends/tensors.py`.

Every failure comes out as a `gateway.errors` domain error, by the one status
table (`error_from_status`): a lost connection or a worker that is loading or
draining is `Unavailable`, which `retries.RETRIABLE` retries on another
replica; a worker's INVALID_ARGUMENT stays INVALID_ARGUMENT. A reply that
cannot be decoded is `Internal`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import grpc
import numpy as np

from inferplane.backends import tensors
from inferplane.gateway.errors import GatewayError, Internal, error_from_status
from inferplane.protos import worker_pb2 as pb
from inferplane.protos import worker_pb2_grpc as pb_grpc


@dataclass(frozen=True)
class WorkerHealth:
    """What a worker says of itself (a subset of its HealthResponse)."""

    ready: bool
    draining: bool = False
    target: str = ""
    location_kind: str = ""


class WorkerClient(Protocol):
    """One worker endpoint, as the gateway core uses it."""

    async def infer(
        self,
        model: str,
        version: int,
        arrays: Mapping[str, np.ndarray],
        *,
        timeout: float | None = None,
        request_id: str = "",
    ) -> tuple[dict[str, np.ndarray], int]:
        """One batch: outputs by name and the worker's compute time in ns.
        Raises a `gateway.errors.GatewayError`."""
        ...

    async def health(self, *, timeout: float | None = None) -> WorkerHealth: ...

    async def close(self) -> None: ...


def _domain_error(error: grpc.aio.AioRpcError, endpoint: str) -> GatewayError:
    """The domain error, with the worker's own status name kept in `worker_status`:
    CANCELLED (a worker shutting down) is retriable though it maps to Internal."""
    domain = error_from_status(error.code(), f"worker {endpoint}: {error.details() or ''}")
    domain.worker_status = error.code().name
    return domain


class GrpcWorkerClient:
    """`WorkerClient` over `inferplane.worker.v1.Worker` on one grpc.aio channel.

    Create it inside the running event loop (grpc.aio binds a channel to it).
    """

    def __init__(self, endpoint: str, *, max_message_bytes: int = 64 * 1024 * 1024):
        self.endpoint = endpoint
        self._channel = grpc.aio.insecure_channel(
            endpoint,
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
            ],
        )
        self._stub = pb_grpc.WorkerStub(self._channel)

    async def infer(
        self,
        model: str,
        version: int,
        arrays: Mapping[str, np.ndarray],
        *,
        timeout: float | None = None,
        request_id: str = "",
    ) -> tuple[dict[str, np.ndarray], int]:
        inputs = []
        for name, array in arrays.items():
            datatype, shape, raw = tensors.to_raw(np.asarray(array))
            inputs.append(pb.Tensor(name=name, datatype=datatype, shape=shape, raw=raw))
        request = pb.InferRequest(model=model, version=version, inputs=inputs, id=request_id)
        try:
            response = await self._stub.Infer(request, timeout=timeout)
        except grpc.aio.AioRpcError as error:
            raise _domain_error(error, self.endpoint) from None
        try:
            outputs = {
                t.name: tensors.from_raw(t.name, t.datatype, t.shape, t.raw)
                for t in response.outputs
            }
        except tensors.TensorError as error:
            raise Internal(f"worker {self.endpoint} sent an undecodable answer: {error}") from None
        return outputs, int(response.compute_ns)

    async def health(self, *, timeout: float | None = None) -> WorkerHealth:
        try:
            response = await self._stub.Health(pb.HealthRequest(), timeout=timeout)
        except grpc.aio.AioRpcError as error:
            raise _domain_error(error, self.endpoint) from None
        return WorkerHealth(
            ready=response.ready,
            draining=response.draining,
            target=response.target,
            location_kind=response.location_kind,
        )

    async def close(self) -> None:
        await self._channel.close()
