"""Pass: privacy. On-prem-only models stay on-prem; redaction needs text.

E0301 an on-prem-only model sharded on a target that is not `onprem`;
E0302 a route that can send an on-prem-only model's traffic (by its split or
its fallback) to a model served off-prem; E0303 redaction of an input whose
dtype is not `bytes`.
"""

from __future__ import annotations

from inferplane.compiler import ast
from inferplane.compiler import diagnostics as codes
from inferplane.compiler.diagnostics import Diagnostics, Note
from inferplane.compiler.unit import Unit


def check_privacy(unit: Unit, out: Diagnostics) -> Unit:
    spec = unit.spec
    for model in spec.models:
        if model.on_prem_only is not None:
            _check_shards_on_prem(spec, model, out)
        _check_redacted_inputs(model, out)
    for route in spec.routes:
        _check_route(spec, route, out)
    return unit


def _where(target: ast.Target) -> str:
    location = target.location
    return f'{location.kind.value} "{location.site.value}"' if location else "unknown"


def _off_prem_targets(spec: ast.Spec, model: ast.Model) -> list[tuple[ast.Shard, ast.Target]]:
    found = []
    for shard in model.shards:
        target = spec.target(shard.target.value)
        if target and target.location and target.location.kind.value != "onprem":
            found.append((shard, target))
    return found


def _check_shards_on_prem(spec: ast.Spec, model: ast.Model, out: Diagnostics) -> None:
    for shard, target in _off_prem_targets(spec, model):
        kind = target.location.kind.value
        out.add(
            codes.OFF_PREM_SHARD,
            f"model `{model.label}` is on-prem-only but is sharded on {kind} target "
            f"`{target.name.value}`",
            shard.target.span,
            label=f"located {_where(target)}",
            notes=[Note("on-prem-only is declared here", model.on_prem_only)],
            help="shard it on an `onprem` target, or drop `privacy on-prem-only`",
        )


def _check_redacted_inputs(model: ast.Model, out: Diagnostics) -> None:
    inputs = {t.name.value: t for t in model.inputs}
    for rule in model.redactions:
        tensor = inputs.get(rule.input.value)
        if tensor is None or tensor.dtype.value == "bytes":
            continue
        out.add(
            codes.REDACT_NOT_BYTES,
            f"cannot redact input `{tensor.name.value}` of model `{model.label}`: "
            f"it is {tensor.dtype.value}, not bytes",
            rule.input.span,
            label=f"`{tensor.name.value}` is {tensor.signature()}",
            notes=[Note("declared here", tensor.span)],
            help="redaction reads text: it applies to `bytes` inputs only",
        )


def _check_route(spec: ast.Spec, route: ast.Route, out: Diagnostics) -> None:
    refs = [e.model for e in route.entries] + ([route.fallback] if route.fallback else [])
    members = [(ref, spec.resolve(ref)) for ref in refs]
    members = [(ref, model) for ref, model in members if model is not None]
    guarded = [(ref, m) for ref, m in members if m.on_prem_only is not None]
    if not guarded:
        return
    _guard_ref, guard = guarded[0]
    for ref, model in members:
        off_prem = _off_prem_targets(spec, model)
        if not off_prem or model.on_prem_only is not None:
            continue  # an on-prem-only member's own shards are E0301's business
        shard, target = off_prem[0]
        role = "the fallback" if ref is route.fallback else "a destination"
        out.add(
            codes.OFF_PREM_ROUTE,
            f"route `{route.name.value}` can send on-prem-only model `{guard.label}`'s "
            f"traffic to `{model.label}`, served off-prem",
            ref.span,
            label=f"{role} of this route, sharded on `{target.name.value}` "
            f"located {_where(target)}",
            notes=[
                Note(f"`{guard.label}` is on-prem-only", guard.on_prem_only),
                Note(f"`{model.label}` is sharded off-prem here", shard.target.span),
            ],
            help=f"serve `{model.label}` on-prem too, or take it out of the route",
        )
