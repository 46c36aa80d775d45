"""The hot plan swap behind `infc apply`: a running gateway moves onto a new plan.

    swap = PlanSwap(gateway, make_gateway=lambda plan: Gateway(plan, …))
    swap.follow(lambda g: setattr(servicer, "gateway", g))   # whoever holds the gateway
    new, previous_hash = await swap.apply(new_plan)   # or SwapRefused / SwapFailed

A swap builds a second `Gateway` on the new plan beside the serving one, over
the same workers (every endpoint of every target), and starts it. Each of
its replicas joins only once a probe answers, so it starts with a view of the
workers as fresh as the old one's. Once every first probe is in (bounded by
`ready_timeout_s`), and the new gateway is ready whenever the old one was,
the swap happens in one step of the event loop, with no await in between:
every follower (the servicers, the health service's listener, the
supervisor's replica updates) is handed the new gateway, which also takes the
workers the supervisor changed meanwhile, and new requests go to it from
then on. A swap that fails, or whose caller goes away, drains the new
gateway at once. The old gateway finishes what it has queued and in
flight, within `grace_s`, as in a SIGTERM drain, but nothing reaches it any
more, so nothing is refused: no request fails because of a swap.

ModelStatistics carry over: the new gateway counts into the same counters as
the old for every model version and route both plans have. Only one swap runs
at a time; a second waits for the first. What may change at all is
gateway/plan_swap.py's decision (SwapRefused carries its reasons).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from inferplane.backends.logfmt import kv
from inferplane.compiler import plan as plan_mod
from inferplane.gateway import plan_swap
from inferplane.gateway.app import Gateway

log = logging.getLogger(__name__)
READY_TIMEOUT_S = 10.0  # the longest the new gateway's first probes may take
GRACE_S = 30.0  # the longest the old gateway may take to finish its requests


class SwapRefused(Exception):
    """The new plan needs restarts: `reasons`, each one sentence."""

    def __init__(self, reasons: list[str]):
        super().__init__("; ".join(reasons))
        self.reasons = reasons


class SwapFailed(Exception):
    """The new gateway could not take over, or the gateway is stopping; the old
    one serves on."""


class PlanSwap:
    def __init__(
        self,
        gateway: Gateway,
        *,
        make_gateway: Callable[[plan_mod.Plan, frozenset[str]], Gateway],
        ready_timeout_s: float = READY_TIMEOUT_S,
        grace_s: float = GRACE_S,
    ):
        """`make_gateway(plan, probe_first)` builds an unstarted gateway on `plan`
        whose targets in `probe_first` admit replicas after a first probe."""
        self.gateway = gateway
        self._make = make_gateway
        self._ready_timeout_s = ready_timeout_s
        self._grace_s = grace_s
        self._followers: list[Callable[[Gateway], None]] = []
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task] = set()
        self.swaps = 0

    def follow(self, follower: Callable[[Gateway], None]) -> None:
        """Call `follower(new_gateway)` at each swap, in the swap's own step."""
        self._followers.append(follower)

    async def apply(self, plan: plan_mod.Plan) -> tuple[Gateway, str]:
        """Serve `plan` from now on: the gateway that serves it, and the hash of
        the plan served before."""
        async with self._lock:
            old = self.gateway
            if old.draining:
                raise SwapFailed("the gateway is stopping; the old plan serves until it exits")
            reasons = plan_swap.refusals(old.plan, plan)
            if reasons:
                raise SwapRefused(reasons)
            try:
                new = self._make(plan, frozenset(t.name for t in plan.targets))
            except ValueError as error:  # a hand-made plan the compiler would not write
                raise SwapRefused([f"the gateway cannot serve this plan: {error}"]) from None
            try:
                await self._prepare(new, old)
            except BaseException:
                # Refused, timed out, or the caller went away: nothing of it stays.
                await new.drain(0.0)
                raise
            self._hand_over(old, new)
            return new, old.plan.content_hash

    async def _prepare(self, new: Gateway, old: Gateway) -> None:
        """Start `new` beside `old` and wait for its first probes; SwapFailed if it
        could not serve what `old` serves."""
        new.share_statistics(old)
        # The old gateway's worker_up and queue depth stand until the swap.
        new.mute_gauges(True)
        await new.start()
        for target, endpoints in old.endpoints().items():
            new.set_replicas(target, endpoints)
        probed = await new.placement_checked(self._ready_timeout_s)
        if not probed or (old.ready and not new.ready):
            why = "not every worker answered" if not probed else "not every model has a worker"
            raise SwapFailed(
                f"the gateway on the new plan is not ready ({why} within "
                f"{self._ready_timeout_s:g} s); the old plan serves on"
            )

    def _hand_over(self, old: Gateway, new: Gateway) -> None:
        """The swap itself: one step of the event loop, no await."""
        # Workers the supervisor changed while `new` was probing: `old` has them.
        for target, endpoints in old.endpoints().items():
            new.set_replicas(target, endpoints)
        listeners = old.supersede()
        new.mute_gauges(False)
        self.gateway = new
        for follower in self._followers:
            follower(new)
        for listener in listeners:
            new.add_ready_listener(listener)
        self.swaps += 1
        log.info(kv("plan_swapped", previous=old.plan.content_hash, plan=new.plan.content_hash))
        task = asyncio.get_running_loop().create_task(self._retire(old))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _retire(self, old: Gateway) -> None:
        await old.drain(self._grace_s)
        log.info(kv("plan_retired", plan=old.plan.content_hash))

    async def drain(self, grace_s: float) -> None:
        """SIGTERM: drain the serving gateway and wait for retiring ones."""
        async with self._lock:
            await self.gateway.drain(grace_s)
            if self._retiring:
                await asyncio.wait(set(self._retiring), timeout=grace_s)
