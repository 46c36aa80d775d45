"""The batching policy, driven by a fake clock (plain floats) and simulated load.

The decision is pure, so most tests call `decide` with a queue and a `now` and
look at the answer; the acceptance tests run whole traces through
`gateway.simulation`, whose clock jumps from event to event.

Simulation parameters (also in docs/batching.md):

- true service time of a batch of n rows on one slot: 1 ms + 0.1 ms * n, with
  5% log-normal noise (a CPU-like line); 2 worker slots;
- `batch max 32 window 2ms`, latency SLO p99 <= 20 ms;
- the service-time model starts from a wrong plan estimate, 2 ms + 0.3 ms * n,
  and learns the true line from the batches it sees;
- capacity, full batches back to back on both slots: 2 * 32 / 4.2 ms = 15,238/s.
- Throughput is served requests per second over the run (first arrival to
  last answer), measured at an offered load of 1.25x capacity with at most 256
  requests queued (later arrivals are refused), so the workers are the limit.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferplane.compiler.plan import load_plan
from inferplane.gateway.batching import ArrivalRate, BatchPolicy, Decision, Pending
from inferplane.gateway.service_time import ServiceTimeModel
from inferplane.gateway.simulation import LinearService, on_off, poisson, simulate

TRUE_LINE = LinearService(fixed_s=1e-3, per_item_s=1e-4, noise=0.05)
PLAN_GUESS = (2e-3, 3e-4)  # the estimate the model starts from
MAX_BATCH = 32
WINDOW_S = 2e-3
SLO_S = 20e-3
SLOTS = 2
CAPACITY_RPS = TRUE_LINE.capacity_rps(MAX_BATCH, SLOTS)
SWEEP = (1, 2, 4, 8, 16, 32)
MAX_QUEUE = 256

GOLDEN = Path(__file__).resolve().parent.parent / "golden"


def adaptive(**options) -> BatchPolicy:
    return BatchPolicy(
        max_batch=options.pop("max_batch", MAX_BATCH),
        window_s=options.pop("window_s", WINDOW_S),
        fixed=False,
        slo_s=options.pop("slo_s", SLO_S),
        service_time=options.pop("service_time", ServiceTimeModel(*PLAN_GUESS)),
        arrivals=options.pop("arrivals", ArrivalRate()),
        **options,
    )


def fixed(max_batch: int = MAX_BATCH, window_s: float = WINDOW_S) -> BatchPolicy:
    return BatchPolicy(
        max_batch=max_batch,
        window_s=window_s,
        fixed=True,
        slo_s=SLO_S,
        service_time=ServiceTimeModel(*PLAN_GUESS),
    )


def exact(fixed_s: float = 1e-3, per_item_s: float = 1e-4) -> ServiceTimeModel:
    """A model that predicts this line exactly (no observations, no margin)."""
    model = ServiceTimeModel(fixed_s, per_item_s, initial_spread=0.0)
    assert model.margin == 0
    return model


def queued(*rows: int, start: float = 0.0, gap: float = 1e-4) -> list[Pending]:
    return [Pending(arrival=start + i * gap, rows=k, item=i) for i, k in enumerate(rows)]


def busy_rate(rate_rps: int, until: float) -> ArrivalRate:
    """An estimator that has seen `rate_rps` rows per second for a long time.

    A long steady stream leaves `rate * time_constant` rows in the decayed
    count, so one record of that many rows at `until` is the same state.
    """
    arrivals = ArrivalRate(time_constant_s=0.05)
    arrivals.record(until, rows=round(rate_rps * 0.05))
    return arrivals


# -- the acceptance criteria, in simulation ------------------------------

NEAR_CAPACITY = {
    # Poisson at 90% of capacity.
    "steady": lambda: poisson(0.9 * CAPACITY_RPS, 1.0, seed=1),
    # 10 ms bursts at 150% of capacity, then 10 ms at 30%: 90% on average.
    "bursty": lambda: on_off(
        1.5 * CAPACITY_RPS, 0.01, 0.01, 1.0, rate_off_rps=0.3 * CAPACITY_RPS, seed=2
    ),
}
SATURATING = {
    "steady": lambda: poisson(1.25 * CAPACITY_RPS, 0.25, seed=4),
    "bursty": lambda: on_off(2.5 * CAPACITY_RPS, 0.01, 0.01, 0.25, seed=5),
}


@pytest.mark.parametrize("load", sorted(NEAR_CAPACITY))
def test_adaptive_meets_the_p99_slo_near_capacity(load: str) -> None:
    trace = NEAR_CAPACITY[load]()
    result = simulate(adaptive(), trace, TRUE_LINE, slots=SLOTS)
    assert result.served == len(trace) and result.dropped == 0
    assert result.percentile(99) <= SLO_S
    assert max(result.batch_sizes) <= MAX_BATCH


@pytest.mark.parametrize("load", sorted(SATURATING))
def test_adaptive_reaches_90_percent_of_the_best_fixed_batch_throughput(load: str) -> None:
    trace = SATURATING[load]()
    sweep = {
        size: simulate(fixed(size), trace, TRUE_LINE, slots=SLOTS, max_queue=MAX_QUEUE)
        for size in SWEEP
    }
    assert all(r.refused > 0 for r in sweep.values())  # the workers are the limit
    best = max(r.throughput_rps for r in sweep.values())
    ours = simulate(adaptive(), trace, TRUE_LINE, slots=SLOTS, max_queue=MAX_QUEUE)
    assert ours.refused > 0
    assert ours.throughput_rps >= 0.9 * best
    assert best >= 0.95 * CAPACITY_RPS  # the sweep found the full batch


def test_adaptive_beats_a_fixed_window_on_p99_at_low_load() -> None:
    trace = poisson(0.05 * CAPACITY_RPS, 2.0, seed=3)
    ours = simulate(adaptive(), trace, TRUE_LINE, slots=SLOTS)
    window = simulate(fixed(), trace, TRUE_LINE, slots=SLOTS)
    assert ours.served == window.served == len(trace)
    assert ours.percentile(99) < window.percentile(99)
    # No waiting for company: the median request is one batch of one.
    assert ours.percentile(50) < 1.1 * TRUE_LINE.mean(1)
    assert window.percentile(50) > WINDOW_S


def test_simulation_is_deterministic() -> None:
    trace = NEAR_CAPACITY["bursty"]()
    first = simulate(adaptive(), trace, TRUE_LINE, slots=SLOTS, seed=7)
    second = simulate(adaptive(), trace, TRUE_LINE, slots=SLOTS, seed=7)
    assert first == second


def test_expired_requests_are_dropped_before_any_worker_sees_them() -> None:
    # Twice the capacity, every request with a 10 ms gRPC deadline.
    trace = poisson(2 * CAPACITY_RPS, 0.1, seed=6, timeout_s=0.010)
    result = simulate(adaptive(), trace, TRUE_LINE, slots=SLOTS)
    assert result.dropped > 0
    assert result.served + result.dropped == len(trace)
    # Rows sent to workers are exactly the served requests' rows.
    assert sum(size * n for size, n in result.batch_sizes.items()) == result.served
    assert sum(1 for t in result.latencies if math.isinf(t)) == result.dropped
    # What is sent is sent in time (up to the 5% noise on service times).
    in_time = sum(1 for t in result.latencies if t <= 0.010)
    assert in_time >= 0.9 * result.served


def test_requests_with_their_own_batch_dimension_in_simulation() -> None:
    trace = poisson(0.5 * CAPACITY_RPS / 2.5, 0.5, seed=8, rows=(1, 2, 4))
    result = simulate(adaptive(), trace, TRUE_LINE, slots=SLOTS)
    assert result.served == len(trace)
    assert max(result.batch_sizes) <= MAX_BATCH
    assert sum(size * n for size, n in result.batch_sizes.items()) == sum(r.rows for r in trace)


# -- the decision, step by step with a fake clock --------------------------------


def test_an_idle_slot_sends_a_lone_request_at_once() -> None:
    request = Pending(arrival=0.0)
    for policy in (adaptive(), adaptive(arrivals=busy_rate(10_000, until=0.0))):
        decision = policy.decide([request], now=0.0, free_slots=2, slots=2)
        assert decision.dispatch == (request,)
        assert decision.acted and decision.wake_at == 0.0


def test_without_a_free_slot_the_queue_accumulates() -> None:
    queue = queued(*[1] * 40)
    policy = adaptive(service_time=exact())
    decision = policy.decide(queue, now=0.004, free_slots=0, slots=2)
    assert decision == Decision()  # nothing to do, no deadline to wake for
    # When a slot frees, the leading `max` rows go out.
    decision = policy.decide(queue, now=0.004, free_slots=1, slots=2)
    assert decision.dispatch == tuple(queue[:MAX_BATCH])
    assert decision.rows == MAX_BATCH


def test_requests_with_their_own_batch_dimension_are_never_split() -> None:
    queue = queued(3, 3, 3, 1)
    decision = adaptive(max_batch=8).decide(queue, now=0.001, free_slots=1)
    assert decision.dispatch == tuple(queue[:2])  # 6 rows; the next 3 would not fit
    decision = adaptive(max_batch=8).decide(queue[2:], now=0.001, free_slots=1)
    assert decision.dispatch == tuple(queue[2:])  # and nothing is reordered past it


def test_a_request_larger_than_max_is_reported_never_sent() -> None:
    big, small = Pending(0.0, rows=40), Pending(0.0001)
    decision = adaptive().decide([big, small], now=0.001, free_slots=1)
    assert decision.too_large == (big,)
    assert decision.dispatch == (small,)


def test_fixed_waits_for_max_rows_or_the_window_whichever_comes_first() -> None:
    policy = fixed()
    first = Pending(arrival=0.0)
    decision = policy.decide([first], now=0.0, free_slots=2, slots=2)
    assert decision.dispatch == () and decision.wake_at == pytest.approx(WINDOW_S)
    assert policy.decide([first], now=0.5 * WINDOW_S, free_slots=2).dispatch == ()
    assert policy.decide([first], now=WINDOW_S, free_slots=2).dispatch == (first,)
    # A full batch goes out before the window.
    queue = queued(*[1] * 40)
    decision = policy.decide(queue, now=queue[-1].arrival, free_slots=1)
    assert decision.dispatch == tuple(queue[:MAX_BATCH])


def test_a_saturated_driver_holds_an_adaptive_batch_for_its_window_even_when_idle() -> None:
    policy = adaptive()
    first = Pending(arrival=0.0)
    # Not saturated, an idle shard sends a lone request at once (step 5a)...
    assert policy.decide([first], now=0.0, free_slots=2, slots=2).dispatch == (first,)
    # ...saturated, it waits out the window first (step 5'), then sends.
    held = policy.decide([first], now=0.0, free_slots=2, slots=2, saturated=True)
    assert held.dispatch == () and held.wake_at == pytest.approx(WINDOW_S)
    late = policy.decide([first], now=WINDOW_S, free_slots=2, slots=2, saturated=True)
    assert late.dispatch == (first,)
    # A full batch never waits.
    queue = queued(*[1] * MAX_BATCH)
    full = policy.decide(queue, now=queue[-1].arrival, free_slots=2, slots=2, saturated=True)
    assert full.dispatch == tuple(queue)


def test_fixed_pins_the_batch_size() -> None:
    policy = fixed(max_batch=8)
    queue = queued(*[1] * 5)
    assert policy.decide(queue, now=0.001, free_slots=1).dispatch == ()
    assert len(policy.decide(queue, now=WINDOW_S, free_slots=1).dispatch) == 5
    assert len(policy.decide(queued(*[1] * 20), now=0.0019, free_slots=1).dispatch) == 8


def test_adaptive_holds_under_load_until_the_batch_suits_the_rate() -> None:
    # 10,000 rows/s on two slots of 1 ms + 0.1 ms/row: batches of 2 would keep
    # 10,000 * 1.2 ms / 2 = 6 slots busy; the policy waits for a batch that
    # keeps its 2 slots 90% busy: rate * A / (0.9 * slots - rate * C)
    # = 10 / (1.8 - 1.0) = 12.5, so 13 rows.
    now = 0.010
    arrivals = busy_rate(10_000, until=now)
    policy = adaptive(service_time=exact(), arrivals=arrivals)
    queue = queued(1, 1, start=now - 0.0001)
    decision = policy.decide(queue, now, free_slots=1, slots=2)
    assert decision.dispatch == ()
    assert now < decision.wake_at <= queue[0].arrival + WINDOW_S
    assert policy.decide(queued(*[1] * 12, start=now - 0.001), now, 1, 2).dispatch == ()
    assert len(policy.decide(queued(*[1] * 13, start=now - 0.001), now, 1, 2).dispatch) == 13
    # Once the window since the oldest has passed, it goes out whatever its size.
    late = now + WINDOW_S
    assert policy.decide(queue, late, free_slots=1, slots=2).dispatch == tuple(queue)


def test_adaptive_does_not_hold_at_a_low_rate_or_past_a_target() -> None:
    now = 0.010
    queue = queued(1, 1, start=now - 0.0001)
    quiet = adaptive(service_time=exact(), arrivals=busy_rate(200, until=now))
    assert quiet.decide(queue, now, free_slots=1, slots=2).dispatch == tuple(queue)
    # A 3 ms SLO leaves no room to wait for 13 rows (1.1 ms more, then 2.3 ms).
    tight = adaptive(service_time=exact(), arrivals=busy_rate(10_000, until=now), slo_s=0.003)
    assert tight.decide(queue, now, free_slots=1, slots=2).dispatch == tuple(queue)
    # Nor does it without the count of slots, or without an arrival estimator.
    loud = adaptive(service_time=exact(), arrivals=busy_rate(10_000, until=now))
    assert loud.decide(queue, now, free_slots=1).dispatch == tuple(queue)
    blind = adaptive(service_time=exact(), arrivals=None)
    assert blind.decide(queue, now, free_slots=1, slots=2).dispatch == tuple(queue)


def test_expired_requests_are_reported_and_never_dispatched() -> None:
    policy = adaptive(service_time=exact())
    now = 0.010
    gone = Pending(arrival=0.0, deadline=0.009)  # already past
    hopeless = Pending(arrival=0.001, deadline=now + 0.0005)  # 1.1 ms alone
    fine = Pending(arrival=0.002, deadline=now + 0.005)
    decision = policy.decide([gone, hopeless, fine], now, free_slots=1)
    assert decision.expired == (gone, hopeless)
    assert decision.dispatch == (fine,)


def test_a_request_the_batch_would_answer_too_late_is_expired_not_sent() -> None:
    policy = adaptive(service_time=exact())
    now = 0.010
    hurried = Pending(arrival=0.0, deadline=now + 0.002)  # alone: 1.1 ms, fine
    others = queued(*[1] * 40, start=0.001)
    decision = policy.decide([hurried, *others], now, free_slots=1)
    # A batch of 32 takes 4.2 ms: past its deadline, so it is dropped, and the
    # batch is formed again from the others.
    assert decision.expired == (hurried,)
    assert decision.dispatch == tuple(others[:MAX_BATCH])


def test_without_a_slot_the_policy_wakes_to_drop_at_the_deadline() -> None:
    policy = adaptive(service_time=exact())
    request = Pending(arrival=0.0, deadline=0.005)
    decision = policy.decide([request], now=0.001, free_slots=0, slots=2)
    assert decision.dispatch == () and decision.expired == ()
    assert decision.wake_at == pytest.approx(0.005 - 0.0011)
    decision = policy.decide([request], now=decision.wake_at, free_slots=0, slots=2)
    assert decision.expired == (request,)


def test_missing_the_slo_alone_does_not_drop_a_request() -> None:
    late = Pending(arrival=0.0)  # its 20 ms target has passed; it has no deadline
    decision = adaptive().decide([late], now=0.050, free_slots=1)
    assert decision.expired == () and decision.dispatch == (late,)


def _queue(draw: st.DrawFn) -> list[Pending]:
    count = draw(st.integers(0, 40))
    t = 0.0
    out = []
    for i in range(count):
        t += draw(st.floats(0.0, 0.002))
        deadline = draw(st.one_of(st.just(math.inf), st.floats(t, t + 0.03)))
        out.append(Pending(arrival=t, rows=draw(st.integers(1, 6)), deadline=deadline, item=i))
    return out


@st.composite
def situations(draw: st.DrawFn) -> tuple[BatchPolicy, list[Pending], float, int]:
    queue = _queue(draw)
    now = (queue[-1].arrival if queue else 0.0) + draw(st.floats(0.0, 0.01))
    arrivals = busy_rate(draw(st.sampled_from([100, 3_000, 12_000, 50_000])), until=now)
    max_batch = draw(st.integers(1, 16))
    window = draw(st.sampled_from([0.0, 0.001, 0.005]))
    slo = draw(st.sampled_from([None, 0.005, 0.02]))
    if draw(st.booleans()):
        policy = BatchPolicy(max_batch, window, True, slo, exact())
    else:
        policy = adaptive(
            max_batch=max_batch, window_s=window, slo_s=slo, service_time=exact(), arrivals=arrivals
        )
    return policy, queue, now, draw(st.integers(0, 3))


@settings(max_examples=300, deadline=None)
@given(situations())
def test_decision_invariants(situation: tuple[BatchPolicy, list[Pending], float, int]) -> None:
    policy, queue, now, free = situation
    decision = policy.decide(queue, now, free, slots=3)
    model = policy.service_time
    # Expired: hopeless even alone, or late in the batch that was being formed.
    assert all(p.deadline < now + model.predict(policy.max_batch) for p in decision.expired)
    # Nothing is sent that would be answered after its deadline.
    assert all(p.deadline >= now + model.predict(decision.rows) for p in decision.dispatch)
    assert all(p.rows > policy.max_batch for p in decision.too_large)
    gone = {id(p) for p in decision.expired + decision.too_large}
    live = [p for p in queue if id(p) not in gone]
    assert all(p.rows <= policy.max_batch for p in live)
    assert all(now < p.deadline - model.predict(p.rows) for p in live)
    assert not set(map(id, decision.expired)) & set(map(id, decision.dispatch))
    # Never past max, never split, never reordered: a prefix of what is left.
    assert decision.rows <= policy.max_batch
    assert list(decision.dispatch) == live[: len(decision.dispatch)]
    if free == 0:
        assert decision.dispatch == ()
    if decision.acted:
        assert decision.wake_at == now
        return
    assert decision.wake_at is None or decision.wake_at > now
    if free > 0 and live:
        # Waiting with a free slot: never past the oldest's window.
        window_end = live[0].arrival + policy.window_s
        assert now < window_end
        assert decision.wake_at is not None and decision.wake_at <= window_end


# -- what admission reads ---------------------------------------------------------


def test_forecast_counts_the_queue_ahead_and_the_busy_slots() -> None:
    policy = adaptive(service_time=exact())
    now = 1.0
    idle = policy.forecast([], now, [0.0, 0.0])
    assert (idle.wait_s, idle.rows) == (0.0, 1)
    assert idle.service_s == pytest.approx(0.0011)
    # One slot, busy for 5 ms more, with 64 rows ahead: two full batches, then ours.
    ahead = queued(*[1] * 64, start=now - 0.001, gap=0.00001)
    one = policy.forecast(ahead, now, [now + 0.005])
    assert one.wait_s == pytest.approx(0.005 + 2 * 0.0042)
    assert one.latency_s == pytest.approx(0.005 + 2 * 0.0042 + 0.0011)
    assert policy.predicted_wait(ahead, now, [now + 0.005]) == one.wait_s
    # Two slots: the full batches take the idle slot (sent at +0 and +4.2 ms);
    # ours takes the other one when it frees at +5 ms.
    two = policy.forecast(ahead, now, [now + 0.005, now])
    assert two.wait_s == pytest.approx(0.005)
    # A request of 8 rows behind 30 does not fit their batch and is never split:
    # it goes alone once the 30 are done.
    big = policy.forecast(ahead[:30], now, [now], rows=8)
    assert big.rows == 8
    assert big.wait_s == pytest.approx(0.001 + 30 * 0.0001)
    assert policy.predicted_wait(ahead, now, []) == math.inf
    assert policy.predicted_wait([], now, [now], rows=MAX_BATCH + 1) == math.inf
    assert policy.predict_batch_time(32) == pytest.approx(0.0042)


def test_forecast_of_a_fixed_policy_includes_its_window() -> None:
    policy = BatchPolicy(MAX_BATCH, WINDOW_S, True, SLO_S, exact())
    assert policy.predicted_wait([], 1.0, [0.0]) == pytest.approx(WINDOW_S)
    ahead = [Pending(arrival=1.0 - 0.0015)]
    forecast = policy.forecast(ahead, 1.0, [0.0])
    assert forecast.wait_s == pytest.approx(0.0005)
    assert forecast.service_s == pytest.approx(0.0012)


def test_policy_from_a_plan() -> None:
    plan = load_plan((GOLDEN / "demo.plan.json").read_text())
    model = plan.models[0]
    shard = model.shards[0]
    policy = BatchPolicy.from_plan(model, shard)
    assert policy.max_batch == shard.batching.max_batch_size
    assert policy.window_s == shard.batching.window_s
    assert policy.fixed is False
    order = ["p50", "p90", "p95", "p99", "p999"]
    tail = max(model.slos.latency, key=lambda o: order.index(o.percentile))
    assert policy.slo_s == tail.seconds
    assert policy.service_time.predict(1) == pytest.approx(
        shard.estimate.fixed_s + shard.estimate.per_item_s
    )
    assert isinstance(policy.arrivals, ArrivalRate)
    pinned = shard.model_copy(
        update={"batching": shard.batching.model_copy(update={"adaptive": False})}
    )
    assert BatchPolicy.from_plan(model, pinned).fixed is True


def test_arrival_rate_estimate() -> None:
    arrivals = ArrivalRate(time_constant_s=0.05)
    assert arrivals.rate(0.0) == 0.0
    for i in range(1000):
        arrivals.record(i / 2000, rows=2)  # 4,000 rows/s for 0.5 s
    assert arrivals.rate(0.4995) == pytest.approx(4000, rel=0.05)
    assert arrivals.rate(0.4995 + 0.05) == pytest.approx(4000 / math.e, rel=0.05)


@pytest.mark.parametrize(
    "options",
    [
        {"max_batch": 0},
        {"window_s": -1.0},
        {"window_s": math.inf},
        {"slo_s": 0.0},
        {"target_utilization": 0.0},
        {"target_utilization": 1.5},
    ],
)
def test_policy_rejects_bad_settings(options: dict) -> None:
    with pytest.raises(ValueError):
        adaptive(**options)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.integers(1, MAX_BATCH),
    free_at=st.lists(st.floats(-0.01, 0.05), min_size=1, max_size=4),
    is_fixed=st.booleans(),
)
def test_forecast_for_an_empty_queue_agrees_with_the_general_walk(rows, free_at, is_fixed):
    policy = fixed() if is_fixed else adaptive()
    now = 0.0
    fast = policy.forecast([], now, free_at, rows)
    # A request too large for any batch is skipped by the walk, so this takes the
    # general path over the same (empty) work ahead.
    walked = policy.forecast([Pending(arrival=now, rows=MAX_BATCH + 1)], now, free_at, rows)
    assert fast == walked
