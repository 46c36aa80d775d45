"""The batching policy of one (model, shard): which queued requests go out now.

A pure decision. The driver (the gateway's asyncio loop, or `simulation.py`)
keeps the shard's queue of `Pending` requests in arrival order, counts its
worker slots, records each arrival in the policy's `ArrivalRate`, and calls

    decision = policy.decide(queue, now, free_slots, slots)

with `now` from its injected clock. It acts on the decision (answers
`expired` with DEADLINE_EXCEEDED and `too_large` with INVALID_ARGUMENT, takes
them and the `dispatch` batch out of its queue, sends the batch to a free
slot) and asks again at once while decisions act (`Decision.acted`). A
decision that does nothing carries `wake_at`: ask again then, or sooner when
a request arrives or a slot frees (None: only then). The policy keeps no state
of its own; it reads two estimators that the driver updates: the shard's
`ServiceTimeModel` (every finished batch) and its `ArrivalRate` (every
arrival).

Terms. A request carries `rows` (1, or k when the client sent its own batch
dimension; a request is never split across batches) and `deadline`, its gRPC
deadline on the policy's clock (`math.inf` when the client set none). Its
*target* is the earlier of its deadline and `arrival + slo_s`, the model's
latency SLO. `predict(n)` is the service-time model's point estimate for a
batch of `n` rows and `upper(n) = A + C*n` its conservative (high-percentile)
estimate; `rate` is the arrival rate in rows per second; `slots` counts the
shard's worker slots, free or busy.

The algorithm, in the order `decide` applies it:

1. **Expired.** A request whose deadline cannot be met even if it went out
   alone right now (`now >= deadline - predict(rows)`) is dropped before it
   reaches a worker and reported in `expired`; so is, when a batch is sent, a
   member that the batch would answer after its deadline (see step 6). Only
   the gRPC deadline drops a request: one that will miss its SLO target is
   still served (a late answer beats an error; refusing work that cannot
   meet its SLO is admission's job, with `forecast`). A request of more rows
   than `max_batch` can never be sent and is reported in `too_large`.
2. **No free slot.** Nothing is sent, and the queue accumulates: this is what
   makes batches grow with the load. Wake at the next expiry.
3. **The batch** is the leading run of requests whose rows fit in `max_batch`
   (first come, first served: the run stops at the first request that does
   not fit, and nothing is reordered). It is *full* when it reaches
   `max_batch` rows or the next request does not fit.
4. **Fixed** (`fixed=True`, the spec's `fixed` word pins size and window):
   send the batch once it is full or its oldest request has waited
   `window_s`; until then wake at the window's end.
5. **Adaptive** (the default): send the batch now, except that it is held
   while all of these hold:

   a. the shard is under load: another slot is busy (`free_slots < slots`).
      An idle shard sends at once, so at low load a request's latency is one
      batch-of-one service time, never a window;
   b. the batch is not full and is smaller than `goal`, the smallest batch
      with which the slots keep up with the current arrival rate at
      `target_utilization` (ρ): `rate * upper(n) / (slots * n) <= ρ`, that is
      `goal = rate*A / (ρ*slots - rate*C)`, or `max_batch` when no size is
      enough;
   c. at the current rate the batch reaches `goal` before the window closes:
      `now + (goal - n) / rate <= oldest arrival + window_s`; and
   d. its members would still meet their targets:
      `now + (goal - n) / rate + upper(goal) <= earliest target in the batch`.

   Held, it wakes at the earliest of the expected fill time, the window's end
   and the next expiry, or at the next arrival, which re-decides.
5'. **A saturated driver** (`saturated=True`: the gateway's own event loop
   is busy nearly all the time, `saturation.py`) holds a batch that is not
   full until its window ends, as `fixed` does, idle slots or not. Requests
   then wait in the transport before the driver reads them, so the queue
   looks short and the workers idle; sending what has gathered would make
   many small batches, each costing the driver a message out and one back,
   which keeps it saturated. The window bounds what the hold costs a request.
6. **Sending.** Before a batch goes out, any member whose deadline falls
   before `now + predict(batch rows)` is moved to `expired` and the batch is
   formed again from the requests left: a worker never computes an answer
   that its client has stopped waiting for. (Point estimates, not `upper`:
   dropping is final, so it takes the likely outcome.)

Why hold at all. Sending whatever has gathered whenever a slot frees (pure
greedy dispatch) keeps every slot busy with small batches that each pay the
fixed cost `A`: at moderate load the slots run near 100% utilisation and new
requests queue behind them. With several slots and a large fixed cost (a
GPU-like line, 4 slots), holding a batch until it suits the load cut p99 by
11–24% from 30% to 90% load in the simulations of `docs/batching.md`, and
raised SLO attainment from 85% to 99% where the SLO was tight; with one slot
nothing is ever held (a free slot means an idle shard). Rules b–d keep the
hold from costing what it buys: it stops at the size the load needs (not at
`max_batch`), only when that size is reachable within the window, and never
past what the earliest target allows. The price, in the same simulations: on
a CPU-like line whose full batch takes nearly the whole SLO (`max 128`,
13.8 ms of a 15 ms SLO), p99 at 60% load rose from 5.9 to 7.9 ms (both within
the SLO) and attainment at 90% fell from 97.0% to 95.2%.

Why the SLO does not cap the batch size. Sending fewer requests so that the
oldest one still makes its target looks right and is harmful under load:
the smaller batches pay the fixed cost more often, capacity drops, more
requests fall close to their targets, batches shrink further, and the shard
collapses. In simulation, SLO attainment fell from 97.5% to 8.1% at 95% load
on the CPU-like line with an 8 ms SLO, and from 85% to 23% at 30% load on the
GPU-like line with a 10 ms SLO. The SLO bounds how long a batch is *held*,
never how many requests it carries; under overload, full batches clear the
backlog fastest. (A gRPC deadline is different: an answer after it is
worthless, so step 6 drops the member rather than shrinking the batch.)

The driver should count as slots the batches a shard can run in parallel
without slowing each other (one per replica for a CPU worker with its own
threads), so that "a slot is free" means "a batch sent now starts now".
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from inferplane.gateway.service_time import ServiceTimeModel

if TYPE_CHECKING:
    from inferplane.compiler.plan import Model, Shard

_PERCENTILE_ORDER = ("p50", "p90", "p95", "p99", "p999")


@dataclass(frozen=True, slots=True, eq=False)
class Pending:
    """One queued request, as the policy sees it (compared by identity).

    `item` is the driver's handle (a future, a request id); the policy never
    reads it.
    """

    arrival: float
    rows: int = 1
    deadline: float = math.inf
    item: object = None


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do now; see the module docstring for the driver's loop."""

    dispatch: tuple[Pending, ...] = ()
    expired: tuple[Pending, ...] = ()
    too_large: tuple[Pending, ...] = ()
    wake_at: float | None = None

    @property
    def rows(self) -> int:
        """Rows in the dispatched batch."""
        return sum(p.rows for p in self.dispatch)

    @property
    def acted(self) -> bool:
        """Whether the driver has something to do (and should ask again at once)."""
        return bool(self.dispatch or self.expired or self.too_large)


class ArrivalRate:
    """Rows per second arriving at one shard: an exponentially decayed count.

    Each arrival adds its rows to a counter that decays as `exp(-dt / time_constant_s)`;
    the rate is the counter over the time constant. It reads 0 before the first
    arrival and grows to the true rate within a time constant, so a cold
    estimate errs towards sending at once. The driver calls `record` for every
    request it queues, with the same clock as `decide`.
    """

    def __init__(self, time_constant_s: float = 0.05) -> None:
        if not time_constant_s > 0:
            raise ValueError(f"time_constant_s must be > 0, got {time_constant_s!r}")
        self._tau = time_constant_s
        self._count = 0.0
        self._at: float | None = None

    def record(self, now: float, rows: int = 1) -> None:
        if self._at is not None and now > self._at:
            self._count *= math.exp((self._at - now) / self._tau)
        self._count += rows
        self._at = now if self._at is None else max(self._at, now)

    def rate(self, now: float) -> float:
        """Rows per second, as of `now`."""
        if self._at is None:
            return 0.0
        return self._count * math.exp(min(self._at - now, 0.0) / self._tau) / self._tau


@dataclass(frozen=True, slots=True)
class Forecast:
    """A new request's predicted fate: `wait_s` until its batch is sent, then
    `service_s` for that batch of `rows` rows (answered after both)."""

    wait_s: float
    service_s: float
    rows: int

    @property
    def latency_s(self) -> float:
        return self.wait_s + self.service_s


@dataclass(frozen=True)
class BatchPolicy:
    """The batching policy of one (model, shard); see the module docstring."""

    max_batch: int
    window_s: float
    fixed: bool
    slo_s: float | None
    service_time: ServiceTimeModel
    arrivals: ArrivalRate | None = field(default=None, compare=False)
    target_utilization: float = 0.9

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch!r}")
        if not (self.window_s >= 0 and math.isfinite(self.window_s)):
            raise ValueError(f"window_s must be a finite number >= 0, got {self.window_s!r}")
        if self.slo_s is not None and not self.slo_s > 0:
            raise ValueError(f"slo_s must be > 0 or None, got {self.slo_s!r}")
        if not 0 < self.target_utilization <= 1:
            raise ValueError(
                f"target_utilization must be in (0, 1], got {self.target_utilization!r}"
            )

    @classmethod
    def from_plan(
        cls,
        model: Model,
        shard: Shard,
        service_time: ServiceTimeModel | None = None,
        arrivals: ArrivalRate | None = None,
    ) -> BatchPolicy:
        """The policy a plan gives one of a model's shards.

        The SLO is the model's tail latency objective (its highest percentile):
        the bound every request aims at. `service_time` defaults to a fresh
        model started from the shard's estimate, `arrivals` to a fresh
        `ArrivalRate`.
        """
        objectives = sorted(model.slos.latency, key=lambda o: _PERCENTILE_ORDER.index(o.percentile))
        return cls(
            max_batch=shard.batching.max_batch_size,
            window_s=shard.batching.window_s,
            fixed=not shard.batching.adaptive,
            slo_s=objectives[-1].seconds if objectives else None,
            service_time=(
                service_time
                if service_time is not None
                else ServiceTimeModel.from_estimate(shard.estimate)
            ),
            arrivals=arrivals if arrivals is not None else ArrivalRate(),
        )

    def target(self, pending: Pending) -> float:
        """When `pending` should be answered: its deadline or its SLO, the earlier."""
        if self.slo_s is None:
            return pending.deadline
        return min(pending.deadline, pending.arrival + self.slo_s)

    def predict_batch_time(self, rows: int) -> float:
        """Conservative service time of a batch of `rows` rows (the model's `upper`)."""
        return self.service_time.upper(rows)

    def decide(
        self,
        queue: Sequence[Pending],
        now: float,
        free_slots: int,
        slots: int | None = None,
        saturated: bool = False,
    ) -> Decision:
        """What to do with `queue` (oldest first) at `now`.

        `free_slots` worker slots are idle out of `slots` in all (None: as many
        as are free, so the shard counts as idle and nothing is held).
        `saturated`: the driver itself is the bottleneck (step 5').
        """
        model = self.service_time
        # Cheap screen first: only requests with a deadline before this horizon
        # can expire now (predictions grow with rows), and queues under overload
        # can be long. The horizon is generous so that no rounding can hide a
        # request at its own expiry time; the exact test follows.
        horizon = now + 2 * model.predict(self.max_batch) + 1e-3
        suspects = [p for p in queue if p.deadline < horizon or p.rows > self.max_batch]
        expired: list[Pending] = []
        too_large: list[Pending] = []
        for p in suspects:
            if p.rows > self.max_batch:
                too_large.append(p)
            elif now >= p.deadline - model.predict(p.rows):
                expired.append(p)
        live: Sequence[Pending] = queue
        if expired or too_large:
            gone = {id(p) for p in expired} | {id(p) for p in too_large}
            live = [p for p in queue if id(p) not in gone]
        dropped = {"expired": tuple(expired), "too_large": tuple(too_large)}

        if free_slots < 1 or not live:
            acted = bool(expired or too_large)
            return Decision(**dropped, wake_at=now if acted else self._next_expiry(live))
        batch, full = self._leading(live)
        if not full:
            hold_until = (
                self._fixed_hold(batch, now)
                if self.fixed or saturated
                else self._adaptive_hold(batch, now, free_slots, slots)
            )
            if hold_until is not None:
                if expired or too_large:
                    return Decision(**dropped, wake_at=now)
                expiry = self._next_expiry(live)
                return Decision(wake_at=hold_until if expiry is None else min(hold_until, expiry))
        # Sending now. A member that this batch would answer after its deadline
        # is expired instead (its client will have given up); the batch is
        # formed again from what is left, until no member is late.
        while True:
            finish = now + model.predict(sum(p.rows for p in batch))
            late = [p for p in batch if p.deadline < finish]
            if not late:
                break
            expired.extend(late)
            gone = {id(p) for p in late}
            live = [p for p in live if id(p) not in gone]
            if not live:
                return Decision(expired=tuple(expired), too_large=tuple(too_large), wake_at=now)
            batch, _ = self._leading(live)
        return Decision(
            dispatch=tuple(batch),
            expired=tuple(expired),
            too_large=tuple(too_large),
            wake_at=now,
        )

    def forecast(
        self,
        queue: Sequence[Pending],
        now: float,
        slots_free_at: Sequence[float],
        rows: int = 1,
    ) -> Forecast:
        """When a request of `rows` rows queued now would be sent, and for how long.

        For admission (`gateway/admission.py` takes `wait_s` and `service_s`).
        `slots_free_at` holds, per worker slot, when it is predicted to be free
        (at or before `now` for an idle slot; the driver takes a busy slot's
        send time plus `predict_batch_time` of its batch). The rows ahead are
        served first come first served in batches of whole requests, up to
        `max_batch` rows, each on the earliest free slot; a fixed policy also
        waits for its window when the request's batch is not full.
        An adaptive policy's holds are left out: they last only while batches
        fill faster than the window. Service times are the conservative
        `predict_batch_time`. Without slots, or for a request larger than
        `max_batch`, the wait is `math.inf`.
        """
        if not slots_free_at or rows > self.max_batch:
            return Forecast(wait_s=math.inf, service_s=self.predict_batch_time(rows), rows=rows)
        if not queue:  # the common case at low load: the loop below, unrolled
            start = max(min(slots_free_at), now)
            if self.fixed and rows < self.max_batch:
                start = max(start, now + self.window_s)
            return Forecast(wait_s=start - now, service_s=self.predict_batch_time(rows), rows=rows)
        # (arrival, rows) of every request ahead, then the new one.
        items = [(p.arrival, p.rows) for p in queue if p.rows <= self.max_batch]
        items.append((now, rows))
        free_at = [max(t, now) for t in slots_free_at]
        heapq.heapify(free_at)
        first = 0
        while True:
            # The next batch: whole requests, first come first served (step 3).
            size, last = 0, first
            while last < len(items) and size + items[last][1] <= self.max_batch:
                size += items[last][1]
                last += 1
            start = heapq.heappop(free_at)
            if self.fixed and size < self.max_batch and last == len(items):
                start = max(start, items[first][0] + self.window_s)
            service = self.predict_batch_time(size)
            if last == len(items):
                return Forecast(wait_s=start - now, service_s=service, rows=size)
            heapq.heappush(free_at, start + service)
            first = last

    def predicted_wait(
        self,
        queue: Sequence[Pending],
        now: float,
        slots_free_at: Sequence[float],
        rows: int = 1,
    ) -> float:
        """Seconds until a request queued now would be sent to a worker (see `forecast`)."""
        return self.forecast(queue, now, slots_free_at, rows).wait_s

    # -- helpers -------------------------------------------------------------

    def _leading(self, live: Sequence[Pending]) -> tuple[list[Pending], bool]:
        """Step 3: the leading requests that fit in `max_batch` rows, and whether full."""
        batch: list[Pending] = []
        rows = 0
        for p in live:
            if rows + p.rows > self.max_batch:
                return batch, True
            batch.append(p)
            rows += p.rows
        return batch, rows >= self.max_batch

    def _fixed_hold(self, batch: Sequence[Pending], now: float) -> float | None:
        """Step 4: the window's end while it is open, else None (send now)."""
        window_end = batch[0].arrival + self.window_s
        return window_end if now < window_end else None

    def _adaptive_hold(
        self, batch: Sequence[Pending], now: float, free_slots: int, slots: int | None
    ) -> float | None:
        """Step 5: until when to hold a batch that is not full, or None (send now)."""
        if slots is None or free_slots >= slots or self.arrivals is None:
            return None  # (a) an idle shard, or no way to tell
        rate = self.arrivals.rate(now)
        if rate <= 0:
            return None
        model = self.service_time
        scale = 1.0 + model.margin
        fixed, per_item = model.fixed_s * scale, model.per_item_s * scale
        spare = self.target_utilization * slots - rate * per_item
        needed = rate * fixed / spare if spare > 0 else math.inf
        goal = self.max_batch if needed >= self.max_batch else math.ceil(needed)
        rows = sum(p.rows for p in batch)
        if rows >= goal:
            return None  # (b) big enough for the load
        filled = now + (goal - rows) / rate
        window_end = batch[0].arrival + self.window_s
        if filled > window_end or filled <= now:
            return None  # (c) would not fill within the window
        if filled + model.upper(goal) > min(self.target(p) for p in batch):
            return None  # (d) waiting would cost a member its target
        return filled

    def _next_expiry(self, live: Sequence[Pending]) -> float | None:
        """The earliest moment a live request would have to be dropped."""
        predict = self.service_time.predict
        return min(
            (p.deadline - predict(p.rows) for p in live if p.deadline != math.inf),
            default=None,
        )
