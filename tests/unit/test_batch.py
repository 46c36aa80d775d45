"""The shared batch check (`backends/batch.py`) on its own: the cases no backend test reaches."""

from __future__ import annotations

import numpy as np
import pytest

from inferplane.backends.batch import check_batch, check_outputs
from inferplane.backends.runtime import BadBatch
from inferplane.compiler import plan


def spec(name: str, datatype: str, *dims: int) -> plan.TensorSpec:
    return plan.TensorSpec(name=name, datatype=datatype, shape=list(dims))


TEXT = [spec("text", "BYTES", -1)]


@pytest.mark.parametrize(
    ("specs", "inputs", "message"),
    [
        # np.dtype(None) is float64: a datatype without a NumPy dtype must not match it.
        (
            [spec("x", "BF16", -1)],
            {"x": np.zeros(2)},
            "m: input `x`: expected BF16[-1], got FP64[2]",
        ),
        (TEXT, {"text": np.array(["a"])}, "expected BYTES[-1] (a NumPy object array of bytes"),
        (TEXT, {"text": np.array([b"a", None])}, "input `text`: element 1 is NoneType"),
        (
            [spec("x", "FP32", 2, 3)],
            {"x": np.zeros((2, 3), np.float32), "y": np.zeros(1)},
            "m: unknown input `y`; the model takes `x` FP32[2, 3]",
        ),
    ],
)
def test_refusals(specs, inputs, message):
    with pytest.raises(BadBatch) as raised:
        check_batch("m", specs, inputs)
    assert message in str(raised.value)


def test_sizes_and_limits():
    assert check_batch("m", [spec("x", "FP32", 2, 3)], {"x": np.zeros((2, 3), np.float32)}) == 1
    assert check_batch("m", TEXT, {"text": np.array([b"a", "b"], dtype=object)}) == 2
    with pytest.raises(
        BadBatch, match="m: input `text`: batch of 3 is above its max_batch_size of 2"
    ):
        check_batch("m", TEXT, {"text": np.array([b"a"] * 3, dtype=object)}, max_batch_size=2)
    with pytest.raises(
        BadBatch, match=r"m: unknown output `z`; the model gives `text` BYTES\[-1\]"
    ):
        check_outputs("m", TEXT, ["text", "z"])
