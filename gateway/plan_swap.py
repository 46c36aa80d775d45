"""Which plan changes a running gateway can take without restarting a worker (pure).

    refusals(old, new) == []   # `infc apply` may swap the gateway onto `new`

The gateway alone decides routes, shard weights, batching windows, SLOs,
admission, redaction and the on-prem rule: a new gateway over the same workers
serves all of those (gateway/swap.py). Workers decide what they load: their
models, artifacts and signatures, their target's hardware and location, and
the largest batch each model takes. A change to any of those needs its
workers restarted on the new spec, and so does the gateway block (where and
how clients connect), and so does a target added or removed (its workers
start or stop). Each refusal names what changed and who must restart, in one
sentence without "; " (the separator of the RPC's message).
Removing a model version, a shard or a route is a gateway decision: workers
keep what they loaded and are simply not sent it.
"""

from __future__ import annotations

from inferplane.compiler import plan as plan_mod

_WORKER_SIDE = ("precision", "artifact", "signature")  # what a worker loaded


def refusals(old: plan_mod.Plan, new: plan_mod.Plan) -> list[str]:
    """Why `new` cannot replace `old` on a running gateway; empty when it can."""
    why: list[str] = []
    if new.plan_version != old.plan_version:
        why.append(f"plan version {old.plan_version} → {new.plan_version}: restart the gateway")
    if new.gateway != old.gateway:
        changed = [
            field
            for field in type(old.gateway).model_fields
            if getattr(old.gateway, field) != getattr(new.gateway, field)
        ]
        why.append(
            f"the gateway block changed ({', '.join(changed)}): restart the gateway to serve it"
        )
    why += _target_refusals(old, new)
    why += _model_refusals(old, new)
    return why


def _target_refusals(old: plan_mod.Plan, new: plan_mod.Plan) -> list[str]:
    before = {t.name: t for t in old.targets}
    kept = {t.name for t in new.targets}
    why = [
        f"target `{name}` is gone from the plan: its workers would run on unused, "
        "so restart to stop them"
        for name in before
        if name not in kept
    ]
    for target in new.targets:
        was = before.get(target.name)
        if was is None:
            why.append(
                f"target `{target.name}` is new: it has no workers yet, so restart to start them"
            )
        elif was != target:
            changed = [
                field
                for field in type(target).model_fields
                if getattr(was, field) != getattr(target, field)
            ]
            why.append(
                f"target `{target.name}` changed ({', '.join(changed)}): its workers must "
                "restart on the new spec"
            )
    return why


def _model_refusals(old: plan_mod.Plan, new: plan_mod.Plan) -> list[str]:
    before = {(m.name, m.version): m for m in old.models}
    why = []
    for model in new.models:
        label = f"{model.name}@{model.version}"
        was = before.get((model.name, model.version))
        if was is None:
            why.append(f"model {label} is new: its workers must restart to load it")
            continue
        changed = [f for f in _WORKER_SIDE if getattr(was, f) != getattr(model, f)]
        if changed:
            why.append(
                f"model {label}: its {', '.join(changed)} changed: its workers must restart "
                "to load it"
            )
        shards = {s.target: s for s in was.shards}
        for shard in model.shards:
            had = shards.get(shard.target)
            if had is None:
                why.append(
                    f"model {label} is new on target `{shard.target}`: its workers there "
                    "must restart to load it"
                )
            elif shard.batching.max_batch_size > had.batching.max_batch_size:
                why.append(
                    f"model {label} on `{shard.target}`: batch max {had.batching.max_batch_size}"
                    f" → {shard.batching.max_batch_size}: its workers there take at most "
                    f"{had.batching.max_batch_size} until they restart"
                )
    return why
