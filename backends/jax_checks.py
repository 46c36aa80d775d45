"""The tpu backend's check of the artifact's signature against the plan's, at load.

The plan's signature is the contract with clients: `check_signature` reads
the ONNX graph's inputs and outputs and fails with `LoadFailed` listing every
difference, both sides named, in the onnxruntime backend's wording. Each
batch is checked per call by `batch.py`, shared with the worker and the
onnxruntime backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from inferplane.backends.batch import spec_text
from inferplane.backends.runtime import LoadFailed
from inferplane.backends.tensors import DATATYPES
from inferplane.compiler import plan
from inferplane.compiler.onnx_model import ONNX_TO_DTYPE
from inferplane.compiler.schema import DTYPES

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
                f"{kind} `{spec.name}`: in the plan ({spec_text(spec)}), not in the model"
            )
            continue
        datatype, dims = found
        reason = _dims_problem(spec.shape, dims)
        if datatype != spec.datatype or reason:
            model_text = _text(datatype, dims)
            problems.append(
                f"{kind} `{spec.name}`: plan {spec_text(spec)}, model {model_text}{reason}"
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


def _text(datatype: str, dims: Sequence[int | str] | None) -> str:
    return f"{datatype}[{'?' if dims is None else ', '.join(str(d) for d in dims)}]"
