"""The gateway's transport-free records, and what a client's name means in the plan.

`converters` turns protobuf messages into these and back; `app.Gateway` and the
servicers speak only these: a request (`InferRequest`), the cumulative
statistics rows (`ModelStats`, `BatchStats`, `Duration`), a model version's
state (`Availability`), and the plan lookups that metadata, configuration and
batching share (`served`, `primary_entry`, `max_batch_size`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from inferplane.compiler import plan as plan_mod
from inferplane.gateway.errors import InvalidArgument, NotFound

ParameterValue = bool | int | float | str


# --- requests and statistics


@dataclass(frozen=True)
class InferRequest:
    """One inference request, transport-free.

    `version` is the client's string ("" lets the server choose; gateway/routing.py
    resolves it). `inputs` keep the request's order; `outputs` empty means all.
    """

    model: str
    version: str
    id: str
    inputs: Mapping[str, np.ndarray]
    outputs: tuple[str, ...] = ()
    parameters: Mapping[str, ParameterValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Duration:
    """How many times a phase ran and its total time in nanoseconds."""

    count: int = 0
    ns: int = 0


@dataclass(frozen=True)
class BatchStats:
    """Executions of one batch size."""

    batch_size: int
    compute_input: Duration = Duration()
    compute_infer: Duration = Duration()
    compute_output: Duration = Duration()


# The version of a route's statistics row. A route has no versions, but
# perf_analyzer parses every row's version as an integer and profiles the
# highest one under the name it calls (see docs/protocol.md, ModelStatistics).
ROUTE_STATS_VERSION = 1


@dataclass(frozen=True)
class ModelStats:
    """Cumulative figures for one model version, or for a route, as Triton reports them.

    `version` is an integer because perf_analyzer parses it as one (a route's
    row uses ROUTE_STATS_VERSION). Counts of requests are in `success`, `fail`,
    `queue` and `compute_*`; `inference_count` counts batch items one by one;
    `execution_count` counts batches run.
    """

    name: str
    version: int
    last_inference_ms: int = 0  # milliseconds since the Unix epoch, 0: never
    inference_count: int = 0
    execution_count: int = 0
    success: Duration = Duration()
    fail: Duration = Duration()
    queue: Duration = Duration()
    compute_input: Duration = Duration()
    compute_infer: Duration = Duration()
    compute_output: Duration = Duration()
    batches: tuple[BatchStats, ...] = ()


@dataclass(frozen=True)
class Availability:
    """A model version's state in Triton's words (READY, UNAVAILABLE, LOADING) and why."""

    state: str = "READY"
    reason: str = ""


UNREPORTED = Availability("UNAVAILABLE", "no worker has reported it yet")


# --- models and routes of the plan


@dataclass(frozen=True)
class Served:
    """What a client's name means: `model` answers for it under `name`."""

    name: str
    model: plan_mod.Model
    versions: tuple[int, ...]  # the model's versions, ascending; () for a route
    route: plan_mod.Route | None = None


def primary_entry(route: plan_mod.Route) -> plan_mod.RouteEntry:
    """The entry with the largest share (the first on a tie)."""
    return max(route.entries, key=lambda entry: entry.percent)


def served(plan: plan_mod.Plan, name: str, version: str = "") -> Served:
    """Resolve a model or route name (and version string) for metadata and config."""
    route = next((r for r in plan.routes if r.name == name), None)
    if route is not None:
        if version:
            raise InvalidArgument(f"`{name}` is a route and takes no version (got `{version}`)")
        entry = primary_entry(route)
        model = plan.model(entry.model, entry.version)
        if model is None:  # the compiler refuses this (E0103); a hand-made plan may not
            raise NotFound(f"route `{name}` names `{entry.model}@{entry.version}`, not served")
        return Served(name=name, model=model, versions=(), route=route)
    models = sorted((m for m in plan.models if m.name == name), key=lambda m: m.version)
    if not models:
        known = sorted({m.name for m in plan.models} | {r.name for r in plan.routes})
        listed = ", ".join(f"`{n}`" for n in known[:10]) or "none"
        more = f" and {len(known) - 10} more" if len(known) > 10 else ""
        raise NotFound(f"unknown model or route `{name}`; known: {listed}{more}")
    versions = tuple(m.version for m in models)
    if not version:
        return Served(name=name, model=models[-1], versions=versions)
    chosen = next((m for m in models if str(m.version) == version), None)
    if chosen is None:
        listed = ", ".join(str(v) for v in versions)
        noun = "version is" if len(versions) == 1 else "versions are"
        raise NotFound(f"model `{name}` has no version `{version}`; its {noun} {listed}")
    return Served(name=name, model=chosen, versions=versions)


def max_batch_size(model: plan_mod.Model) -> int:
    """Triton's max_batch_size: 0 without a batch axis, else what every shard takes."""
    specs = [*model.signature.inputs, *model.signature.outputs]
    if not all(t.shape and t.shape[0] == -1 for t in specs):
        return 0
    return min((s.batching.max_batch_size for s in model.shards), default=1)
