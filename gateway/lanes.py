"""One lane per (model version, shard): its queue and the driver that sends its batches.

A lane owns a queue of `batching.Pending` and a driver task that loops on
`BatchPolicy.decide(queue, now, free_slots, slots)`: expired requests are
answered DEADLINE_EXCEEDED before anything is sent; a batch is
`tensor_batch.merge`d and sent to a replica of the shard's target chosen by
power of two choices among those with a free slot (each replica runs at most
`slots(pool)` batches at once, over all the models of its target); the
measured send-to-answer time feeds the lane's `ServiceTimeModel`, and the
outputs are `split` back exactly. A retriable failure (UNAVAILABLE, a lost
connection) ejects the replica and sends the same batch to a replica not tried
yet (`retries.Attempts`: at most three tries, one answer per request).

`LaneDriver` is the half of `app.Gateway` that drives lanes; the gateway
supplies the clock, the worker clients, the statistics and the membership
notifications it calls (declared below).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from inferplane.backends.logfmt import kv
from inferplane.compiler import plan as plan_mod
from inferplane.gateway import domain, tensor_batch
from inferplane.gateway.batching import BatchPolicy, Pending
from inferplane.gateway.errors import (
    DeadlineExceeded,
    GatewayError,
    Internal,
    InvalidArgument,
    Unavailable,
    kind_of,
)
from inferplane.gateway.metrics import NullMetrics
from inferplane.gateway.retries import RETRIABLE, Attempts, Next
from inferplane.gateway.routing import ModelKey
from inferplane.gateway.saturation import LoadGauge
from inferplane.gateway.sharding import NoReplica, Replica, Shard, ShardPicker, TargetPool
from inferplane.gateway.worker_client import WorkerClient

if TYPE_CHECKING:
    from inferplane.gateway.statistics import Counts

# The gateway's logger: operators grep for `inferplane.gateway.app event=batch_retry`.
log = logging.getLogger("inferplane.gateway.app")

WORKER_TIMEOUT_S = 30.0  # the longest one batch may hold a slot


@dataclass(eq=False)
class Job:
    """One queued request: redacted inputs, its future, its tries."""

    id: str
    inputs: Mapping[str, np.ndarray]
    rows: int
    wanted: tuple[str, ...]
    arrival: float
    deadline: float
    future: asyncio.Future
    attempts: Attempts
    sent_at: float | None = None


@dataclass(eq=False)
class Lane:
    """One (model version, shard): its queue, batching policy and driver."""

    key: ModelKey
    model: plan_mod.Model
    pool: TargetPool
    picker: ShardPicker  # over this one shard: power of two choices in its pool
    policy: BatchPolicy
    queue: list[Pending] = field(default_factory=list)
    # The next step, when one is due: soon (`soon` True) or at a time (a timer).
    scheduled: asyncio.Handle | None = None
    soon: bool = False
    # Resolved once a stopping lane has nothing queued (the drain waits on it);
    # None until the gateway starts the lane.
    done: asyncio.Future | None = None
    inflight: set[asyncio.Task] = field(default_factory=set)
    stopping: bool = False


def new_lane(
    key: ModelKey,
    model: plan_mod.Model,
    shard: plan_mod.Shard,
    pool: TargetPool,
    rng: random.Random,
) -> Lane:
    """The lane of one shard of `model`, with its batching policy."""
    est = shard.estimate
    picker = ShardPicker(f"{key}", [Shard(pool, 1, est.fixed_s, est.per_item_s)], rng=rng)
    policy = BatchPolicy.from_plan(model, shard)
    if domain.max_batch_size(model) == 0:
        # No batch axis: every call carries exactly one request.
        policy = BatchPolicy(
            max_batch=1,
            window_s=0.0,
            fixed=False,
            slo_s=policy.slo_s,
            service_time=policy.service_time,
            arrivals=policy.arrivals,
        )
    return Lane(key, model, pool, picker, policy)


class LaneDriver:
    """Drives the lanes of a gateway: step the policy, dispatch, send, retry, answer."""

    # Supplied by the gateway (app.Gateway).
    load: LoadGauge | None  # whether the gateway's loop is the bottleneck (None: never)
    slots_per_replica: int | None  # overrides SLOTS_BY_HARDWARE for every target
    SLOTS_BY_HARDWARE: Mapping[str, int]
    _hardware: dict[str, str]  # target -> its hardware
    metrics: NullMetrics
    _clock: Callable[[], float]
    _finish_at: dict[str, list[float]]  # replica id -> predicted ends of its batches

    # Declared for type checkers only: at run time these must not exist here, or
    # they would shadow the other driver's real ones, whatever the bases' order.
    if TYPE_CHECKING:

        def _client(self, endpoint: str) -> WorkerClient:
            raise NotImplementedError

        def _count(self, name: str, version: int) -> Counts:
            raise NotImplementedError

        def _queue_changed(self, lane: Lane) -> None:
            raise NotImplementedError

        def _publish_workers(self, pool: TargetPool) -> bool:
            raise NotImplementedError

        def _wake(self, target: str) -> None:
            raise NotImplementedError

        def _notify_ready(self) -> None:
            raise NotImplementedError

    # A lane's steps are loop callbacks, not a task waiting on an event: an
    # arrival costs one `call_soon` at most, and the arrivals the loop reads in
    # one pass are decided together in one step after them.

    def _start_lane(self, lane: Lane) -> None:
        lane.done = asyncio.get_running_loop().create_future()
        self._kick(lane)

    def _kick(self, lane: Lane) -> None:
        """Step `lane` soon (once, however often it is kicked before then)."""
        if lane.done is None or lane.done.done() or (lane.scheduled and lane.soon):
            return
        if lane.scheduled is not None:
            lane.scheduled.cancel()
        lane.scheduled = asyncio.get_running_loop().call_soon(self._step_now, lane)
        lane.soon = True

    def _stop_lane(self, lane: Lane) -> None:
        if lane.scheduled is not None:
            lane.scheduled.cancel()
            lane.scheduled = None
        if lane.done is not None and not lane.done.done():
            lane.done.set_result(None)

    def _step_now(self, lane: Lane) -> None:
        lane.scheduled = None
        try:
            wake_at = self._step(lane)
        except Exception:  # a bug: answer what is queued rather than hang it
            log.exception(kv("lane_failed", model=lane.key))
            for p in lane.queue:
                self._fail(p.item, Internal("the gateway failed to schedule the request"))
            lane.queue.clear()
            self._queue_changed(lane)
            wake_at = None
        if lane.stopping and not lane.queue:
            self._stop_lane(lane)
        elif wake_at is not None:
            delay = max(0.0, wake_at - self._clock())
            lane.scheduled = asyncio.get_running_loop().call_later(delay, self._step_now, lane)
            lane.soon = False

    def _step(self, lane: Lane) -> float | None:
        """Act on the policy's decisions until one says wait; returns when to wake."""
        while True:
            lane.queue[:] = [p for p in lane.queue if not p.item.future.done()]
            if lane.queue and not lane.pool.live():
                why = f"no live replica of target `{lane.pool.name}` for `{lane.key}`"
                for p in lane.queue:
                    self._fail(p.item, Unavailable(why))
                lane.queue.clear()
            now = self._clock()
            free, slots = self._free_slots(lane.pool)
            saturated = self.load is not None and self.load.saturated()
            decision = lane.policy.decide(lane.queue, now, free, slots, saturated)
            if not decision.acted:
                self._queue_changed(lane)
                return decision.wake_at
            gone = {id(p) for p in (*decision.expired, *decision.too_large, *decision.dispatch)}
            lane.queue[:] = [p for p in lane.queue if id(p) not in gone]
            for p in decision.expired:
                self._fail(p.item, DeadlineExceeded("the deadline passed while it was queued"))
            for p in decision.too_large:
                self._fail(p.item, InvalidArgument(f"{p.rows} rows exceed the batch maximum"))
            if decision.dispatch:
                self._dispatch(lane, [p.item for p in decision.dispatch], now)

    def _dispatch(self, lane: Lane, jobs: list[Job], now: float) -> None:
        per = self.slots(lane.pool)
        full = {r.id for r in lane.pool.live() if r.batches >= per}
        replica = lane.picker.pick(full)
        for job in jobs:
            job.sent_at = now
        rows = sum(j.rows for j in jobs)
        self.metrics.batch(lane.key.name, lane.pool.name, rows)
        predicted = self._begin(lane, replica, rows)
        task = asyncio.create_task(self._run_batch(lane, jobs, replica, predicted))
        lane.inflight.add(task)
        task.add_done_callback(lane.inflight.discard)

    def _begin(self, lane: Lane, replica: Replica, rows: int) -> float:
        predicted = lane.policy.service_time.predict(rows)
        lane.picker.begin(replica, rows, predicted)
        ends = self._finish_at.setdefault(replica.id, [])
        ends.append(self._clock() + lane.policy.predict_batch_time(rows))
        return predicted

    def _end(
        self, lane: Lane, replica: Replica, rows: int, predicted: float, ok: bool, latency: float
    ) -> None:
        lane.picker.end(replica, rows, ok, latency if ok else None, predicted)
        ends = self._finish_at.get(replica.id)
        if ends:
            ends.remove(min(ends))
        if self._publish_workers(lane.pool):  # enough failures in a row eject it
            self._notify_ready()
        self._wake(lane.pool.name)

    async def _run_batch(
        self, lane: Lane, jobs: list[Job], replica: Replica, predicted: float
    ) -> None:
        """Send one batch, retrying it on other replicas; answer each member once."""
        try:
            merging = self._clock()
            arrays, offsets = tensor_batch.merge([j.inputs for j in jobs])
            merge_ns = int((self._clock() - merging) * 1e9)
            while True:
                rows = offsets[-1]
                for job in jobs:
                    job.attempts.start(replica.id)
                sent = self._clock()
                ok, failure, status = False, None, ""
                try:
                    outputs, compute_ns = await self._client(replica.endpoint).infer(
                        lane.key.name,
                        lane.key.version,
                        arrays,
                        timeout=self._timeout(jobs, sent),
                        request_id=jobs[0].id,
                    )
                    ok = True
                except GatewayError as error:
                    failure = error
                    status = getattr(error, "worker_status", None) or str(kind_of(error))
                finally:
                    latency = self._clock() - sent
                    healthy = ok or status not in RETRIABLE
                    self._end(lane, replica, rows, predicted, healthy, latency)
                if ok:
                    self._answer_batch(
                        lane, jobs, offsets, outputs, (merge_ns, compute_ns), latency
                    )
                    return
                if status == "UNAVAILABLE":
                    lane.pool.eject(replica)  # lost or refusing: out until a probe says ready
                    self._publish_workers(lane.pool)
                    self._notify_ready()
                jobs = self._after_failure(jobs, replica, status, failure)
                if not jobs:
                    return
                exclude = frozenset().union(*(j.attempts.exclude for j in jobs))
                try:
                    replica = lane.picker.pick(exclude)
                except NoReplica as error:
                    for job in jobs:
                        self._fail(job, Unavailable(f"{error}; last failure: {failure}"))
                    return
                merging = self._clock()
                arrays, offsets = tensor_batch.merge([j.inputs for j in jobs])
                merge_ns = int((self._clock() - merging) * 1e9)
                self.metrics.batch(lane.key.name, lane.pool.name, offsets[-1])
                predicted = self._begin(lane, replica, offsets[-1])
        except asyncio.CancelledError:
            for job in jobs:
                self._fail(job, Unavailable("draining: the batch was cancelled"))
            raise
        except Exception:
            log.exception(kv("batch_failed", model=lane.key, requests=len(jobs)))
            for job in jobs:
                self._fail(job, Internal("the gateway failed to send the batch (logged)"))

    def _after_failure(
        self, jobs: list[Job], replica: Replica, status: str, failure: GatewayError
    ) -> list[Job]:
        """Answer the members to give up on; returns those to retry."""
        retry = []
        now = self._clock()
        for job in jobs:
            step = job.attempts.fail(replica.id, status)
            if step is Next.GIVE_UP:
                self._fail(job, failure)
            elif step is Next.RETRY and not job.future.done():
                if now >= job.deadline:
                    self._fail(job, DeadlineExceeded("the deadline passed during a retry"))
                else:
                    retry.append(job)
        if retry:
            log.info(kv("batch_retry", requests=len(retry), status=status, replica=replica.id))
        return retry

    def _answer_batch(
        self,
        lane: Lane,
        jobs: list[Job],
        offsets: tuple[int, ...],
        outputs: dict[str, np.ndarray],
        times_ns: tuple[int, int],
        latency: float,
    ) -> None:
        """Split a batch's answer to its members; `times_ns` is (merging the
        inputs, the worker's compute) for the statistics."""
        rows = offsets[-1]
        if latency > 0:
            lane.policy.service_time.observe(rows, latency)
        splitting = self._clock()
        try:
            parts = tensor_batch.split(outputs, offsets)
        except tensor_batch.TensorBatchError as error:
            for job in jobs:
                self._fail(job, Internal(f"worker answered a batch that does not split: {error}"))
            return
        phases = (*times_ns, int((self._clock() - splitting) * 1e9))
        self._count_batch(self._count(*lane.key), rows, len(jobs), phases)
        for job, part in zip(jobs, parts, strict=True):
            wanted = job.wanted or tuple(part)
            missing = [n for n in wanted if n not in part]
            if missing:
                self._fail(job, Internal(f"worker did not answer output `{missing[0]}`"))
            elif job.attempts.answer() and not job.future.done():
                job.future.set_result({n: part[n] for n in wanted})

    @staticmethod
    def _count_batch(counts: Counts, rows: int, requests: int, phases: tuple[int, ...]) -> None:
        """One executed batch in the statistics: each phase once per request."""
        counts.executions += 1
        counts.inferences += rows
        batch = counts.batches.setdefault(rows, [0, 0, 0, 0])
        batch[0] += 1
        for total, ns, i in zip(
            (counts.compute_input, counts.compute, counts.compute_output),
            phases,
            (1, 2, 3),
            strict=True,
        ):
            total[0] += requests
            total[1] += ns * requests
            batch[i] += ns

    def _fail(self, job: Job, error: BaseException) -> None:
        if job.attempts.answer() and not job.future.done():
            job.future.set_exception(error)

    def _timeout(self, jobs: Sequence[Job], now: float) -> float:
        latest = max(j.deadline for j in jobs)
        return max(0.001, min(WORKER_TIMEOUT_S, latest - now))

    def slots(self, pool: TargetPool) -> int:
        """Batches one replica of `pool` runs at once."""
        if self.slots_per_replica is not None:
            return self.slots_per_replica
        return self.SLOTS_BY_HARDWARE.get(self._hardware.get(pool.name, ""), 1)

    def _free_slots(self, pool: TargetPool) -> tuple[int, int]:
        live = pool.live()
        per = self.slots(pool)
        return sum(max(0, per - r.batches) for r in live), per * len(live)

    def _slots_free_at(self, lane: Lane, now: float) -> list[float]:
        out: list[float] = []
        per = self.slots(lane.pool)
        for replica in lane.pool.live():
            ends = sorted(self._finish_at.get(replica.id, ()))[:per]
            out += ends + [now] * (per - len(ends))
        return out
