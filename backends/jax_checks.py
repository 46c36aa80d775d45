"""The tpu backend's checks: the artifact's signature at load, each batch's tensors.

Both compare against the plan's signature, the contract with clients, and
fail with a message naming the model, the tensor and both sides: LoadFailed
at load (`check_signature`, reading the ONNX graph's inputs and outputs), and
BadBatch per call (`check_batch`). They follow the onnxruntime backend's
checks and wording, so that a client sees the same errors whichever runtime
serves the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from inferplane.backends.runtime import BadBatch, LoadFailed
from inferplane.backends.tensors import DATATYPES, TensorError, datatype_of
from inferplane.compiler import plan
from inferplane.compiler.onnx_model import ONNX_TO_DTYPE
from inferplane.compiler.schema import DTYPES

# -- each batch -----------------------------------------------------------------


def check_batch(label: str, specs: Sequence[plan.TensorSpec], inputs: Mapping[str, Any]) -> int:
    """The batch size, or BadBatch naming the tensor, what the plan says and what came.

    The same checks as the onnxruntime backend's: names, dtype (no casting: a
    float64 array is refused, not rounded), rank, fixed dimensions, one batch
    size across inputs, and a batch of at least one item (the export's
    symbolic batch dimension is at least 1).
    """
    declared = {spec.name: spec for spec in specs}
    for name in inputs:
        if name not in declared:
            takes = ", ".join(f"`{s.name}` {_spec_text(s)}" for s in specs)
            raise BadBatch(f"{label}: unknown input `{name}`; the model takes {takes}")
    batch: tuple[str, int] | None = None
    for spec in specs:
        if spec.name not in inputs:
            raise BadBatch(f"{label}: missing input `{spec.name}` {_spec_text(spec)}")
        array = inputs[spec.name]
        if not isinstance(array, np.ndarray):
            raise BadBatch(
                f"{label}: input `{spec.name}`: expected a NumPy array {_spec_text(spec)}, "
                f"got {type(array).__name__}"
            )
        got = f"{_dtype_text(array.dtype)}{list(array.shape)}"
        fits = len(array.shape) == len(spec.shape) and all(
            want in (-1, have) for want, have in zip(spec.shape, array.shape, strict=True)
        )
        if array.dtype != DATATYPES.get(spec.datatype) or not fits:
            raise BadBatch(f"{label}: input `{spec.name}`: expected {_spec_text(spec)}, got {got}")
        if spec.shape and spec.shape[0] == -1:
            if batch is not None and array.shape[0] != batch[1]:
                raise BadBatch(
                    f"{label}: inputs disagree on the batch size: `{batch[0]}` has {batch[1]}, "
                    f"`{spec.name}` has {array.shape[0]}"
                )
            batch = (spec.name, array.shape[0])
    size = 1 if batch is None else batch[1]
    if size == 0:
        raise BadBatch(f"{label}: the batch is empty: each input needs at least one item")
    return size


def _dtype_text(dtype: np.dtype) -> str:
    try:
        name = datatype_of(dtype)
    except TensorError:
        return f"NumPy {dtype}"
    return f"{name} (big-endian)" if dtype.byteorder == ">" else name


# -- the signature at load ------------------------------------------------------


def check_signature(label: str, signature: plan.Signature, model_proto: Any) -> None:
    graph = model_proto.graph
    constants = {t.name for t in graph.initializer}
    problems = [
        *_side_problems(
            "input", signature.inputs, [v for v in graph.input if v.name not in constants]
        ),
        *_side_problems("output", signature.outputs, list(graph.output)),
    ]
    if problems:
        raise LoadFailed(
            f"{label}: the artifact's signature differs from the plan's: " + "; ".join(problems)
        )


def _side_problems(kind: str, specs: Sequence[plan.TensorSpec], values: Sequence[Any]) -> list[str]:
    by_name = {value.name: _described(value) for value in values}
    problems = []
    for spec in specs:
        if spec.datatype not in DATATYPES:
            problems.append(f"{kind} `{spec.name}`: {spec.datatype} has no NumPy dtype")
        found = by_name.pop(spec.name, None)
        if found is None:
            problems.append(
                f"{kind} `{spec.name}`: in the plan ({_spec_text(spec)}), not in the model"
            )
            continue
        datatype, dims = found
        reason = _dims_problem(spec.shape, dims)
        if datatype != spec.datatype or reason:
            model_text = _text(datatype, dims)
            problems.append(
                f"{kind} `{spec.name}`: plan {_spec_text(spec)}, model {model_text}{reason}"
            )
    problems += [
        f"{kind} `{name}`: in the model ({_text(*found)}), not in the plan"
        for name, found in by_name.items()
    ]
    return problems


def _described(value: Any) -> tuple[str, list[int | str] | None]:
    """KServe datatype and dims (str for a symbolic one) of a graph input or output."""
    from onnx import TensorProto

    if value.type.WhichOneof("value") != "tensor_type":
        return value.type.WhichOneof("value") or "UNDEFINED", None
    tensor_type = value.type.tensor_type
    onnx_name = TensorProto.DataType.Name(tensor_type.elem_type)
    datatype = DTYPES.get(ONNX_TO_DTYPE.get(onnx_name, ""), onnx_name)
    if not tensor_type.HasField("shape"):
        return datatype, None
    dims: list[int | str] = [
        int(d.dim_value) if d.WhichOneof("value") == "dim_value" else (d.dim_param or "?")
        for d in tensor_type.shape.dim
    ]
    return datatype, dims


def _dims_problem(plan_shape: Sequence[int], dims: Sequence[int | str] | None) -> str:
    """'' when the model's dims match the plan's, else a parenthesised reason."""
    if dims is None:
        return " (the model gives no shape)"
    if len(plan_shape) != len(dims):
        return f" (rank {len(plan_shape)} against {len(dims)})"
    for want, got in zip(plan_shape, dims, strict=True):
        if want == -1 and isinstance(got, int):
            return " (the plan's batch axis, -1, must be a dynamic dimension in the model)"
        if want != -1 and got != want:
            return " (fixed dimensions differ)"
    return ""


def _spec_text(spec: plan.TensorSpec) -> str:
    return f"{spec.datatype}[{', '.join(str(d) for d in spec.shape)}]"


def _text(datatype: str, dims: Sequence[int | str] | None) -> str:
    return f"{datatype}[{'?' if dims is None else ', '.join(str(d) for d in dims)}]"
