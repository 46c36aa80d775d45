"""A deterministic discrete-event simulator of one shard: arrivals, a policy, slots.

The batching tests and `make bench` use it to measure a policy without a
clock that really ticks: a simulated clock jumps from event to event (an
arrival, a batch finishing, the policy's wake-up), and every random draw
comes from a seeded `numpy.random.Generator`, so a run is reproducible to
the last bit.

- **Arrivals**: `poisson` (steady load, random gaps), `uniform` (steady,
  evenly spaced) and `on_off` (bursty: Poisson bursts separated by quiet
  periods). Each request carries its rows (a client's own batch dimension)
  and optionally a gRPC deadline.
- **Workers**: `slots` batches may run at once; a batch of `n` rows takes
  `LinearService`'s true `fixed_s + n * per_item_s`, optionally with
  multiplicative log-normal noise and rare outliers. When a batch finishes,
  its measured time is fed to the policy's service-time model, as the
  gateway's driver does with what workers report; every arrival is recorded
  in the policy's `ArrivalRate`.
- **Policies**: anything with `decide(queue, now, free_slots, slots) ->
  Decision` (`batching.BatchPolicy`, adaptive or fixed). A fixed batch size
  `b` with a timeout is `BatchPolicy(max_batch=b, window_s=timeout,
  fixed=True, ...)`; a fixed-window batcher is the same with the plan's
  `max` and `window`.
- **Results**: per-request latencies (drops as `inf`), served, dropped and
  refused counts, throughput and the histogram of batch sizes (`SimResult`).

The driver loop here is the one the gateway's asyncio driver follows: after
every event, ask the policy, act, and ask again until a decision does nothing;
then sleep until the next event or the decision's `wake_at`. A policy that
leaves requests queued with nothing to wake it, asks to wake in the past, or
dispatches without a free slot stops the run with `RuntimeError`.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from inferplane.gateway.batching import ArrivalRate, Decision, Pending
from inferplane.gateway.service_time import ServiceTimeModel


@dataclass(frozen=True, slots=True)
class Request:
    """A simulated request: when it arrives, its rows, its gRPC deadline (absolute)."""

    arrival: float
    rows: int = 1
    deadline: float = math.inf


class Policy(Protocol):
    def decide(
        self, queue: Sequence[Pending], now: float, free_slots: int, slots: int | None = None
    ) -> Decision: ...


# -- arrivals -----------------------------------------------------------------


def _requests(
    times: np.ndarray, rng: np.random.Generator, rows: Sequence[int], timeout_s: float | None
) -> list[Request]:
    counts = rng.choice(np.asarray(rows), size=len(times)) if len(rows) > 1 else None
    out = []
    for i, t in enumerate(times.tolist()):
        k = int(counts[i]) if counts is not None else rows[0]
        deadline = t + timeout_s if timeout_s is not None else math.inf
        out.append(Request(arrival=t, rows=k, deadline=deadline))
    return out


def poisson(
    rate_rps: float,
    duration_s: float,
    *,
    seed: int,
    rows: Sequence[int] = (1,),
    timeout_s: float | None = None,
) -> list[Request]:
    """Steady load: Poisson arrivals at `rate_rps` over `[0, duration_s)`.

    Each request's rows are drawn uniformly from `rows`; `timeout_s` gives every
    request a gRPC deadline that long after its arrival.
    """
    rng = np.random.default_rng(seed)
    count = rng.poisson(rate_rps * duration_s)
    times = np.sort(rng.uniform(0.0, duration_s, size=count))
    return _requests(times, rng, rows, timeout_s)


def uniform(
    rate_rps: float,
    duration_s: float,
    *,
    seed: int = 0,
    rows: Sequence[int] = (1,),
    timeout_s: float | None = None,
) -> list[Request]:
    """Steady load with no randomness in time: one request every `1 / rate_rps` s."""
    rng = np.random.default_rng(seed)
    times = np.arange(0.0, duration_s, 1.0 / rate_rps)
    return _requests(times, rng, rows, timeout_s)


def on_off(
    rate_on_rps: float,
    on_s: float,
    off_s: float,
    duration_s: float,
    *,
    seed: int,
    rate_off_rps: float = 0.0,
    rows: Sequence[int] = (1,),
    timeout_s: float | None = None,
) -> list[Request]:
    """Bursty load: Poisson at `rate_on_rps` for `on_s`, then `rate_off_rps` for `off_s`, …

    The mean rate is `(rate_on * on_s + rate_off * off_s) / (on_s + off_s)`.
    """
    rng = np.random.default_rng(seed)
    chunks = []
    start = 0.0
    while start < duration_s:
        for rate, length in ((rate_on_rps, on_s), (rate_off_rps, off_s)):
            end = min(start + length, duration_s)
            if rate > 0 and end > start:
                count = rng.poisson(rate * (end - start))
                chunks.append(rng.uniform(start, end, size=count))
            start = end
    times = np.sort(np.concatenate(chunks)) if chunks else np.empty(0)
    return _requests(times, rng, rows, timeout_s)


# -- workers --------------------------------------------------------------------


@dataclass(frozen=True)
class LinearService:
    """The true service time of a batch: `fixed_s + rows * per_item_s`, times noise.

    `noise` is the sigma of a log-normal factor with mean 1; with probability
    `outlier_rate` a batch takes `outlier_factor` times longer (a pause).
    """

    fixed_s: float
    per_item_s: float
    noise: float = 0.0
    outlier_rate: float = 0.0
    outlier_factor: float = 10.0

    def mean(self, rows: int) -> float:
        return self.fixed_s + rows * self.per_item_s

    def capacity_rps(self, max_batch: int, slots: int = 1) -> float:
        """Rows per second with full batches back to back on every slot."""
        return slots * max_batch / self.mean(max_batch)

    def sample(self, rows: int, rng: np.random.Generator) -> float:
        seconds = self.mean(rows)
        if self.noise > 0:
            seconds *= math.exp(rng.normal(-(self.noise**2) / 2, self.noise))
        if self.outlier_rate > 0 and rng.random() < self.outlier_rate:
            seconds *= self.outlier_factor
        return seconds


# -- results ----------------------------------------------------------------------


@dataclass(frozen=True)
class SimResult:
    """What a run measured.

    `latencies` holds one entry per request in arrival order: answer time
    minus arrival, `math.inf` for a request that was dropped (expired or too
    large) or refused (queue full), so percentiles over it count both as
    misses. `duration_s` runs
    from the first arrival to the last answer; `throughput_rps` is served
    requests over it.
    """

    latencies: tuple[float, ...]
    served: int
    dropped: int
    refused: int
    duration_s: float
    batch_sizes: dict[int, int]

    @property
    def throughput_rps(self) -> float:
        return self.served / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def mean_batch(self) -> float:
        batches = sum(self.batch_sizes.values())
        rows = sum(size * count for size, count in self.batch_sizes.items())
        return rows / batches if batches else 0.0

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile (`q` in 0–100) over all requests, drops as inf."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        rank = max(math.ceil(q / 100 * len(ordered)), 1)
        return ordered[rank - 1]

    def attainment(self, slo_s: float) -> float:
        """Share of all requests answered within `slo_s`."""
        if not self.latencies:
            return 1.0
        return sum(1 for t in self.latencies if t <= slo_s) / len(self.latencies)

    def summary(self) -> str:
        return (
            f"served={self.served} dropped={self.dropped} refused={self.refused} "
            f"p50={self.percentile(50) * 1e3:.2f}ms p99={self.percentile(99) * 1e3:.2f}ms "
            f"throughput={self.throughput_rps:.0f}/s mean_batch={self.mean_batch:.1f}"
        )


# -- the run --------------------------------------------------------------------


def simulate(
    policy: Policy,
    requests: Sequence[Request],
    service: LinearService,
    *,
    slots: int = 1,
    seed: int = 0,
    model: ServiceTimeModel | None = None,
    max_queue: int | None = None,
) -> SimResult:
    """Run `requests` (sorted by arrival) through `policy` on `slots` worker slots.

    `model` receives every finished batch's rows and measured time; by default
    the policy's own `service_time`, when it has one. With `max_queue`, a
    request that arrives while that many wait is refused at once (the
    simplest admission control; it keeps saturation runs short).
    """
    if slots < 1:
        raise ValueError(f"slots must be >= 1, got {slots!r}")
    rng = np.random.default_rng(seed)
    feed = model if model is not None else getattr(policy, "service_time", None)
    arrivals: ArrivalRate | None = getattr(policy, "arrivals", None)
    latencies = [math.inf] * len(requests)
    sizes: Counter[int] = Counter()
    queue: list[Pending] = []
    running: list[tuple[float, int, float, tuple[Pending, ...]]] = []  # (end, seq, start, batch)
    free = slots
    served = dropped = refused = seq = 0
    nxt = 0
    wake = math.inf
    last_answer = requests[0].arrival if requests else 0.0

    while nxt < len(requests) or running or queue:
        arrival = requests[nxt].arrival if nxt < len(requests) else math.inf
        finish = running[0][0] if running else math.inf
        now = min(arrival, finish, wake)
        if now == math.inf:
            raise RuntimeError("the policy left requests queued with nothing to wake it")
        while running and running[0][0] <= now:
            end, _, start, batch = heapq.heappop(running)
            free += 1
            rows = sum(p.rows for p in batch)
            if feed is not None:
                feed.observe(rows, end - start)
            for p in batch:
                latencies[p.item] = end - p.arrival
            served += len(batch)
            last_answer = max(last_answer, end)
        while nxt < len(requests) and requests[nxt].arrival <= now:
            r = requests[nxt]
            if max_queue is not None and len(queue) >= max_queue:
                refused += 1
                nxt += 1
                continue
            queue.append(Pending(arrival=r.arrival, rows=r.rows, deadline=r.deadline, item=nxt))
            if arrivals is not None:
                arrivals.record(r.arrival, r.rows)
            nxt += 1

        while True:
            decision = policy.decide(queue, now, free, slots)
            if not decision.acted:
                break
            gone = decision.expired + decision.too_large
            if gone:
                ids = {id(p) for p in gone}
                queue = [p for p in queue if id(p) not in ids]
                dropped += len(gone)
            if decision.dispatch:
                if free < 1:
                    raise RuntimeError("the policy dispatched with no free slot")
                batch = decision.dispatch
                count = len(batch)
                if all(a is b for a, b in zip(queue[:count], batch, strict=True)):
                    del queue[:count]
                else:
                    ids = {id(p) for p in batch}
                    queue = [p for p in queue if id(p) not in ids]
                rows = decision.rows
                sizes[rows] += 1
                free -= 1
                seconds = service.sample(rows, rng)
                heapq.heappush(running, (now + seconds, seq, now, batch))
                seq += 1
        wake = decision.wake_at if decision.wake_at is not None else math.inf
        if wake <= now:
            raise RuntimeError(f"the policy asked to wake at {wake!r}, not after now={now!r}")

    duration = last_answer - requests[0].arrival if requests else 0.0
    return SimResult(
        latencies=tuple(latencies),
        served=served,
        dropped=dropped,
        refused=refused,
        duration_s=duration,
        batch_sizes=dict(sorted(sizes.items())),
    )
