"""Merge requests' tensors into one batch and split the answer back: pure NumPy.

A batch is built from whole requests. Each request maps input names to arrays
whose first axis is its batch axis: one row for a plain request, `k` rows for
a request that carries its own batch dimension. `merge` concatenates each
input along axis 0, in request order, and returns the row offsets;
`split` cuts every output at the same offsets, so request `i` gets exactly
rows `offsets[i]:offsets[i + 1]` of each output, in the order it was merged.

    arrays, offsets = merge([req_a, req_b])      # offsets == (0, rows_a, rows_a + rows_b)
    answers = split(worker_outputs, offsets)     # [outputs_a, outputs_b]

BYTES tensors are NumPy object arrays (the codec in `backends/tensors.py`)
and go through unchanged: concatenation and slicing keep the same Python
objects. Anything that could misattribute a row is an error, raised as
`TensorBatchError` with the input and request named: requests with
different input names, an input whose dtype or trailing dimensions differ
between requests, a request whose inputs disagree on their row count, and
an output whose first axis is not the batch's row count. Slices returned by
`split` are views of the worker's output arrays (no copy).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise

import numpy as np


class TensorBatchError(ValueError):
    """Requests that cannot share a batch, or outputs that do not match it."""


def rows_of(request: Mapping[str, np.ndarray], index: int = 0) -> int:
    """The request's row count: the common length of its inputs' first axes."""
    counts = set()
    for name, array in request.items():
        shape = np.shape(array)
        if not shape:
            raise TensorBatchError(f"request {index}: input `{name}` has no batch axis")
        counts.add(shape[0])
    if not counts:
        raise TensorBatchError(f"request {index} has no inputs")
    if len(counts) > 1:
        shapes = ", ".join(f"`{n}` {list(np.shape(a))}" for n, a in request.items())
        raise TensorBatchError(f"request {index}: inputs disagree on their rows: {shapes}")
    (count,) = counts
    if count < 1:
        raise TensorBatchError(f"request {index} has no rows")
    return count


def merge(
    requests: Sequence[Mapping[str, np.ndarray]],
) -> tuple[dict[str, np.ndarray], tuple[int, ...]]:
    """One batch from `requests`: arrays by input name, and the row offsets.

    `offsets` has one entry per request plus the total: request `i` holds rows
    `offsets[i]:offsets[i + 1]`.
    """
    if not requests:
        raise TensorBatchError("no requests to merge")
    names = list(requests[0])
    offsets = [0]
    for index, request in enumerate(requests):
        if set(request) != set(names):
            raise TensorBatchError(
                f"request {index} has inputs {sorted(request)}, request 0 has {sorted(names)}"
            )
        offsets.append(offsets[-1] + rows_of(request, index))
    merged: dict[str, np.ndarray] = {}
    for name in names:
        first = np.asarray(requests[0][name])
        for index, request in enumerate(requests[1:], start=1):
            array = np.asarray(request[name])
            if array.dtype != first.dtype:
                raise TensorBatchError(
                    f"input `{name}`: request {index} sends {array.dtype}, "
                    f"request 0 sends {first.dtype}"
                )
            if array.shape[1:] != first.shape[1:]:
                raise TensorBatchError(
                    f"input `{name}`: request {index} has shape {list(array.shape)}, "
                    f"request 0 has {list(first.shape)}; only the first axis may differ"
                )
        if len(requests) == 1:
            merged[name] = first
        else:
            merged[name] = np.concatenate([np.asarray(r[name]) for r in requests], axis=0)
    return merged, tuple(offsets)


def split(outputs: Mapping[str, np.ndarray], offsets: Sequence[int]) -> list[dict[str, np.ndarray]]:
    """Each request's outputs, in merge order, cut from the batch's `outputs`."""
    if len(offsets) < 2 or offsets[0] != 0:
        raise TensorBatchError(f"offsets must start at 0 and hold a total, got {list(offsets)}")
    if any(b < a for a, b in pairwise(offsets)):
        raise TensorBatchError(f"offsets must not decrease, got {list(offsets)}")
    total = offsets[-1]
    for name, array in outputs.items():
        if np.ndim(array) == 0 or array.shape[0] != total:
            raise TensorBatchError(
                f"output `{name}` has shape {list(np.shape(array))}, the batch has {total} rows"
            )
    return [
        {name: array[start:end] for name, array in outputs.items()}
        for start, end in pairwise(offsets)
    ]
