"""The gateway core over fake workers: batching, routing, redaction, retries, deadlines, drain.

No socket and no process: `Gateway` takes a `client_factory`, and the fakes here
answer like a worker would (echo), hold a batch until the test lets it go
(a gate), or fail (retriably or not). Each test runs its own event loop with
`asyncio.run`, bounded by `LIMIT_S`; waits are on events, not on sleeps.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import numpy as np
import pytest

from inferplane.compiler.plan import Plan, load_plan
from inferplane.gateway import errors
from inferplane.gateway.app import Gateway
from inferplane.gateway.domain import InferRequest

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
LIMIT_S = 10.0


class FakeWorker:
    """Echo: fraud models answer `score = features[:, :2]`, support-intent one row of
    the text's length per item. `gate` (when set) holds each call until it is set;
    `fail` is raised after the gate. Its Health places it where demo.infer's `laptop`
    is declared, as its host says (`location` is (kind, site, source))."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.calls: list[tuple[str, int, dict[str, np.ndarray]]] = []
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None
        self.arrived = asyncio.Event()
        self.location = ("onprem", "localhost", "host")
        self.probes = 0

    async def infer(self, model, version, arrays, *, timeout=None, request_id=""):
        self.calls.append((model, version, dict(arrays)))
        self.arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        if "features" in arrays:
            return {"score": np.asarray(arrays["features"])[:, :2].copy()}, 1000
        texts = arrays["text"]
        lengths = np.array([[len(t)] * 12 for t in texts], dtype=np.float32)
        return {"intent": lengths}, 1000

    async def health(self, *, timeout=None):
        from inferplane.gateway.worker_client import WorkerHealth

        self.probes += 1
        kind, site, source = self.location
        return WorkerHealth(
            ready=True, location_kind=kind, location_site=site, location_source=source
        )

    async def close(self):
        pass


class Fakes(dict):
    def __call__(self, endpoint: str) -> FakeWorker:
        return self.setdefault(endpoint, FakeWorker(endpoint))


@pytest.fixture
def plan() -> Plan:
    return load_plan((GOLDEN / "demo.plan.json").read_text())


def without_slos(plan: Plan) -> Plan:
    """The plan with no latency SLOs: admission then never refuses on the fakes' timing."""
    models = [
        m.model_copy(update={"slos": m.slos.model_copy(update={"latency": []})})
        for m in plan.models
    ]
    return plan.model_copy(update={"models": models})


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, LIMIT_S))


async def started(plan: Plan, fakes: Fakes, *endpoints: str, **kwargs) -> Gateway:
    gateway = Gateway(plan, rng=random.Random(7), client_factory=fakes, **kwargs)
    await gateway.start()
    gateway.set_replicas("laptop", list(endpoints or ["w0"]))
    # demo.infer's models are on-prem-only: a probe places each replica first.
    assert await gateway.placement_checked(LIMIT_S)
    return gateway


def features(rows: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((rows, 30), dtype=np.float32)


def fraud(rows: int = 1, seed: int = 0, model: str = "fraud-scorer", version: str = "1", **kw):
    return InferRequest(model, version, f"r{seed}", {"features": features(rows, seed)}, **kw)


async def until(predicate, limit_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit_s
    while not predicate():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.001)


# --- batching


def test_concurrent_requests_are_merged_and_split_back_exactly(plan):
    async def scenario():
        fakes = Fakes()
        gateway = await started(without_slos(plan), fakes)
        gateway.slots_per_replica = 1
        worker = fakes("w0")
        worker.gate = asyncio.Event()
        first = asyncio.create_task(gateway.infer(fraud(1, seed=0), deadline=None))
        await until(lambda: len(worker.calls) == 1)
        # The only slot is busy: these queue, then leave together when it frees.
        requests = [fraud(rows, seed=s) for s, rows in enumerate([2, 1, 3, 1], start=1)]
        rest = [asyncio.create_task(gateway.infer(r, deadline=None)) for r in requests]
        await asyncio.sleep(0.01)
        assert len(worker.calls) == 1
        worker.gate.set()
        outcomes = await asyncio.gather(first, *rest)
        assert [c[2]["features"].shape[0] for c in worker.calls] == [1, 7]
        for request, outcome in zip([fraud(1, seed=0), *requests], outcomes, strict=True):
            np.testing.assert_array_equal(
                outcome.outputs["score"], request.inputs["features"][:, :2]
            )
            assert (outcome.model, outcome.version) == ("fraud-scorer", 1)
        stats = gateway.statistics("fraud-scorer", "1")[0]
        assert (stats.execution_count, stats.inference_count, stats.success.count) == (2, 8, 5)
        assert {b.batch_size for b in stats.batches} == {1, 7}
        # perf_analyzer refuses statistics whose three compute counts differ:
        # each phase is counted once per request, per batch once per execution.
        phases = (stats.compute_input, stats.compute_infer, stats.compute_output)
        assert [d.count for d in phases] == [5, 5, 5]
        assert stats.compute_infer.ns == 5 * 1000  # the fake worker's compute_ns, per request
        for b in stats.batches:
            assert b.compute_input.count == b.compute_infer.count == b.compute_output.count == 1
        await gateway.drain(1.0)

    run(scenario())


def test_an_idle_shard_sends_a_lone_request_at_once(plan):
    async def scenario():
        fakes = Fakes()
        gateway = await started(plan, fakes)
        outcome = await gateway.infer(fraud(3, seed=4), deadline=gateway.now() + 5)
        np.testing.assert_array_equal(outcome.outputs["score"], features(3, 4)[:, :2])
        await gateway.drain(1.0)

    run(scenario())


# --- routes and versions


def test_versions_and_routes_resolve_to_the_model_that_serves(plan):
    async def scenario():
        fakes = Fakes()
        gateway = await started(without_slos(plan), fakes)
        latest = await gateway.infer(fraud(version=""), deadline=None)
        pinned = await gateway.infer(fraud(version="1"), deadline=None)
        assert (latest.version, pinned.version) == (2, 1)
        routed = [
            await gateway.infer(fraud(model="payments", version=""), deadline=None)
            for _ in range(40)
        ]
        assert {o.route for o in routed} == {"payments"}
        assert {(o.model, o.version) for o in routed} == {("fraud-scorer", 1), ("fraud-scorer", 2)}
        sent = [(model, version) for model, version, _ in fakes("w0").calls]
        assert sent[:2] == [("fraud-scorer", 2), ("fraud-scorer", 1)]
        # Errors of the pure cores carry their kind without subclassing GatewayError.
        with pytest.raises(Exception, match="unknown model or route `nope`") as missing:
            await gateway.infer(fraud(model="nope"), deadline=None)
        assert errors.kind_of(missing.value) is errors.ErrorKind.NOT_FOUND
        with pytest.raises(Exception, match="no version `9`") as unknown:
            await gateway.infer(fraud(version="9"), deadline=None)
        assert errors.kind_of(unknown.value) is errors.ErrorKind.NOT_FOUND
        await gateway.drain(1.0)

    run(scenario())


# --- validation and redaction


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"features": np.zeros((1, 29), np.float32)}, r"input `features`: expected FP32\[-1, 30\]"),
        ({"features": np.zeros((1, 30), np.float64)}, r"input `features`: expected FP32"),
        ({"feature": np.zeros((1, 30), np.float32)}, r"unknown input `feature`"),
        ({"features": np.zeros((33, 30), np.float32)}, r"batch of 33 is above"),
    ],
)
def test_requests_that_do_not_fit_the_signature_are_invalid(plan, inputs, message):
    async def scenario():
        fakes = Fakes()
        gateway = await started(plan, fakes)
        with pytest.raises(errors.InvalidArgument, match=message):
            await gateway.infer(InferRequest("fraud-scorer", "1", "x", inputs), deadline=None)
        assert fakes("w0").calls == []
        await gateway.drain(1.0)

    run(scenario())


def test_pii_is_redacted_before_a_worker_sees_it(plan):
    async def scenario():
        fakes = Fakes()
        gateway = await started(plan, fakes)
        text = np.array([b"refund to jane.doe@example.com please", b"no pii here"], dtype=object)
        outcome = await gateway.infer(
            InferRequest("support-intent", "", "t", {"text": text}), deadline=None
        )
        ((_, _, arrays),) = fakes("w0").calls
        assert list(arrays["text"]) == [b"refund to [EMAIL] please", b"no pii here"]
        assert outcome.outputs["intent"][:, 0].tolist() == [24.0, 11.0]
        await gateway.drain(1.0)

    run(scenario())


# --- failures and retries


def test_a_worker_dying_mid_batch_is_retried_on_another_answered_once(plan):
    async def scenario():
        fakes = Fakes()
        gateway = await started(without_slos(plan), fakes, "dying")
        dying = fakes("dying")
        dying.gate = asyncio.Event()
        task = asyncio.create_task(gateway.infer(fraud(2, seed=3), deadline=None))
        await until(lambda: len(dying.calls) == 1)
        gateway.set_replicas("laptop", ["dying", "healthy"])
        assert await gateway.placement_checked(LIMIT_S)
        dying.fail = errors.Unavailable("worker dying: connection reset")
        dying.gate.set()
        outcome = await task
        np.testing.assert_array_equal(outcome.outputs["score"], features(2, 3)[:, :2])
        assert len(dying.calls) == 1 and len(fakes("healthy").calls) == 1
        pool = gateway.fleet.pool("laptop")
        assert [r.endpoint for r in pool.live()] == ["healthy"]  # ejected until a probe
        assert gateway.statistics("fraud-scorer", "1")[0].success.count == 1
        await gateway.drain(1.0)

    run(scenario())


def test_a_request_the_worker_rejects_is_not_retried(plan):
    async def scenario():
        fakes = Fakes()
        gateway = await started(plan, fakes, "w0", "w1")
        for worker in (fakes("w0"), fakes("w1")):
            worker.fail = errors.InvalidArgument("model said no")
        with pytest.raises(errors.InvalidArgument, match="model said no"):
            await gateway.infer(fraud(), deadline=None)
        assert len(fakes("w0").calls) + len(fakes("w1").calls) == 1
        assert len(gateway.fleet.pool("laptop").live()) == 2
        await gateway.drain(1.0)

    run(scenario())


def test_without_replicas_it_is_unavailable_and_not_ready(plan):
    async def scenario():
        fakes = Fakes()
        gateway = Gateway(plan, client_factory=fakes)
        await gateway.start()
        assert not gateway.ready
        with pytest.raises(errors.Unavailable, match="no live replica"):
            await gateway.infer(fraud(), deadline=None)
        gateway.set_replicas("laptop", ["w0"])
        assert not gateway.ready  # until a probe has placed it
        assert await gateway.placement_checked(LIMIT_S)
        assert gateway.ready and gateway.model_ready("payments")
        with pytest.raises(ValueError, match="unknown target"):
            gateway.set_replicas("nowhere", [])
        await gateway.drain(1.0)
        assert not gateway.ready

    run(scenario())


# --- deadlines and admission


def test_an_expired_request_is_dropped_before_dispatch(plan):
    async def scenario():
        fakes = Fakes()
        gateway = await started(without_slos(plan), fakes)
        gateway.slots_per_replica = 1
        worker = fakes("w0")
        worker.gate = asyncio.Event()
        first = asyncio.create_task(gateway.infer(fraud(seed=1), deadline=None))
        await until(lambda: len(worker.calls) == 1)
        with pytest.raises(errors.DeadlineExceeded):
            await gateway.infer(fraud(seed=2), deadline=gateway.now() + 0.05)
        worker.gate.set()
        await first
        assert len(worker.calls) == 1  # the expired request never reached a worker
        await gateway.drain(1.0)

    run(scenario())


def test_admission_sends_to_the_fallback_or_refuses(plan):
    # A frozen clock: the deadline sits between the fallback's predicted time
    # (fraud-lite, ~24 µs conservatively) and the route's models' (29 and 34 µs).
    async def scenario():
        fakes = Fakes()
        gateway = await started(plan, fakes, clock=lambda: 1000.0)
        outcome = await gateway.infer(fraud(model="payments", version=""), deadline=1000.0 + 26e-6)
        assert (outcome.model, outcome.route) == ("fraud-lite", "payments")
        with pytest.raises(Exception, match="exceeds") as refused:
            await gateway.infer(fraud(), deadline=1000.0 + 26e-6)
        assert errors.kind_of(refused.value) is errors.ErrorKind.RESOURCE_EXHAUSTED
        with pytest.raises(errors.DeadlineExceeded):
            await gateway.infer(fraud(), deadline=999.0)
        await gateway.drain(1.0)

    run(scenario())


# --- drain


def test_drain_refuses_new_requests_and_finishes_queued_ones(plan):
    async def scenario():
        fakes = Fakes()
        gateway = await started(without_slos(plan), fakes)
        worker = fakes("w0")
        worker.gate = asyncio.Event()
        inflight = asyncio.create_task(gateway.infer(fraud(seed=5), deadline=None))
        await until(lambda: len(worker.calls) == 1)
        drain = asyncio.create_task(gateway.drain(5.0))
        await asyncio.sleep(0)
        with pytest.raises(errors.Unavailable, match="draining"):
            await gateway.infer(fraud(), deadline=None)
        assert not gateway.ready
        worker.gate.set()
        outcome = await inflight
        np.testing.assert_array_equal(outcome.outputs["score"], features(1, 5)[:, :2])
        await drain

    run(scenario())


def test_drain_answers_what_is_left_after_its_grace(plan):
    async def scenario():
        fakes = Fakes()
        gateway = await started(without_slos(plan), fakes)
        fakes("w0").gate = asyncio.Event()  # never set: the batch hangs
        inflight = asyncio.create_task(gateway.infer(fraud(), deadline=None))
        await until(lambda: len(fakes("w0").calls) == 1)
        await gateway.drain(0.05)
        with pytest.raises(errors.Unavailable, match="draining"):
            await inflight

    run(scenario())


# --- metrics


class SteppedClock:
    """The gateway's clock, moved only by the test (and the slow worker below)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class SlowWorker(FakeWorker):
    """Each call takes `seconds` on the stepped clock."""

    clock: SteppedClock
    seconds = 0.0

    async def infer(self, model, version, arrays, **kw):
        self.clock.t += self.seconds
        return await super().infer(model, version, arrays, **kw)


def scraped(metrics) -> dict[tuple[str, frozenset], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = metrics.render().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_requests_errors_batches_and_slo_violations_are_counted(plan):
    from inferplane.gateway.metrics import Metrics

    async def scenario():
        clock, metrics = SteppedClock(), Metrics()
        workers: dict[str, SlowWorker] = {}

        def factory(endpoint: str) -> SlowWorker:
            if endpoint not in workers:
                workers[endpoint] = SlowWorker(endpoint)
                workers[endpoint].clock = clock
            return workers[endpoint]

        gateway = Gateway(
            plan, clock=clock, rng=random.Random(7), client_factory=factory, metrics=metrics
        )
        await gateway.start()
        gateway.set_replicas("laptop", ["w0"])
        assert await gateway.placement_checked(LIMIT_S)
        worker = factory("w0")
        # fraud-scorer@1 aims at p50 ≤ 5 ms and p99 ≤ 20 ms: 30 ms misses both, 3 ms neither.
        worker.seconds = 0.030
        await gateway.infer(fraud(3, seed=1), deadline=None)
        worker.seconds = 0.003
        await gateway.infer(fraud(2, seed=2), deadline=None)
        outcome = await gateway.infer(fraud(1, seed=3, model="payments", version=""), deadline=None)
        with pytest.raises(Exception) as missing:
            await gateway.infer(fraud(model="nope"), deadline=None)
        assert errors.kind_of(missing.value) is errors.ErrorKind.NOT_FOUND
        bad = InferRequest("fraud-scorer", "1", "x", {"features": np.zeros((1, 3), np.float32)})
        with pytest.raises(errors.InvalidArgument):
            await gateway.infer(bad, deadline=None)
        worker.fail = errors.Internal("the model crashed")
        with pytest.raises(errors.Internal):
            await gateway.infer(fraud(4, seed=4), deadline=None)
        await gateway.drain(1.0)

        got = scraped(metrics)

        def value(name: str, **labels: str) -> float:
            return got.get((name, frozenset(labels.items())), 0.0)

        requests = "inferplane_requests_total"
        v1 = {"model": "fraud-scorer", "version": "1"}
        assert value(requests, **v1, route="", code="OK") == 2
        assert value(requests, **v1, route="", code="INVALID_ARGUMENT") == 1
        assert value(requests, **v1, route="", code="INTERNAL") == 1
        assert value(requests, model="nope", version="1", route="", code="NOT_FOUND") == 1
        served = {"model": outcome.model, "version": str(outcome.version)}
        assert value(requests, **served, route="payments", code="OK") == 1
        assert value("inferplane_request_duration_seconds_count", **v1) == 4 + (served == v1)
        # Batches of 3, 2, 1 (the route's, to a version of fraud-scorer) and 4 rows.
        assert served["model"] == "fraud-scorer"
        batch = {"model": "fraud-scorer", "target": "laptop"}
        assert value("inferplane_batch_size_count", **batch) == 4
        assert value("inferplane_batch_size_sum", **batch) == 3 + 2 + 1 + 4
        # Only the 30 ms request missed fraud-scorer@1's objectives.
        violations = "inferplane_slo_violations_total"
        assert value(violations, model="fraud-scorer", slo="p50") == 1
        assert value(violations, model="fraud-scorer", slo="p99") == 1
        assert value("inferplane_queue_depth", model="fraud-scorer") == 0

    run(scenario())


def test_failures_count_against_an_availability_objective_and_client_errors_do_not(plan):
    from inferplane.gateway.metrics import Metrics

    models = [
        m.model_copy(update={"slos": m.slos.model_copy(update={"availability_percent": 99.9})})
        if (m.name, m.version) == ("fraud-scorer", 2)
        else m
        for m in without_slos(plan).models
    ]
    available = plan.model_copy(update={"models": models})

    async def scenario():
        fakes, metrics = Fakes(), Metrics()
        gateway = await started(available, fakes, "w0", metrics=metrics)

        def misses(model: str) -> float:
            labels = frozenset({"model": model, "slo": "availability"}.items())
            return scraped(metrics).get(("inferplane_slo_violations_total", labels), 0)

        await gateway.infer(fraud(version="2"), deadline=None)
        with pytest.raises(errors.InvalidArgument):  # the client's error: not counted
            bad = InferRequest(
                "fraud-scorer", "2", "bad", {"features": np.zeros((1, 3), np.float32)}
            )
            await gateway.infer(bad, deadline=None)
        assert misses("fraud-scorer") == 0
        fakes("w0").fail = errors.Internal("the runtime failed")
        with pytest.raises(errors.GatewayError):
            await gateway.infer(fraud(version="2"), deadline=None)
        with pytest.raises(errors.GatewayError):  # version 1 declares no availability objective
            await gateway.infer(fraud(version="1"), deadline=None)
        await gateway.drain(1.0)
        return misses("fraud-scorer")

    assert run(scenario()) == 1


def test_queue_depth_and_worker_up_follow_the_fleet(plan):
    from inferplane.gateway.metrics import Metrics

    async def scenario():
        fakes, metrics = Fakes(), Metrics()
        gateway = await started(without_slos(plan), fakes, "w0", "w1", metrics=metrics)
        gateway.slots_per_replica = 1

        def value(name: str, **labels: str) -> float:
            return scraped(metrics)[name, frozenset(labels.items())]

        assert value("inferplane_worker_up", target="laptop", replica="w0") == 1
        assert value("inferplane_worker_up", target="laptop", replica="w1") == 1
        for worker in (fakes("w0"), fakes("w1")):
            worker.gate = asyncio.Event()
        # Two requests fill both slots; the next two wait in the queue.
        tasks = []
        for seed in range(4):
            tasks.append(asyncio.create_task(gateway.infer(fraud(seed=seed), deadline=None)))
            sent = min(seed + 1, 2)
            await until(lambda n=sent: len(fakes("w0").calls) + len(fakes("w1").calls) == n)
        await asyncio.sleep(0.01)
        assert value("inferplane_queue_depth", model="fraud-scorer") == 2
        # w0 refuses (UNAVAILABLE): ejected, so down; its batch moves to w1.
        fakes("w0").fail = errors.Unavailable("connection reset")
        fakes("w0").gate.set()
        await until(lambda: not gateway.fleet.pool("laptop").get("laptop/0").live)
        assert value("inferplane_worker_up", target="laptop", replica="w0") == 0
        fakes("w1").gate.set()
        await asyncio.gather(*tasks)
        assert value("inferplane_queue_depth", model="fraud-scorer") == 0
        # A replica the supervisor removes reads 0 (a restarted worker comes back under it).
        gateway.set_replicas("laptop", ["w0"])
        assert value("inferplane_worker_up", target="laptop", replica="w1") == 0
        await gateway.drain(1.0)

    run(scenario())


# --- placement: the on-prem rule against where each worker says it runs


def no_on_prem_rule(plan: Plan) -> Plan:
    """The plan with no on-prem-only model: its target has nothing to check."""
    models = [
        m.model_copy(update={"privacy": m.privacy.model_copy(update={"on_prem_only": False})})
        for m in plan.models
    ]
    return plan.model_copy(update={"models": models})


def placement_logs(caplog) -> list[tuple[str, str]]:
    return [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if r.name == "inferplane.gateway.app" and "event=placement_" in r.getMessage()
    ]


def test_a_replica_reporting_cloud_gets_no_request_and_is_rechecked(plan, caplog):
    caplog.set_level("INFO", logger="inferplane.gateway.app")

    async def scenario():
        from inferplane.gateway.metrics import Metrics

        clock, fakes, metrics = SteppedClock(), Fakes(), Metrics()
        fakes("w0").location = ("cloud", "gcp:europe-west1", "host")
        gateway = Gateway(plan, clock=clock, client_factory=fakes, metrics=metrics)
        await gateway.start()
        gateway.set_replicas("laptop", ["w0"])
        assert await gateway.placement_checked(LIMIT_S)
        assert not gateway.ready and not gateway.model_ready("fraud-scorer")
        with pytest.raises(errors.Unavailable, match="no live replica"):
            await gateway.infer(fraud(), deadline=None)
        assert (
            scraped(metrics)[
                "inferplane_worker_up", frozenset({"target": "laptop", "replica": "w0"}.items())
            ]
            == 0
        )
        # Probed again after its backoff: still refused, and not logged again.
        clock.t += 60
        await until(lambda: fakes("w0").probes == 2)
        assert not gateway.ready
        # The operator moves it: the next probe admits it.
        fakes("w0").location = ("onprem", "localhost", "host")
        clock.t += 60
        await until(lambda: gateway.ready)
        await gateway.infer(fraud(), deadline=None)
        await gateway.drain(1.0)
        return fakes("w0")

    worker = run(scenario())
    assert len(worker.calls) == 1  # only the request after the move
    logs = placement_logs(caplog)
    assert [level for level, _ in logs] == ["ERROR", "INFO"]
    assert logs[0][1].startswith(
        "event=placement_refused target=laptop replica=laptop/0 endpoint=w0 kind=cloud "
        "site=gcp:europe-west1 source=host models=fraud-lite@1,fraud-scorer@1,fraud-scorer@2 "
        'why="target `laptop` replica w0 reports cloud'
    )
    assert logs[1][1].startswith("event=placement_verified target=laptop replica=laptop/0")


def test_a_replica_at_another_on_prem_site_is_refused(plan, caplog):
    async def scenario():
        fakes = Fakes()
        fakes("w0").location = ("onprem", "ams-dc2", "host")
        gateway = Gateway(plan, client_factory=fakes)
        await gateway.start()
        gateway.set_replicas("laptop", ["w0"])
        assert await gateway.placement_checked(LIMIT_S)
        assert not gateway.ready
        await gateway.drain(1.0)

    run(scenario())
    ((level, message),) = placement_logs(caplog)
    assert level == "ERROR" and 'reports onprem \\"ams-dc2\\"' in message


def test_an_on_prem_replica_at_the_declared_site_is_used_without_a_word(plan, caplog):
    caplog.set_level("INFO", logger="inferplane.gateway.app")

    async def scenario():
        fakes = Fakes()
        gateway = Gateway(plan, client_factory=fakes)
        await gateway.start()
        gateway.set_replicas("laptop", ["w0"])
        assert not gateway.ready  # no request before the probe
        assert await gateway.placement_checked(LIMIT_S)
        assert gateway.ready
        await gateway.infer(fraud(), deadline=None)
        await gateway.drain(1.0)
        return fakes("w0")

    worker = run(scenario())
    assert worker.probes == 1 and len(worker.calls) == 1
    assert placement_logs(caplog) == []


def test_a_declared_location_is_used_with_one_warning(plan, caplog):
    async def scenario():
        fakes = Fakes()
        fakes("w0").location = ("onprem", "localhost", "declared")
        gateway = await started(plan, fakes, "w0")
        await gateway.infer(fraud(), deadline=None)
        # The worker restarts on the same socket: probed again, not warned again.
        gateway.set_replicas("laptop", [])
        gateway.set_replicas("laptop", ["w0"])
        assert await gateway.placement_checked(LIMIT_S)
        await gateway.infer(fraud(), deadline=None)
        await gateway.drain(1.0)
        return fakes("w0")

    worker = run(scenario())
    assert worker.probes == 2 and len(worker.calls) == 2
    ((level, message),) = placement_logs(caplog)
    assert level == "WARNING"
    assert message.startswith("event=placement_unverified target=laptop")
    assert "INFERPLANE_LOCATION (onprem:localhost if it runs there)" in message


def test_remote_workers_of_a_bound_target_start_unverified(plan):
    laptop = plan.targets[0].model_copy(update={"workers": ["r0", "r1"]})
    remote = plan.model_copy(update={"targets": [laptop]})

    async def scenario():
        fakes = Fakes()
        fakes("r1").location = ("cloud", "aws:us-east-1", "host")
        gateway = Gateway(remote, client_factory=fakes)
        assert gateway.fleet.pool("laptop").live() == []
        await gateway.start()
        assert await gateway.placement_checked(LIMIT_S)
        assert [r.endpoint for r in gateway.fleet.pool("laptop").live()] == ["r0"]
        for seed in range(5):
            await gateway.infer(fraud(seed=seed), deadline=None)
        await gateway.drain(1.0)
        return fakes

    fakes = run(scenario())
    assert len(fakes("r0").calls) == 5 and fakes("r1").calls == []


def test_a_target_without_on_prem_only_models_is_not_probed_before_use(plan):
    async def scenario():
        fakes = Fakes()
        fakes("w0").location = ("cloud", "anywhere", "host")  # nothing forbids it
        gateway = Gateway(no_on_prem_rule(plan), client_factory=fakes)
        await gateway.start()
        gateway.set_replicas("laptop", ["w0"])
        assert gateway.ready  # at once, as before
        await gateway.infer(fraud(), deadline=None)
        await gateway.drain(1.0)
        return fakes("w0")

    worker = run(scenario())
    assert worker.probes == 0 and len(worker.calls) == 1


def test_probe_first_targets_admit_a_replica_only_once_it_answers(plan):
    """`infc serve --remote`: an address that names no worker yet never gets a request."""

    async def absent(*, timeout=None):
        raise errors.Unavailable("no such host")

    async def scenario():
        fakes = Fakes()
        fakes("gone").health = absent
        fakes("gone").fail = errors.Unavailable("no such host")
        gateway = Gateway(no_on_prem_rule(plan), client_factory=fakes, probe_first={"laptop"})
        await gateway.start()
        gateway.set_replicas("laptop", ["w0", "gone"])
        assert not gateway.ready  # nothing probed yet
        assert await gateway.placement_checked(LIMIT_S)
        assert gateway.ready
        for seed in range(8):
            await gateway.infer(fraud(seed=seed), deadline=None)
        await gateway.drain(1.0)
        return fakes

    fakes = run(scenario())
    assert len(fakes("w0").calls) >= 1 and fakes("gone").calls == []


@pytest.mark.parametrize(("hardware", "slots"), [("cpu", 1), ("gpu", 2), ("tpu", 2)])
def test_a_replica_runs_as_many_batches_at_once_as_its_hardware_allows(plan, hardware, slots):
    targets = [t.model_copy(update={"hardware": hardware}) for t in plan.targets]
    plan = without_slos(plan.model_copy(update={"targets": targets}))

    async def scenario():
        fakes = Fakes()
        gateway = await started(plan, fakes)
        worker = fakes("w0")
        worker.gate = asyncio.Event()
        tasks = []
        for seed in range(4):  # one by one: requests read in one loop pass form one batch
            tasks.append(asyncio.create_task(gateway.infer(fraud(1, seed=seed), deadline=None)))
            await asyncio.sleep(0.01)  # past the batch window (1 ms)
        assert len(worker.calls) == slots  # the rest wait in the queue, and batch
        worker.gate.set()
        await asyncio.gather(*tasks)
        assert [len(c[2]["features"]) for c in worker.calls] == [1] * slots + [4 - slots]
        await gateway.drain(1)

    run(scenario())


class Saturated:
    """A load gauge that says the gateway's loop is saturated (or not)."""

    def __init__(self, value: bool) -> None:
        self.value = value

    def saturated(self) -> bool:
        return self.value


@pytest.mark.parametrize("saturated", [False, True])
def test_a_saturated_gateway_holds_a_lone_request_for_the_batch_window(plan, saturated):
    window_s = 0.2  # long, so that the unsaturated path is clearly shorter
    models = []
    for m in without_slos(plan).models:
        shards = [
            sh.model_copy(
                update={"batching": sh.batching.model_copy(update={"window_s": window_s})}
            )
            for sh in m.shards
        ]
        models.append(m.model_copy(update={"shards": shards}))
    plan = plan.model_copy(update={"models": models})

    async def scenario():
        fakes = Fakes()
        gateway = await started(plan, fakes, load=Saturated(saturated))
        worker = fakes("w0")
        loop = asyncio.get_running_loop()
        start = loop.time()
        await gateway.infer(fraud(1, seed=1, version="2"), deadline=None)
        waited = loop.time() - start
        assert len(worker.calls) == 1
        if saturated:
            assert waited >= window_s  # it waited for company
        else:
            assert waited < window_s  # an idle shard sends at once
        await gateway.drain(1)

    run(scenario())
