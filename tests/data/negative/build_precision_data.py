"""Write the files that `precision.infer` names: a model int8 cannot serve, and its sets.

    outlier.onnx          features fp32[batch, 4] -> score fp32[batch, 2]
    outlier-eval.npz      200 samples of `features`, float32
    outlier-mismatch.npz  `features` as float64 with 5 columns, plus a `labels` array

The model is one MatMul and a Softmax. Its weights have an outlier row (1000
in both columns) beside the small weights that decide the class (0.5 on x1 for
class 0, on x2 for class 1). int8 keeps one scale per column, 1000/63 on 7
bits, and rounds 0.5 to 0: both int8 logits become 1000·x0, the top-1 is a tie
(class 0), while fp32 picks by x1 against x2, so about half the answers change.
That does not depend on the onnxruntime version or the CPU: W0504 every time.

Run `python tests/data/negative/build_precision_data.py` to write them again;
the outputs are committed, and the same every run (fixed seed, fixed zip dates).
"""

from __future__ import annotations

import pathlib
import zipfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = pathlib.Path(__file__).resolve().parent
SEED = 20240607


def outlier_model() -> onnx.ModelProto:
    weight = np.array([[1000.0, 1000.0], [0.5, 0.0], [0.0, 0.5], [0.0, 0.0]], np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["features", "weight"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["score"], axis=-1),
        ],
        "outlier",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 2])],
        initializer=[numpy_helper.from_array(weight, "weight")],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17)],
        ir_version=8,
        producer_name="inferplane tests/data/negative/build_precision_data.py",
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def write_npz(path: pathlib.Path, arrays: dict[str, np.ndarray]) -> None:
    """`np.savez` with the same bytes every run: members dated 1980-01-01, stored."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(member, "w") as f:
                np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)


def main() -> None:
    rng = np.random.default_rng(SEED)
    (HERE / "outlier.onnx").write_bytes(outlier_model().SerializeToString())
    write_npz(
        HERE / "outlier-eval.npz",
        {"features": rng.normal(size=(200, 4)).astype(np.float32)},
    )
    write_npz(
        HERE / "outlier-mismatch.npz",
        {"features": rng.normal(size=(10, 5)), "labels": np.zeros(10, np.int64)},
    )


if __name__ == "__main__":
    main()
