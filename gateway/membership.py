"""The half of `app.Gateway` that keeps its replicas honest: probes, placement, readiness.

One probe task per target (`MembershipDriver._probe`) health-checks each
replica when it is due: an ejected one when its backoff ends (re-admitted when
ready), a new one of a verifying pool at once. On a target bound by the
on-prem rule (`placement.py`) every probe also checks where the worker says it
runs. Membership changes are published as `worker_up` and as readiness
changes to the listeners (the health service).

The gateway supplies its clock, fleet, worker clients, metrics and the state
named below; this class owns no state of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from inferplane.backends.logfmt import kv
from inferplane.gateway import placement
from inferplane.gateway.errors import GatewayError
from inferplane.gateway.metrics import NullMetrics, replica_label
from inferplane.gateway.sharding import Fleet, Replica, TargetPool
from inferplane.gateway.worker_client import WorkerClient, WorkerHealth

# The gateway's logger: operators grep for `inferplane.gateway.app event=placement_refused`.
log = logging.getLogger("inferplane.gateway.app")

PROBE_TIMEOUT_S = 2.0
PROBE_IDLE_S = 0.5  # how often a pool with nothing ejected looks again


class MembershipDriver:
    """Probes, placement checks, and the publication of who is live (see above)."""

    # Supplied by the gateway (app.Gateway).
    fleet: Fleet
    metrics: NullMetrics
    _clock: Callable[[], float]
    _listeners: list[Callable[[bool], None]]
    _was_ready: bool | None
    _published: dict[str, tuple]
    _muted: bool
    _up_labels: dict[str, set[str]]
    _placement: dict[str, placement.Rule]
    _probe_now: dict[str, asyncio.Event]
    _probes_reported: asyncio.Condition
    _verdicts: dict

    # Declared for type checkers only: at run time these must not exist here, or
    # they would shadow the other driver's real ones, whatever the bases' order.
    if TYPE_CHECKING:

        @property
        def ready(self) -> bool:
            raise NotImplementedError

        def _client(self, endpoint: str) -> WorkerClient:
            raise NotImplementedError

        def _wake(self, target: str) -> None:
            raise NotImplementedError

    def add_ready_listener(self, listener: Callable[[bool], None]) -> None:
        """Call `listener(ready)` whenever `ready` changes (the health service uses it)."""
        self._listeners.append(listener)
        listener(self.ready)

    def endpoints(self) -> dict[str, list[str]]:
        """Each target's worker endpoints, live or not (a plan swap hands them on)."""
        return {
            name: [r.endpoint for r in pool.replicas] for name, pool in self.fleet.pools.items()
        }

    def supersede(self) -> list[Callable[[bool], None]]:
        """A plan swap replaced this gateway: it stops publishing gauges (the new one
        does) and gives up its ready listeners, which it returns. It still counts
        the requests it finishes."""
        self._muted = True
        listeners, self._listeners = self._listeners, []
        return listeners

    def _publish_workers(self, pool: TargetPool) -> bool:
        """worker_up of each replica of `pool`; 0 for those it no longer has (a
        restarting local worker comes back under the same label). Returns
        whether anything changed since the last call (every batch's end calls it)."""
        state = tuple((r.endpoint, r.live) for r in pool.replicas)
        if self._published.get(pool.name) == state:
            return False
        self._published[pool.name] = state
        if self._muted:
            return True
        seen = self._up_labels.setdefault(pool.name, set())
        current = {replica_label(r.endpoint): r.live for r in pool.replicas}
        for name, up in current.items():
            self.metrics.worker_up(pool.name, name, up)
        for gone in seen - current.keys():
            self.metrics.worker_up(pool.name, gone, False)
        seen.update(current)
        return True

    def _notify_ready(self) -> None:
        ready = self.ready
        if ready != self._was_ready:
            self._was_ready = ready
            for listener in self._listeners:
                listener(ready)

    async def _probe(self, pool: TargetPool) -> None:
        """Health-check each replica when it is due: an ejected one when its backoff
        ends (re-admitted when ready), a new one of a verifying pool at once.

        On a target bound by the on-prem rule every probe also checks where the
        worker says it runs (`_placed`), and only a placement that passes admits
        it; a refused replica stays out (worker_up 0) and is probed again after
        the usual backoff, so a host that an operator fixes comes back. A replica
        never admitted yet needs to answer and be placed, not to be ready: added
        to any other pool it would start live, and so it still does once placed.
        """
        rule = self._placement.get(pool.name)
        wake = self._probe_now[pool.name]
        while True:
            wake.clear()
            for replica in pool.due_probes():
                try:
                    health = await self._client(replica.endpoint).health(timeout=PROBE_TIMEOUT_S)
                except GatewayError:
                    ok = False
                else:
                    ok = (health.ready or not replica.verified) and not health.draining
                    if rule is not None:
                        ok = self._placed(rule, replica, health) and ok
                pool.probed(replica, ok)
                self._publish_workers(pool)
                self._wake(pool.name)
                self._notify_ready()
                async with self._probes_reported:
                    self._probes_reported.notify_all()
            next_at = pool.next_probe_at()
            delay = PROBE_IDLE_S if next_at is None else next_at - self._clock()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), min(max(delay, 0.0), PROBE_IDLE_S))

    def _placed(self, rule: placement.Rule, replica: Replica, health: WorkerHealth) -> bool:
        """Whether the worker runs where the on-prem rule allows; each verdict is
        logged when it changes for its (target, endpoint), so a refused replica
        is logged once however often it is probed, and a restarted local worker
        (same socket) is not warned about again."""
        report = placement.Report(
            health.location_kind, health.location_site, health.location_source
        )
        verdict = rule.check(replica.endpoint, report)
        key = (rule.target, replica.endpoint)
        last, self._verdicts[key] = self._verdicts.get(key), verdict
        if verdict != last:
            fields = {
                "target": rule.target,
                "replica": replica.id,
                "endpoint": replica.endpoint,
                "kind": report.kind or None,
                "site": report.site or None,
                "source": report.source or "declared",
            }
            if isinstance(verdict, placement.Refused):
                log.error(
                    kv("placement_refused", **fields, models=verdict.models, why=verdict.message)
                )
            elif isinstance(verdict, placement.Unverifiable):
                log.warning(kv("placement_unverified", **fields, why=verdict.message))
            elif last is not None:
                log.info(kv("placement_verified", **fields))
        return verdict.allowed

    async def placement_checked(self, timeout_s: float) -> bool:
        """Wait, at most `timeout_s`, until every replica that joined unverified has
        had its first probe (placed or refused); whether it came to that. `infc
        serve` waits on it, so that its `serving` line follows the first verdicts."""

        def settled() -> bool:
            return not any(pool.awaiting_first_probe() for pool in self.fleet.pools.values())

        async with self._probes_reported:
            try:
                await asyncio.wait_for(self._probes_reported.wait_for(settled), timeout_s)
            except TimeoutError:
                return False
        return True
