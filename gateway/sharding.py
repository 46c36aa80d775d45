"""Shard and replica picking for a model version, over per-target replica health.

Policy over mechanism (STYLE.md, after Ray Serve's pow-2 request router):

    Fleet.from_plan(plan, clock=, rng=)   a TargetPool per target, a ShardPicker per model version
    ShardPicker.pick(exclude)             policy: a shard by weight, then power of two choices
      .begin(replica, rows) / .end(...)   outstanding work, and a failure count on `ok=False`
    TargetPool                            mechanism: a target's replicas, their load and health,
                                          ejection with exponential backoff, probes, re-admission
      (verify=True)                       new replicas wait out of rotation for a first probe

One request's tries over replicas (`Attempts`) live in gateway/retries.py.

A worker serves every model sharded on its target, so replicas, their load and
their health live in the target's pool and are shared by the pickers of all
those models; a picker holds only its model's shard weights and service-time
estimates. The clock (`time.monotonic` in the gateway) and the RNG are
injected, so tests drive time and draws. Nothing here sleeps, probes or sends:
the asyncio driver asks `due_probes()` which replicas to health-check and
reports back with `probed()`.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from inferplane.compiler import plan as plan_mod

Clock = Callable[[], float]
Measure = Literal["rows", "seconds"]


class NoReplica(Exception):
    """No live replica can take the request (every shard down, or all tried)."""

    kind = "UNAVAILABLE"


class Health(enum.StrEnum):
    LIVE = "live"
    EJECTED = "ejected"  # out of rotation until its backoff ends
    PROBING = "probing"  # backoff over; a health probe decides its return
    UNVERIFIED = "unverified"  # just added to a verifying pool: out until a first probe passes


_WAITING = (Health.EJECTED, Health.UNVERIFIED)  # out of rotation, probed when due


@dataclass(frozen=True)
class Backoff:
    """When a replica is ejected, and for how long.

    After `failures_to_eject` consecutive failed calls (or at once, by
    `TargetPool.eject`, when the driver sees the connection drop) a replica is
    ejected for `min(cap_s, base_s * 2**(n-1))` seconds, n being its count of
    ejections in a row, shortened by a random fraction up to `jitter` so that
    replicas ejected together are not probed together. The cap stays an upper
    bound. A replica that stays live for `cap_s` after re-admission is
    forgiven: its next ejection starts again from `base_s`.
    """

    base_s: float = 0.5
    cap_s: float = 30.0
    jitter: float = 0.2
    failures_to_eject: int = 3

    def __post_init__(self) -> None:
        if not (0 < self.base_s <= self.cap_s) or not (0 <= self.jitter < 1):
            raise ValueError("backoff needs 0 < base_s <= cap_s and 0 <= jitter < 1")
        if self.failures_to_eject < 1:
            raise ValueError("failures_to_eject must be at least 1")

    def delay_s(self, ejections: int, rng: random.Random) -> float:
        full = min(self.cap_s, self.base_s * 2.0 ** max(0, ejections - 1))
        return full * (1.0 - self.jitter * rng.random())


@dataclass(eq=False)
class Replica:
    """One worker of a target, with its outstanding work and health.

    `load` is what power of two choices compares: in-flight rows, or the
    predicted seconds of in-flight batches, as the pool's `measure` says.
    """

    target: str
    index: int
    endpoint: str
    measure: Measure = "rows"
    health: Health = Health.LIVE
    rows: int = 0
    batches: int = 0
    seconds: float = 0.0
    failures: int = 0  # consecutive failed calls
    ejections: int = 0  # ejections in a row, the backoff's exponent
    ejected_until: float = 0.0
    live_since: float = 0.0
    latency_s: float | None = None  # moving average of reported batch latencies
    verified: bool = True  # a probe has passed it (False until then in a verifying pool)
    probes: int = 0  # probes reported

    @property
    def id(self) -> str:
        return f"{self.target}/{self.index}"

    @property
    def load(self) -> float:
        return self.seconds if self.measure == "seconds" else float(self.rows)

    @property
    def live(self) -> bool:
        return self.health is Health.LIVE


class TargetPool:
    """A target's replicas: outstanding work, ejection, backoff and re-admission.

    With `verify=True` a replica joins UNVERIFIED, out of rotation and due for a
    probe at once, and becomes live only when that probe passes: the gateway
    uses it for targets whose workers must prove where they run
    (gateway/placement.py) before they see a request. A failed first probe
    ejects it with the usual backoff, and the next probe tries again.
    """

    def __init__(
        self,
        name: str,
        endpoints: Sequence[str] = (),
        *,
        clock: Clock,
        rng: random.Random,
        backoff: Backoff | None = None,
        measure: Measure = "rows",
        verify: bool = False,
    ):
        self.name = name
        self.backoff = backoff or Backoff()
        self.measure = measure
        self.verify = verify
        self._clock = clock
        self._rng = rng
        self._next_index = 0  # never reused, so a stale id never names a new replica
        self.replicas: list[Replica] = []
        for endpoint in endpoints:
            self.add(endpoint)

    # --- membership (the supervisor starts, restarts and scales workers)

    def add(self, endpoint: str) -> Replica:
        now = self._clock()
        replica = Replica(self.name, self._next_index, endpoint, self.measure, live_since=now)
        if self.verify:
            replica.health, replica.verified, replica.ejected_until = Health.UNVERIFIED, False, now
        self._next_index += 1
        self.replicas.append(replica)
        return replica

    def remove(self, replica: Replica) -> None:
        self.replicas.remove(replica)

    def get(self, replica_id: str) -> Replica | None:
        return next((r for r in self.replicas if r.id == replica_id), None)

    def live(self, exclude: Collection[str] = ()) -> list[Replica]:
        return [r for r in self.replicas if r.live and r.id not in exclude]

    # --- outstanding work

    def begin(self, replica: Replica, rows: int, seconds: float = 0.0) -> None:
        replica.rows += rows
        replica.batches += 1
        replica.seconds += seconds

    def end(
        self, replica: Replica, rows: int, seconds: float, ok: bool, latency_s: float | None
    ) -> None:
        replica.batches = max(0, replica.batches - 1)
        replica.rows = max(0, replica.rows - rows)
        # Clamped and zeroed when idle, so float residue never builds up.
        replica.seconds = max(0.0, replica.seconds - seconds) if replica.batches else 0.0
        if ok:
            replica.failures = 0
            if latency_s is not None:
                prev = replica.latency_s
                replica.latency_s = latency_s if prev is None else 0.8 * prev + 0.2 * latency_s
        else:
            replica.failures += 1
            if replica.failures >= self.backoff.failures_to_eject:
                self.eject(replica)

    # --- health

    def eject(self, replica: Replica) -> None:
        """Take a live replica out of rotation for its backoff (a no-op otherwise)."""
        if replica.live:
            if self._clock() - replica.live_since >= self.backoff.cap_s:
                replica.ejections = 0
            self._eject(replica)

    def _eject(self, replica: Replica) -> None:
        replica.ejections += 1
        replica.health = Health.EJECTED
        replica.ejected_until = self._clock() + self.backoff.delay_s(replica.ejections, self._rng)

    def due_probes(self) -> list[Replica]:
        """Ejected replicas whose backoff is over, and unverified ones, now marked
        PROBING: health-check each and report with `probed`. Each is returned
        once per ejection (or admission)."""
        now = self._clock()
        due = [r for r in self.replicas if r.health in _WAITING and r.ejected_until <= now]
        for r in due:
            r.health = Health.PROBING
        return due

    def next_probe_at(self) -> float | None:
        """When the next replica is due for a probe (for the driver's sleep)."""
        times = [r.ejected_until for r in self.replicas if r.health in _WAITING]
        return min(times, default=None)

    def probed(self, replica: Replica, ok: bool) -> None:
        """A probe's result: re-admit the replica, or eject it again for a longer backoff."""
        if replica.health is not Health.PROBING:
            return
        replica.probes += 1
        if ok:
            replica.health = Health.LIVE
            replica.failures = 0
            replica.live_since = self._clock()
            replica.verified = True
        else:
            self._eject(replica)

    def awaiting_first_probe(self) -> list[Replica]:
        """Replicas admitted unverified whose first probe has not reported yet."""
        return [r for r in self.replicas if not r.verified and r.probes == 0]


@dataclass(frozen=True)
class Shard:
    """One shard of a model: its target's pool, its weight and its service-time estimate."""

    pool: TargetPool
    weight: int
    fixed_s: float = 0.0
    per_item_s: float = 0.0

    def predict_s(self, rows: int) -> float:
        return self.fixed_s + rows * self.per_item_s


class ShardPicker:
    """Picks the replica that serves a batch of one model version.

    1. The candidate shards are those with at least one live replica that is
       not in `exclude` (the replicas a request already tried).
    2. One candidate shard is drawn with probability weight / (sum of the
       candidates' weights): a shard that is down gives its share to the others
       in proportion to their weights, and `exclude` never sends a retry to a
       shard with nothing left to try.
    3. Within that shard's target, power of two choices: two distinct live
       replicas drawn uniformly at random, and the one with less outstanding
       work (`Replica.load`) wins, the first drawn on a tie; a lone replica
       wins outright. Comparing two, not all, keeps a picker from stampeding
       the one least-loaded replica that every picker sees, while keeping the
       maximum load near the mean (log log n, against log n / log log n for a
       uniform choice).

    Raises NoReplica (UNAVAILABLE) when no shard has a candidate; the caller
    then tries the route's fallback or answers UNAVAILABLE.
    """

    def __init__(self, model: str, shards: Sequence[Shard], *, rng: random.Random):
        if not shards or any(s.weight <= 0 for s in shards):
            raise ValueError(f"`{model}` needs shards with weights above 0")
        self.model = model
        self.shards = list(shards)
        self._rng = rng
        self._by_target = {s.pool.name: s for s in self.shards}

    def candidates(self, exclude: Collection[str] = ()) -> list[tuple[Shard, list[Replica]]]:
        return [(s, live) for s in self.shards if (live := s.pool.live(exclude))]

    def has_live(self, exclude: Collection[str] = ()) -> bool:
        return any(s.pool.live(exclude) for s in self.shards)

    def shares(self, exclude: Collection[str] = ()) -> dict[str, float]:
        """Each target's share of new traffic now (0 for a shard that is down)."""
        live = {s.pool.name: s.weight for s, _ in self.candidates(exclude)}
        total = sum(live.values())
        return {
            s.pool.name: (live.get(s.pool.name, 0) / total if total else 0.0) for s in self.shards
        }

    def pick(self, exclude: Collection[str] = ()) -> Replica:
        found = self.candidates(exclude)
        if not found:
            raise NoReplica(self._why_none(exclude))
        replicas = found[0][1] if len(found) == 1 else self._by_weight(found)
        if len(replicas) == 1:
            return replicas[0]
        a, b = self._rng.sample(replicas, 2)
        return b if b.load < a.load else a

    def _by_weight(self, found: list[tuple[Shard, list[Replica]]]) -> list[Replica]:
        x = self._rng.random() * sum(shard.weight for shard, _ in found)
        for shard, replicas in found:
            x -= shard.weight
            if x < 0:
                return replicas
        return found[-1][1]  # x landed on the total itself, by float rounding

    def predict_s(self, replica: Replica, rows: int) -> float:
        """The plan's estimate of a batch of `rows` on this replica's target."""
        return self._by_target[replica.target].predict_s(rows)

    def begin(self, replica: Replica, rows: int, predicted_s: float | None = None) -> float:
        """Count a batch as outstanding on `replica`; returns its predicted seconds.

        Pass the same `predicted_s` to `end` (by default both use the plan's estimate).
        """
        seconds = self.predict_s(replica, rows) if predicted_s is None else predicted_s
        self._by_target[replica.target].pool.begin(replica, rows, seconds)
        return seconds

    def end(
        self,
        replica: Replica,
        rows: int,
        ok: bool,
        latency_s: float | None = None,
        predicted_s: float | None = None,
    ) -> None:
        """A batch is over. `ok=False` means the replica failed (transport error,
        crash, UNAVAILABLE) and counts toward its ejection; a request the worker
        rejected (INVALID_ARGUMENT) was served by a working replica: `ok=True`."""
        seconds = self.predict_s(replica, rows) if predicted_s is None else predicted_s
        self._by_target[replica.target].pool.end(replica, rows, seconds, ok, latency_s)

    def _why_none(self, exclude: Collection[str]) -> str:
        parts = []
        for s in self.shards:
            live = s.pool.live()
            parts.append(f"{s.pool.name} {len(live)}/{len(s.pool.replicas)} live")
        tried = f", {len(exclude)} already tried" if exclude else ""
        return f"no live replica for `{self.model}` ({', '.join(parts)}{tried})"


class Fleet:
    """Every target's pool and every model version's picker, built from a plan."""

    def __init__(
        self, pools: Mapping[str, TargetPool], pickers: Mapping[tuple[str, int], ShardPicker]
    ):
        self.pools = dict(pools)
        self.pickers = dict(pickers)

    @classmethod
    def from_plan(
        cls,
        plan: plan_mod.Plan,
        *,
        clock: Clock,
        rng: random.Random,
        backoff: Backoff | None = None,
        measure: Measure = "rows",
        endpoints: Mapping[str, Sequence[str]] | None = None,
        verify: Collection[str] = (),
    ) -> Fleet:
        """Pools start with `endpoints[target]`, else the target's remote `workers`;
        a local target starts empty and its supervisor `add`s workers as they come up.
        The pools of the targets in `verify` admit every replica unverified."""
        endpoints = endpoints or {}
        pools = {
            t.name: TargetPool(
                t.name,
                endpoints.get(t.name, t.workers),
                clock=clock,
                rng=rng,
                backoff=backoff,
                measure=measure,
                verify=t.name in verify,
            )
            for t in plan.targets
        }
        pickers = {}
        for m in plan.models:
            shards = [
                Shard(pools[s.target], s.weight, s.estimate.fixed_s, s.estimate.per_item_s)
                for s in m.shards
            ]
            pickers[(m.name, m.version)] = ShardPicker(f"{m.name}@{m.version}", shards, rng=rng)
        return cls(pools, pickers)

    def picker(self, name: str, version: int) -> ShardPicker:
        return self.pickers[(name, version)]

    def pool(self, target: str) -> TargetPool:
        return self.pools[target]
