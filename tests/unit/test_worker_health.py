"""The worker's grpc.health.v1 answer follows its own Health (backends/worker_health.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from grpc_health.v1 import health_pb2

from inferplane.backends.worker_health import StandardHealth

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class _Core:
    def __init__(self, ready: bool, draining: bool):
        self.state = SimpleNamespace(ready=ready, draining=draining)

    def health(self):
        return self.state


@pytest.mark.parametrize(
    ("ready", "draining", "status"),
    [(True, False, SERVING), (False, False, NOT_SERVING), (True, True, NOT_SERVING)],
)
def test_serving_only_while_every_model_is_ready_and_not_draining(ready, draining, status):
    servicer = StandardHealth(_Core(ready, draining))
    answer = asyncio.run(servicer.Check(health_pb2.HealthCheckRequest(), context=None))
    assert answer.status == status
