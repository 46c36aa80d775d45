"""Route resolution: the name a client calls → one concrete model version.

Clients name either a model or a route (docs/language.md). Models and routes
share one namespace (the compiler refuses a clash with E0101), so a name is
one or the other:

- a model `NAME` with an empty `model_version` is its highest version; with a
  `model_version` it is exactly that version, or NOT_FOUND naming the known ones;
- a route `NAME` spreads its requests over its entries by their percentages and
  may name a fallback model, which serves when admission refuses the chosen
  version or that version has no live shard (the caller decides when; this
  table only says which model that is). A route takes no `model_version`.

    table = RouteTable.from_plan(plan, rng=random.Random(seed), spread="random")
    resolved = table.resolve("authorize", "")     # Resolved(model=fraud-scorer@3, ...)
    table.fallback_for(resolved)                  # fraud-lite@1, or None

Two spreads, both a policy over the same entries:

- `random` (default): each request independently picks an entry with
  probability percent / 100, from the injected RNG. Stateless, so it spreads
  the same over many gateways, but a short run can be lumpy.
- `smooth`: nginx's smooth weighted round robin. Each entry keeps a running
  score; every pick adds each entry's percent to its score, takes the entry
  with the highest score (the earlier entry on a tie) and subtracts the total
  from the winner's. Deterministic and interleaved (95/5 gives one canary
  request in every 20, not five in a row), and with integer percentages every
  run of 100 requests matches them exactly.

Errors are plain exceptions with a transport-neutral `kind` class attribute,
the same kinds as gateway/errors.py, which maps kinds to gRPC status codes.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from typing import Literal, NamedTuple

from inferplane.compiler import plan as plan_mod

Spread = Literal["random", "smooth"]


class RoutingError(Exception):
    """A request that names no servable model; `kind` says which status it becomes."""

    kind = "INTERNAL"


class NotFound(RoutingError):
    kind = "NOT_FOUND"


class InvalidArgument(RoutingError):
    kind = "INVALID_ARGUMENT"


class ModelKey(NamedTuple):
    """One model version, written `NAME@VERSION` as in the language."""

    name: str
    version: int

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class Resolved:
    """What serves a request: `model`, and when the client named a route, the
    route and its fallback (None when it has none)."""

    model: ModelKey
    route: str | None = None
    fallback: ModelKey | None = None


class _Split:
    """One route's entries and the state of its smooth spread."""

    def __init__(self, entries: list[tuple[ModelKey, float]], fallback: ModelKey | None):
        self.models = [m for m, _ in entries]
        self.percents = [p for _, p in entries]
        self.total = sum(self.percents)
        self.cumulative = []
        running = 0.0
        for p in self.percents:
            running += p
            self.cumulative.append(running)
        self.scores = [0.0] * len(entries)
        self.fallback = fallback

    def pick_random(self, rng: random.Random) -> ModelKey:
        x = rng.random() * self.total
        # bisect_right: x lands in the entry whose cumulative range [c_{i-1}, c_i) holds it.
        i = bisect.bisect_right(self.cumulative, x)
        return self.models[min(i, len(self.models) - 1)]

    def pick_smooth(self) -> ModelKey:
        best = 0
        for i, p in enumerate(self.percents):
            self.scores[i] += p
            if self.scores[i] > self.scores[best]:
                best = i
        self.scores[best] -= self.total
        return self.models[best]


class RouteTable:
    """The plan's model versions and routes, resolving client names (see the module docstring)."""

    def __init__(
        self,
        versions: dict[str, list[int]],
        routes: dict[str, _Split],
        *,
        rng: random.Random | None = None,
        spread: Spread = "random",
    ):
        if spread not in ("random", "smooth"):
            raise ValueError(f"unknown spread {spread!r}: use 'random' or 'smooth'")
        self._versions = {name: sorted(vs) for name, vs in versions.items()}
        self._routes = routes
        self._rng = rng if rng is not None else random.Random()
        self._spread = spread

    @classmethod
    def from_plan(
        cls,
        plan: plan_mod.Plan,
        *,
        rng: random.Random | None = None,
        spread: Spread = "random",
    ) -> RouteTable:
        versions: dict[str, list[int]] = {}
        for m in plan.models:
            versions.setdefault(m.name, []).append(m.version)
        known = {ModelKey(m.name, m.version) for m in plan.models}

        def checked(key: ModelKey, route: str) -> ModelKey:
            # The compiler resolves these (E0103); a hand-written plan may not have.
            if key not in known:
                raise ValueError(f"route `{route}` names `{key}`, which the plan does not serve")
            return key

        routes = {}
        for r in plan.routes:
            if r.name in versions:
                raise ValueError(f"route `{r.name}` has the name of a model")
            entries = [
                (checked(ModelKey(e.model, e.version), r.name), e.percent) for e in r.entries
            ]
            if not entries or any(p <= 0 for _, p in entries):
                raise ValueError(f"route `{r.name}` needs entries with percentages above 0")
            fallback = (
                checked(ModelKey(r.fallback.model, r.fallback.version), r.name)
                if r.fallback
                else None
            )
            routes[r.name] = _Split(entries, fallback)
        return cls(versions, routes, rng=rng, spread=spread)

    # --- queries

    @property
    def models(self) -> list[ModelKey]:
        return [ModelKey(n, v) for n, vs in sorted(self._versions.items()) for v in vs]

    @property
    def routes(self) -> list[str]:
        return sorted(self._routes)

    def versions(self, name: str) -> list[int]:
        """The versions of model `name`, ascending (empty when it is no model)."""
        return list(self._versions.get(name, []))

    def is_route(self, name: str) -> bool:
        return name in self._routes

    # --- resolution

    def resolve(self, name: str, version: str | int | None = "") -> Resolved:
        """The model version that serves a request for `name` (and `model_version`).

        Each call on a route draws the next pick of its spread, so call it once
        per request.
        """
        version = "" if version is None else str(version)
        split = self._routes.get(name)
        if split is not None:
            if version:
                raise InvalidArgument(
                    f"`{name}` is a route and takes no model_version (got `{version}`); "
                    "name a model to call one version"
                )
            if self._spread == "smooth":
                model = split.pick_smooth()
            else:
                model = split.pick_random(self._rng)
            return Resolved(model=model, route=name, fallback=split.fallback)
        versions = self._versions.get(name)
        if versions is None:
            raise NotFound(f"unknown model or route `{name}`{self._known_names()}")
        if not version:
            return Resolved(model=ModelKey(name, versions[-1]))
        if version.isdigit() and int(version) in versions:
            return Resolved(model=ModelKey(name, int(version)))
        listed = ", ".join(str(v) for v in versions)
        noun = "version is" if len(versions) == 1 else "versions are"
        raise NotFound(f"model `{name}` has no version `{version}`; its {noun} {listed}")

    def fallback_for(self, resolved: Resolved) -> ModelKey | None:
        """The model to try when `resolved.model` is refused or down: the route's
        fallback, or None when the client named a model, the route has no
        fallback, or the fallback is the very model that failed."""
        if resolved.fallback is None or resolved.fallback == resolved.model:
            return None
        return resolved.fallback

    def _known_names(self) -> str:
        names = sorted([*self._versions, *self._routes])
        if not names:
            return "; this plan serves nothing"
        shown = ", ".join(f"`{n}`" for n in names[:10])
        more = f" and {len(names) - 10} more" if len(names) > 10 else ""
        return f"; known: {shown}{more}"
