"""The gateway's gRPC edge: thin grpc.aio servicers over `app.Gateway`.

    server, address = await start_server(gateway, "127.0.0.1:0", max_message_bytes=64 << 20)
    ...
    await server.stop(grace=5)

Each RPC converts its request (gateway/converters.py), calls the
transport-neutral core and converts the answer back. One decorator, `_edge`,
turns every exception into a status by the one table of gateway/errors.py:
a domain error keeps its message; anything else is a bug, logged here and
answered INTERNAL with a fixed message, never a crash of the server.
ModelStreamInfer answers each request in order, failures in-band as
`error_message` (Triton's behaviour), and keeps the stream open.

Besides `inference.GRPCInferenceService` the server runs the admin service
`inferplane.admin.v1.Admin` (gateway/admin.py), `grpc.health.v1` (SERVING
while the gateway is ready; the overall "" service and the inference
service) and server reflection. The gateway block's `tls` and `auth` are put
in force here, from what gateway/security.py checked and built.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from inferplane.gateway import admin
from inferplane.gateway import converters as conv
from inferplane.gateway import model_info as info
from inferplane.gateway.app import Gateway
from inferplane.gateway.errors import kind_of, public_message, status_of
from inferplane.gateway.security import BearerAuth, Tokens
from inferplane.gateway.swap import PlanSwap
from inferplane.protos import admin_pb2_grpc as admin_pb_grpc
from inferplane.protos import grpc_service_pb2 as pb
from inferplane.protos import grpc_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name


def _version() -> str:
    try:
        return importlib.metadata.version("inferplane")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _log_bug(rpc: str, error: BaseException) -> None:
    if kind_of(error) is None:
        log.error("rpc=%s failed with a bug", rpc, exc_info=error)


def _edge(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Domain errors → their status and message; bugs → INTERNAL, logged."""

    @functools.wraps(method)
    async def wrapper(self: InferenceServicer, request: Any, context: grpc.aio.ServicerContext):
        try:
            return await method(self, request, context)
        except Exception as error:
            _log_bug(method.__name__, error)
            code, message = status_of(error), public_message(error)
        await context.abort(code, message)

    return wrapper


def _deadline(gateway: Gateway, context: grpc.aio.ServicerContext) -> float | None:
    """The client's gRPC deadline on the gateway's clock (None without one)."""
    remaining = context.time_remaining()
    if remaining is None or remaining > 1e8:  # grpc reports "none" as a huge number
        return None
    return gateway.now() + remaining


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self.version = _version()

    @_edge
    async def ServerLive(self, request, context):
        return info.server_live_to_proto(True)

    @_edge
    async def ServerReady(self, request, context):
        return info.server_ready_to_proto(self.gateway.ready)

    @_edge
    async def ModelReady(self, request, context):
        return info.model_ready_to_proto(self.gateway.model_ready(*info.name_and_version(request)))

    @_edge
    async def ServerMetadata(self, request, context):
        return info.server_metadata_to_proto(self.version)

    @_edge
    async def ModelMetadata(self, request, context):
        name, version = info.name_and_version(request)
        return info.model_metadata_to_proto(self.gateway.plan, name, version)

    @_edge
    async def ModelConfig(self, request, context):
        name, version = info.name_and_version(request)
        return info.model_config_to_proto(self.gateway.plan, name, version)

    @_edge
    async def RepositoryIndex(self, request, context):
        availability = self.gateway.availability()
        return info.repository_index_to_proto(
            self.gateway.plan, availability, ready_only=request.ready
        )

    @_edge
    async def ModelStatistics(self, request, context):
        return info.model_statistics_to_proto(
            self.gateway.statistics(request.name, request.version)
        )

    @_edge
    async def ModelInfer(self, request, context):
        return await self._infer(request, _deadline(self.gateway, context))

    async def _infer(self, request: pb.ModelInferRequest, deadline: float | None):
        domain = conv.infer_request_from_proto(request)
        outcome = await self.gateway.infer(domain, deadline=deadline)
        return conv.infer_response_to_proto(
            outcome.model, outcome.version, domain.id, outcome.outputs
        )

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Requests are served concurrently (so they batch) and answered in order."""
        deadline = _deadline(self.gateway, context)
        answers: asyncio.Queue[asyncio.Task | None] = asyncio.Queue()

        async def one(request: pb.ModelInferRequest) -> pb.ModelStreamInferResponse:
            try:
                return conv.stream_response_to_proto(await self._infer(request, deadline))
            except Exception as error:
                _log_bug("ModelStreamInfer", error)
                answer = conv.stream_error_to_proto(error)
                answer.infer_response.model_name = request.model_name
                answer.infer_response.id = request.id
                return answer

        async def read() -> None:
            try:
                async for request in request_iterator:
                    answers.put_nowait(asyncio.create_task(one(request)))
            finally:
                answers.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (task := await answers.get()) is not None:
                yield await task
            await reader  # a broken request stream ends the RPC with its error
        finally:
            reader.cancel()
            while not answers.empty():
                if (task := answers.get_nowait()) is not None:
                    task.cancel()


async def start_server(
    gateway: Gateway,
    listen: str,
    *,
    max_message_bytes: int,
    credentials: grpc.ServerCredentials | None = None,
    auth: BearerAuth | None = None,
    swap: PlanSwap | None = None,
    admin_tokens: Tokens | None = None,
) -> tuple[grpc.aio.Server, str]:
    """A started server for `gateway` on `listen` (host:port, port 0 allowed, or
    unix:PATH) and the address it is bound to. With `credentials` it speaks TLS
    only; with `auth` every call but health needs a bearer token (security.py).
    With `swap` (whose gateway is `gateway`) the admin service's ApplyPlan moves
    the servers onto a new plan (swap.py)."""
    server = grpc.aio.server(
        interceptors=[auth] if auth is not None else None,
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),  # a port another process holds is an error
        ],
    )
    inference = InferenceServicer(gateway)
    if swap is not None:
        swap.follow(lambda new: setattr(inference, "gateway", new))
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(inference, server)
    admin_pb_grpc.add_AdminServicer_to_server(
        admin.AdminServicer(gateway, swap, admin_tokens, trust_loopback=auth is None), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)

    updates: set[asyncio.Task] = set()

    def on_ready(ready: bool) -> None:
        serving = health_pb2.HealthCheckResponse
        status = serving.SERVING if ready else serving.NOT_SERVING
        # The aio servicer's set() is a coroutine (it notifies Watch streams);
        # readiness changes happen on the event loop, so schedule it there.
        loop = asyncio.get_running_loop()
        for service in ("", SERVICE):
            task = loop.create_task(health_servicer.set(service, status))
            updates.add(task)
            task.add_done_callback(updates.discard)

    gateway.add_ready_listener(on_ready)
    health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
    reflection.enable_server_reflection(
        (SERVICE, admin.SERVICE, health_name, reflection.SERVICE_NAME), server
    )
    try:
        if credentials is not None:
            port = server.add_secure_port(listen, credentials)
        else:
            port = server.add_insecure_port(listen)
    except RuntimeError as error:
        raise OSError(f"cannot listen on {listen}: {error}") from None
    address = listen
    if not listen.startswith("unix:"):
        if port == 0:
            raise OSError(f"cannot listen on {listen}: the address is in use or not local")
        address = f"{listen.rpartition(':')[0]}:{port}"
    await server.start()
    return server, address
