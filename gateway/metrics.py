"""The gateway's Prometheus metrics, and the `/metrics` endpoint that serves them.

`Metrics` owns its own `CollectorRegistry` (never prometheus_client's global
one: tests build many gateways in one process), and `Gateway` calls its small
methods as things happen; `NullMetrics` is the do-nothing default.

    inferplane_requests_total{model,version,route,code}   counter: answered requests
    inferplane_request_duration_seconds{model,version}    histogram: end-to-end time
    inferplane_batch_size{model,target}                   histogram: rows per batch sent
    inferplane_queue_depth{model}                         gauge: queued, all versions/shards
    inferplane_worker_up{target,replica}                  gauge: 1 live, 0 ejected or gone
    inferplane_slo_violations_total{model,slo}            counter: too slow; failed (availability)

docs/operations.md explains each and how to read SLO attainment from them.
No label ever carries a payload or a request id: the label values come from
the plan (model, version, route, target), from a fixed set (codes, SLO
percentiles), or from the worker endpoints.

    metrics = Metrics()
    gateway = Gateway(plan, metrics=metrics)
    server, address = metrics.start_http("127.0.0.1:0")    # GET /metrics
    ...
    metrics.stop_http(server)
"""

from __future__ import annotations

from pathlib import PurePosixPath
from wsgiref.simple_server import WSGIServer

# prometheus_client is the reference client, well kept, and writes the standard
# text exposition format that every Prometheus-compatible scraper reads.
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import start_http_server as _start_http_server

# 0.5 ms to 10 s, about two steps per decade: a latency SLO of 5, 10, 20, 50 ms
# or 0.1 s falls on a bucket bound, so the attainment read from buckets is exact.
LATENCY_BUCKETS_S = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
)
BATCH_BUCKETS = tuple(float(2**i) for i in range(11))  # 1, 2, 4 … 1024 rows


def replica_label(endpoint: str) -> str:
    """A replica's `replica` label: the worker's name for the unix sockets of
    `infc serve` (`unix:/tmp/…/laptop-0.sock` → `laptop-0`, stable over
    restarts), else its endpoint (`10.0.0.5:9000`)."""
    if endpoint.startswith("unix:"):
        return PurePosixPath(endpoint.removeprefix("unix:").removeprefix("//")).stem
    return endpoint


def split_address(listen: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[V6]:PORT`) → (host, port); ValueError when it is not one."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"`{listen}` is not HOST:PORT")
    return host.removeprefix("[").removesuffix("]"), int(port)


class NullMetrics:
    """Counts nothing: a `Gateway` without a metrics endpoint."""

    def request_done(
        self, model: str, version: str, code: str, seconds: float, route: str = ""
    ) -> None:
        pass

    def batch(self, model: str, target: str, size: int) -> None:
        pass

    def queue_depth(self, model: str, n: int) -> None:
        pass

    def worker_up(self, target: str, replica: str, up: bool) -> None:
        pass

    def slo_violation(self, model: str, slo: str) -> None:
        pass


class Metrics(NullMetrics):
    """The gateway's metrics in a registry of their own (see the module docstring)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._requests = Counter(
            "inferplane_requests_total",
            "Requests answered by the gateway, by the model version that served them "
            "(route: the route named by the client, empty otherwise) and final status code.",
            ("model", "version", "route", "code"),
            registry=r,
        )
        self._duration = Histogram(
            "inferplane_request_duration_seconds",
            "End-to-end time of a request in the gateway, from arrival to answer.",
            ("model", "version"),
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self._batch = Histogram(
            "inferplane_batch_size",
            "Rows in each batch sent to a worker of a target.",
            ("model", "target"),
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self._queue = Gauge(
            "inferplane_queue_depth",
            "Requests waiting in the gateway's queues of a model (all versions and shards).",
            ("model",),
            registry=r,
        )
        self._up = Gauge(
            "inferplane_worker_up",
            "1 while a worker replica is in rotation, 0 while ejected or gone.",
            ("target", "replica"),
            registry=r,
        )
        self._slo = Counter(
            "inferplane_slo_violations_total",
            "Requests slower than a latency objective of their model (slo: its percentile; "
            "a p99 objective allows 1% of requests over it), or that the gateway failed to "
            "serve, for a model with an availability objective (slo: availability).",
            ("model", "slo"),
            registry=r,
        )

    def request_done(
        self, model: str, version: str, code: str, seconds: float, route: str = ""
    ) -> None:
        self._requests.labels(model, version, route, code).inc()
        self._duration.labels(model, version).observe(seconds)

    def batch(self, model: str, target: str, size: int) -> None:
        self._batch.labels(model, target).observe(size)

    def queue_depth(self, model: str, n: int) -> None:
        self._queue.labels(model).set(n)

    def worker_up(self, target: str, replica: str, up: bool) -> None:
        self._up.labels(target, replica).set(1 if up else 0)

    def slo_violation(self, model: str, slo: str) -> None:
        self._slo.labels(model, slo).inc()

    def render(self) -> bytes:
        """The text exposition format, as `/metrics` serves it."""
        return generate_latest(self.registry)

    def start_http(self, listen: str) -> tuple[WSGIServer, str]:
        """Serve `/metrics` on `HOST:PORT` (port 0: a free one) from a daemon thread;
        returns the server (for `stop_http`) and the bound `HOST:PORT`.
        OSError when the address cannot be bound, ValueError when it is not one."""
        host, port = split_address(listen)
        server, _thread = _start_http_server(port, addr=host, registry=self.registry)
        bound = server.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        return server, f"{shown}:{bound}"

    @staticmethod
    def stop_http(server: WSGIServer) -> None:
        server.shutdown()
        server.server_close()
