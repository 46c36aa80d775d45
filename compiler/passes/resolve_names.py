"""Pass: names. Definitions are unique and every reference resolves.

E0101 duplicate definitions (targets, model versions, routes, a name used by a
model and a route, tensor names within a model), E0102 unknown shard targets,
E0103 unknown models or versions in routes, E0104 redactions of unknown
inputs; names that are not DNS labels (E0201); a target sharded twice (E0205).
"""

from __future__ import annotations

import re

from inferplane.compiler import ast
from inferplane.compiler import diagnostics as codes
from inferplane.compiler.diagnostics import Diagnostics, Note
from inferplane.compiler.suggest import did_you_mean
from inferplane.compiler.unit import Unit

_DNS_LABEL = re.compile(r"[a-z]([a-z0-9-]*[a-z0-9])?\Z")


def resolve_names(unit: Unit, out: Diagnostics) -> Unit:
    spec = unit.spec
    _check_label_format(spec, out)
    _check_duplicates(spec, out)
    target_names = [t.name.value for t in spec.targets]
    for model in spec.models:
        _check_shards(model, target_names, out)
        _check_tensors(model, out)
        _check_redactions(model, out)
    route_names = {r.name.value for r in spec.routes}
    for route in spec.routes:
        refs = [e.model for e in route.entries]
        refs += [route.fallback] if route.fallback else []
        for ref in refs:
            _check_model_ref(spec, ref, route_names, out)
        _check_repeated_entries(spec, route, out)
    return unit


def _check_label_format(spec: ast.Spec, out: Diagnostics) -> None:
    named = [("target", t.name) for t in spec.targets]
    named += [("model", m.name) for m in spec.models]
    named += [("route", r.name) for r in spec.routes]
    for kind, name in named:
        text = name.value
        if _DNS_LABEL.match(text) and len(text) <= 63:
            continue
        fixed = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "name"
        why = "longer than 63 characters" if len(text) > 63 else "not a lowercase DNS label"
        out.add(
            codes.WRONG_KIND,
            f"{kind} name `{text}` is {why}",
            name.span,
            label="becomes a Kubernetes object and a gRPC model name",
            help=f"use lowercase letters, digits and inner hyphens, e.g. `{fixed[:63]}`",
        )


def _check_duplicates(spec: ast.Spec, out: Diagnostics) -> None:
    first_target: dict[str, ast.Target] = {}
    for target in spec.targets:
        earlier = first_target.setdefault(target.name.value, target)
        if earlier is not target:
            _duplicate(
                out, f"target `{target.name.value}` is defined twice", target.name, earlier.name
            )
    first_model: dict[tuple[str, int], ast.Model] = {}
    for model in spec.models:
        earlier = first_model.setdefault(model.key, model)
        if earlier is not model:
            _duplicate(
                out,
                f"model `{model.name.value}` version {model.version.value} is defined twice",
                model.version if model.version.span != model.name.span else model.name,
                earlier.name,
                help="give each definition its own `version N`",
            )
    first_route: dict[str, ast.Route] = {}
    models = {m.name.value: m for m in spec.models}
    for route in spec.routes:
        earlier = first_route.setdefault(route.name.value, route)
        if earlier is not route:
            _duplicate(
                out, f"route `{route.name.value}` is defined twice", route.name, earlier.name
            )
        elif route.name.value in models:
            _duplicate(
                out,
                f"`{route.name.value}` names both a model and a route",
                route.name,
                models[route.name.value].name,
                help="models and routes share one namespace: rename one of them",
            )


def _duplicate(
    out: Diagnostics, message: str, here: ast.Spanned, first: ast.Spanned, help: str = ""
) -> None:
    out.add(
        codes.DUPLICATE,
        message,
        here.span,
        label="defined again here",
        notes=[Note("first defined here", first.span)],
        help=help or "rename or remove one",
    )


def _check_shards(model: ast.Model, target_names: list[str], out: Diagnostics) -> None:
    seen: dict[str, ast.Shard] = {}
    for shard in model.shards:
        name = shard.target.value
        if name not in target_names:
            out.add(
                codes.UNKNOWN_TARGET,
                f"model `{model.label}` is sharded on unknown target `{name}`",
                shard.target.span,
                label="no target of this name",
                help=did_you_mean(name, target_names)
                or (
                    f"the targets are {', '.join(f'`{t}`' for t in target_names)}"
                    if target_names
                    else "define it with `target NAME { … }`"
                ),
            )
        elif name in seen:
            out.add(
                codes.REPEATED_FIELD,
                f"model `{model.label}` is sharded on `{name}` twice",
                shard.target.span,
                label="sharded again here",
                notes=[Note("first shard here", seen[name].span)],
                help="give one shard a larger `weight` instead",
            )
        seen.setdefault(name, shard)


def _check_tensors(model: ast.Model, out: Diagnostics) -> None:
    seen: dict[str, ast.Tensor] = {}
    for tensor in (*model.inputs, *model.outputs):
        earlier = seen.setdefault(tensor.name.value, tensor)
        if earlier is not tensor:
            _duplicate(
                out,
                f"tensor `{tensor.name.value}` is declared twice in model `{model.label}`",
                tensor.name,
                earlier.name,
            )


def _check_redactions(model: ast.Model, out: Diagnostics) -> None:
    inputs = [t.name.value for t in model.inputs]
    for rule in model.redactions:
        if rule.input.value in inputs:
            continue
        outputs = [t.name.value for t in model.outputs]
        help_text = did_you_mean(rule.input.value, inputs)
        if rule.input.value in outputs:
            help_text = "redaction applies to inputs, before the request leaves the gateway"
        out.add(
            codes.UNKNOWN_INPUT,
            f"model `{model.label}` has no input `{rule.input.value}` to redact",
            rule.input.span,
            label="no input of this name",
            help=help_text or f"its inputs are {', '.join(f'`{i}`' for i in inputs)}",
        )


def _check_model_ref(spec: ast.Spec, ref: ast.ModelRef, routes: set[str], out: Diagnostics) -> None:
    name = ref.name.value
    versions = spec.versions(name)
    if not versions:
        model_names = sorted({m.name.value for m in spec.models})
        if name in routes:
            message, help_text = f"`{name}` is a route; a route sends traffic to models", ""
        else:
            message = f"unknown model `{name}`"
            help_text = did_you_mean(name, model_names)
        out.add(
            codes.UNKNOWN_MODEL,
            message,
            ref.name.span,
            label="no model of this name",
            help=help_text,
        )
        return
    if ref.version is not None and spec.resolve(ref) is None:
        known = ", ".join(str(v) for v in sorted({m.version.value for m in versions}))
        out.add(
            codes.UNKNOWN_MODEL,
            f"model `{name}` has no version {ref.version.value}",
            ref.version.span,
            label=f"versions: {known}",
            help=f"use one of {known}, or write `{name}` for the highest version",
        )


def _check_repeated_entries(spec: ast.Spec, route: ast.Route, out: Diagnostics) -> None:
    seen: dict[tuple[str, int], ast.RouteEntry] = {}
    for entry in route.entries:
        model = spec.resolve(entry.model)
        if model is None:
            continue
        if model.key in seen:
            out.add(
                codes.REPEATED_FIELD,
                f"`{model.label}` appears twice in route `{route.name.value}`",
                entry.model.span,
                label=f"`{entry.model.text}` is `{model.label}`",
                notes=[Note("first here", seen[model.key].span)],
                help="merge the two lines into one percentage",
            )
        seen.setdefault(model.key, entry)
