"""Pass: values in range (E0202) and route percentages that add up (E0203)."""

from __future__ import annotations

import re

from inferplane.compiler import ast
from inferplane.compiler import diagnostics as codes
from inferplane.compiler.diagnostics import Diagnostics
from inferplane.compiler.spans import Span
from inferplane.compiler.unit import Unit
from inferplane.compiler.units import format_duration

MAX_BATCH = 65536


def check_values(unit: Unit, out: Diagnostics) -> Unit:
    spec = unit.spec
    if spec.gateway:
        _check_gateway(spec.gateway, out)
    for target in spec.targets:
        _check_target(target, out)
    for model in spec.models:
        _check_model(model, out)
    for route in spec.routes:
        _check_route(route, out)
    return unit


def _range(out: Diagnostics, span: Span, message: str, help: str = "") -> None:
    out.add(codes.OUT_OF_RANGE, message, span, label="out of range", help=help)


def _at_least(out: Diagnostics, value: ast.Spanned | None, low: float, what: str) -> None:
    if value is not None and value.value < low:
        _range(out, value.span, f"{what} must be at least {low:g}, not {value.value:g}")


def _check_port(out: Diagnostics, address: ast.Spanned[str] | None) -> None:
    if address is None or address.value.startswith("unix:"):
        return
    port = int(re.sub(r".*:", "", address.value))
    if not 0 < port < 65536:
        _range(
            out,
            address.span,
            f"port {port} in `{address.value}` is out of range",
            help="ports run from 1 to 65535",
        )


def _check_gateway(gateway: ast.Gateway, out: Diagnostics) -> None:
    _check_port(out, gateway.listen)
    _check_port(out, gateway.metrics)
    _at_least(out, gateway.max_message, 1024, "`max_message` (bytes)")


def _check_target(target: ast.Target, out: Diagnostics) -> None:
    for worker in target.workers:
        _check_port(out, worker)
    _at_least(out, target.threads, 1, "`threads`")
    _at_least(out, target.devices, 1, "`devices`")
    replicas = target.replicas
    if replicas is None:
        return
    if replicas.min < 0:
        _range(out, replicas.span, f"replicas cannot be negative ({replicas.min})")
    elif replicas.min > replicas.max:
        _range(
            out,
            replicas.span,
            f"replica range {replicas.min}..{replicas.max} runs backwards",
            help=f"write `replicas {replicas.max}..{replicas.min}`",
        )
    elif replicas.max == 0:
        _range(
            out,
            replicas.span,
            "a target with at most 0 replicas serves nothing",
            help="allow at least one replica, e.g. `replicas 0..2` to scale from zero",
        )


def _check_model(model: ast.Model, out: Diagnostics) -> None:
    _at_least(out, model.version, 1, "`version`")
    for shard in model.shards:
        if shard.weight.value < 1:
            _range(
                out,
                shard.weight.span,
                f"shard weight must be at least 1, not {shard.weight.value}",
                help="remove the shard to send it no traffic",
            )
    for tensor in (*model.inputs, *model.outputs):
        for dim in tensor.dims:
            if isinstance(dim.value, int) and dim.value < 1:
                _range(
                    out,
                    dim.span,
                    f"dimension {dim.value} of `{tensor.name.value}` must be at least 1",
                )
    if model.batch:
        size = model.batch.max
        if not 1 <= size.value <= MAX_BATCH:
            _range(
                out, size.span, f"`batch max` must be between 1 and {MAX_BATCH}, not {size.value}"
            )
        _at_least(out, model.batch.window, 0, "`window`")
    for slo in model.latency_slos:
        if slo.seconds.value <= 0:
            _range(
                out,
                slo.seconds.span,
                f"latency SLO `{slo.percentile.value}` must be above zero, "
                f"not {format_duration(slo.seconds.value)}",
            )
    if model.throughput_slo and model.throughput_slo.rps.value <= 0:
        _range(out, model.throughput_slo.rps.span, "throughput SLO must be above zero")
    if model.availability_slo:
        percent = model.availability_slo.percent
        if not 0 < percent.value <= 100:
            _range(
                out,
                percent.span,
                f"availability {percent.value:g}% is not a percentage above 0 and at most 100",
            )


def _check_route(route: ast.Route, out: Diagnostics) -> None:
    shares_ok = True
    for entry in route.entries:
        if not 0 < entry.percent.value <= 100:
            shares_ok = False
            _range(
                out,
                entry.percent.span,
                f"a route share must be above 0% and at most 100%, not {entry.percent.value:g}%",
            )
    total = sum(e.percent.value for e in route.entries)
    if shares_ok and route.entries and abs(total - 100) > 1e-6:
        parts = " + ".join(f"{e.percent.value:g}%" for e in route.entries)
        out.add(
            codes.ROUTE_SUM,
            f"route `{route.name.value}` adds up to {total:g}%, not 100%",
            route.name.span,
            label=f"{parts} = {total:g}%",
            help="adjust the shares so that they add up to 100%",
        )
