"""Does a batch fit its model? The worker's check of request tensors against the plan.

The plan's signature is the contract between clients and the worker, whatever
the runtime (onnxruntime or JAX) and however the artifact stores its tensors
(an fp16 or int8 artifact still takes what the signature declares). So the
worker checks each batch here, before any runtime sees it, and every backend
fails the same way: a `BadBatch` whose message names the model, the tensor and
both sides of the mismatch. Pure: NumPy arrays in, a batch size or an error out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from inferplane.backends.runtime import BadBatch
from inferplane.backends.tensors import TensorError, datatype_of
from inferplane.compiler import plan

BATCH_AXIS = -1  # how the plan marks the dynamic batch dimension


def label(model: plan.Model) -> str:
    """How messages and logs name a model version: `name@version`."""
    return f"{model.name}@{model.version}"


def shown(spec: plan.TensorSpec) -> str:
    """A declared tensor as the spec writes it: `FP32[batch, 30]`."""
    dims = ", ".join("batch" if d == BATCH_AXIS else str(d) for d in spec.shape)
    return f"{spec.datatype}[{dims}]"


def _names(specs: Sequence[plan.TensorSpec]) -> str:
    return ", ".join(f"`{s.name}` {shown(s)}" for s in specs)


def check_batch(
    model: plan.Model,
    max_batch_size: int,
    inputs: Mapping[str, np.ndarray],
    outputs: Sequence[str] = (),
) -> int:
    """The batch size of `inputs`; raises BadBatch when they do not fit `model`.

    Checks, in order: input names (none missing, none extra), each input's
    datatype, rank and fixed dimensions, that every batch axis has the same
    length, that the batch is neither empty nor above `max_batch_size`, and
    that each requested output exists. A model without any batch axis takes
    one item per call.
    """
    name = label(model)
    declared = model.signature.inputs
    known = {spec.name for spec in declared}
    for given in inputs:
        if given not in known:
            raise BadBatch(
                f"model `{name}` has no input `{given}`; its inputs are {_names(declared)}"
            )
    batch: int | None = None
    batch_source = ""
    for spec in declared:
        if spec.name not in inputs:
            raise BadBatch(f"model `{name}` needs input `{spec.name}` {shown(spec)}; it is missing")
        array = inputs[spec.name]
        _check_tensor(name, spec, array)
        if spec.shape and spec.shape[0] == BATCH_AXIS:
            rows = int(array.shape[0])
            if batch is None:
                batch, batch_source = rows, spec.name
            elif rows != batch:
                raise BadBatch(
                    f"inputs of model `{name}` disagree on the batch size: "
                    f"`{batch_source}` has {batch} rows, `{spec.name}` has {rows}"
                )
    size = 1 if batch is None else batch
    if size == 0:
        raise BadBatch(f"empty batch for model `{name}`: the batch axis has length 0")
    if size > max_batch_size:
        raise BadBatch(
            f"batch of {size} for model `{name}` is above its max_batch_size of "
            f"{max_batch_size} on this target: split it"
        )
    outputs_known = {spec.name for spec in model.signature.outputs}
    for wanted in outputs:
        if wanted not in outputs_known:
            raise BadBatch(
                f"model `{name}` has no output `{wanted}`; its outputs are "
                f"{_names(model.signature.outputs)}"
            )
    return size


def _check_tensor(model_name: str, spec: plan.TensorSpec, array: np.ndarray) -> None:
    try:
        datatype = datatype_of(array.dtype)
    except TensorError:
        datatype = str(array.dtype)
    where = f"input `{spec.name}` of model `{model_name}`"
    if datatype != spec.datatype:
        raise BadBatch(f"{where}: got {datatype}, the model takes {shown(spec)}")
    fits = len(array.shape) == len(spec.shape) and all(
        want in (BATCH_AXIS, have) for want, have in zip(spec.shape, array.shape, strict=True)
    )
    if not fits:
        raise BadBatch(f"{where}: got shape {list(array.shape)}, the model takes {shown(spec)}")
