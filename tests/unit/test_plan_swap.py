"""What a running gateway may swap to (gateway/plan_swap.py), and the swap itself with
fake workers (gateway/swap.py): no request fails, the new plan serves from the swap on,
statistics carry over, the health listener never sees "not ready"."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import numpy as np
import pytest

from inferplane.compiler.plan import Plan, load_plan
from inferplane.gateway import plan_swap
from inferplane.gateway.app import Gateway
from inferplane.gateway.domain import InferRequest
from inferplane.gateway.metrics import NullMetrics
from inferplane.gateway.swap import PlanSwap, SwapFailed, SwapRefused
from inferplane.gateway.worker_client import WorkerHealth

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
LIMIT_S = 20.0


@pytest.fixture
def plan() -> Plan:
    return load_plan((GOLDEN / "demo.plan.json").read_text())


def edited(plan: Plan, **changes) -> Plan:
    return plan.model_copy(update=changes).with_hash()


def with_split(plan: Plan, v1: float, v2: float) -> Plan:
    (route,) = plan.routes
    entries = [
        route.entries[0].model_copy(update={"percent": v1}),
        route.entries[1].model_copy(update={"percent": v2}),
    ]
    return edited(plan, routes=[route.model_copy(update={"entries": entries})])


def model_edit(plan: Plan, name: str, version: int, **changes) -> Plan:
    models = [
        m.model_copy(update=changes) if (m.name, m.version) == (name, version) else m
        for m in plan.models
    ]
    return edited(plan, models=models)


def shard_batching(plan: Plan, name: str, max_batch: int) -> Plan:
    models = []
    for m in plan.models:
        if m.name == name:
            shards = [
                s.model_copy(
                    update={"batching": s.batching.model_copy(update={"max_batch_size": max_batch})}
                )
                for s in m.shards
            ]
            m = m.model_copy(update={"shards": shards})
        models.append(m)
    return edited(plan, models=models)


# --- what may change


def test_gateway_side_changes_need_no_restart(plan):
    assert plan_swap.refusals(plan, plan) == []
    assert plan_swap.refusals(plan, with_split(plan, 50, 50)) == []
    assert plan_swap.refusals(plan, shard_batching(plan, "fraud-scorer", 8)) == []  # smaller
    slos = plan.models[1].slos.model_copy(update={"latency": []})
    assert plan_swap.refusals(plan, model_edit(plan, "fraud-scorer", 1, slos=slos)) == []
    # Dropping a model version is the gateway's choice: workers keep what they loaded.
    fewer = edited(
        plan, models=[m for m in plan.models if m.name != "support-intent"], routes=plan.routes
    )
    assert plan_swap.refusals(plan, fewer) == []


def test_worker_side_changes_are_refused_each_named(plan):
    gateway = plan.gateway.model_copy(update={"listen": "0.0.0.0:9000"})
    target = plan.targets[0].model_copy(update={"threads": 8})
    artifact = plan.models[1].artifact.model_copy(update={"sha256": "0" * 64})
    newer = plan.models[1].model_copy(update={"version": 3})
    cases = [
        (
            edited(plan, gateway=gateway),
            "the gateway block changed (listen): restart the gateway to serve it",
        ),
        (
            edited(plan, targets=[target]),
            "target `laptop` changed (threads): its workers must restart on the new spec",
        ),
        (
            model_edit(plan, "fraud-scorer", 1, artifact=artifact),
            "model fraud-scorer@1: its artifact changed: its workers must restart to load it",
        ),
        (
            edited(plan, models=[*plan.models, newer]),
            "model fraud-scorer@3 is new: its workers must restart to load it",
        ),
        (
            shard_batching(plan, "fraud-lite", 128),
            "model fraud-lite@1 on `laptop`: batch max 64 → 128: its workers there take at "
            "most 64 until they restart",
        ),
    ]
    extra = plan.targets[0].model_copy(update={"name": "spare"})
    cases.append(
        (
            edited(plan, targets=[*plan.targets, extra]),
            "target `spare` is new: it has no workers yet, so restart to start them",
        )
    )
    for new, reason in cases:
        assert plan_swap.refusals(plan, new) == [reason]
        assert "; " not in reason  # the RPC's separator
    # A target the new plan drops: its workers would run on, unused.
    assert plan_swap.refusals(edited(plan, targets=[*plan.targets, extra]), plan) == [
        "target `spare` is gone from the plan: its workers would run on unused, so restart "
        "to stop them"
    ]


# --- the swap, with fake workers


class Echo:
    """score = features[:, :2] + version (so the answer says which version served)."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.calls: list[tuple[str, int]] = []
        self.dead = False

    async def infer(self, model, version, arrays, *, timeout=None, request_id=""):
        self.calls.append((model, version))
        await asyncio.sleep(0.002)
        if "features" in arrays:
            return {"score": np.asarray(arrays["features"])[:, :2] + version}, 1000
        return {"intent": np.zeros((len(arrays["text"]), 12), np.float32)}, 1000

    async def health(self, *, timeout=None):
        if self.dead:
            from inferplane.gateway.errors import Unavailable

            raise Unavailable("gone")
        return WorkerHealth(
            ready=True, location_kind="onprem", location_site="localhost", location_source="host"
        )

    async def close(self):
        pass


class Fleet(dict):
    def __call__(self, endpoint: str) -> Echo:
        return self.setdefault(endpoint, Echo(endpoint))


def payments(seed: int) -> InferRequest:
    x = np.random.default_rng(seed).standard_normal((1, 30)).astype(np.float32)
    return InferRequest("payments", "", f"r{seed}", {"features": x})


class UpGauge(NullMetrics):
    """Records every worker_up the gateways publish."""

    def __init__(self) -> None:
        self.ups: list[tuple[str, str, bool]] = []

    def worker_up(self, target: str, replica: str, up: bool) -> None:
        self.ups.append((target, replica, up))


def make(fleet: Fleet, metrics: NullMetrics | None = None):
    def make_gateway(plan: Plan, probe_first=frozenset()) -> Gateway:
        return Gateway(
            plan,
            rng=random.Random(3),
            client_factory=fleet,
            probe_first=probe_first,
            metrics=metrics,
        )

    return make_gateway


def test_a_swap_under_load_fails_no_request_and_serves_the_new_split(plan):
    plan = plan.model_copy(
        update={
            "models": [
                m.model_copy(update={"slos": m.slos.model_copy(update={"latency": []})})
                for m in plan.models
            ]
        }
    ).with_hash()
    (route,) = plan.routes
    v2 = route.entries[1].model_copy(update={"percent": 100.0})
    only_v2 = edited(plan, routes=[route.model_copy(update={"entries": [v2]})])

    gauge = UpGauge()

    async def scenario():
        fleet = Fleet()
        make_gateway = make(fleet, gauge)
        gateway = make_gateway(plan)
        await gateway.start()
        gateway.set_replicas("laptop", ["w0", "w1"])
        assert await gateway.placement_checked(LIMIT_S)
        gauge.ups.clear()  # from here on, workers stay up
        swap = PlanSwap(gateway, make_gateway=make_gateway, grace_s=5.0)
        held = {"gateway": gateway}
        swap.follow(lambda new: held.update(gateway=new))
        seen_ready: list[bool] = []
        gateway.add_ready_listener(seen_ready.append)
        failures: list[BaseException] = []
        versions_after: list[int] = []
        swapped = asyncio.Event()

        async def client(k: int) -> None:
            for i in range(60):
                request = payments(k * 1000 + i)
                after = swapped.is_set()
                try:
                    outcome = await held["gateway"].infer(request, deadline=None)
                except Exception as error:
                    failures.append(error)
                    continue
                if after:
                    versions_after.append(outcome.version)
                await asyncio.sleep(0.001)

        clients = [asyncio.create_task(client(k)) for k in range(8)]
        await asyncio.sleep(0.05)
        new, previous = await swap.apply(only_v2)
        assert previous == plan.content_hash
        swapped.set()
        await asyncio.gather(*clients)
        stats = {(s.name, s.version): s.inference_count for s in new.statistics()}
        await asyncio.sleep(0.05)
        await swap.drain(2.0)
        return new, held, seen_ready, failures, versions_after, stats, gateway

    new, held, seen_ready, failures, versions_after, stats, old = asyncio.run(
        asyncio.wait_for(scenario(), LIMIT_S)
    )
    assert failures == []
    assert held["gateway"] is new and new.plan == only_v2
    assert versions_after and set(versions_after) == {2}
    # Ready throughout: once on the old gateway, once on the new one when the swap
    # hands the listener over, and False only at the final drain.
    assert seen_ready == [True, True, False]
    # Counts carried over: every one of the 480 requests is counted once.
    assert stats[("fraud-scorer", 1)] + stats[("fraud-scorer", 2)] == 480
    assert old.draining
    # The new gateway published worker_up only once it served: never a 0 for a live worker.
    assert gauge.ups and all(up for _, _, up in gauge.ups), gauge.ups


def test_a_refused_or_failed_swap_leaves_the_old_plan_serving(plan):
    async def scenario():
        fleet = Fleet()
        make_gateway = make(fleet)
        gateway = make_gateway(plan)
        await gateway.start()
        gateway.set_replicas("laptop", ["w0"])
        assert await gateway.placement_checked(LIMIT_S)
        swap = PlanSwap(gateway, make_gateway=make_gateway, ready_timeout_s=1.0)
        followed: list[Gateway] = []
        swap.follow(followed.append)
        with pytest.raises(SwapRefused) as refused:
            await swap.apply(shard_batching(plan, "fraud-lite", 128))
        assert "batch max 64 → 128" in refused.value.reasons[0]
        fleet("w0").dead = True  # the new gateway's first probe finds no worker
        with pytest.raises(SwapFailed, match="not every model has a worker"):
            await swap.apply(with_split(plan, 50, 50))
        assert swap.gateway is gateway and followed == [] and not gateway.draining
        fleet("w0").dead = False
        outcome = await gateway.infer(payments(1), deadline=None)
        await swap.drain(1.0)
        return outcome

    outcome = asyncio.run(asyncio.wait_for(scenario(), LIMIT_S))
    assert outcome.model == "fraud-scorer"


def test_a_swap_takes_the_workers_changed_while_it_probed_and_a_cancelled_one_leaves_nothing(plan):
    created: list[Gateway] = []

    async def scenario():
        fleet = Fleet()
        make_gateway = make(fleet)

        def recording(plan, probe_first=frozenset()):
            created.append(make_gateway(plan, probe_first))
            return created[-1]

        gateway = make_gateway(plan)
        await gateway.start()
        gateway.set_replicas("laptop", ["w0"])
        assert await gateway.placement_checked(LIMIT_S)
        swap = PlanSwap(gateway, make_gateway=recording)
        slow = asyncio.Event()
        answer = Echo.health

        async def held_health(self, *, timeout=None):
            await slow.wait()
            return await answer(self, timeout=timeout)

        Echo.health = held_health  # the new gateway's first probes wait
        try:
            applying = asyncio.create_task(swap.apply(with_split(plan, 50, 50)))
            await asyncio.sleep(0.05)
            gateway.set_replicas("laptop", ["w0", "w1"])  # a worker came up meanwhile
            slow.set()
            new, _ = await applying
            assert new.endpoints()["laptop"] == ["w0", "w1"]

            slow.clear()
            cancelled = asyncio.create_task(swap.apply(with_split(plan, 60, 40)))
            await asyncio.sleep(0.05)
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
        finally:
            Echo.health = answer
        assert swap.gateway is new and created[-1] is not new and created[-1].draining
        await swap.drain(1.0)

    asyncio.run(asyncio.wait_for(scenario(), LIMIT_S))
