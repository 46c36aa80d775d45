"""The gateway's side of the worker service: one client per worker endpoint.

    client = GrpcWorkerClient("unix:/run/w0.sock", max_message_bytes=64 << 20)
    outputs, compute_ns = await client.infer("fraud-scorer", 1, {"features": x}, timeout=5.0)
    health = await client.health(timeout=1.0)
    await client.close()

`WorkerClient` is the seam: the gateway core (gateway/app.py) only calls this
protocol, so its tests drive fake workers (echo, slow, failing) without a
socket. The real client holds one `grpc.aio` channel per endpoint (unix
socket or host:port) and sends batches on one long-lived `InferStream` over
it: a message on an open stream costs the gateway and the worker far less
CPU than a call (measured in docs/performance.md), and batches of different
models overlap on it. Each batch carries a sequence number that its answer
repeats; answers come in the order the worker finishes them. Tensors travel
in the KServe raw layout (`backends/tensors.py`).

Every failure comes out as a `gateway.errors` domain error, by the one status
table (`error_from_status`): a worker's in-band error keeps its status (its
INVALID_ARGUMENT stays INVALID_ARGUMENT); a stream that breaks (a worker
that died, a lost connection) fails every batch in flight on it with
UNAVAILABLE, which `retries.RETRIABLE` retries on another replica, and the
next batch opens a new stream; a batch not answered within its timeout is
DEADLINE_EXCEEDED. A reply that cannot be decoded is `Internal`.
"""

from __future__ import annotations

import asyncio
import itertools
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
    location_site: str = ""
    location_source: str = ""  # "host" or "declared" ("" from older workers: declared)


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


# google.rpc.Code numbers (InferResponse.error_code) to their status.
_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _domain_error(code: grpc.StatusCode, detail: str, endpoint: str) -> GatewayError:
    """The domain error, with the worker's own status name kept in `worker_status`:
    CANCELLED (a worker shutting down) is retriable though it maps to Internal."""
    domain = error_from_status(code, f"worker {endpoint}: {detail}")
    domain.worker_status = code.name
    return domain


def _expire(future: asyncio.Future, endpoint: str, timeout: float) -> None:
    if not future.done():
        detail = f"no answer within {timeout:.3f} s"
        future.set_exception(_domain_error(grpc.StatusCode.DEADLINE_EXCEEDED, detail, endpoint))


class GrpcWorkerClient:
    """`WorkerClient` over `inferplane.worker.v1.Worker` on one grpc.aio channel.

    Create it inside the running event loop (grpc.aio binds a channel to it).
    With `credentials`, a network endpoint is dialled over TLS (`infc serve
    --worker-tls-ca`); a unix socket never is.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        max_message_bytes: int = 64 * 1024 * 1024,
        credentials: grpc.ChannelCredentials | None = None,
    ):
        self.endpoint = endpoint
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        if credentials is not None and not endpoint.startswith("unix:"):
            # A worker over the network; a unix socket is this host's (a local worker).
            self._channel = grpc.aio.secure_channel(endpoint, credentials, options=options)
        else:
            self._channel = grpc.aio.insecure_channel(endpoint, options=options)
        self._stub = pb_grpc.WorkerStub(self._channel)
        self._stream: _Stream | None = None
        self._seq = itertools.count(1)
        self._closed = False

    async def infer(
        self,
        model: str,
        version: int,
        arrays: Mapping[str, np.ndarray],
        *,
        timeout: float | None = None,
        request_id: str = "",
    ) -> tuple[dict[str, np.ndarray], int]:
        request = pb.InferRequest(model=model, version=version, id=request_id)
        for name, array in arrays.items():
            datatype, shape, raw = tensors.to_raw(array)
            request.inputs.add(name=name, datatype=datatype, shape=shape, raw=raw)
        request.seq = seq = next(self._seq)
        stream = self._open()
        answer = stream.expect(seq, timeout)
        try:
            await stream.send(request)
            response = await answer
        finally:
            stream.forget(seq)
        if response.error_code:
            code = _CODES.get(response.error_code, grpc.StatusCode.UNKNOWN)
            raise _domain_error(code, response.error_message, self.endpoint)
        try:
            outputs = {
                t.name: tensors.from_raw(t.name, t.datatype, t.shape, t.raw)
                for t in response.outputs
            }
        except tensors.TensorError as error:
            raise Internal(f"worker {self.endpoint} sent an undecodable answer: {error}") from None
        return outputs, int(response.compute_ns)

    def _open(self) -> _Stream:
        """The live stream, opening a new one after the last broke."""
        if self._closed:
            raise _domain_error(grpc.StatusCode.UNAVAILABLE, "the client is closed", self.endpoint)
        if self._stream is None or self._stream.broken is not None:
            self._stream = _Stream(self._stub.InferStream(), self.endpoint)
        return self._stream

    async def health(self, *, timeout: float | None = None) -> WorkerHealth:
        try:
            response = await self._stub.Health(pb.HealthRequest(), timeout=timeout)
        except grpc.aio.AioRpcError as error:
            raise _domain_error(error.code(), error.details() or "", self.endpoint) from None
        return WorkerHealth(
            ready=response.ready,
            draining=response.draining,
            target=response.target,
            location_kind=response.location_kind,
            location_site=response.location_site,
            location_source=response.location_source,
        )

    async def close(self) -> None:
        self._closed = True
        if self._stream is not None:
            self._stream.close()
        await self._channel.close()


class _Stream:
    """One open InferStream: a write lock (grpc allows one write at a time) and a
    reader task that resolves each answer's future by its `seq`."""

    def __init__(self, call: grpc.aio.StreamStreamCall, endpoint: str):
        self._call = call
        self._endpoint = endpoint
        self._waiting: dict[int, asyncio.Future] = {}
        self._write = asyncio.Lock()
        self.broken: GatewayError | None = None
        self._reader = asyncio.get_running_loop().create_task(self._read())

    def expect(self, seq: int, timeout: float | None) -> asyncio.Future:
        """The future of batch `seq`'s answer, failed after `timeout` seconds.
        (A timer per batch: `asyncio.wait_for` costs several objects more.)"""
        if self.broken is not None:
            raise self.broken
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting[seq] = future
        if timeout is not None:
            timer = loop.call_later(timeout, _expire, future, self._endpoint, timeout)
            future.add_done_callback(lambda _: timer.cancel())
        return future

    def forget(self, seq: int) -> None:
        self._waiting.pop(seq, None)

    async def send(self, request: pb.InferRequest) -> None:
        try:
            async with self._write:
                await self._call.write(request)
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as error:
            # The reader sees the same break and fails every waiter with it.
            raise self._break(error) from None

    async def _read(self) -> None:
        try:
            while True:
                response = await self._call.read()
                if response is grpc.aio.EOF:
                    self._break(None)
                    return
                future = self._waiting.pop(response.seq, None)
                if future is not None and not future.done():
                    future.set_result(response)
        except asyncio.CancelledError:
            self._break(None)
            raise
        except Exception as error:  # the stream broke: a dead worker, a lost connection
            self._break(error)

    def _break(self, error: BaseException | None) -> GatewayError:
        if self.broken is None:
            if isinstance(error, grpc.aio.AioRpcError):
                code, detail = error.code(), error.details() or ""
                if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                    detail = f"{code.name}: {detail}"
                # Whatever ended the stream, its batches did not run to an
                # answer: another replica may take them.
                code = grpc.StatusCode.UNAVAILABLE
            else:
                code, detail = grpc.StatusCode.UNAVAILABLE, "the stream to the worker ended"
            self.broken = _domain_error(code, detail, self._endpoint)
            waiting, self._waiting = self._waiting, {}
            for future in waiting.values():
                if not future.done():
                    future.set_exception(self.broken)
        return self.broken

    def close(self) -> None:
        self._break(None)
        self._call.cancel()
        self._reader.cancel()
