"""The on-prem rule, checked again at run time against where each worker runs.

The compiler (compiler/passes/check_privacy.py) checks the declarations: an
on-prem-only model is sharded only on `onprem` targets (E0301), and no route
can send such a model's traffic to a model served off-prem (E0302). But a
declaration says where a target's workers *should* run; only the host knows
where one *does*. Each worker reports it in its Health (`location_kind`,
`location_site`, and `location_source`: "host" when the deployment gave it,
`infc worker --location` or INFERPLANE_LOCATION, else "declared"), and the
gateway asks this module before a replica of such a target takes a request:

    rules = placement.rules(plan)            # target name -> Rule, for bound targets only
    verdict = rules["cpu-fra"].check("10.0.0.7:9100", Report("cloud", "gcp:x", "host"))

A target is *bound* when it serves, as a shard, an on-prem-only model, or a
model that a route shares with one (the route can send that model's traffic
there, E0302's reasoning). Targets that are not bound have no rule: nothing
to check. A replica of a bound target is

1. `Refused` when it reports a kind other than `onprem` (or none), or a site
   other than the target's declared site when both are given;
2. else `Unverifiable` when its source is not "host" ("declared", or empty
   from a worker older than the field): it only repeats the spec, so it is
   used, but the gateway warns that the rule could not be checked;
3. else `Verified`.

Pure: no I/O, no clock. The gateway (app.py `_probe`) logs the verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass

from inferplane.compiler import plan as plan_mod

HOST = "host"  # the location_source a worker reports when its deployment named it


@dataclass(frozen=True)
class Report:
    """What a worker's Health says of where it runs."""

    kind: str
    site: str = ""
    source: str = ""

    def describe(self) -> str:
        where = (self.kind or "no location") + (f' "{self.site}"' if self.site else "")
        return f"{where} ({'from its host' if self.source == HOST else 'declared by the spec'})"


@dataclass(frozen=True)
class Verified:
    allowed = True


@dataclass(frozen=True)
class Unverifiable:
    """Used, but the location could not be checked; `message` says how to make it checkable."""

    message: str
    allowed = True


@dataclass(frozen=True)
class Refused:
    """Kept out of rotation; `message` names the target, replica, report and rules."""

    message: str
    models: tuple[str, ...]  # the on-prem-only models (name@version) that forbid it
    allowed = False


Verdict = Verified | Unverifiable | Refused


@dataclass(frozen=True)
class Rule:
    """Why a target must run on-prem, and at which site it is declared."""

    target: str
    site: str  # the declared site ("" when none)
    models: tuple[str, ...]  # on-prem-only models (name@version) that bind it
    reasons: tuple[str, ...]  # one line each: how each binds it

    def check(self, endpoint: str, report: Report) -> Verdict:
        """The verdict on the replica at `endpoint`, given its Health's report."""
        head = f"target `{self.target}` replica {endpoint} reports {report.describe()}"
        declared = "onprem" + (f' "{self.site}"' if self.site else "")
        if report.kind != "onprem" or (report.site and self.site and report.site != self.site):
            return Refused(
                f"{head}, but {'; '.join(self.reasons)}: it takes no request until it "
                f"reports {declared}",
                self.models,
            )
        if report.source != HOST:
            value = f"onprem:{self.site}" if self.site else "onprem"
            return Unverifiable(
                f"{head}: the on-prem rule of {', '.join(self.models)} cannot be checked "
                "there; give that worker its host's real location with `--location` or "
                f"INFERPLANE_LOCATION ({value} if it runs there)"
            )
        return Verified()


def _label(name: str, version: int) -> str:
    return f"{name}@{version}"


def rules(plan: plan_mod.Plan) -> dict[str, Rule]:
    """A rule for each target bound by the on-prem rule (see the module docstring)."""
    guarded = {_label(m.name, m.version) for m in plan.models if m.privacy.on_prem_only}
    shards = {_label(m.name, m.version): [s.target for s in m.shards] for m in plan.models}
    direct: dict[str, list[str]] = {}  # target -> on-prem-only models sharded on it
    via: dict[str, dict[str, str]] = {}  # target -> reason -> the guard it names
    for label, targets in shards.items():
        if label in guarded:
            for target in targets:
                direct.setdefault(target, []).append(label)
    for route in plan.routes:
        refs = [*route.entries, *([route.fallback] if route.fallback else [])]
        members = list(dict.fromkeys(_label(r.model, r.version) for r in refs))
        for guard in (m for m in members if m in guarded):
            for member in members:
                if member in guarded:
                    continue  # its own shards bind their targets directly
                for target in shards.get(member, ()):
                    reason = (
                        f"route `{route.name}` can send on-prem-only {guard}'s traffic "
                        f"to {member}, served here"
                    )
                    via.setdefault(target, {})[reason] = guard
    out = {}
    for t in plan.targets:
        own, routed = sorted(direct.get(t.name, ())), via.get(t.name, {})
        if not own and not routed:
            continue
        reasons = ([f"it serves on-prem-only {', '.join(own)}"] if own else []) + list(routed)
        models = tuple(sorted({*own, *routed.values()}))
        out[t.name] = Rule(t.name, t.location.site, models, tuple(reasons))
    return out
