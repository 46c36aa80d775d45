"""The worker's gRPC edge: a thin grpc.aio servicer over `WorkerCore`, and `serve`.

Each RPC converts (`worker_convert.py`), calls the core and converts back;
errors become statuses through `STATUS`, the one table from the domain's
errors to gRPC codes, applied by `failure`: unary calls end with the status,
`InferStream` answers it in-band (`worker_stream.py`). Anything not in the
table is a bug: it is logged with its traceback and answered INTERNAL, and the
worker serves on.

`serve` runs a worker until SIGTERM or SIGINT:

    listen ─▶ load and warm up (Health answers, models LOADING) ─▶ print the ready line
      ─▶ serve ─▶ signal: drain (new batches UNAVAILABLE, running ones finish, idle
         streams end, at most `grace_s`) ─▶ stop the server ─▶ return

The server also answers `grpc.health.v1` (worker_health.py) for kubelet's
probes. The event loop only moves messages; each batch (decode, compute, encode)
runs in a pool of `threads` threads, so batches of different models run at
once: onnxruntime and XLA release the GIL while they compute.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TextIO

import grpc
from grpc_health.v1 import health_pb2_grpc

from inferplane.backends import event_loop
from inferplane.backends import worker_convert as convert
from inferplane.backends.logfmt import kv
from inferplane.backends.runtime import BadBatch
from inferplane.backends.tensors import TensorError
from inferplane.backends.worker import (
    Draining,
    HardwareMissing,
    ModelNotFound,
    ModelNotReady,
    ModelState,
    WorkerCore,
)
from inferplane.backends.worker_health import StandardHealth, start_health_server
from inferplane.backends.worker_stream import Streams
from inferplane.protos import worker_pb2 as pb
from inferplane.protos import worker_pb2_grpc as pb_grpc

log = logging.getLogger("inferplane.worker")

MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # a full batch of large tensors must pass
DEFAULT_GRACE_S = 30.0
DEFAULT_THREADS = 16
STOP_POLL_S = 0.1  # how often `serve` looks at its `stop` event

# The one table from domain errors to gRPC codes (subclasses inherit their
# parent's row). INVALID_ARGUMENT: fix the request, do not retry.
# NOT_FOUND: this worker does not serve it. UNAVAILABLE: retry elsewhere.
STATUS: dict[type[Exception], grpc.StatusCode] = {
    TensorError: grpc.StatusCode.INVALID_ARGUMENT,
    BadBatch: grpc.StatusCode.INVALID_ARGUMENT,
    ModelNotFound: grpc.StatusCode.NOT_FOUND,
    ModelNotReady: grpc.StatusCode.UNAVAILABLE,
    Draining: grpc.StatusCode.UNAVAILABLE,
}


def status_of(error: BaseException) -> grpc.StatusCode:
    """The code for `error`: its class's row in STATUS, else INTERNAL."""
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return grpc.StatusCode.INTERNAL


def failure(rpc: str, request: Any, error: Exception) -> tuple[grpc.StatusCode, str]:
    """The status and message `error` gets, logged: bugs with their traceback."""
    code = status_of(error)
    fields = {
        "rpc": rpc,
        "model": getattr(request, "model", None),
        "id": getattr(request, "id", None),
        "code": code.name,
    }
    if code is grpc.StatusCode.INTERNAL:
        log.error(kv("rpc_failed", **fields), exc_info=error)
        return code, f"internal error in the worker: {type(error).__name__}: {error}"
    # Refusals to retry elsewhere are routine while loading or draining.
    level = logging.INFO if code is grpc.StatusCode.UNAVAILABLE else logging.WARNING
    log.log(level, kv("rpc_refused", **fields, reason=str(error)))
    return code, str(error)


def _edge(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Turn whatever the core raises into a status; never let an RPC crash."""

    @functools.wraps(method)
    async def wrapper(self: WorkerService, request: Any, context: grpc.aio.ServicerContext):
        try:
            return await method(self, request, context)
        except Exception as error:
            code, message = failure(method.__name__, request, error)
        await context.abort(code, message)

    return wrapper


# A batch this quick runs on the event loop (see worker_stream.py): measured
# on 2 cores, the hop to a pool thread and back costs about 120 µs of CPU a
# batch, and a loop blocked for under 100 µs delays little else.
QUICK_NS = 100_000


def run_batch(core: WorkerCore, request: pb.InferRequest) -> pb.InferResponse:
    """One batch, request to answer; runs in the pool, so large tensors never stall the loop."""
    arrays = convert.inputs_from_proto(request.inputs)
    result = core.infer(request.model, request.version, arrays, list(request.outputs))
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            kv(
                "infer",
                model=request.model,
                version=request.version,
                id=request.id,
                seq=request.seq,
                batch=result.batch_size,
                compute_ns=result.compute_ns,
            )
        )
    return convert.infer_response(result)


class WorkerService(pb_grpc.WorkerServicer):
    def __init__(self, core: WorkerCore, threads: int = DEFAULT_THREADS) -> None:
        self.core = core
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="worker-batch")
        drain_message = (
            f"worker for target `{core.target.name}` is draining: the stream ends; "
            "send unanswered batches to another replica"
        )
        self.streams = Streams(self.pool, self._answer, drain_message, self._quick)
        # (model, version) -> recent compute time of its batches (ns, decayed mean)
        self._compute_ns: dict[tuple[str, int], float] = {}

    def begin_drain(self) -> None:
        """New batches are refused, idle streams end; call on the event loop."""
        self.core.begin_drain()
        self.streams.drain()

    def close(self) -> None:
        """Let go of the pool; a batch past the grace period keeps its thread."""
        self.pool.shutdown(wait=False, cancel_futures=True)

    @_edge
    async def Health(self, request: pb.HealthRequest, context: grpc.aio.ServicerContext):
        return convert.health_to_proto(self.core.health())

    @_edge
    async def Infer(self, request: pb.InferRequest, context: grpc.aio.ServicerContext):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, run_batch, self.core, request)

    async def InferStream(
        self, requests: AsyncIterator[pb.InferRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.InferResponse]:
        # An async generator itself: that is how grpc.aio knows a streaming handler.
        async with contextlib.aclosing(self.streams.serve(requests, context)) as answers:
            async for answer in answers:
                yield answer

    @_edge
    async def Statistics(self, request: pb.StatisticsRequest, context: grpc.aio.ServicerContext):
        return convert.statistics_to_proto(self.core.statistics())

    def _answer(self, request: pb.InferRequest) -> pb.InferResponse:
        """A stream's answer to one request, failures in-band; runs in the pool."""
        try:
            response = run_batch(self.core, request)
        except Exception as error:
            code, message = failure("InferStream", request, error)
            response = convert.error_response(code.value[0], message)
        else:
            key = (request.model, request.version)
            before = self._compute_ns.get(key, float(response.compute_ns))
            self._compute_ns[key] = 0.8 * before + 0.2 * response.compute_ns
        response.seq = request.seq
        return response

    def _quick(self, request: pb.InferRequest) -> bool:
        """Whether the stream may run this batch on the event loop: its model's
        recent batches took under QUICK_NS (a model not seen yet goes to the pool)."""
        return self._compute_ns.get((request.model, request.version), QUICK_NS) < QUICK_NS


def check_listen(listen: str) -> str:
    """`listen` when it is `host:port` or `unix:PATH`; ValueError saying why not."""
    if listen.startswith("unix:"):
        if len(listen) > len("unix:"):
            return listen
    else:
        host, sep, port = listen.rpartition(":")
        if sep and host and port.isdigit() and int(port) <= 65535:
            return listen
    raise ValueError(
        f"cannot listen on {listen!r}: give HOST:PORT (port 0 picks a free one) or unix:PATH"
    )


@dataclass
class WorkerServer:
    """A started server, its servicer and the address it is bound to."""

    server: grpc.aio.Server
    service: WorkerService
    address: str

    async def drain(self, grace_s: float) -> bool:
        """Refuse new batches, let running ones finish, stop; False when grace ran out."""
        core, name = self.service.core, self.service.core.target.name
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        self.service.begin_drain()
        log.info(kv("draining", target=name, in_flight=core.in_flight, grace_s=grace_s))
        idle = await asyncio.to_thread(core.wait_idle, grace_s)
        if not idle:
            log.warning(kv("drain_timeout", target=name, in_flight=core.in_flight, grace_s=grace_s))
        # Streams end by themselves once their answers are out; stop waits for those.
        await self.server.stop(max(0.0, deadline - loop.time()))
        self.service.close()
        log.info(kv("stopped", target=name))
        return idle


async def start_server(
    core: WorkerCore,
    listen: str,
    *,
    threads: int = DEFAULT_THREADS,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    credentials: grpc.ServerCredentials | None = None,
) -> WorkerServer:
    """A started server for `core` on `listen` (TLS only, with `credentials`);
    call on the loop that will serve it."""
    address = check_listen(listen)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # A port another process holds is an error, not a shared port.
            ("grpc.so_reuseport", 0),
        ],
    )
    service = WorkerService(core, threads)
    pb_grpc.add_WorkerServicer_to_server(service, server)
    health_pb2_grpc.add_HealthServicer_to_server(StandardHealth(core), server)
    try:
        if credentials is not None:
            port = server.add_secure_port(address, credentials)
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as error:
        raise OSError(f"cannot listen on {listen}: {error}") from None
    if not address.startswith("unix:"):
        if port == 0:
            raise OSError(f"cannot listen on {listen}: the address is in use or not local")
        address = f"{address.rpartition(':')[0]}:{port}"
    await server.start()
    return WorkerServer(server, service, address)


def ready_line(core: WorkerCore, address: str) -> str:
    """The one line a supervisor waits for: `worker NAME ready on ADDR (N models)`."""
    models = core.health().models
    failed = [f"{m.name}@{m.version}" for m in models if m.state is not ModelState.READY]
    if not failed:
        count = f"{len(models)} model{'s' if len(models) != 1 else ''}"
        return f"worker {core.target.name} ready on {address} ({count})"
    return (
        f"worker {core.target.name} ready on {address} "
        f"({len(models) - len(failed)} of {len(models)} models; failed: {', '.join(failed)})"
    )


def _install_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM and SIGINT set `stop`; returns the undo.

    A repeated signal changes nothing: the drain is bounded by its grace
    period anyway, and a process group often gets the same signal twice
    (from a terminal's Ctrl-C and from a supervisor that forwards it).
    """

    def handler(signum: int, frame: object) -> None:
        stop.set()  # no logging here: the handler may interrupt a log call

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def serve(
    core: WorkerCore,
    listen: str,
    *,
    grace_s: float = DEFAULT_GRACE_S,
    out: TextIO | None = None,
    stop: threading.Event | None = None,
    handle_signals: bool = True,
    threads: int = DEFAULT_THREADS,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    credentials: grpc.ServerCredentials | None = None,
    health_listen: str | None = None,
) -> bool:
    """Serve until a signal (or `stop` is set), then drain; True when it drained in time.
    With `health_listen`, grpc.health.v1 is also served there alone, in plaintext.

    Raises OSError when it cannot listen, HardwareMissing when no model can run
    on this host. `handle_signals` needs the main thread.
    """
    stop = stop if stop is not None else threading.Event()
    out = out if out is not None else sys.stdout

    async def run() -> bool:
        running = await start_server(
            core,
            listen,
            threads=threads,
            max_message_bytes=max_message_bytes,
            credentials=credentials,
        )
        log.info(kv("listening", target=core.target.name, address=running.address))
        health = None
        try:
            if health_listen is not None:
                health = await start_health_server(core, health_listen)
            # In a thread, so that the loop answers Health (LOADING) meanwhile.
            await asyncio.to_thread(core.load_all, cancelled=stop.is_set)
        except (HardwareMissing, OSError):
            await running.server.stop(None)
            running.service.close()
            if health is not None:
                await health.stop(None)
            raise
        if not stop.is_set():
            out.write(ready_line(core, running.address) + "\n")
            out.flush()
            log.info(kv("ready", target=core.target.name, address=running.address))
            # Polled: `stop` is a thread's event, set by a signal handler or a caller.
            while not stop.is_set():
                await asyncio.sleep(STOP_POLL_S)
        try:
            return await running.drain(grace_s)
        finally:
            if health is not None:
                await health.stop(None)

    restore = _install_signals(stop) if handle_signals else (lambda: None)
    try:
        return event_loop.run(run())
    finally:
        restore()
