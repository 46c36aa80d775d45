"""The gateway process's core: requests in, batches out to workers, answers back.

Transport-neutral: the gRPC servicers (gateway/server.py) convert a request,
call `Gateway.infer`, and convert the `InferOutcome` back; errors are the
`kind`-carrying exceptions of gateway/errors.py (and of the pure cores).

    gateway = Gateway(plan)                      # clock, rng, client_factory injectable
    await gateway.start()                        # one driver task per (model version, shard)
    gateway.set_replicas("laptop", ["unix:/run/w0.sock", "unix:/run/w1.sock"])
    outcome = await gateway.infer(request, deadline=clock() + 0.5)
    await gateway.drain(grace_s=10)

One request, `infer`:
1. refused at once while draining (UNAVAILABLE) or past its deadline;
2. `RouteTable.resolve` picks the model version (NOT_FOUND, or a route's draw);
3. the inputs are checked against that model's signature with the workers'
   own check (`backends/batch.check_batch`: names, dtypes, shapes, batch at
   most `max_batch_size`; INVALID_ARGUMENT names the tensor), and the model's
   redacted BYTES inputs are rewritten (`redaction`) — nothing unredacted is
   queued, so no worker ever sees it;
4. the shard: the model's `ShardPicker` draws one by weight among shards with
   a live replica (none: the route's fallback, else UNAVAILABLE);
5. `admission.admit` with the shard policy's `forecast`: queue it, send it to
   the route's fallback, or refuse (RESOURCE_EXHAUSTED);
6. it joins that shard's queue and waits for its answer.

One lane per (model version, shard) owns the queue, stepped by event-loop
callbacks (gateway/lanes.py, `LaneDriver`, which `Gateway` extends; the
probes, placement checks and readiness are `membership.MembershipDriver`'s):
it batches by
`BatchPolicy.decide`, sends each batch to a replica with a free slot, feeds the
measured time to the lane's `ServiceTimeModel`, and retries a retriable failure
on a replica not tried yet. Ejected replicas are probed with the worker's
Health RPC after their backoff and re-admitted when ready.

Metrics (`metrics=`, a `gateway/metrics.Metrics`; none by default): every
answered request is counted once, by the model version that served it (the
client's route name in `route`) and its final status code, with its
end-to-end time and one SLO violation per latency objective it exceeded;
each batch sent, by its model and target; each model's queue depth when it
changes; each replica's live state when membership or health changes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import random
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

import grpc
import numpy as np

from inferplane.backends.batch import check_batch, check_outputs, label
from inferplane.backends.runtime import BadBatch
from inferplane.compiler import plan as plan_mod
from inferplane.gateway import admission, domain, placement, redaction
from inferplane.gateway.batching import Pending
from inferplane.gateway.errors import (
    DeadlineExceeded,
    GatewayError,
    InvalidArgument,
    Unavailable,
    status_of,
)
from inferplane.gateway.lanes import Job, Lane, LaneDriver, new_lane
from inferplane.gateway.membership import MembershipDriver
from inferplane.gateway.metrics import NullMetrics
from inferplane.gateway.retries import Attempts
from inferplane.gateway.routing import ModelKey, RouteTable
from inferplane.gateway.saturation import LoadGauge
from inferplane.gateway.sharding import Fleet, NoReplica
from inferplane.gateway.statistics import Counts
from inferplane.gateway.worker_client import GrpcWorkerClient, WorkerClient

log = logging.getLogger(__name__)

Clock = Callable[[], float]
MAX_RETRIES = 2


# Answers that count against an availability objective: the gateway failed to
# serve. Not the client's own errors (INVALID_ARGUMENT, NOT_FOUND, auth) nor
# CANCELLED (the client went away).
UNAVAILABLE_CODES = frozenset(
    {"UNAVAILABLE", "INTERNAL", "UNKNOWN", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"}
)


@dataclass(frozen=True)
class InferOutcome:
    """The answer to one request: its outputs by name, and what served it."""

    model: str
    version: int
    outputs: dict[str, np.ndarray]
    route: str | None = None


@dataclass
class _Served:
    """What one `infer` call is being served as, for its metrics (updated as it resolves)."""

    model: str
    version: str
    route: str = ""
    key: ModelKey | None = None


class Gateway(MembershipDriver, LaneDriver):
    """The gateway core over one plan (see the module docstring)."""

    # Batches one replica runs at once, by the target's hardware (tests may set
    # `slots_per_replica` to override it for every target). A cpu worker runs
    # each batch on the target's `threads`: a second batch at once would take
    # cores from the first (and from the gateway on a shared host), so its
    # one slot makes the queue, not the worker, absorb load, and batches grow.
    # Measured on 2 cores, MLP at concurrency 32: mean batch 5–8 and 0.74–0.87
    # ms of CPU per inference with one slot, 2.7–2.9 and 1.1–1.2 ms with two.
    # An accelerator overlaps one batch's transfers with another's compute.
    SLOTS_BY_HARDWARE: ClassVar[Mapping[str, int]] = MappingProxyType(
        {"cpu": 1, "gpu": 2, "tpu": 2}
    )
    slots_per_replica: int | None = None

    def __init__(
        self,
        plan: plan_mod.Plan,
        *,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        client_factory: Callable[[str], WorkerClient] | None = None,
        metrics: NullMetrics | None = None,
        load: LoadGauge | None = None,
        probe_first: Collection[str] = (),
        worker_credentials: grpc.ChannelCredentials | None = None,
    ):
        self.plan = plan
        self.metrics = metrics if metrics is not None else NullMetrics()
        # Batches wait out their window while this process's loop is saturated
        # (batching.py step 5'); `infc serve` passes a `saturation.LoadGauge`.
        self.load = load
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        max_bytes = plan.gateway.max_message_bytes
        if client_factory is None:

            def client_factory(endpoint: str) -> WorkerClient:
                return GrpcWorkerClient(
                    endpoint, max_message_bytes=max_bytes, credentials=worker_credentials
                )

        self._client_factory = client_factory
        self.routes = RouteTable.from_plan(plan, rng=self._rng)
        # Remote `workers` of the plan start in their pools here; local targets
        # start empty until the supervisor calls set_replicas. Targets bound by
        # the on-prem rule admit replicas unverified: a probe places them first.
        # So do the targets in `probe_first` (`infc serve --remote`: addresses
        # that may name no worker yet, like a StatefulSet's pods above its count).
        self._placement = placement.rules(plan)
        verify = {*self._placement, *probe_first}
        self.fleet = Fleet.from_plan(plan, clock=clock, rng=self._rng, verify=verify)
        self._probe_now = {t.name: asyncio.Event() for t in plan.targets}  # wakes `_probe`
        self._probes_reported = asyncio.Condition()  # notified after each probe
        self._verdicts: dict[tuple[str, str], placement.Verdict] = {}  # by (target, endpoint)
        self._models: dict[ModelKey, plan_mod.Model] = {}
        self._redactors: dict[ModelKey, dict[str, redaction.Redactor]] = {}
        self._lanes: dict[ModelKey, dict[str, Lane]] = {}
        self._by_target: dict[str, list[Lane]] = {t.name: [] for t in plan.targets}
        self._hardware = {t.name: t.hardware for t in plan.targets}
        self._lanes_named: dict[str, list[Lane]] = {}  # every version's, by model name
        self._depths: dict[str, int] = {}  # model name -> queue depth last published
        for m in plan.models:
            key = ModelKey(m.name, m.version)
            self._models[key] = m
            self._redactors[key] = redaction.redactors_for(m.privacy)
            self._lanes[key] = {}
            for s in m.shards:
                lane = new_lane(key, m, s, self.fleet.pool(s.target), self._rng)
                self._lanes[key][s.target] = lane
                self._by_target[s.target].append(lane)
                self._lanes_named.setdefault(m.name, []).append(lane)
        self._clients: dict[str, WorkerClient] = {}
        self._finish_at: dict[str, list[float]] = {}  # replica id -> predicted ends of its batches
        self._counts: dict[tuple[str, int], Counts] = {}
        self._ids = itertools.count(1)
        self._started = False
        self._draining = False
        self._tasks: list[asyncio.Task] = []
        self._listeners: list[Callable[[bool], None]] = []
        self._was_ready: bool | None = None
        self._up_labels: dict[str, set[str]] = {}  # target -> replica labels ever published
        self._published: dict[str, tuple] = {}  # target -> (endpoint, live) last published
        # No gauges while a plan swap prepares it or after one replaced it (swap.py).
        self._muted = False

    # --- lifecycle and membership

    async def start(self) -> None:
        """Start the drivers (one per lane) and the health probers (one per target)."""
        if self._started:
            return
        self._started = True
        for lanes in self._lanes.values():
            for lane in lanes.values():
                self._start_lane(lane)
        for pool in self.fleet.pools.values():
            self._publish_workers(pool)
            self._tasks.append(asyncio.create_task(self._probe(pool), name=f"probe {pool.name}"))
        self._notify_ready()

    def set_replicas(self, target: str, endpoints: Sequence[str]) -> None:
        """The live worker endpoints of `target`, replacing those it had."""
        if target not in self.fleet.pools:
            known = ", ".join(sorted(self.fleet.pools))
            raise ValueError(f"unknown target `{target}`; the plan's targets are {known}")
        pool = self.fleet.pool(target)
        wanted = list(dict.fromkeys(endpoints))
        for replica in list(pool.replicas):
            if replica.endpoint not in wanted:
                pool.remove(replica)
                self._drop_client(replica.endpoint)
        have = {r.endpoint for r in pool.replicas}
        for endpoint in wanted:
            if endpoint not in have:
                pool.add(endpoint)
        if pool.verify:
            self._probe_now[target].set()  # its new replicas wait for a probe: now
        self._publish_workers(pool)
        self._wake(target)
        self._notify_ready()

    @property
    def ready(self) -> bool:
        """Started, not draining, and every model version has a live replica on a shard
        (on a target bound by the on-prem rule, only a probe makes a replica live)."""
        return (
            self._started
            and not self._draining
            and all(self._has_live(key) for key in self._models)
        )

    def now(self) -> float:
        """The gateway's clock (deadlines passed to `infer` are on it)."""
        return self._clock()

    @property
    def draining(self) -> bool:
        return self._draining

    def model_ready(self, name: str, version: str = "") -> bool:
        """Whether a model version (or any model of a route) can take requests."""
        served = domain.served(self.plan, name, version)
        if served.route is None:
            return self._serving(ModelKey(served.model.name, served.model.version))
        members = [ModelKey(e.model, e.version) for e in served.route.entries]
        if served.route.fallback is not None:
            members.append(ModelKey(served.route.fallback.model, served.route.fallback.version))
        return any(self._serving(k) for k in members)

    def availability(self) -> dict[tuple[str, int], domain.Availability]:
        """Each model version's state, for RepositoryIndex."""
        out = {}
        for key in self._models:
            if self._serving(key):
                out[key.name, key.version] = domain.Availability()
            else:
                why = "draining" if self._draining else "no live worker on any of its shards"
                out[key.name, key.version] = domain.Availability("UNAVAILABLE", why)
        return out

    def statistics(self, name: str = "", version: str = "") -> list[domain.ModelStats]:
        """Cumulative statistics: every model version, or those of `name` (a route: one row)."""
        if not name:
            keys = sorted(self._models)
        else:
            served = domain.served(self.plan, name, version)
            if served.route is not None:
                stats = self._counts.get((name, domain.ROUTE_STATS_VERSION), Counts())
                return [stats.record(name, domain.ROUTE_STATS_VERSION)]
            versions = [served.model.version] if version else served.versions
            keys = [ModelKey(name, v) for v in versions]
        return [self._count(k.name, k.version).record(k.name, k.version) for k in keys]

    def share_statistics(self, other: Gateway) -> None:
        """Count into `other`'s counters, the same dictionary (a plan swap:
        statistics carry over, those either gateway starts later included)."""
        self._counts = other._counts

    def mute_gauges(self, muted: bool) -> None:
        """Stop publishing gauges, or publish them all again (a plan swap's new gateway)."""
        self._muted = muted
        if not muted:
            self._published.clear()
            for pool in self.fleet.pools.values():
                self._publish_workers(pool)
            for name, lanes in self._lanes_named.items():
                self._depths[name] = sum(len(lane.queue) for lane in lanes)
                self.metrics.queue_depth(name, self._depths[name])

    async def drain(self, grace_s: float) -> None:
        """Refuse new requests, finish what is queued and in flight (for up to
        `grace_s`), then stop every task and close the worker channels."""
        self._draining = True
        self._notify_ready()
        lanes = [lane for ls in self._lanes.values() for lane in ls.values()]
        for lane in lanes:
            lane.stopping = True
            self._kick(lane)
        end = self._clock() + grace_s
        while True:
            pending = {lane.done for lane in lanes if lane.done and not lane.done.done()}
            pending |= {t for lane in lanes for t in lane.inflight}
            left = end - self._clock()
            if not pending or left <= 0:
                break
            await asyncio.wait(pending, timeout=left)
        late = Unavailable("the gateway is draining and its grace period is over")
        for lane in lanes:
            for p in lane.queue:
                self._fail(p.item, late)
            lane.queue.clear()
            self._queue_changed(lane)
        for lane in lanes:
            self._stop_lane(lane)
        tasks = self._tasks + [t for lane in lanes for t in lane.inflight]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        clients, self._clients = list(self._clients.values()), {}
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)

    # --- one request

    async def infer(self, request: domain.InferRequest, *, deadline: float | None) -> InferOutcome:
        """Serve one request; `deadline` is absolute on the gateway's clock (None: none)."""
        start = self._clock()
        served = _Served(request.model, request.version)
        code = "OK"
        try:
            return await self._infer(request, deadline, served)
        except asyncio.CancelledError:
            code = "CANCELLED"  # the client went away
            raise
        except BaseException as error:
            code = status_of(error).name
            raise
        finally:
            self._count_request(served, code, self._clock() - start)

    def _count_request(self, served: _Served, code: str, seconds: float) -> None:
        self.metrics.request_done(served.model, served.version, code, seconds, served.route)
        if served.key is None:
            return
        slos = self._models[served.key].slos
        for objective in slos.latency:
            if seconds > objective.seconds:
                self.metrics.slo_violation(served.key.name, objective.percentile)
        if slos.availability_percent is not None and code in UNAVAILABLE_CODES:
            self.metrics.slo_violation(served.key.name, "availability")

    async def _infer(
        self, request: domain.InferRequest, deadline: float | None, served: _Served
    ) -> InferOutcome:
        if self._draining:
            raise Unavailable("draining: the gateway is shutting down; retry on another")
        if not self._started:
            raise Unavailable("the gateway is not started yet")
        now = self._clock()
        if deadline is not None and now >= deadline:
            raise DeadlineExceeded("the deadline passed before the request was read")
        resolved = self.routes.resolve(request.model, request.version)
        key, fallback = resolved.model, self.routes.fallback_for(resolved)
        served.route = resolved.route or ""
        served.key = key
        served.model, served.version = key.name, str(key.version)
        inputs, rows = self._prepare(key, request)
        lane, why = self._pick_lane(key)
        fallback_lane = self._pick_lane(fallback)[0] if fallback is not None else None
        if lane is None:
            if fallback_lane is None:
                raise Unavailable(why)
            key, lane = fallback, fallback_lane
            served.key, served.model, served.version = key, key.name, str(key.version)
            inputs, rows = self._prepare(key, request)
        else:
            decision = self._admit(lane, fallback_lane, now, deadline, rows)
            if isinstance(decision, admission.Refuse):
                self._count(*key).fail[0] += 1
                raise decision.error()
            if isinstance(decision, admission.Fallback):
                key, lane = fallback, fallback_lane
                served.key, served.model, served.version = key, key.name, str(key.version)
                inputs, rows = self._prepare(key, request)
        job = Job(
            id=f"g{next(self._ids)}",
            inputs=inputs,
            rows=rows,
            wanted=request.outputs,
            arrival=now,
            deadline=math.inf if deadline is None else deadline,
            future=asyncio.get_running_loop().create_future(),
            attempts=Attempts(request.id or "", max_retries=MAX_RETRIES),
        )
        lane.queue.append(Pending(now, rows, job.deadline, job))
        lane.policy.arrivals.record(now, rows)
        self._queue_changed(lane)
        self._kick(lane)
        try:
            outputs = await job.future
        except GatewayError:
            self._finish(key, resolved.route, job, ok=False)
            raise
        self._finish(key, resolved.route, job, ok=True)
        return InferOutcome(key.name, key.version, outputs, resolved.route)

    def _prepare(
        self, key: ModelKey, request: domain.InferRequest
    ) -> tuple[dict[str, np.ndarray], int]:
        """Check the inputs against the model's signature, then redact them."""
        model = self._models[key]
        limit = domain.max_batch_size(model)
        try:
            rows = check_batch(label(model), model.signature.inputs, request.inputs, limit or None)
            check_outputs(label(model), model.signature.outputs, request.outputs)
        except BadBatch as error:
            raise InvalidArgument(str(error)) from None
        inputs = dict(request.inputs)
        for name, redactor in self._redactors[key].items():
            if name in inputs:
                inputs[name] = redactor.redact_array(inputs[name], tensor=name).array
        return inputs, rows if limit else 1

    def _pick_lane(self, key: ModelKey) -> tuple[Lane | None, str]:
        """The shard a request of `key` joins, by weight among shards with a live
        replica (the replica itself is chosen at dispatch); else None and why."""
        try:
            replica = self.fleet.picker(*key).pick()
        except NoReplica as error:
            return None, str(error)
        return self._lanes[key][replica.target], ""

    def _admit(
        self,
        lane: Lane,
        fallback: Lane | None,
        now: float,
        deadline: float | None,
        rows: int,
    ) -> admission.Decision:
        forecast = lane.policy.forecast(lane.queue, now, self._slots_free_at(lane, now), rows)
        alternative = None
        if fallback is not None:
            fb = fallback.policy.forecast(
                fallback.queue, now, self._slots_free_at(fallback, now), rows
            )
            if math.isfinite(fb.wait_s):
                alternative = admission.Prediction(fb.wait_s, fb.service_s, str(fallback.key))
        return admission.admit(
            now,
            deadline,
            admission.slo_budget_s(lane.model),
            forecast.wait_s if math.isfinite(forecast.wait_s) else 1e9,
            forecast.service_s,
            arrival=now,
            fallback=alternative,
        )

    # --- helpers

    def _finish(self, key: ModelKey, route: str | None, job: Job, ok: bool) -> None:
        now = self._clock()
        ns = int((now - job.arrival) * 1e9)
        rows = [self._count(*key)]
        if route is not None:
            rows.append(self._count(route, domain.ROUTE_STATS_VERSION))
        for counts in rows:
            slot = counts.success if ok else counts.fail
            slot[0] += 1
            slot[1] += ns
            if job.sent_at is not None:
                counts.queue[0] += 1
                counts.queue[1] += int((job.sent_at - job.arrival) * 1e9)
            if ok:
                counts.last_ms = int(time.time() * 1000)

    def _count(self, name: str, version: int) -> Counts:
        return self._counts.setdefault((name, version), Counts())

    def _has_live(self, key: ModelKey) -> bool:
        return any(lane.pool.live() for lane in self._lanes[key].values())

    def _serving(self, key: ModelKey) -> bool:
        return self._started and not self._draining and self._has_live(key)

    def _client(self, endpoint: str) -> WorkerClient:
        client = self._clients.get(endpoint)
        if client is None:
            client = self._clients[endpoint] = self._client_factory(endpoint)
        return client

    def _drop_client(self, endpoint: str) -> None:
        client = self._clients.pop(endpoint, None)
        if client is not None:
            # In-flight calls on it fail (CANCELLED, retriable) and move elsewhere.
            self._tasks.append(asyncio.get_running_loop().create_task(client.close()))

    def _wake(self, target: str) -> None:
        for lane in self._by_target.get(target, ()):
            self._kick(lane)

    def _queue_changed(self, lane: Lane) -> None:
        name = lane.key.name
        depth = sum(len(other.queue) for other in self._lanes_named[name])
        if self._depths.get(name) != depth:
            self._depths[name] = depth
            if not self._muted:
                self.metrics.queue_depth(name, depth)
