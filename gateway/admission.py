"""Admission: refuse at once what cannot meet its deadline, instead of queueing it.

A request's budget ends at the earlier of its gRPC deadline (when the client
set one) and its arrival plus the model's latency SLO (`slo_budget_s`). Its
predicted finish is now + the predicted wait (queue and batch window) + the
predicted service time of its batch; the caller supplies both predictions
(gateway/service_time.py and the batcher's queue make them).

    finish <= budget end                         Admit
    else, a fallback whose finish fits           Fallback (the route's fallback model)
    else                                         Refuse, RESOURCE_EXHAUSTED
    the gRPC deadline already passed             Refuse, DEADLINE_EXCEEDED

A finish exactly at the budget's end is admitted (with a nanosecond of slack
for float rounding). The fallback is held to the same budget: the client's
deadline and the SLO the request arrived under.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from inferplane.compiler import plan as plan_mod
from inferplane.compiler.units import format_duration as _fmt

_SLACK_S = 1e-9


class Overloaded(Exception):
    """Refused by admission: its predicted finish is past its budget."""

    kind = "RESOURCE_EXHAUSTED"


class DeadlineExceeded(Exception):
    """Refused by admission: its gRPC deadline passed before it was admitted."""

    kind = "DEADLINE_EXCEEDED"


@dataclass(frozen=True)
class Prediction:
    """A model's predicted wait and service time for this request; `label`
    (`NAME@VERSION`) names it in messages."""

    wait_s: float
    service_s: float
    label: str = ""

    def __post_init__(self) -> None:
        if self.wait_s < 0 or self.service_s < 0:
            raise ValueError("predicted wait and service times cannot be negative")


@dataclass(frozen=True)
class Admit:
    finish_at: float  # predicted finish, on the injected clock
    slack_s: float  # budget end minus finish (inf without a budget)


@dataclass(frozen=True)
class Fallback:
    """Send the request to the route's fallback, which fits where the primary did not."""

    finish_at: float
    reason: str  # why the primary was refused


@dataclass(frozen=True)
class Refuse:
    reason: str
    kind: str = "RESOURCE_EXHAUSTED"

    def error(self) -> Exception:
        cls = DeadlineExceeded if self.kind == "DEADLINE_EXCEEDED" else Overloaded
        return cls(self.reason)


Decision = Admit | Fallback | Refuse


def slo_budget_s(model: plan_mod.Model) -> float | None:
    """The per-request latency budget a model's SLOs give: the loosest latency
    objective (its highest percentile's). A request predicted past it would
    breach every objective; one predicted past a p50 alone may still be
    fine. None when the model has no latency SLO."""
    return max((o.seconds for o in model.slos.latency), default=None)


def admit(
    now: float,
    deadline: float | None,
    slo_s: float | None,
    predicted_wait_s: float,
    predicted_service_s: float,
    *,
    arrival: float | None = None,
    fallback: Prediction | None = None,
) -> Decision:
    """Admit, fall back or refuse a request (see the module docstring).

    Times are on one clock: `now`, `deadline` (absolute, None without one) and
    `arrival` (when the request came in; `now` when not given). `slo_s` is the
    budget from arrival, None without an SLO. `fallback` is the route
    fallback's prediction, None when there is none.
    """
    primary = Prediction(predicted_wait_s, predicted_service_s)
    if deadline is not None and now >= deadline:
        return Refuse(
            f"the deadline passed {_fmt(now - deadline)} before admission",
            kind="DEADLINE_EXCEEDED",
        )
    start = now if arrival is None else arrival
    # (end, which limit) of each limit; the words are only formatted on refusal,
    # since every admitted request passes here.
    limits = []
    if deadline is not None:
        limits.append((deadline, "deadline"))
    if slo_s is not None:
        limits.append((start + slo_s, "slo"))
    finish = now + primary.wait_s + primary.service_s
    if not limits:
        return Admit(finish_at=finish, slack_s=math.inf)
    end, which = min(limits, key=lambda limit: limit[0])
    if finish <= end + _SLACK_S:
        return Admit(finish_at=finish, slack_s=end - finish)
    what = _limit_words(which, end, now, slo_s)
    reason = f"{_parts(primary)} exceeds {what}"
    if fallback is not None:
        fb_finish = now + fallback.wait_s + fallback.service_s
        if fb_finish <= end + _SLACK_S:
            return Fallback(finish_at=fb_finish, reason=reason)
        name = f" {fallback.label}" if fallback.label else ""
        reason += f"; so does the fallback{name}'s {_parts(fallback)}"
    return Refuse(reason)


def _limit_words(which: str, end: float, now: float, slo_s: float | None) -> str:
    if which == "deadline":
        return f"the {_fmt(end - now)} deadline"
    left = end - now
    if left <= 0:
        return f"the {_fmt(slo_s)} SLO, already spent"
    if math.isclose(left, slo_s, rel_tol=1e-9, abs_tol=1e-9):
        return f"the {_fmt(slo_s)} SLO"
    return f"the {_fmt(left)} left of the {_fmt(slo_s)} SLO"


def _parts(p: Prediction) -> str:
    return f"predicted wait {_fmt(p.wait_s)} + service {_fmt(p.service_s)}"
