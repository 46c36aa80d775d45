"""Protobuf answers about the server and its models: health, metadata, ModelConfig,
RepositoryIndex and ModelStatistics, built from the plan (pure).

    Plan + name (model or route) ──model_metadata / model_config──▶ answers
    Plan + Availability ──repository_index──▶ RepositoryIndexResponse
    ModelStats records ──model_statistics──▶ ModelStatisticsResponse

A route is served as a model name too: its metadata and configuration are
those of its primary entry (the largest share, the first on a tie) under the
route's name, with no versions (a route takes no `model_version`).
ModelInfer's conversions are gateway/converters.py's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from inferplane.compiler import plan as plan_mod
from inferplane.gateway.domain import (
    UNREPORTED,
    Availability,
    Duration,
    ModelStats,
    max_batch_size,
    served,
)
from inferplane.protos import grpc_service_pb2 as pb
from inferplane.protos import model_config_pb2 as mc

SERVER_NAME = "inferplane"
# What ServerMetadata announces. perf_analyzer asks for ModelStatistics only
# when "statistics" is listed; "model_configuration" says ModelConfig answers.
EXTENSIONS = ("model_configuration", "statistics")


# KServe datatype → the model configuration's enum (BYTES is TYPE_STRING there).
_CONFIG_TYPES: dict[str, int] = {
    "BOOL": mc.TYPE_BOOL,
    "UINT8": mc.TYPE_UINT8,
    "UINT16": mc.TYPE_UINT16,
    "UINT32": mc.TYPE_UINT32,
    "UINT64": mc.TYPE_UINT64,
    "INT8": mc.TYPE_INT8,
    "INT16": mc.TYPE_INT16,
    "INT32": mc.TYPE_INT32,
    "INT64": mc.TYPE_INT64,
    "FP16": mc.TYPE_FP16,
    "FP32": mc.TYPE_FP32,
    "FP64": mc.TYPE_FP64,
    "BYTES": mc.TYPE_STRING,
    "BF16": mc.TYPE_BF16,
}

_INSTANCE_KINDS = {
    "cpu": mc.ModelInstanceGroup.KIND_CPU,
    "gpu": mc.ModelInstanceGroup.KIND_GPU,
    "tpu": mc.ModelInstanceGroup.KIND_MODEL,  # placement is XLA's
}

# --- health and server metadata


def name_and_version(msg: pb.ModelReadyRequest | pb.ModelMetadataRequest) -> tuple[str, str]:
    """(name, version) of ModelReady/ModelMetadata/ModelConfig/ModelStatistics requests."""
    return msg.name, msg.version


def server_live_to_proto(live: bool) -> pb.ServerLiveResponse:
    return pb.ServerLiveResponse(live=live)


def server_ready_to_proto(ready: bool) -> pb.ServerReadyResponse:
    return pb.ServerReadyResponse(ready=ready)


def model_ready_to_proto(ready: bool) -> pb.ModelReadyResponse:
    return pb.ModelReadyResponse(ready=ready)


def server_metadata_to_proto(
    version: str, extensions: Iterable[str] = EXTENSIONS
) -> pb.ServerMetadataResponse:
    return pb.ServerMetadataResponse(name=SERVER_NAME, version=version, extensions=list(extensions))


def _runtime(plan: plan_mod.Plan, model: plan_mod.Model) -> tuple[str, str]:
    """(platform, backend): JAX when every shard is on a tpu target, else onnxruntime."""
    hardware = {t.hardware for s in model.shards if (t := plan.target(s.target)) is not None}
    if hardware == {"tpu"}:
        return "jax", "jax"
    return "onnxruntime_onnx", "onnxruntime"


def model_metadata_to_proto(
    plan: plan_mod.Plan, name: str, version: str = ""
) -> pb.ModelMetadataResponse:
    """ModelMetadata: shapes as in the plan, the batch axis first as -1."""
    answer = served(plan, name, version)
    platform, _ = _runtime(plan, answer.model)
    meta = pb.ModelMetadataResponse.TensorMetadata
    signature = answer.model.signature
    return pb.ModelMetadataResponse(
        name=answer.name,
        versions=[str(v) for v in answer.versions],
        platform=platform,
        inputs=[meta(name=t.name, datatype=t.datatype, shape=t.shape) for t in signature.inputs],
        outputs=[meta(name=t.name, datatype=t.datatype, shape=t.shape) for t in signature.outputs],
    )


def model_config_to_proto(
    plan: plan_mod.Plan, name: str, version: str = ""
) -> pb.ModelConfigResponse:
    """ModelConfig as Triton writes it: with max_batch_size > 0, dims omit the batch axis.

    Shards of one model share its `batch` line; should they differ, the
    smallest max and the longest window are reported.
    """
    answer = served(plan, name, version)
    model = answer.model
    batch = max_batch_size(model)
    platform, backend = _runtime(plan, model)
    config = mc.ModelConfig(
        name=answer.name, platform=platform, backend=backend, max_batch_size=batch
    )
    if answer.route is None:
        config.version_policy.specific.versions.extend(answer.versions)
    skip = 1 if batch > 0 else 0
    for t in model.signature.inputs:
        config.input.add(name=t.name, data_type=_CONFIG_TYPES[t.datatype], dims=t.shape[skip:])
    for t in model.signature.outputs:
        config.output.add(name=t.name, data_type=_CONFIG_TYPES[t.datatype], dims=t.shape[skip:])
    if batch > 1:
        window_s = max(s.batching.window_s for s in model.shards)
        config.dynamic_batching.max_queue_delay_microseconds = round(window_s * 1e6)
        if not all(s.batching.adaptive for s in model.shards):
            config.dynamic_batching.preferred_batch_size.append(batch)
    for shard in model.shards:
        target = plan.target(shard.target)
        hardware = target.hardware if target is not None else ""
        kind = _INSTANCE_KINDS.get(hardware, mc.ModelInstanceGroup.KIND_AUTO)
        config.instance_group.add(name=shard.target, kind=kind, count=shard.replicas.max)
    config.parameters["precision"].string_value = model.precision
    if answer.route is not None:
        config.parameters["route"].string_value = _describe_route(answer.route)
    return pb.ModelConfigResponse(config=config)


def _describe_route(route: plan_mod.Route) -> str:
    text = ", ".join(f"{e.model}@{e.version} {e.percent:g}%" for e in route.entries)
    if route.fallback is not None:
        text += f"; fallback {route.fallback.model}@{route.fallback.version}"
    return text


def repository_index_to_proto(
    plan: plan_mod.Plan,
    availability: Mapping[tuple[str, int], Availability],
    *,
    ready_only: bool = False,
) -> pb.RepositoryIndexResponse:
    """Every model version, then every route (no version: READY when any of its
    models is), sorted by name; `availability` is keyed by (name, version)."""
    index = pb.RepositoryIndexResponse.ModelIndex
    rows = []
    for m in plan.models:
        a = availability.get((m.name, m.version), UNREPORTED)
        rows.append(index(name=m.name, version=str(m.version), state=a.state, reason=a.reason))
    for route in plan.routes:
        members = [(e.model, e.version) for e in route.entries]
        if route.fallback is not None:
            members.append((route.fallback.model, route.fallback.version))
        ready = any(availability.get(k, UNREPORTED).state == "READY" for k in members)
        reason = "" if ready else "none of its models is ready"
        state = "READY" if ready else "UNAVAILABLE"
        rows.append(index(name=route.name, state=state, reason=reason))
    rows.sort(key=lambda row: (row.name, row.version.zfill(20)))
    if ready_only:
        rows = [row for row in rows if row.state == "READY"]
    return pb.RepositoryIndexResponse(models=rows)


# --- statistics


def _duration(value: Duration) -> pb.StatisticDuration:
    return pb.StatisticDuration(count=value.count, ns=value.ns)


def model_statistics_to_proto(stats: Iterable[ModelStats]) -> pb.ModelStatisticsResponse:
    """ModelStatistics rows in the order given; batch rows by batch size."""
    rows = []
    for s in stats:
        rows.append(
            pb.ModelStatistics(
                name=s.name,
                version=str(s.version),
                last_inference=s.last_inference_ms,
                inference_count=s.inference_count,
                execution_count=s.execution_count,
                inference_stats=pb.InferStatistics(
                    success=_duration(s.success),
                    fail=_duration(s.fail),
                    queue=_duration(s.queue),
                    compute_input=_duration(s.compute_input),
                    compute_infer=_duration(s.compute_infer),
                    compute_output=_duration(s.compute_output),
                ),
                batch_stats=[
                    pb.InferBatchStatistics(
                        batch_size=b.batch_size,
                        compute_input=_duration(b.compute_input),
                        compute_infer=_duration(b.compute_infer),
                        compute_output=_duration(b.compute_output),
                    )
                    for b in sorted(s.batches, key=lambda b: b.batch_size)
                ],
            )
        )
    return pb.ModelStatisticsResponse(model_stats=rows)
