"""Protobuf ↔ domain for the public API: the only gateway module that knows both.

The servicer stays thin: each RPC converts its request here, calls the
transport-neutral core, and converts the answer back here. Everything is
pure (NumPy, no sockets, no clock), and every refusal is an `errors`
exception whose message names the tensor and both sides of the mismatch.

    ModelInferRequest ──infer_request_from_proto──▶ InferRequest (NumPy arrays)
    outputs by name ──infer_response_to_proto──▶ ModelInferResponse (raw bytes)

The other RPCs' answers (health, metadata, configuration, repository index,
statistics) are built in gateway/model_info.py.

Tensor data arrives in either of KServe's two forms, never both in one
request: `raw_input_contents` (one bytes entry per input, in input order;
little-endian, row-major; BYTES elements each prefixed by a 4-byte length,
see backends/tensors.py) or each input's typed `contents`. FP16 and BF16
have no typed field and travel raw only. Answers are always raw, which is
what tritonclient reads. Decoded arrays may be read-only views of the
request's bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from inferplane.backends import tensors
from inferplane.gateway.domain import (
    InferRequest,
    ParameterValue,
)
from inferplane.gateway.errors import Internal, InvalidArgument, public_message
from inferplane.protos import grpc_service_pb2 as pb

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
