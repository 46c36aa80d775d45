"""Shard and replica picking: weights, power of two choices, ejection and backoff, retries."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from inferplane.compiler.plan import Plan, load_plan
from inferplane.gateway.retries import RETRIABLE, Attempts, Next
from inferplane.gateway.sharding import (
    Backoff,
    Fleet,
    Health,
    NoReplica,
    Shard,
    ShardPicker,
    TargetPool,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


class FakeClock:
    """A clock the test moves by hand (Ray Serve's pow-2 router tests use a mock timer)."""

    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fraud() -> Plan:
    # fraud-scorer@3: cpu-ams weight 1, cpu-fra 2, gpu-fra 3; cpu-fra has two workers, the
    # others one each. fraud-lite@1 also shards on cpu-ams and cpu-fra.
    return load_plan((GOLDEN / "fraud.plan.json").read_text())


def fleet(plan: Plan, clock: FakeClock, seed: int = 1, **kwargs) -> Fleet:
    return Fleet.from_plan(plan, clock=clock, rng=random.Random(seed), **kwargs)


def pool(name: str, n: int, clock: FakeClock, seed: int = 1, **kwargs) -> TargetPool:
    endpoints = [f"{name}-{i}:9100" for i in range(n)]
    return TargetPool(name, endpoints, clock=clock, rng=random.Random(seed), **kwargs)


def chi_square(counts: Counter, expected: dict) -> float:
    return sum((counts[k] - e) ** 2 / e for k, e in expected.items())


def eject_all(target: TargetPool) -> None:
    for r in target.replicas:
        target.eject(r)


# --- the weighted spread over shards


def test_the_fleet_holds_the_plans_workers(fraud, clock):
    f = fleet(fraud, clock)
    assert [r.endpoint for r in f.pool("cpu-fra").replicas] == [
        "fraud-cpu-0.fra.internal:9100",
        "fraud-cpu-1.fra.internal:9100",
    ]
    assert [r.id for r in f.pool("cpu-fra").replicas] == ["cpu-fra/0", "cpu-fra/1"]
    assert f.picker("fraud-scorer", 3).shares() == pytest.approx(
        {"cpu-ams": 1 / 6, "cpu-fra": 2 / 6, "gpu-fra": 3 / 6}
    )


def test_picks_spread_over_shards_by_weight(fraud, clock):
    picker = fleet(fraud, clock, seed=42).picker("fraud-scorer", 3)
    n = 12_000
    counts = Counter(picker.pick().target for _ in range(n))
    expected = {"cpu-ams": n / 6, "cpu-fra": 2 * n / 6, "gpu-fra": 3 * n / 6}
    # 2 degrees of freedom: 13.8 is the 0.1% critical value.
    assert chi_square(counts, expected) < 13.8


def test_a_dead_shard_gives_its_share_to_the_others_by_weight(fraud, clock):
    f = fleet(fraud, clock, seed=5)
    eject_all(f.pool("gpu-fra"))
    picker = f.picker("fraud-scorer", 3)
    assert picker.shares() == pytest.approx({"cpu-ams": 1 / 3, "cpu-fra": 2 / 3, "gpu-fra": 0.0})
    n = 9_000
    counts = Counter(picker.pick().target for _ in range(n))
    assert counts["gpu-fra"] == 0
    # 1 degree of freedom: 10.83 is the 0.1% critical value.
    assert chi_square(counts, {"cpu-ams": n / 3, "cpu-fra": 2 * n / 3}) < 10.83


def test_a_shard_keeps_its_share_while_one_replica_lives(fraud, clock):
    f = fleet(fraud, clock)
    f.pool("cpu-fra").eject(f.pool("cpu-fra").replicas[0])
    picker = f.picker("fraud-scorer", 3)
    assert picker.shares()["cpu-fra"] == pytest.approx(2 / 6)
    picked = {picker.pick().id for _ in range(500)}
    assert "cpu-fra/0" not in picked and "cpu-fra/1" in picked


def test_no_live_shard_is_unavailable_saying_why(fraud, clock):
    f = fleet(fraud, clock)
    for target in ("cpu-ams", "cpu-fra", "gpu-fra"):
        eject_all(f.pool(target))
    picker = f.picker("fraud-scorer", 3)
    assert not picker.has_live()
    with pytest.raises(NoReplica) as raised:
        picker.pick()
    assert raised.value.kind == "UNAVAILABLE"
    assert str(raised.value) == (
        "no live replica for `fraud-scorer@3` "
        "(cpu-ams 0/1 live, cpu-fra 0/2 live, gpu-fra 0/1 live)"
    )


def test_a_local_target_starts_empty_until_its_supervisor_adds_workers(clock):
    retail = load_plan((GOLDEN / "retail.plan.json").read_text())
    f = fleet(retail, clock)
    picker = f.picker("recs", 7)
    with pytest.raises(NoReplica):
        picker.pick()
    f.pool("gpu-pool").add("unix:/run/inferplane/gpu-pool-0.sock")
    assert picker.pick().id == "gpu-pool/0"


def test_endpoints_override_the_plans_workers(fraud, clock):
    f = fleet(fraud, clock, endpoints={"gpu-fra": ["a:1", "b:1", "c:1"]})
    assert len(f.pool("gpu-fra").replicas) == 3


def test_models_on_one_target_share_its_replicas(fraud, clock):
    f = fleet(fraud, clock)
    scorer, lite = f.picker("fraud-scorer", 3), f.picker("fraud-lite", 1)
    replica = f.pool("cpu-fra").replicas[0]
    scorer.begin(replica, 8)
    assert replica.rows == 8
    lite.begin(replica, 2)
    assert replica.rows == 10 and replica.batches == 2


def test_picker_needs_positive_weights(clock):
    with pytest.raises(ValueError):
        ShardPicker("m@1", [Shard(pool("a", 1, clock), 0)], rng=random.Random(0))


# --- power of two choices


def test_power_of_two_always_takes_the_less_loaded_of_two(clock):
    target = pool("gpu", 2, clock)
    picker = ShardPicker("m@1", [Shard(target, 1)], rng=random.Random(3))
    busy, idle = target.replicas
    picker.begin(busy, 5)
    assert all(picker.pick() is idle for _ in range(100))


def test_power_of_two_never_picks_the_most_loaded_of_many(clock):
    target = pool("gpu", 3, clock)
    picker = ShardPicker("m@1", [Shard(target, 1)], rng=random.Random(11))
    low, mid, high = target.replicas
    picker.begin(mid, 1)
    picker.begin(high, 2)
    n = 6_000
    counts = Counter(picker.pick().index for _ in range(n))
    # The least loaded wins whenever it is drawn (2 pairs of 3); the middle one, once of 3.
    assert counts[high.index] == 0
    assert chi_square(counts, {low.index: 2 * n / 3, mid.index: n / 3}) < 10.83


def test_power_of_two_can_compare_predicted_seconds(clock):
    target = pool("gpu", 2, clock, measure="seconds")
    picker = ShardPicker(
        "m@1", [Shard(target, 1, fixed_s=0.010, per_item_s=0.001)], rng=random.Random(0)
    )
    many_small, one_big = target.replicas
    picker.begin(many_small, 1)
    picker.begin(many_small, 1)  # 2 rows in 2 batches: 22ms of work
    picker.begin(one_big, 2)  # 2 rows in 1 batch: 12ms
    assert many_small.rows == one_big.rows == 2
    assert many_small.load == pytest.approx(0.022) and one_big.load == pytest.approx(0.012)
    assert all(picker.pick() is one_big for _ in range(50))


def test_power_of_two_beats_a_random_choice_on_the_maximum_load(clock):
    replicas, requests = 100, 1_000  # ten each on average

    target = pool("cpu", replicas, clock)
    picker = ShardPicker("m@1", [Shard(target, 1)], rng=random.Random(2024))
    for _ in range(requests):
        picker.begin(picker.pick(), 1)
    pow2_max = max(r.rows for r in target.replicas)

    rng = random.Random(2024)
    uniform = Counter(rng.randrange(replicas) for _ in range(requests))
    uniform_max = max(uniform.values())

    assert pow2_max < uniform_max
    assert pow2_max <= 12  # within a couple of the mean of 10


# --- outstanding work


def test_begin_and_end_balance_out(clock):
    target = pool("gpu", 1, clock, measure="seconds")
    picker = ShardPicker(
        "m@1", [Shard(target, 1, fixed_s=0.1, per_item_s=0.01)], rng=random.Random(0)
    )
    (r,) = target.replicas
    assert picker.begin(r, 3) == pytest.approx(0.13)
    assert picker.begin(r, 4, predicted_s=0.5) == 0.5
    assert (r.rows, r.batches, r.load) == (7, 2, pytest.approx(0.63))
    picker.end(r, 3, ok=True, latency_s=0.2)
    picker.end(r, 4, ok=True, latency_s=0.4, predicted_s=0.5)
    assert (r.rows, r.batches, r.seconds) == (0, 0, 0.0)
    assert r.latency_s == pytest.approx(0.8 * 0.2 + 0.2 * 0.4)


# --- ejection, backoff and re-admission


def test_consecutive_failures_eject_a_replica(clock):
    target = pool("gpu", 2, clock, backoff=Backoff(failures_to_eject=3, jitter=0))
    picker = ShardPicker("m@1", [Shard(target, 1)], rng=random.Random(0))
    r = target.replicas[0]
    for _ in range(2):
        picker.begin(r, 1)
        picker.end(r, 1, ok=False)
    picker.begin(r, 1)
    picker.end(r, 1, ok=True)  # a success resets the count
    for _ in range(2):
        picker.begin(r, 1)
        picker.end(r, 1, ok=False)
    assert r.live
    picker.begin(r, 1)
    picker.end(r, 1, ok=False)
    assert r.health is Health.EJECTED
    assert all(picker.pick() is target.replicas[1] for _ in range(20))


def test_backoff_doubles_up_to_its_cap_and_probes_re_admit(clock):
    target = pool("gpu", 1, clock, backoff=Backoff(base_s=1, cap_s=8, jitter=0))
    (r,) = target.replicas
    target.eject(r)
    delays = []
    for _ in range(5):
        delays.append(r.ejected_until - clock.now)
        clock.advance(delays[-1] - 0.001)
        assert target.due_probes() == []
        clock.advance(0.001)
        assert target.next_probe_at() == clock.now
        assert target.due_probes() == [r]
        assert r.health is Health.PROBING and not r.live
        assert target.due_probes() == []  # one probe per ejection
        target.probed(r, ok=False)
    assert delays == [1, 2, 4, 8, 8]
    clock.advance(8)
    assert target.due_probes() == [r]
    target.probed(r, ok=True)
    assert r.live and r.failures == 0
    assert target.next_probe_at() is None


def test_a_flapping_replica_keeps_its_longer_backoff(clock):
    target = pool("gpu", 1, clock, backoff=Backoff(base_s=1, cap_s=8, jitter=0))
    (r,) = target.replicas
    target.eject(r)
    clock.advance(1)
    target.due_probes()
    target.probed(r, ok=True)
    clock.advance(2)  # live for less than the cap
    target.eject(r)
    assert r.ejected_until - clock.now == 2


def test_a_replica_live_for_the_cap_is_forgiven(clock):
    target = pool("gpu", 1, clock, backoff=Backoff(base_s=1, cap_s=8, jitter=0))
    (r,) = target.replicas
    target.eject(r)
    clock.advance(1)
    target.due_probes()
    target.probed(r, ok=True)
    clock.advance(8)
    target.eject(r)
    assert r.ejected_until - clock.now == 1


def test_jitter_only_shortens_the_delay(clock):
    backoff = Backoff(base_s=1, cap_s=4, jitter=0.5)
    rng = random.Random(9)
    for ejections in range(1, 6):
        full = min(4, 2 ** (ejections - 1))
        delays = [backoff.delay_s(ejections, rng) for _ in range(200)]
        assert all(full * 0.5 <= d <= full for d in delays)
        assert max(delays) - min(delays) > full * 0.3  # it does spread


def test_ejecting_an_ejected_replica_changes_nothing(clock):
    target = pool("gpu", 1, clock, backoff=Backoff(base_s=1, cap_s=8, jitter=0))
    (r,) = target.replicas
    target.eject(r)
    until = r.ejected_until
    clock.advance(0.5)
    target.eject(r)
    for _ in range(5):  # late failures of batches already in flight
        target.end(r, 1, 0.0, ok=False, latency_s=None)
    assert (r.ejected_until, r.ejections) == (until, 1)
    target.probed(r, ok=True)  # no probe was asked for: ignored
    assert r.health is Health.EJECTED


def test_bad_backoffs_are_refused():
    for kwargs in (
        {"base_s": 0},
        {"base_s": 2, "cap_s": 1},
        {"jitter": 1},
        {"failures_to_eject": 0},
    ):
        with pytest.raises(ValueError):
            Backoff(**kwargs)


def test_a_verifying_pool_admits_replicas_only_through_a_probe(clock):
    target = pool("cpu", 2, clock, backoff=Backoff(base_s=1, cap_s=8, jitter=0), verify=True)
    a, b = target.replicas
    assert a.health is b.health is Health.UNVERIFIED
    assert target.live() == [] and target.awaiting_first_probe() == [a, b]
    target.eject(a)  # not live: nothing to eject
    assert a.health is Health.UNVERIFIED
    assert target.next_probe_at() == clock.now  # due at once, no backoff first
    assert target.due_probes() == [a, b] and target.due_probes() == []
    target.probed(a, ok=True)
    target.probed(b, ok=False)  # refused: ejected with the usual backoff
    assert target.live() == [a] and a.verified and not b.verified
    assert target.awaiting_first_probe() == []
    assert b.health is Health.EJECTED and b.ejected_until - clock.now == 1
    clock.advance(1)
    assert target.due_probes() == [b]
    target.probed(b, ok=True)
    assert target.live() == [a, b]
    assert target.add("cpu-2:9100").health is Health.UNVERIFIED


def test_a_fleet_verifies_only_the_pools_it_is_told_to(fraud, clock):
    f = fleet(fraud, clock, verify={"cpu-fra"})
    assert f.pool("cpu-fra").verify and f.pool("cpu-fra").live() == []
    assert [r.health for r in f.pool("cpu-fra").replicas] == [Health.UNVERIFIED] * 2
    assert not f.pool("cpu-ams").verify and len(f.pool("cpu-ams").live()) == 1
    with pytest.raises(NoReplica):
        ShardPicker("m@1", [Shard(f.pool("cpu-fra"), 1)], rng=random.Random(0)).pick()


def test_removed_replicas_ids_are_never_reused(clock):
    target = pool("cpu", 2, clock)
    target.remove(target.replicas[1])
    assert target.add("new:1").id == "cpu/2"
    assert target.get("cpu/1") is None and target.get("cpu/2") is not None


# --- retries and answers


def test_retries_never_pick_a_replica_twice(fraud, clock):
    f = fleet(fraud, clock, seed=8, endpoints={"gpu-fra": ["g0", "g1", "g2"]})
    picker = f.picker("fraud-scorer", 3)  # 6 replicas over 3 shards
    for n in range(300):
        attempts = Attempts(f"req-{n}", max_retries=5)
        seen = []
        while True:
            replica = picker.pick(exclude=attempts.exclude)
            attempts.start(replica.id)
            seen.append(replica.id)
            if attempts.fail(replica.id, "UNAVAILABLE") is not Next.RETRY:
                break
        assert len(seen) == 6 == len(set(seen))
        with pytest.raises(NoReplica, match="6 already tried"):
            picker.pick(exclude=attempts.exclude)


def test_a_retry_crosses_to_another_shard_when_its_shard_is_spent(clock):
    lone, other = pool("lone", 1, clock), pool("other", 2, clock)
    picker = ShardPicker("m@1", [Shard(lone, 100), Shard(other, 1)], rng=random.Random(0))
    for _ in range(50):
        assert picker.pick(exclude={"lone/0"}).target == "other"


def test_attempts_are_bounded(clock):
    attempts = Attempts("r", max_retries=2)
    assert [attempts.start(f"x/{i}") for i in range(3)] == [1, 2, 3]
    assert attempts.tries_left == 0
    assert attempts.fail("x/2", "UNAVAILABLE") is Next.GIVE_UP
    with pytest.raises(RuntimeError, match="no tries left"):
        attempts.start("x/3")


@pytest.mark.parametrize("kind", sorted(RETRIABLE))
def test_retriable_failures_retry(kind):
    attempts = Attempts("r")
    attempts.start("a/0")
    assert attempts.fail("a/0", kind) is Next.RETRY


@pytest.mark.parametrize("kind", ["INVALID_ARGUMENT", "INTERNAL", "DEADLINE_EXCEEDED", "NOT_FOUND"])
def test_other_failures_give_up_at_once(kind):
    attempts = Attempts("r")
    attempts.start("a/0")
    assert attempts.fail("a/0", kind) is Next.GIVE_UP
    assert attempts.failures == [("a/0", kind)]


def test_a_request_is_answered_at_most_once():
    attempts = Attempts("r")
    attempts.start("a/0")
    assert attempts.fail("a/0", "UNAVAILABLE") is Next.RETRY
    attempts.start("b/0")
    assert attempts.answer() is True
    assert attempts.answer() is False  # a late reply of the first try
    assert attempts.fail("b/0", "UNAVAILABLE") is Next.DONE
    with pytest.raises(RuntimeError, match="answered"):
        attempts.start("c/0")


def test_a_try_is_recorded_once_and_failures_name_a_try():
    attempts = Attempts("r")
    attempts.start("a/0")
    with pytest.raises(RuntimeError, match="already tried"):
        attempts.start("a/0")
    with pytest.raises(RuntimeError, match="never tried"):
        attempts.fail("b/0", "UNAVAILABLE")


def test_a_worker_dying_mid_batch_loses_no_request_and_answers_none_twice(clock):
    """A small simulation: batches of 4 go out; the worker `cpu/1` crashes with
    everything in flight; each of its requests is retried elsewhere."""
    target = pool("cpu", 3, clock, backoff=Backoff(jitter=0))
    picker = ShardPicker("m@1", [Shard(target, 1)], rng=random.Random(4))
    dead = target.replicas[1]
    answers: Counter = Counter()
    pending = {f"req-{i}": Attempts(f"req-{i}") for i in range(40)}
    in_flight: list[tuple[str, list[str]]] = []
    ids = list(pending)
    for start in range(0, len(ids), 4):
        replica = picker.pick()
        batch = ids[start : start + 4]
        for rid in batch:
            pending[rid].start(replica.id)
        picker.begin(replica, len(batch))
        in_flight.append((replica.id, batch))
    assert any(rep == dead.id for rep, _ in in_flight)

    target.eject(dead)  # the driver saw the connection drop
    queue = in_flight
    while queue:
        replica_id, batch = queue.pop(0)
        replica = target.get(replica_id)
        if replica is dead:
            picker.end(replica, len(batch), ok=False)
            for rid in batch:
                assert pending[rid].fail(replica_id, "UNAVAILABLE") is Next.RETRY
                retry = picker.pick(exclude=pending[rid].exclude)
                assert retry is not dead
                pending[rid].start(retry.id)
                picker.begin(retry, 1)
                queue.append((retry.id, [rid]))
        else:
            picker.end(replica, len(batch), ok=True)
            for rid in batch:
                if pending[rid].answer():
                    answers[rid] += 1
                # a duplicate reply (say, a hedge) is dropped
                assert not pending[rid].answer()

    assert answers == dict.fromkeys(ids, 1)
    assert all(r.rows == 0 for r in target.replicas)
