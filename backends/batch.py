"""Does a batch fit its model? One check of input arrays against the plan's signature.

The plan's signature is the contract between clients and the worker, whatever
the runtime (onnxruntime or JAX) and however the artifact stores its tensors
(an fp16 or int8 artifact still takes what the signature declares). The worker
core checks each batch here before any runtime sees it (with the target's
`batch max`), and each backend checks again here in `infer`, so a backend used
on its own fails the same way. Conversions a runtime needs (onnxruntime's str
for BYTES) happen in that backend, after this check.

A batch that does not fit raises `BadBatch`; its message starts with the
model's label and names the tensor and both sides:
`model fraud-scorer@1: input `features`: expected FP32[-1, 30], got FP64[4, 30]`.
Pure: NumPy arrays in, a batch size or an error out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from inferplane.backends.runtime import BadBatch
from inferplane.backends.tensors import DATATYPES, TensorError, datatype_of
from inferplane.compiler import plan

BATCH_AXIS = -1  # how the plan marks the dynamic batch dimension


def label(model: plan.Model) -> str:
    """How batch and load errors name a model version: `model name@version`."""
    return f"model {model.name}@{model.version}"


def spec_text(spec: plan.TensorSpec) -> str:
    """A declared tensor as the plan has it: `FP32[-1, 30]`."""
    return f"{spec.datatype}[{', '.join(str(d) for d in spec.shape)}]"


def check_batch(
    label: str,
    specs: Sequence[plan.TensorSpec],
    inputs: Mapping[str, Any],
    max_batch_size: int | None = None,
) -> int:
    """The batch size of `inputs`; raises BadBatch when they do not fit `specs`.

    Checks, in order: no unknown input; then per declared input: present, a
    NumPy array, exactly the declared dtype (little-endian; BYTES is an object
    array of bytes or str; nothing is cast), rank and fixed dimensions; one
    batch size across the inputs; at least one item; at most `max_batch_size`
    when given. A model without any batch axis takes one item per call.
    """
    declared = {spec.name for spec in specs}
    for name in inputs:
        if name not in declared:
            raise BadBatch(f"{label}: unknown input `{name}`; the model takes {_listed(specs)}")
    batch: tuple[str, int] | None = None
    for spec in specs:
        if spec.name not in inputs:
            raise BadBatch(f"{label}: missing input `{spec.name}` {spec_text(spec)}")
        array = inputs[spec.name]
        _check_array(f"{label}: input `{spec.name}`", spec, array)
        if spec.shape and spec.shape[0] == BATCH_AXIS:
            rows = int(array.shape[0])
            if batch is not None and rows != batch[1]:
                raise BadBatch(
                    f"{label}: inputs disagree on the batch size: `{batch[0]}` has {batch[1]}, "
                    f"`{spec.name}` has {rows}"
                )
            batch = (spec.name, rows)
    size = 1 if batch is None else batch[1]
    if size == 0:
        raise BadBatch(f"{label}: the batch is empty: each input needs at least one item")
    if max_batch_size is not None and size > max_batch_size:
        tensor = batch[0] if batch is not None else "?"
        raise BadBatch(
            f"{label}: input `{tensor}`: batch of {size} is above its max_batch_size of "
            f"{max_batch_size} on this target: split it"
        )
    return size


def check_outputs(label: str, specs: Sequence[plan.TensorSpec], wanted: Sequence[str]) -> None:
    """Raises BadBatch when a requested output is not in the signature."""
    declared = {spec.name for spec in specs}
    for name in wanted:
        if name not in declared:
            raise BadBatch(f"{label}: unknown output `{name}`; the model gives {_listed(specs)}")


def _check_array(where: str, spec: plan.TensorSpec, array: Any) -> None:
    if not isinstance(array, np.ndarray):
        raise BadBatch(
            f"{where}: expected a NumPy array {spec_text(spec)}, got {type(array).__name__}"
        )
    got = f"{_dtype_text(array.dtype)}{list(array.shape)}"
    expected = DATATYPES.get(spec.datatype)  # not `!= None`: np.dtype(None) is float64
    if expected is None or array.dtype != expected:
        hint = " (a NumPy object array of bytes or str)" if spec.datatype == "BYTES" else ""
        raise BadBatch(f"{where}: expected {spec_text(spec)}{hint}, got {got}")
    fits = len(array.shape) == len(spec.shape) and all(
        want in (BATCH_AXIS, have) for want, have in zip(spec.shape, array.shape, strict=True)
    )
    if not fits:
        raise BadBatch(f"{where}: expected {spec_text(spec)}, got {got}")
    if spec.datatype == "BYTES":
        for index, item in enumerate(array.flat):
            if not isinstance(item, bytes | str):
                raise BadBatch(
                    f"{where}: element {index} is {type(item).__name__}, expected bytes or str"
                )


def _dtype_text(dtype: np.dtype) -> str:
    if dtype.kind in ("U", "S"):
        return f"NumPy {dtype.str}"  # text arrays are not BYTES: those are object arrays
    try:
        name = datatype_of(dtype)
    except TensorError:
        return f"NumPy {dtype}"
    # datatype_of reads past byte order; a big-endian array is not the model's dtype.
    return f"{name} (big-endian)" if dtype.byteorder == ">" else name


def _listed(specs: Sequence[plan.TensorSpec]) -> str:
    return ", ".join(f"`{spec.name}` {spec_text(spec)}" for spec in specs)
