"""Protobuf ↔ domain for the public API: the only gateway module that knows both.

The servicer stays thin: each RPC converts its request here, calls the
transport-neutral core, and converts the answer back here. Everything is
pure (NumPy, no sockets, no clock), and every refusal is an `errors`
exception whose message names the tensor and both sides of the mismatch.

    ModelInferRequest ──infer_request_from_proto──▶ InferRequest (NumPy arrays)
    outputs by name ──infer_response_to_proto──▶ ModelInferResponse (raw bytes)
    Plan + name (model or route) ──model_metadata / model_config──▶ answers
    Plan + Availability ──repository_index──▶ RepositoryIndexResponse
    ModelStats records ──model_statistics──▶ ModelStatisticsResponse

Tensor data arrives in either of KServe's two forms, never both in one
request: `raw_input_contents` (one bytes entry per input, in input order;
little-endian, row-major; BYTES elements each prefixed by a 4-byte length,
see backends/tensors.py) or each input's typed `contents`. FP16 and BF16
have no typed field and travel raw only. Answers are always raw, which is
what tritonclient reads. Decoded arrays may be read-only views of the
request's bytes.

A route is served as a model name too: its metadata and configuration are
those of its primary entry (the largest share, the first on a tie) under the
route's name, with no versions (a route takes no `model_version`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from inferplane.backends import tensors
from inferplane.compiler import plan as plan_mod
from inferplane.gateway.domain import (
    UNREPORTED,
    Availability,
    Duration,
    InferRequest,
    ModelStats,
    ParameterValue,
    max_batch_size,
    served,
)
from inferplane.gateway.errors import Internal, InvalidArgument, public_message
from inferplane.protos import grpc_service_pb2 as pb
from inferplane.protos import model_config_pb2 as mc

SERVER_NAME = "inferplane"
# What ServerMetadata announces. perf_analyzer asks for ModelStatistics only
# when "statistics" is listed; "model_configuration" says ModelConfig answers.
EXTENSIONS = ("model_configuration", "statistics")


# --- datatypes

# The typed `contents` field of each datatype (FP16 and BF16 have none)…
_TYPED: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
# …and the NumPy type of the values in each field.
_CARRIERS: dict[str, np.dtype] = {
    "bool_contents": np.dtype("?"),
    "int_contents": np.dtype("<i4"),
    "int64_contents": np.dtype("<i8"),
    "uint_contents": np.dtype("<u4"),
    "uint64_contents": np.dtype("<u8"),
    "fp32_contents": np.dtype("<f4"),
    "fp64_contents": np.dtype("<f8"),
}
DATATYPES = (*tensors.DATATYPES, "BF16")

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

# Parameters by which Triton clients point at shared memory; the gateway has none.
_SHARED_MEMORY = "shared_memory_region"


def _dtype(datatype: str) -> np.dtype:
    if datatype == "BF16":
        import ml_dtypes  # only for BF16 tensors (onnx depends on it already)

        return np.dtype(ml_dtypes.bfloat16)
    return tensors.DATATYPES[datatype]


def _datatype_of(where: str, array: np.ndarray) -> str:
    try:
        return tensors.datatype_of(array.dtype)
    except tensors.TensorError as error:
        if array.dtype.name == "bfloat16":
            return "BF16"
        raise InvalidArgument(f"{where}: {error}") from None


def _count(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


# --- tensors


def _decode(
    where: str,
    datatype: str,
    shape: Sequence[int],
    raw: bytes | None,
    contents: pb.InferTensorContents | None,
) -> np.ndarray:
    """One tensor from raw bytes (when `raw` is not None) or typed contents."""
    if datatype not in DATATYPES:
        raise InvalidArgument(
            f"{where}: unknown datatype {datatype!r}; KServe datatypes are {', '.join(DATATYPES)}"
        )
    shape = list(shape)
    if any(dim < 0 for dim in shape):
        raise InvalidArgument(f"{where}: shape {shape} has a negative dimension")
    count = math.prod(shape)
    if raw is not None:
        return _from_raw(where, datatype, shape, count, raw)
    return _from_typed(where, datatype, shape, count, contents)


def _from_raw(where: str, datatype: str, shape: list[int], count: int, raw: bytes) -> np.ndarray:
    if datatype == "BYTES":
        try:
            return tensors.from_raw("", datatype, shape, raw)
        except tensors.TensorError as error:
            # its messages start "tensor `NAME`: "; ours name the input or output
            raise InvalidArgument(f"{where}: {str(error).removeprefix('tensor ``: ')}") from None
    dtype = _dtype(datatype)
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise InvalidArgument(
            f"{where}: shape {shape} needs {expected} bytes of {datatype}, got {len(raw)}"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _from_typed(
    where: str,
    datatype: str,
    shape: list[int],
    count: int,
    contents: pb.InferTensorContents | None,
) -> np.ndarray:
    name = _TYPED.get(datatype)
    if name is None:
        raise InvalidArgument(f"{where}: {datatype} has no typed contents field; send it raw")
    filled = [f.name for f, _ in contents.ListFields()] if contents is not None else []
    wrong = [f for f in filled if f != name]
    if wrong:
        raise InvalidArgument(f"{where}: {datatype} values go in {name}, got {', '.join(wrong)}")
    values = getattr(contents, name) if contents is not None else ()
    if len(values) != count:
        raise InvalidArgument(
            f"{where}: shape {shape} needs {count} {datatype} values, got {len(values)}"
        )
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    dtype = tensors.DATATYPES[datatype]
    carried = np.fromiter(values, dtype=_CARRIERS[name], count=count)
    if dtype.kind in "iu" and dtype.itemsize < carried.dtype.itemsize and count:
        info = np.iinfo(dtype)
        bad = carried[(carried < info.min) | (carried > info.max)]
        if bad.size:
            raise InvalidArgument(f"{where}: value {bad[0]} is out of range for {datatype}")
    return carried.astype(dtype).reshape(shape)


def _to_raw(where: str, array: np.ndarray) -> tuple[str, list[int], bytes]:
    datatype = _datatype_of(where, array)
    if datatype == "BF16":
        data = np.ascontiguousarray(array).view(np.uint16).astype("<u2", copy=False)
        return datatype, list(array.shape), data.tobytes()
    return tensors.to_raw(array)


def _to_typed(where: str, array: np.ndarray) -> tuple[str, pb.InferTensorContents]:
    datatype = _datatype_of(where, array)
    name = _TYPED.get(datatype)
    if name is None:
        raise InvalidArgument(f"{where}: {datatype} has no typed contents field; send it raw")
    contents = pb.InferTensorContents()
    flat = array.reshape(-1)
    if datatype == "BYTES":
        items = [x.encode("utf-8") if isinstance(x, str) else bytes(x) for x in flat]
        contents.bytes_contents.extend(items)
    else:
        getattr(contents, name).extend(flat.tolist())
    return datatype, contents


def _parameter_value(param: pb.InferParameter) -> ParameterValue | None:
    choice = param.WhichOneof("parameter_choice")
    return None if choice is None else getattr(param, choice)


def _parameters_from_proto(params: Mapping[str, pb.InferParameter]) -> dict[str, ParameterValue]:
    values = {}
    for key in sorted(params):
        value = _parameter_value(params[key])
        if value is None:
            raise InvalidArgument(f"parameter `{key}` has no value")
        values[key] = value
    return values


def _parameters_to_proto(
    target: Mapping[str, pb.InferParameter], values: Mapping[str, ParameterValue]
) -> None:
    for key, value in values.items():
        param = target[key]  # a proto map creates the entry on access
        if isinstance(value, bool):
            param.bool_param = value
        elif isinstance(value, int):
            if value >= 2**63:
                param.uint64_param = value
            else:
                param.int64_param = value
        elif isinstance(value, float):
            param.double_param = value
        else:
            param.string_param = str(value)


def _refuse_shared_memory(where: str, params: Mapping[str, pb.InferParameter]) -> None:
    if _SHARED_MEMORY in params:
        raise InvalidArgument(
            f"{where}: shared memory ({_SHARED_MEMORY}) is not supported by this server; "
            "send the data in the request"
        )


# --- ModelInfer


def infer_request_from_proto(msg: pb.ModelInferRequest) -> InferRequest:
    """Decode a ModelInfer request; InvalidArgument names what is wrong."""
    if not msg.model_name:
        raise InvalidArgument("the request names no model (model_name is empty)")
    seen: set[str] = set()
    for tensor in msg.inputs:
        if tensor.name in seen:
            raise InvalidArgument(f"input `{tensor.name}` appears twice")
        seen.add(tensor.name)
    raw = list(msg.raw_input_contents)
    if raw:
        typed = [t.name for t in msg.inputs if t.HasField("contents")]
        if typed:
            raise InvalidArgument(
                f"input `{typed[0]}` has typed contents but the request also has "
                "raw_input_contents: send every input one way or the other"
            )
        if len(raw) != len(msg.inputs):
            raise InvalidArgument(
                f"raw_input_contents has {_count(len(raw), 'entry', 'entries')} "
                f"for {_count(len(msg.inputs), 'input', 'inputs')}"
            )
    inputs: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(msg.inputs):
        where = f"input `{tensor.name}`"
        _refuse_shared_memory(where, tensor.parameters)
        contents = tensor.contents if tensor.HasField("contents") else None
        data = raw[i] if raw else None
        inputs[tensor.name] = _decode(where, tensor.datatype, tensor.shape, data, contents)
    outputs: list[str] = []
    for wanted in msg.outputs:
        where = f"output `{wanted.name}`"
        if wanted.name in outputs:
            raise InvalidArgument(f"{where} is requested twice")
        _refuse_shared_memory(where, wanted.parameters)
        # `binary_data` is tritonclient's HTTP flag; over gRPC every output is binary.
        classes = wanted.parameters.get("classification")
        if classes is not None and _parameter_value(classes):
            raise InvalidArgument(
                f"{where}: classification is not supported; request the output itself"
            )
        outputs.append(wanted.name)
    return InferRequest(
        model=msg.model_name,
        version=msg.model_version,
        id=msg.id,
        inputs=inputs,
        outputs=tuple(outputs),
        parameters=_parameters_from_proto(msg.parameters),
    )


def infer_request_to_proto(request: InferRequest, *, raw: bool = True) -> pb.ModelInferRequest:
    """Encode a request as a client would: raw bytes, or typed contents with `raw=False`."""
    msg = pb.ModelInferRequest(
        model_name=request.model, model_version=request.version, id=request.id
    )
    _parameters_to_proto(msg.parameters, request.parameters)
    for name, value in request.inputs.items():
        array = np.asarray(value)
        where = f"input `{name}`"
        if raw:
            datatype, shape, data = _to_raw(where, array)
            msg.inputs.add(name=name, datatype=datatype, shape=shape)
            msg.raw_input_contents.append(data)
        else:
            datatype, contents = _to_typed(where, array)
            msg.inputs.add(name=name, datatype=datatype, shape=array.shape, contents=contents)
    for name in request.outputs:
        msg.outputs.add(name=name)
    return msg


def infer_response_to_proto(
    model: str, version: str | int, id: str, outputs: Mapping[str, np.ndarray]
) -> pb.ModelInferResponse:
    """A ModelInfer answer with every output in raw_output_contents, in `outputs` order."""
    msg = pb.ModelInferResponse(model_name=model, model_version=str(version), id=id)
    for name, value in outputs.items():
        try:
            datatype, shape, data = _to_raw(f"output `{name}`", np.asarray(value))
        except (InvalidArgument, tensors.TensorError) as error:
            raise Internal(f"model `{model}` answered an output it cannot send: {error}") from None
        msg.outputs.add(name=name, datatype=datatype, shape=shape)
        msg.raw_output_contents.append(data)
    return msg


def infer_response_from_proto(msg: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    """Decode an answer's outputs by name (raw or typed), as a client would."""
    raw = list(msg.raw_output_contents)
    if raw and len(raw) != len(msg.outputs):
        raise InvalidArgument(
            f"raw_output_contents has {_count(len(raw), 'entry', 'entries')} "
            f"for {_count(len(msg.outputs), 'output', 'outputs')}"
        )
    decoded = {}
    for i, tensor in enumerate(msg.outputs):
        contents = tensor.contents if tensor.HasField("contents") else None
        data = raw[i] if raw else None
        where = f"output `{tensor.name}`"
        decoded[tensor.name] = _decode(where, tensor.datatype, tensor.shape, data, contents)
    return decoded


def stream_response_to_proto(response: pb.ModelInferResponse) -> pb.ModelStreamInferResponse:
    return pb.ModelStreamInferResponse(infer_response=response)


def stream_error_to_proto(error: BaseException) -> pb.ModelStreamInferResponse:
    """A failed request on the stream: the stream goes on, the error travels in-band."""
    return pb.ModelStreamInferResponse(error_message=public_message(error))


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
