"""`grpc.health.v1` on the worker, for kubelet's gRPC probes and load balancers.

The gateway reads the worker's own Health RPC, which says far more (per
model, the location, the device). This standard one answers SERVING while
every model is ready and the worker is not draining, and NOT_SERVING
otherwise: a rollout whose new worker cannot load a model stops there, and a
draining worker leaves its Service. Service names: "" (the worker) and
`inferplane.worker.v1.Worker`; any other is NOT_FOUND. Watch is not served
(kubelet only calls Check). `start_health_server` serves it alone, in
plaintext, beside a worker that serves TLS (`infc worker --health-listen`).
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from inferplane.backends.worker import WorkerCore
from inferplane.protos import worker_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["Worker"].full_name
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class StandardHealth(health_pb2_grpc.HealthServicer):
    def __init__(self, core: WorkerCore):
        self.core = core

    async def Check(self, request: health_pb2.HealthCheckRequest, context):
        if request.service not in ("", SERVICE):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service `{request.service}`")
        health = self.core.health()
        serving = health.ready and not health.draining
        return health_pb2.HealthCheckResponse(status=_SERVING if serving else _NOT_SERVING)


async def start_health_server(core: WorkerCore, listen: str) -> grpc.aio.Server:
    """A plaintext server with only this health service, for a worker that serves
    TLS: kubelet's gRPC probe cannot speak TLS, and health carries no payload."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    health_pb2_grpc.add_HealthServicer_to_server(StandardHealth(core), server)
    try:
        port = server.add_insecure_port(listen)
    except RuntimeError as error:
        raise OSError(f"cannot listen on {listen}: {error}") from None
    if not listen.startswith("unix:") and port == 0:
        raise OSError(f"cannot listen on {listen}: the address is in use or not local")
    await server.start()
    return server
