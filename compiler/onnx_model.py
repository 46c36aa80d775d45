"""What the compiler needs from an ONNX file: its signature, its ops and its FLOPs.

`read_onnx(path)` returns an `OnnxModel` summary or raises `OnnxError` with a
message a user can act on. The ONNX graph itself is not kept: the summary holds
the file's sha256, the default-domain opset, the graph inputs and outputs (in
the language's dtype names), the set of `(domain, op_type)` pairs used anywhere
in the model, and an estimate of the FLOPs that one item (batch size 1) costs.

`onnx` is imported inside the functions, never at module import, so that the
compiler imports without ML libraries. Summaries are cached on
`(resolved path, mtime_ns, size)`: a spec naming one file many times reads it
once, and an edited file is read again.

FLOPs per item
--------------
The batch dimension, the first dimension of each graph input when it is not a
fixed number, is set to 1 (everywhere that dimension's symbol appears), ONNX
shape inference runs, and the nodes of the main graph are counted:

- `MatMul` (and `MatMulInteger`, `QLinearMatMul`): 2·M·K·N, with any leading
  batch dimensions in M (2 · output elements · K).
- `Gemm`: 2·M·K·N. Its bias addition is not counted.
- `Conv` (and `ConvInteger`, `QLinearConv`): 2 · output elements ·
  (C_in/group) · kH · kW (· kD …), read from the weight's shape. Bias not counted.
- `ConvTranspose`: 2 · input elements · (C_out/group) · kH · kW (…): every
  input element is scattered through one kernel per output channel of its group.
- `MaxPool`, `AveragePool`, `LpPool`: output elements · kernel size;
  `GlobalAveragePool`, `GlobalMaxPool`, `GlobalLpPool`: input elements.
- Elementwise arithmetic, activations, `Softmax` and its kin, and the
  normalisations (`_ELEMENTWISE` below): output elements.
- Every other op (reshapes, gathers, casts, reductions, control flow) counts 0.
  Nodes inside subgraphs (`If`, `Loop`, `Scan` bodies) are not counted: how
  often they run is not known before run time.

A node whose shapes the inference cannot make fully concrete (a symbolic
dimension other than the batch, an op from a domain that shape inference does
not know) is skipped, and the rest are still counted, so the figure is a lower
bound for such models. When shape inference fails altogether, only the shapes
written in the file are used.
"""

from __future__ import annotations

import functools
import hashlib
import math
import pathlib
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_DOMAIN = "ai.onnx"

# ONNX TensorProto element type names → the language's dtype names. Element
# types missing here (UINT16, UINT32, UINT64, complex, float8, int4…) have no
# name in the language; their tensors get dtype None.
ONNX_TO_DTYPE: Mapping[str, str] = {
    "BOOL": "bool",
    "INT8": "int8",
    "UINT8": "uint8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FLOAT16": "fp16",
    "BFLOAT16": "bf16",
    "FLOAT": "fp32",
    "DOUBLE": "fp64",
    "STRING": "bytes",
}

Dim = int | str | None


class OnnxError(Exception):
    """The file is missing, unreadable, or not a valid ONNX model."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class OnnxTensor:
    """A graph input or output.

    `dims`: an int for a fixed dimension, a str for a symbolic one (`"batch"`,
    `"N"`), None for an unknown one; `dims` itself is None when the file gives
    no shape at all.
    """

    name: str
    dtype: str | None  # the language's name, None when it has none
    onnx_type: str  # "FLOAT", "STRING", or e.g. "sequence(FLOAT)" for non-tensors
    dims: tuple[Dim, ...] | None

    @property
    def rank(self) -> int | None:
        return None if self.dims is None else len(self.dims)


@dataclass(frozen=True)
class OnnxModel:
    path: pathlib.Path  # resolved
    sha256: str
    opset: int | None  # of the default domain; None when the model imports none
    inputs: tuple[OnnxTensor, ...]
    outputs: tuple[OnnxTensor, ...]
    op_types: frozenset[tuple[str, str]]  # (domain, op_type), "ai.onnx" for the default
    flops_per_item: float
    node_count: int = 0  # nodes of the main graph: each costs a dispatch per batch


class _BadFile(Exception):
    """Raised inside the cache with the message's tail; `read_onnx` adds the path."""


def read_onnx(path: pathlib.Path) -> OnnxModel:
    """Read and check an ONNX file; raise OnnxError naming `path` as given."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise OnnxError(f"{path} does not exist") from None
    except OSError as error:
        raise OnnxError(f"{path} cannot be read: {error.strerror or error}") from None
    if stat.S_ISDIR(info.st_mode):
        raise OnnxError(f"{path} is a directory, not an ONNX file")
    try:
        return _read_cached(path.resolve(), info.st_mtime_ns, info.st_size)
    except _BadFile as error:
        raise OnnxError(f"{path} {error}") from None


@functools.lru_cache(maxsize=128)
def _read_cached(path: pathlib.Path, mtime_ns: int, size: int) -> OnnxModel:
    # mtime_ns and size are only part of the cache key.
    try:
        data = path.read_bytes()
    except OSError as error:
        raise _BadFile(f"cannot be read: {error.strerror or error}") from None
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx is a dependency
        raise _BadFile("cannot be read: the onnx package is not installed") from None
    try:
        model = onnx.load_model_from_string(data)
        onnx.checker.check_model(model)
    except Exception as error:  # DecodeError, ValidationError, ValueError…
        raise _BadFile(f"is not a valid ONNX model: {_first_line(error)}") from None

    graph = model.graph
    initializers = {t.name for t in graph.initializer} | {
        t.values.name for t in graph.sparse_initializer
    }
    inputs = tuple(_tensor(v) for v in graph.input if v.name not in initializers)
    outputs = tuple(_tensor(v) for v in graph.output)
    op_types = frozenset((n.domain or DEFAULT_DOMAIN, n.op_type) for n in _walk(graph))
    opset = next((o.version for o in model.opset_import if o.domain in ("", DEFAULT_DOMAIN)), None)
    # Last: counting rewrites the model's batch dimensions in place.
    flops = _count_flops(model, initializers)
    return OnnxModel(
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        opset=opset,
        inputs=inputs,
        outputs=outputs,
        op_types=op_types,
        flops_per_item=flops,
        node_count=len(graph.node),
    )


def _first_line(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0].strip()


def _tensor(value: Any) -> OnnxTensor:
    """An OnnxTensor from a ValueInfoProto."""
    onnx_type = _type_name(value.type)
    dims: tuple[Dim, ...] | None = None
    if value.type.WhichOneof("value") == "tensor_type":
        tensor_type = value.type.tensor_type
        if tensor_type.HasField("shape"):
            dims = tuple(_dim(d) for d in tensor_type.shape.dim)
    return OnnxTensor(
        name=value.name,
        dtype=ONNX_TO_DTYPE.get(onnx_type),
        onnx_type=onnx_type,
        dims=dims,
    )


def _dim(dim: Any) -> Dim:
    kind = dim.WhichOneof("value")
    if kind == "dim_value":
        return int(dim.dim_value)
    if kind == "dim_param" and dim.dim_param:
        return str(dim.dim_param)
    return None


def _type_name(type_proto: Any) -> str:
    from onnx import TensorProto

    kind = type_proto.WhichOneof("value")
    if kind in ("tensor_type", "sparse_tensor_type"):
        name = TensorProto.DataType.Name(getattr(type_proto, kind).elem_type)
        return name if kind == "tensor_type" else f"sparse_tensor({name})"
    if kind == "sequence_type":
        return f"sequence({_type_name(type_proto.sequence_type.elem_type)})"
    if kind == "optional_type":
        return f"optional({_type_name(type_proto.optional_type.elem_type)})"
    if kind == "map_type":
        key = TensorProto.DataType.Name(type_proto.map_type.key_type)
        return f"map({key}, {_type_name(type_proto.map_type.value_type)})"
    return "UNDEFINED"


def _walk(graph: Any) -> Iterator[Any]:
    """Every node of `graph` and of the subgraphs in its nodes' attributes."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _walk(attribute.g)
            for subgraph in attribute.graphs:
                yield from _walk(subgraph)


# --- FLOPs ------------------------------------------------------------------

_MATMUL = frozenset({"MatMul", "MatMulInteger", "QLinearMatMul"})
_CONV = frozenset({"Conv", "ConvInteger", "QLinearConv"})
_POOL = frozenset({"MaxPool", "AveragePool", "LpPool"})
_GLOBAL_POOL = frozenset({"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"})
_ELEMENTWISE = frozenset(
    {
        # arithmetic
        "Add", "Sub", "Mul", "Div", "Pow", "Mod", "Neg", "Abs", "Reciprocal",
        "Sqrt", "Exp", "Log", "Erf", "Sum", "Mean", "Max", "Min", "Clip",
        # activations
        "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu", "Sigmoid",
        "HardSigmoid", "HardSwish", "Tanh", "Softplus", "Softsign", "Mish",
        "ThresholdedRelu", "Sin", "Cos",
        # softmax and its kin
        "Softmax", "LogSoftmax", "Hardmax",
        # normalisations
        "BatchNormalization", "LayerNormalization", "InstanceNormalization",
        "GroupNormalization", "LpNormalization",
    }
)  # fmt: skip

Shape = tuple[int, ...]


def _count_flops(model: Any, initializers: set[str]) -> float:
    """FLOPs of one item through the main graph; see the module docstring."""
    import onnx

    graph = model.graph
    batch_symbols: set[str] = set()
    for value in graph.input:
        if value.name in initializers or value.type.WhichOneof("value") != "tensor_type":
            continue
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].WhichOneof("value") != "dim_value":
            if dims[0].dim_param:
                batch_symbols.add(dims[0].dim_param)
            dims[0].dim_value = 1  # clears dim_param: they are one oneof
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.type.WhichOneof("value") == "tensor_type":
            for dim in value.type.tensor_type.shape.dim:
                if dim.WhichOneof("value") == "dim_param" and dim.dim_param in batch_symbols:
                    dim.dim_value = 1

    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # an op inference rejects, a model over 2 GB: keep the file's shapes
        inferred = model

    shapes: dict[str, Shape] = {t.name: tuple(t.dims) for t in inferred.graph.initializer}
    for value in (*inferred.graph.input, *inferred.graph.output, *inferred.graph.value_info):
        shape = _concrete(value)
        if shape is not None:
            shapes[value.name] = shape

    total = 0
    for node in inferred.graph.node:
        if node.domain not in ("", DEFAULT_DOMAIN):
            continue
        flops = _node_flops(node, shapes)
        if flops is not None:
            total += flops
    return float(total)


def _concrete(value: Any) -> Shape | None:
    """The value's shape when every dimension is a number, else None."""
    if value.type.WhichOneof("value") != "tensor_type":
        return None
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    dims = tensor_type.shape.dim
    if any(d.WhichOneof("value") != "dim_value" for d in dims):
        return None
    return tuple(int(d.dim_value) for d in dims)


def _node_flops(node: Any, shapes: Mapping[str, Shape]) -> int | None:
    """The node's FLOPs, or None when a shape it needs is not concrete."""

    def shape(index: int, outputs: bool = False) -> Shape | None:
        names = node.output if outputs else node.input
        return shapes.get(names[index]) if index < len(names) and names[index] else None

    op = node.op_type
    out = shape(0, outputs=True)
    if op in _MATMUL:
        a = shape(0)
        if out is None or not a:
            return None
        return 2 * math.prod(out) * a[-1]
    if op == "Gemm":
        a = shape(0)
        if out is None or a is None or len(a) != 2:
            return None
        k = a[0] if _attribute(node, "transA", 0) else a[1]
        return 2 * math.prod(out) * k
    if op in _CONV:
        weight = shape(3 if op == "QLinearConv" else 1)
        if out is None or not weight:
            return None
        return 2 * math.prod(out) * math.prod(weight[1:])
    if op == "ConvTranspose":
        x, weight = shape(0), shape(1)
        if x is None or not weight:
            return None
        return 2 * math.prod(x) * math.prod(weight[1:])
    if op in _POOL:
        kernel = _attribute(node, "kernel_shape", None)
        if out is None or not kernel:
            return None
        return math.prod(out) * math.prod(kernel)
    if op in _GLOBAL_POOL:
        x = shape(0)
        return None if x is None else math.prod(x)
    if op in _ELEMENTWISE:
        return None if out is None else math.prod(out)
    return 0


def _attribute(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default
