"""The gateway benchmark's load generator, and the do-nothing server it is measured against.

One grpc.aio client in one process, speaking KServe v2 ModelInfer with
inferplane's own stubs (`inferplane.protos.grpc_service_pb2`): the request
is built once as a `ModelInferRequest` with its tensor in
`raw_input_contents`, serialised once, and sent as those bytes on every call
(the response's bytes are not parsed; a non-OK status raises and is counted).
That keeps the client's own CPU per request as low as a Python client gets.

- `closed_loop`: `concurrency` callers, each sending its next request when the
  previous one is answered;
- `open_loop`: Poisson arrivals at a fixed rate whatever the answers, each
  request's latency counted from its scheduled arrival (so a late client or
  a queueing server both show), and the share that misses a latency SLO
  (errors and requests still unanswered 2 s after the run count as misses).

Each run warms up first, then measures a fixed window; `probe` is called at the
window's start and end (the caller reads CPU times there).

`python bench/loadgen.py --null-server [--listen 127.0.0.1:0]` runs the
do-nothing server: a grpc.aio `GRPCInferenceService` whose ModelInfer parses
the request and returns a canned response of the right shape for the bench
models (no computation), printing `listening on HOST:PORT`. Against it the
load generator measures its own ceiling (the RPC ceiling) on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import numpy as np
from models import MODELS

from inferplane.protos import grpc_service_pb2 as pb
from inferplane.protos import grpc_service_pb2_grpc as pb_grpc

METHOD = "/inference.GRPCInferenceService/ModelInfer"
TIMEOUT_S = 10.0  # per request: far above every latency here, so it never shapes admission
STRAGGLER_S = 2.0  # how long an open-loop run waits for its last answers
MAX_MESSAGE = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
]


def infer_request(model: str, width: int, rows: int, seed: int = 0) -> bytes:
    """A serialised ModelInferRequest: input `x` fp32[rows, width] as raw contents."""
    x = np.random.default_rng(seed).standard_normal((rows, width)).astype(np.float32)
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name="x", datatype="FP32", shape=[rows, width])
    request.raw_input_contents.append(x.tobytes())
    return request.SerializeToString()


def canned_response(model: str, width: int, rows: int) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name=model, model_version="1")
    response.outputs.add(name="y", datatype="FP32", shape=[rows, width])
    response.raw_output_contents.append(bytes(4 * rows * width))
    return response


def channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)


def infer_call(chan: grpc.aio.Channel):
    """ModelInfer taking and returning bytes (the request is serialised once, up front)."""
    return chan.unary_unary(METHOD)


@dataclass
class Run:
    """One measured window of one load pattern against one server."""

    rows: int  # inferences per request
    window_s: float = 0.0
    ok: int = 0  # answered requests in the window
    latencies_s: list[float] = field(default_factory=list)  # of the answered ones
    errors: Counter = field(default_factory=Counter)  # status code name → count
    offered: int = 0  # open loop: requests scheduled in the window
    slo_misses: int = 0  # open loop: late, failed or unanswered
    probes: tuple = ()  # what `probe` returned at the window's start and end

    @property
    def req_s(self) -> float:
        return self.ok / self.window_s if self.window_s else 0.0

    @property
    def inf_s(self) -> float:
        return self.req_s * self.rows

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_s:
            return float("nan")
        return float(np.percentile(np.asarray(self.latencies_s), q)) * 1e3


async def _call(call, payload: bytes) -> str | None:
    try:
        await call(payload, timeout=TIMEOUT_S)
        return None
    except grpc.aio.AioRpcError as error:
        return error.code().name


async def _window(t0: float, t1: float, probe: Callable[[], object]) -> tuple[float, float, tuple]:
    """Sleep to t0, probe, sleep to t1, probe: the actual times and both probes."""
    await asyncio.sleep(max(0.0, t0 - time.perf_counter()))
    start, first = time.perf_counter(), probe()
    await asyncio.sleep(max(0.0, t1 - time.perf_counter()))
    end, last = time.perf_counter(), probe()
    return start, end, (first, last)


async def closed_loop(
    call,
    payload: bytes,
    rows: int,
    concurrency: int,
    *,
    warmup_s: float,
    seconds: float,
    probe: Callable[[], object],
) -> Run:
    """`concurrency` callers back to back; counts the answers that end inside the window."""
    begin = time.perf_counter()
    t0, t1 = begin + warmup_s, begin + warmup_s + seconds
    done: list[tuple[float, float, str | None]] = []  # (end, latency, error)

    async def caller() -> None:
        while time.perf_counter() < t1:
            sent = time.perf_counter()
            error = await _call(call, payload)
            end = time.perf_counter()
            done.append((end, end - sent, error))

    window = asyncio.ensure_future(_window(t0, t1, probe))
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    start, end, probes = await window
    run = Run(rows=rows, window_s=end - start, probes=probes)
    for finished, latency, error in done:
        if start <= finished <= end:
            if error is None:
                run.ok += 1
                run.latencies_s.append(latency)
            else:
                run.errors[error] += 1
    return run


async def open_loop(
    call,
    payload: bytes,
    rows: int,
    rate: float,
    *,
    warmup_s: float,
    seconds: float,
    slo_s: float,
    probe: Callable[[], object],
    seed: int = 0,
) -> Run:
    """Poisson arrivals at `rate`/s; latency from the scheduled arrival; SLO misses."""
    rng = np.random.default_rng(seed)
    total = warmup_s + seconds
    offsets = np.cumsum(rng.exponential(1.0 / rate, size=int(rate * total * 1.5) + 100))
    offsets = offsets[offsets < total]
    begin = time.perf_counter()
    t0, t1 = begin + warmup_s, begin + total
    done: dict[int, tuple[float, str | None]] = {}  # arrival index → (latency, error)

    async def one(index: int, at: float) -> None:
        error = await _call(call, payload)
        done[index] = (time.perf_counter() - at, error)

    window = asyncio.ensure_future(_window(t0, t1, probe))
    tasks = []
    for index, offset in enumerate(offsets):
        at = begin + float(offset)
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(index, at)))
    start, end, probes = await window
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=STRAGGLER_S)
        for task in pending:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pending, return_exceptions=True)
    run = Run(rows=rows, window_s=end - start, probes=probes)
    for index, offset in enumerate(offsets):
        if not warmup_s <= offset < total:
            continue
        run.offered += 1
        latency, error = done.get(index, (None, "UNANSWERED"))
        if error is not None:
            run.errors[error] += 1
            run.slo_misses += 1
            continue
        run.ok += 1
        run.latencies_s.append(latency)
        if latency > slo_s:
            run.slo_misses += 1
    run.window_s = seconds  # the offered window: ok / seconds is the achieved rate
    return run


class NullServicer(pb_grpc.GRPCInferenceServiceServicer):
    """ModelInfer parses the request and returns a canned answer: no computation."""

    def __init__(self) -> None:
        self.widths = {m.name: m.outputs for m in MODELS}
        self.cache: dict[tuple[str, int], pb.ModelInferResponse] = {}

    async def ModelInfer(self, request, context):
        rows = int(request.inputs[0].shape[0]) if request.inputs else 1
        key = (request.model_name, rows)
        response = self.cache.get(key)
        if response is None:
            width = self.widths.get(request.model_name, 16)
            response = self.cache[key] = canned_response(request.model_name, width, rows)
        return response

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=True)


async def serve_null(listen: str) -> None:
    server = grpc.aio.server(options=CHANNEL_OPTIONS)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(NullServicer(), server)
    port = server.add_insecure_port(listen)
    await server.start()
    host = listen.rsplit(":", 1)[0]
    print(f"listening on {host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--null-server", action="store_true", help="run the do-nothing server")
    parser.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT")
    args = parser.parse_args(argv)
    if not args.null_server:
        parser.error("the load generator is driven by bench/gateway_bench.py; see --null-server")
    asyncio.run(serve_null(args.listen))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
