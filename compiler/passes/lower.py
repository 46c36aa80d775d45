"""Pass: lower the checked spec into the routing plan (only when error-free).

Everything the gateway needs, resolved: versions behind route references,
shard shares from weights, defaults filled in, estimates and built artifacts
(with their measured agreement) attached, lists sorted so that the JSON is
deterministic, and the content hash computed.
"""

from __future__ import annotations

from dataclasses import replace

from inferplane.compiler import ast, plan, schema
from inferplane.compiler.diagnostics import Diagnostics
from inferplane.compiler.passes.check_slos import model_capacity
from inferplane.compiler.unit import Unit

PERCENTILE_ORDER = list(schema.PERCENTILES)


def lower(unit: Unit, out: Diagnostics) -> Unit:
    if out.has_errors:
        return unit
    spec = unit.spec
    result = plan.Plan(
        source=unit.file.replace("\\", "/").rsplit("/", 1)[-1],
        gateway=_gateway(spec.gateway),
        targets=[_target(t) for t in sorted(spec.targets, key=lambda t: t.name.value)],
        models=[_model(unit, m) for m in sorted(spec.models, key=lambda m: m.key)],
        routes=[_route(spec, r) for r in sorted(spec.routes, key=lambda r: r.name.value)],
    )
    return replace(unit, plan=result.with_hash())


def _value(node: ast.Spanned | None, default=None):
    return node.value if node is not None else default


def _gateway(gateway: ast.Gateway | None) -> plan.Gateway:
    if gateway is None:
        return plan.Gateway()
    tls = None
    if gateway.tls and gateway.tls.cert and gateway.tls.key:
        tls = plan.Tls(
            cert=gateway.tls.cert.value,
            key=gateway.tls.key.value,
            client_ca=_value(gateway.tls.client_ca),
        )
    defaults = plan.Gateway()
    return plan.Gateway(
        listen=_value(gateway.listen, defaults.listen),
        metrics=_value(gateway.metrics),
        tls=tls,
        auth_tokens_env=_value(gateway.auth_tokens_env),
        max_message_bytes=_value(gateway.max_message, defaults.max_message_bytes),
    )


def _target(target: ast.Target) -> plan.Target:
    low, high = target.replica_range
    return plan.Target(
        name=target.name.value,
        hardware=target.hardware.value,
        location=plan.Location(kind=target.location.kind.value, site=target.location.site.value),
        replicas=plan.ReplicaRange(min=low, max=high),
        threads=_value(target.threads),
        accelerator=_value(target.accelerator),
        devices=_value(target.devices, 1),
        topology=_value(target.topology),
        workers=[w.value for w in target.workers],
    )


def _tensor(tensor: ast.Tensor) -> plan.TensorSpec:
    return plan.TensorSpec(
        name=tensor.name.value,
        datatype=schema.DTYPES[tensor.dtype.value],
        shape=[-1 if d.value == ast.BATCH else d.value for d in tensor.dims],
    )


def _model(unit: Unit, model: ast.Model) -> plan.Model:
    spec = unit.spec
    found = unit.model_files[model.key]
    batching = plan.Batching(
        max_batch_size=model.batch.max.value if model.batch else 1,
        window_s=model.batch.window.value if model.batch else 0.0,
        adaptive=not (model.batch and model.batch.fixed),
    )
    total_weight = sum(s.weight.value for s in model.shards)
    shards, resolved = [], []
    for shard in sorted(model.shards, key=lambda s: s.target.value):
        target = spec.target(shard.target.value)
        est = unit.estimates[(*model.key, target.name.value)]
        low, high = target.replica_range
        shards.append(
            plan.Shard(
                target=target.name.value,
                weight=shard.weight.value,
                share=shard.weight.value / total_weight,
                replicas=plan.ReplicaRange(min=low, max=high),
                batching=batching,
                estimate=est,
            )
        )
        resolved.append((shard, target, est))
    latency = sorted(model.latency_slos, key=lambda s: PERCENTILE_ORDER.index(s.percentile.value))
    source = plan.Artifact(path=model.source.value, sha256=found.sha256)
    prepared = unit.artifacts.get(model.key)
    return plan.Model(
        name=model.name.value,
        version=model.version.value,
        precision=model.precision.value,
        source=source,
        artifact=prepared.artifact if prepared else source,
        agreement=prepared.agreement if prepared else None,
        signature=plan.Signature(
            inputs=[_tensor(t) for t in model.inputs],
            outputs=[_tensor(t) for t in model.outputs],
        ),
        shards=shards,
        slos=plan.Slos(
            latency=[
                plan.LatencyObjective(percentile=s.percentile.value, seconds=s.seconds.value)
                for s in latency
            ],
            throughput_rps=model.throughput_slo.rps.value if model.throughput_slo else None,
            availability_percent=(
                model.availability_slo.percent.value if model.availability_slo else None
            ),
        ),
        privacy=plan.Privacy(
            on_prem_only=model.on_prem_only is not None,
            redactions=[
                plan.Redaction(
                    input=r.input.value,
                    kinds=[k.value for k in r.kinds if k.value != "pattern"],
                    patterns=[p.value for p in r.patterns],
                )
                for r in model.redactions
            ],
        ),
        capacity=plan.Capacity(
            capacity_rps=model_capacity(model, resolved),
            single_latency_s=max(e.single_latency_s for _, _, e in resolved),
            basis="measured" if all(e.basis == "measured" for _, _, e in resolved) else "estimated",
        ),
    )


def _route(spec: ast.Spec, route: ast.Route) -> plan.Route:
    def ref(model_ref: ast.ModelRef) -> ast.Model:
        return spec.resolve(model_ref)

    fallback = None
    if route.fallback:
        target = ref(route.fallback)
        fallback = plan.ModelRef(model=target.name.value, version=target.version.value)
    return plan.Route(
        name=route.name.value,
        entries=[
            plan.RouteEntry(
                model=ref(e.model).name.value,
                version=ref(e.model).version.value,
                percent=e.percent.value,
            )
            for e in route.entries
        ],
        fallback=fallback,
    )
