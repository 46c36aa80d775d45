"""Reading ONNX files: signatures, errors, FLOPs, the cache, and the JAX subset.

Every model is built here with `onnx.helper` in `tmp_path`; the FLOP counts
expected are worked out by hand next to each model.
"""

from __future__ import annotations

import ast
import hashlib
import os
import pathlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from inferplane.compiler import estimate, jax_subset, onnx_model
from inferplane.compiler.jax_subset import JAX_OPS, unsupported_ops
from inferplane.compiler.onnx_model import OnnxError, OnnxTensor, read_onnx

OPSET = 17


def save(tmp_path: pathlib.Path, graph, name: str = "model.onnx", opsets=None) -> pathlib.Path:
    model = helper.make_model(
        graph, opset_imports=opsets or [helper.make_opsetid("", OPSET)], ir_version=8
    )
    onnx.checker.check_model(model)  # the test's own model must be valid
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def value(name: str, elem_type: int, dims) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, dims)


def weight(name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ones(shape, dtype=np.float32), name)


def mlp(tmp_path: pathlib.Path, name: str = "mlp.onnx", input_name: str = "features"):
    """30 → 64 → 2: MatMul, Add, Relu, MatMul, Add, Softmax."""
    nodes = [
        helper.make_node("MatMul", [input_name, "w1"], ["h1"]),
        helper.make_node("Add", ["h1", "b1"], ["h2"]),
        helper.make_node("Relu", ["h2"], ["h3"]),
        helper.make_node("MatMul", ["h3", "w2"], ["h4"]),
        helper.make_node("Add", ["h4", "b2"], ["h5"]),
        helper.make_node("Softmax", ["h5"], ["score"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [value(input_name, TensorProto.FLOAT, ["batch", 30])],
        [value("score", TensorProto.FLOAT, ["batch", 2])],
        initializer=[weight("w1", 30, 64), weight("b1", 64), weight("w2", 64, 2), weight("b2", 2)],
    )
    return save(tmp_path, graph, name)


# --- signatures -------------------------------------------------------------


def test_signature_names_dtypes_and_dims(tmp_path):
    inputs = [
        value("features", TensorProto.FLOAT, ["batch", 30]),
        value("text", TensorProto.STRING, ["batch"]),
        value("mask", TensorProto.BOOL, [None, 4]),  # unknown first dim
        value("odd", TensorProto.UINT16, [2, 3]),  # no name in the language
        value("w", TensorProto.FLOAT, [30, 2]),  # an initializer listed as an input
    ]
    nodes = [
        helper.make_node("MatMul", ["features", "w"], ["mm"]),
        helper.make_node("Cast", ["mm"], ["score"], to=TensorProto.FLOAT16),
        helper.make_node("Identity", ["text"], ["echo"]),
    ]
    outputs = [
        value("score", TensorProto.FLOAT16, ["batch", 2]),
        value("echo", TensorProto.STRING, ["batch"]),
    ]
    path = save(
        tmp_path, helper.make_graph(nodes, "sig", inputs, outputs, initializer=[weight("w", 30, 2)])
    )

    model = read_onnx(path)

    assert model.inputs == (
        OnnxTensor("features", "fp32", "FLOAT", ("batch", 30)),
        OnnxTensor("text", "bytes", "STRING", ("batch",)),
        OnnxTensor("mask", "bool", "BOOL", (None, 4)),
        OnnxTensor("odd", None, "UINT16", (2, 3)),
    )
    assert model.outputs == (
        OnnxTensor("score", "fp16", "FLOAT16", ("batch", 2)),
        OnnxTensor("echo", "bytes", "STRING", ("batch",)),
    )
    assert model.inputs[0].rank == 2
    assert model.opset == OPSET
    assert model.path == path.resolve()
    assert model.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert model.op_types == {("ai.onnx", "MatMul"), ("ai.onnx", "Cast"), ("ai.onnx", "Identity")}


def test_a_non_tensor_input_has_no_dims_and_no_dtype(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("SequenceLength", ["s"], ["n"])],
        "seq",
        [helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, [2])],
        [value("n", TensorProto.INT64, [])],
    )
    model = read_onnx(save(tmp_path, graph))
    assert model.inputs == (OnnxTensor("s", None, "sequence(FLOAT)", None),)
    assert model.inputs[0].rank is None
    assert model.outputs == (OnnxTensor("n", "int64", "INT64", ()),)


def test_every_language_dtype_has_an_onnx_type():
    from inferplane.compiler.schema import DTYPES

    assert set(onnx_model.ONNX_TO_DTYPE.values()) == set(DTYPES)


# --- errors -----------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(OnnxError) as caught:
        read_onnx(tmp_path / "models" / "fraud.onnx")
    assert caught.value.message == f"{tmp_path / 'models' / 'fraud.onnx'} does not exist"


def test_a_directory_is_not_a_model(tmp_path):
    with pytest.raises(OnnxError, match="is a directory"):
        read_onnx(tmp_path)


@pytest.mark.parametrize("content", [b"not an onnx model\x00\xff", b""])
def test_garbage_is_not_a_valid_model(tmp_path, content):
    path = tmp_path / "fraud.onnx"
    path.write_bytes(content)
    with pytest.raises(OnnxError) as caught:
        read_onnx(path)
    assert caught.value.message.startswith(f"{path} is not a valid ONNX model: ")
    assert "\n" not in caught.value.message


def test_a_model_the_checker_rejects(tmp_path):
    # Parses fine, but the node reads a value that nothing defines.
    graph = helper.make_graph(
        [helper.make_node("Relu", ["nowhere"], ["y"])],
        "broken",
        [value("x", TensorProto.FLOAT, ["batch", 4])],
        [value("y", TensorProto.FLOAT, ["batch", 4])],
    )
    path = tmp_path / "broken.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), str(path))
    with pytest.raises(OnnxError, match=r"broken\.onnx is not a valid ONNX model: .*nowhere"):
        read_onnx(path)


# --- FLOPs ------------------------------------------------------------------


def test_flops_of_an_mlp(tmp_path):
    expected = (
        2 * 30 * 64  # MatMul 1×30 · 30×64
        + 64  # Add bias
        + 64  # Relu
        + 2 * 64 * 2  # MatMul 1×64 · 64×2
        + 2  # Add bias
        + 2  # Softmax
    )
    assert expected == 4228
    assert read_onnx(mlp(tmp_path)).flops_per_item == expected


def test_an_unknown_first_dim_is_the_batch(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "unnamed_batch",
        [value("x", TensorProto.FLOAT, [None, 8])],
        [value("y", TensorProto.FLOAT, [None, 8])],
    )
    assert read_onnx(save(tmp_path, graph)).flops_per_item == 8


def test_flops_of_gemm_with_a_transposed_weight(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)],
        "gemm",
        [value("x", TensorProto.FLOAT, ["N", 30])],
        [value("y", TensorProto.FLOAT, ["N", 64])],
        initializer=[weight("w", 64, 30), weight("b", 64)],
    )
    assert read_onnx(save(tmp_path, graph)).flops_per_item == 2 * 30 * 64


def test_flops_of_a_conv_net(tmp_path):
    nodes = [
        # 3→8 channels, 3×3, padded: out 8×32×32
        helper.make_node("Conv", ["image", "k1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        # 2×2, stride 2: out 8×16×16
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        # grouped, 4 groups of 2 input channels, unpadded: out 8×14×14
        helper.make_node("Conv", ["p1", "k2"], ["c2"], kernel_shape=[3, 3], group=4),
        helper.make_node("GlobalAveragePool", ["c2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn",
        [value("image", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [value("logits", TensorProto.FLOAT, ["batch", 8])],
        initializer=[weight("k1", 8, 3, 3, 3), weight("k2", 8, 2, 3, 3)],
    )
    expected = (
        2 * (8 * 32 * 32) * (3 * 3 * 3)  # Conv 1: 2 · out · C_in · kH · kW
        + 8 * 32 * 32  # Relu
        + (8 * 16 * 16) * (2 * 2)  # MaxPool: out · kernel
        + 2 * (8 * 14 * 14) * (8 // 4 * 3 * 3)  # Conv 2: C_in / group
        + 8 * 14 * 14  # GlobalAveragePool: its input
        + 0  # Flatten
    )
    assert read_onnx(save(tmp_path, graph)).flops_per_item == expected


def test_flops_of_a_transposed_conv(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("ConvTranspose", ["x", "k"], ["y"], kernel_shape=[3, 3])],
        "up",
        [value("x", TensorProto.FLOAT, ["batch", 4, 8, 8])],
        [value("y", TensorProto.FLOAT, ["batch", 2, 10, 10])],
        initializer=[weight("k", 4, 2, 3, 3)],
    )
    # every input element meets C_out/group · kH · kW weights
    expected = 2 * (4 * 8 * 8) * (2 * 3 * 3)
    assert read_onnx(save(tmp_path, graph)).flops_per_item == expected


def test_nodes_with_unknown_shapes_are_skipped(tmp_path):
    nodes = [
        # a symbolic dimension other than the batch: skipped
        helper.make_node("MatMul", ["tokens", "w"], ["per_token"]),
        # an op shape inference does not know, and everything after it: skipped
        helper.make_node("Mystery", ["x"], ["m"], domain="acme.ops"),
        helper.make_node("Relu", ["m"], ["mr"]),
        helper.make_node("MatMul", ["mr", "w"], ["mystery_out"]),
        # known: counted
        helper.make_node("Relu", ["x"], ["plain"]),
    ]
    graph = helper.make_graph(
        nodes,
        "partial",
        [
            value("tokens", TensorProto.FLOAT, ["batch", "seq", 8]),
            value("x", TensorProto.FLOAT, ["batch", 8]),
        ],
        [
            value("per_token", TensorProto.FLOAT, ["batch", "seq", 4]),
            value("mystery_out", TensorProto.FLOAT, ["n", 4]),
            value("plain", TensorProto.FLOAT, ["batch", 8]),
        ],
        initializer=[weight("w", 8, 4)],
    )
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("acme.ops", 1)]
    model = read_onnx(save(tmp_path, graph, opsets=opsets))
    assert model.flops_per_item == 8  # the plain Relu only
    assert ("acme.ops", "Mystery") in model.op_types


def test_subgraph_ops_are_listed_but_not_counted(tmp_path):
    def branch(op: str, out: str):
        node = helper.make_node(op, ["x"], [out])
        return helper.make_graph([node], op, [], [value(out, TensorProto.FLOAT, None)])

    graph = helper.make_graph(
        [
            helper.make_node(
                "If",
                ["cond"],
                ["y"],
                then_branch=branch("Relu", "t"),
                else_branch=branch("Neg", "e"),
            )
        ],
        "if",
        [value("x", TensorProto.FLOAT, ["batch", 4]), value("cond", TensorProto.BOOL, [])],
        [value("y", TensorProto.FLOAT, ["batch", 4])],
    )
    model = read_onnx(save(tmp_path, graph))
    assert model.op_types == {("ai.onnx", "If"), ("ai.onnx", "Relu"), ("ai.onnx", "Neg")}
    assert model.flops_per_item == 0
    assert unsupported_ops(model) == ["If", "Neg"]


# --- the cache --------------------------------------------------------------


def test_one_file_is_read_once(tmp_path):
    path = mlp(tmp_path)
    first = read_onnx(path)
    assert read_onnx(path) is first
    # another spelling of the same file
    (tmp_path / "sub").mkdir()
    assert read_onnx(tmp_path / "sub" / ".." / path.name) is first


def test_a_changed_file_is_read_again(tmp_path):
    path = mlp(tmp_path, input_name="features")
    before = read_onnx(path)
    stamp = path.stat().st_mtime_ns

    mlp(tmp_path, input_name="features_v2")  # same name, new content
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))  # coarse clocks: make the change visible

    after = read_onnx(path)
    assert after is not before
    assert after.inputs[0].name == "features_v2"
    assert after.sha256 != before.sha256


def test_errors_are_not_cached(tmp_path):
    path = tmp_path / "late.onnx"
    with pytest.raises(OnnxError, match="does not exist"):
        read_onnx(path)
    path.write_bytes(mlp(tmp_path).read_bytes())
    assert read_onnx(path).flops_per_item == 4228


# --- the JAX subset ---------------------------------------------------------


def test_an_mlp_runs_on_a_tpu(tmp_path):
    assert unsupported_ops(read_onnx(mlp(tmp_path))) == []


def test_unsupported_ops_are_sorted_with_foreign_domains(tmp_path):
    nodes = [
        helper.make_node("Mystery", ["x"], ["m"], domain="acme.ops"),
        helper.make_node("LayerNormalization", ["x", "scale"], ["ln"], axis=-1),
        helper.make_node("Erf", ["x"], ["e"]),
        helper.make_node("Relu", ["x"], ["r"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mixed",
        [value("x", TensorProto.FLOAT, ["batch", 8])],
        [value(n, TensorProto.FLOAT, ["batch", 8]) for n in ("m", "ln", "e", "r")],
        initializer=[weight("scale", 8)],
    )
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("acme.ops", 1)]
    model = read_onnx(save(tmp_path, graph, opsets=opsets))
    assert unsupported_ops(model) == ["Erf", "LayerNormalization", "acme.ops:Mystery"]


def test_a_default_op_in_a_foreign_domain_is_unsupported():
    model = onnx_model.OnnxModel(
        path=pathlib.Path("m.onnx"),
        sha256="",
        opset=OPSET,
        inputs=(),
        outputs=(),
        op_types=frozenset({("ai.onnx", "MatMul"), ("com.microsoft", "MatMul")}),
        flops_per_item=0.0,
    )
    assert unsupported_ops(model) == ["com.microsoft:MatMul"]
    assert "MatMul" in JAX_OPS


# --- the compiler imports without ML libraries ------------------------------


@pytest.mark.parametrize("module", [onnx_model, jax_subset, estimate])
def test_no_ml_library_is_imported_at_module_level(module):
    tree = ast.parse(pathlib.Path(module.__file__).read_text())
    top_level = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top_level |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            top_level.add(node.module.split(".")[0])
    assert not top_level & {"onnx", "onnxruntime", "numpy", "jax"}
