"""The worker's gRPC edge: a thin servicer over `WorkerCore`, and `serve`.

Each RPC converts (`worker_convert.py`), calls the core and converts back;
errors become statuses through `STATUS`, the one table from the domain's
errors to gRPC codes, applied by `_edge`. Anything not in the table is a bug:
it is logged with its traceback and answered INTERNAL, and the worker serves on.

`serve` runs a worker until SIGTERM or SIGINT:

    listen ─▶ load and warm up (Health answers, models LOADING) ─▶ print the ready line
      ─▶ serve ─▶ signal: drain (new batches UNAVAILABLE, running ones finish,
         at most `grace_s`) ─▶ stop the server ─▶ return

The server's thread pool runs batches of different models at once:
onnxruntime and XLA release the GIL while they compute.
"""

from __future__ import annotations

import functools
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TextIO

import grpc

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
from inferplane.protos import worker_pb2 as pb
from inferplane.protos import worker_pb2_grpc as pb_grpc

log = logging.getLogger("inferplane.worker")

MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # a full batch of large tensors must pass
DEFAULT_GRACE_S = 30.0
DEFAULT_THREADS = 16

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


def _edge(method: Callable[..., Any]) -> Callable[..., Any]:
    """Turn whatever the core raises into a status; never let an RPC crash."""

    @functools.wraps(method)
    def wrapper(self: WorkerService, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as error:
            code = status_of(error)
            fields = {
                "rpc": method.__name__,
                "model": getattr(request, "model", None),
                "id": getattr(request, "id", None),
                "code": code.name,
            }
            if code is grpc.StatusCode.INTERNAL:
                log.exception(kv("rpc_failed", **fields))
                message = f"internal error in the worker: {type(error).__name__}: {error}"
            else:
                # Refusals to retry elsewhere are routine while loading or draining.
                level = logging.INFO if code is grpc.StatusCode.UNAVAILABLE else logging.WARNING
                log.log(level, kv("rpc_refused", **fields, reason=str(error)))
                message = str(error)
        context.abort(code, message)

    return wrapper


class WorkerService(pb_grpc.WorkerServicer):
    def __init__(self, core: WorkerCore) -> None:
        self.core = core

    @_edge
    def Health(self, request: pb.HealthRequest, context: grpc.ServicerContext):
        return convert.health_to_proto(self.core.health())

    @_edge
    def Infer(self, request: pb.InferRequest, context: grpc.ServicerContext):
        arrays = convert.inputs_from_proto(request.inputs)
        result = self.core.infer(request.model, request.version, arrays, list(request.outputs))
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                kv(
                    "infer",
                    model=request.model,
                    version=request.version,
                    id=request.id,
                    batch=result.batch_size,
                    compute_ns=result.compute_ns,
                )
            )
        return convert.infer_response(result)

    @_edge
    def Statistics(self, request: pb.StatisticsRequest, context: grpc.ServicerContext):
        return convert.statistics_to_proto(self.core.statistics())


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


def start_server(
    core: WorkerCore,
    listen: str,
    *,
    threads: int = DEFAULT_THREADS,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> tuple[grpc.Server, str]:
    """A started server for `core` on `listen`, and the address it is bound to."""
    address = check_listen(listen)
    server = grpc.server(
        ThreadPoolExecutor(max_workers=threads, thread_name_prefix="worker-rpc"),
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # A port another process holds is an error, not a shared port.
            ("grpc.so_reuseport", 0),
        ],
    )
    pb_grpc.add_WorkerServicer_to_server(WorkerService(core), server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as error:
        raise OSError(f"cannot listen on {listen}: {error}") from None
    if not address.startswith("unix:"):
        if port == 0:
            raise OSError(f"cannot listen on {listen}: the address is in use or not local")
        address = f"{address.rpartition(':')[0]}:{port}"
    server.start()
    return server, address


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


def drain(core: WorkerCore, server: grpc.Server, grace_s: float) -> bool:
    """Refuse new batches, let running ones finish, stop; False when grace ran out."""
    deadline = time.monotonic() + grace_s
    core.begin_drain()
    log.info(kv("draining", target=core.target.name, in_flight=core.in_flight, grace_s=grace_s))
    idle = core.wait_idle(grace_s)
    if not idle:
        log.warning(
            kv("drain_timeout", target=core.target.name, in_flight=core.in_flight, grace_s=grace_s)
        )
    remaining = max(0.0, deadline - time.monotonic())
    server.stop(remaining).wait(remaining + 5.0)
    log.info(kv("stopped", target=core.target.name))
    return idle


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
) -> bool:
    """Serve until a signal (or `stop` is set), then drain; True when it drained in time.

    Raises OSError when it cannot listen, HardwareMissing when no model can run
    on this host. `handle_signals` needs the main thread.
    """
    stop = stop if stop is not None else threading.Event()
    restore = _install_signals(stop) if handle_signals else (lambda: None)
    try:
        server, address = start_server(
            core, listen, threads=threads, max_message_bytes=max_message_bytes
        )
        log.info(kv("listening", target=core.target.name, address=address))
        try:
            core.load_all(cancelled=stop.is_set)
        except HardwareMissing:
            server.stop(None)
            raise
        if not stop.is_set():
            line = ready_line(core, address)
            stream = out if out is not None else sys.stdout
            stream.write(line + "\n")
            stream.flush()
            log.info(kv("ready", target=core.target.name, address=address))
            while not stop.wait(0.5):
                pass
        return drain(core, server, grace_s)
    finally:
        restore()
