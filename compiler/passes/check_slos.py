"""Pass: are the SLOs feasible? Warnings only (W0501–W0503).

Each shard gets service-time figures: measured ones when the spec's profile
(`<stem>.profile.json` beside it, written by `infc profile`; see
`profiles.py`) has an entry that still describes the shard, otherwise an
estimate (`estimate.py`: FLOPs from the ONNX graph over the per-hardware
table). A profile entry that exists but no longer matches, or a profile file
that cannot be read, is not used: the estimate's detail starts with the reason,
and the warnings below carry it as a note. From the figures:

- W0501: the throughput SLO exceeds the model's capacity at the largest
  replica counts. Traffic is split by weight, so the model saturates when its
  first shard does: capacity = min over shards of (shard capacity / share).
- W0502: a latency SLO is below a shard's single-request latency.
- W0503: the batch window leaves no room for compute within the tightest
  latency SLO: the window plus the batch-1 latency (the full batch's latency
  when the batching is `fixed`) exceeds it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from inferplane.compiler import ast, profiles
from inferplane.compiler import diagnostics as codes
from inferplane.compiler.diagnostics import Diagnostics, Note
from inferplane.compiler.estimate import estimate
from inferplane.compiler.plan import Estimate
from inferplane.compiler.unit import Unit
from inferplane.compiler.units import format_duration, format_rate

if TYPE_CHECKING:
    from inferplane.compiler.onnx_model import OnnxModel


def check_slos(unit: Unit, out: Diagnostics) -> Unit:
    profile, unusable = None, None
    try:
        if unit.use_profiles:
            profile = profiles.load_profile(unit.file, unit.base_dir)
    except profiles.ProfileError as e:
        unusable = f"profile not used: {e}"
    estimates: dict[tuple[str, int, str], Estimate] = {}
    for model in unit.spec.models:
        found = unit.model_files.get(model.key)
        if found is None:
            continue
        shards, notes = [], []
        for shard in model.shards:
            target = unit.spec.target(shard.target.value)
            if target is None or target.hardware is None or not _estimable(model, target):
                continue
            est, why = _figures(model, target, found, profile)
            why = why or unusable
            if why:
                est = est.model_copy(update={"detail": f"{why}, using the estimate; {est.detail}"})
                notes.append(Note(f"`{target.name.value}`: {why}; estimated instead"))
            estimates[(*model.key, target.name.value)] = est
            shards.append((shard, target, est))
        if shards:
            _check_throughput(model, shards, out, notes)
            _check_latency(model, shards, out, notes)
            _check_window(model, shards, out, notes)
    return replace(unit, estimates=estimates)


def _figures(
    model: ast.Model, target: ast.Target, found: OnnxModel, profile: profiles.Profile | None
) -> tuple[Estimate, str | None]:
    """The shard's measured figures, or its estimate and why a profile entry was not used.

    The reason is None when the profile has no entry for the shard at all.
    """
    max_batch = model.batch.max.value if model.batch else 1
    wanted = profiles.Wanted(
        model=model.name.value,
        version=model.version.value,
        target=target.name.value,
        source_sha256=found.sha256,
        precision=model.precision.value,
        hardware=target.hardware.value,
        accelerator=target.accelerator.value if target.accelerator else None,
        threads=target.threads.value if target.threads else None,
        devices=target.devices.value if target.devices else 1,
        max_batch_size=max_batch,
        source=model.source.value if model.source else "",
    )
    entry = profiles.lookup(profile, wanted)
    if entry is not None:
        return profiles.measured_estimate(entry, max_batch, found.flops_per_item), None
    stale = profiles.stale_reason(profile, wanted)
    est = shard_estimate(model, target, found.flops_per_item, found.node_count)
    return est, f"profile stale: {stale}" if stale else None


def shard_estimate(
    model: ast.Model, target: ast.Target, flops_per_item: float, nodes: int
) -> Estimate:
    return estimate(
        flops_per_item=flops_per_item,
        hardware=target.hardware.value,
        precision=model.precision.value,
        accelerator=target.accelerator.value if target.accelerator else None,
        devices=target.devices.value if target.devices else 1,
        threads=target.threads.value if target.threads else None,
        max_batch=model.batch.max.value if model.batch else 1,
        nodes=nodes,
    )


def _estimable(model: ast.Model, target: ast.Target) -> bool:
    """False when a count is out of range (check_values reported it already)."""
    counts = [
        target.threads.value if target.threads else 1,
        target.devices.value if target.devices else 1,
        model.batch.max.value if model.batch else 1,
        target.replica_range[1],
    ]
    return min(counts) >= 1


def model_capacity(
    model: ast.Model,
    shards: list[tuple[ast.Shard, ast.Target, Estimate]],
) -> float:
    """Requests per second the model sustains at the largest replica counts."""
    total_weight = sum(s.weight.value for s, _, _ in shards) or 1
    limits = []
    for shard, target, est in shards:
        share = shard.weight.value / total_weight
        limits.append(est.capacity_rps * target.replica_range[1] / share)
    return min(limits)


def _basis(estimates: list[Estimate]) -> str:
    """The word for figures behind a verdict: measured only when all of them were."""
    return "measured" if all(e.basis == "measured" for e in estimates) else "estimated"


def _check_throughput(model: ast.Model, shards: list, out: Diagnostics, notes: list[Note]) -> None:
    slo = model.throughput_slo
    if slo is None:
        return
    capacity = model_capacity(model, shards)
    if slo.rps.value <= capacity:
        return
    parts = ", ".join(
        f"`{t.name.value}` ×{n}: {format_rate(e.capacity_rps * n)}"
        for _, t, e in shards
        for n in [t.replica_range[1]]
    )
    out.add(
        codes.OVER_CAPACITY,
        f"throughput SLO {format_rate(slo.rps.value)} of model `{model.label}` is above its "
        f"{_basis([e for _, _, e in shards])} capacity of {format_rate(capacity)} "
        "at the largest replica counts",
        slo.rps.span,
        label=f"capacity {format_rate(capacity)} ({parts})",
        notes=notes,
        help="raise the replica ranges, add shards or a larger `batch max`, "
        "or measure with `infc profile` if the estimate is too cautious",
    )


def _check_latency(model: ast.Model, shards: list, out: Diagnostics, notes: list[Note]) -> None:
    for slo in model.latency_slos:
        slow = [(t, e) for _, t, e in shards if e.single_latency_s > slo.seconds.value]
        if not slow:
            continue
        target, est = max(slow, key=lambda pair: pair[1].single_latency_s)
        out.add(
            codes.BELOW_LATENCY,
            f"latency SLO {slo.percentile.value} {format_duration(slo.seconds.value)} of model "
            f"`{model.label}` is below its {est.basis} single-request latency "
            f"{format_duration(est.single_latency_s)} on `{target.name.value}`",
            slo.seconds.span,
            label=f"a lone request takes {format_duration(est.single_latency_s)} "
            f"on {target.hardware.value}",
            notes=notes,
            help="loosen the SLO or shard the model on faster hardware",
        )


def _check_window(model: ast.Model, shards: list, out: Diagnostics, notes: list[Note]) -> None:
    if model.batch is None or not model.latency_slos or model.batch.max.value <= 1:
        return
    compute = max(
        e.max_batch_latency_s if model.batch.fixed else e.single_latency_s for _, _, e in shards
    )
    # SLOs that compute alone already misses are W0502's; judge the window
    # against the tightest one that compute can meet.
    reachable = [s for s in model.latency_slos if s.seconds.value >= compute]
    if not reachable:
        return
    tightest = min(reachable, key=lambda s: s.seconds.value)
    window = model.batch.window.value
    if window + compute <= tightest.seconds.value:
        return
    what = "a full batch" if model.batch.fixed else "a lone request"
    room = max(tightest.seconds.value - compute, 0)
    out.add(
        codes.WINDOW_TOO_LONG,
        f"batch window {format_duration(window)} of model `{model.label}` leaves no room for "
        f"compute within its {tightest.percentile.value} "
        f"{format_duration(tightest.seconds.value)}",
        model.batch.window.span,
        label=f"window + {what} ({format_duration(compute)}) = {format_duration(window + compute)}",
        notes=[Note("latency SLO here", tightest.span), *notes],
        help=f"shorten the window below {format_duration(room)}",
    )
