"""Lower an ONNX graph to a pure JAX function: the tpu backend's compiler.

`lower(model_proto, precision)` returns `(fn, input_specs)`. `fn` takes one
array per graph input, in `input_specs` order, and returns a tuple with one
array per graph output, in the graph's order; it is pure jax.numpy/jax.lax, so
`jax.jit` and `jax.export` can trace it with a symbolic batch dimension.

How a graph becomes a function:

1. Static checks, before any tracing, so that a model we cannot serve fails at
   load with every reason at once: ops outside `JAX_OPS` (or outside the
   default domain), graph inputs and outputs that are not float tensors, inputs
   with a symbolic dimension other than the leading batch axis, integer
   constants used anywhere but as a `Reshape` shape, a `Reshape` shape computed
   at run time. All raise `UnsupportedModel`.
2. Initializers become constants of the function (XLA folds them into the
   program). Under `bf16`, float constants are stored as bfloat16.
3. The nodes, sorted topologically, are evaluated by the lowerings of
   `jax_ops_math`, `jax_ops_conv` and `jax_ops_shape`, which follow ONNX
   semantics and attributes (see docs/tpu.md for the table).

Precision: `fp32` computes in the graph's own float dtypes with
`lax.Precision.HIGHEST` on contractions, because a TPU otherwise multiplies
fp32 matrices in a single bfloat16 pass. `bf16` casts inputs and float
constants to bfloat16 inside the function, accumulates contractions in fp32,
and casts float outputs back to their declared dtype, so that the wire dtype
stays what the signature says (FP32 for the example models).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import lax

from inferplane.backends import jax_ops_conv, jax_ops_math, jax_ops_shape
from inferplane.backends.jax_ops_common import Context, Node, UnsupportedModel
from inferplane.compiler.jax_subset import JAX_DOMAIN, JAX_OPS

__all__ = ["LOWERING_VERSION", "PRECISIONS", "InputSpec", "UnsupportedModel", "lower"]

PRECISIONS = ("fp32", "bf16")

# Part of the artifact cache key: bump it whenever a change here or in the
# jax_ops_* modules changes the function a graph lowers to, so that cached
# StableHLO built by the old lowering is not served.
LOWERING_VERSION = 1

LOWERINGS: dict[str, Callable[[Node, list[Any], Context], Any]] = {
    **jax_ops_math.LOWERINGS,
    **jax_ops_conv.LOWERINGS,
    **jax_ops_shape.LOWERINGS,
}
# The compiler's E0405 check promises exactly JAX_OPS; refuse to import if the
# lowering and that promise have drifted apart.
if set(LOWERINGS) != JAX_OPS:  # pragma: no cover - a programming error
    raise ImportError(
        f"JAX lowering covers {sorted(LOWERINGS)}, compiler/jax_subset.py promises "
        f"{sorted(JAX_OPS)}: change both together"
    )

# The wire dtypes the function accepts and returns. Integer tensors would need
# JAX's global x64 mode (int64 otherwise silently becomes int32), and no op of
# the subset has integer semantics worth the risk.
_FLOAT_TYPES = {1: "FLOAT", 10: "FLOAT16", 16: "BFLOAT16"}  # onnx TensorProto codes


@dataclass(frozen=True)
class InputSpec:
    """One graph input: `shape[0] is None` marks the symbolic batch axis."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]


def lower(model_proto: Any, precision: str) -> tuple[Callable[..., tuple], tuple[InputSpec, ...]]:
    """The graph as a pure JAX function and its inputs; raises UnsupportedModel."""
    from onnx import numpy_helper

    if precision not in PRECISIONS:
        raise UnsupportedModel(
            f"precision {precision} is not served on tpu; use one of {', '.join(PRECISIONS)}"
        )
    graph = model_proto.graph
    _check_ops(graph)
    if len(graph.sparse_initializer):
        raise UnsupportedModel("sparse initializers are not supported by the JAX lowering")
    raw_constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    specs = tuple(_input_spec(v) for v in graph.input if v.name not in raw_constants)
    outputs = tuple((v.name, _float_dtype(v, "output")) for v in graph.output)
    nodes = _sorted_nodes(graph, set(raw_constants) | {s.name for s in specs})
    _check_constant_uses(nodes, raw_constants)

    bf16 = precision == "bf16"
    constants = {name: _constant(name, array, bf16) for name, array in raw_constants.items()}
    context = Context(
        opset=_default_opset(model_proto),
        precision=lax.Precision.DEFAULT if bf16 else lax.Precision.HIGHEST,
    )

    def fn(*arrays: Any) -> tuple:
        env: dict[str, Any] = dict(constants)
        for spec, array in zip(specs, arrays, strict=True):
            env[spec.name] = array.astype(jnp.bfloat16) if bf16 else array
        for node in nodes:
            args = [env[name] if name else None for name in node.inputs]
            results = _evaluate(node, args, context)
            for name, value in zip(node.outputs, results, strict=False):
                if name:
                    env[name] = value
        return tuple(jnp.asarray(env[name]).astype(dtype) for name, dtype in outputs)

    return fn, specs


def _evaluate(node: Node, args: list[Any], context: Context) -> tuple:
    try:
        result = LOWERINGS[node.op_type](node, args, context)
    except UnsupportedModel:
        raise
    except Exception as error:
        # jnp/lax shape errors (TypeError, ValueError, JAX's
        # InconclusiveDimensionOperation for a Reshape that cannot hold for every
        # batch size) carry the useful detail; say which node they came from.
        raise node.fail(f"{type(error).__name__}: {error}") from error
    return result if isinstance(result, tuple) else (result,)


def _check_ops(graph: Any) -> None:
    bad = sorted(
        {
            n.op_type if (n.domain or JAX_DOMAIN) == JAX_DOMAIN else f"{n.domain}:{n.op_type}"
            for n in graph.node
            if (n.domain or JAX_DOMAIN) != JAX_DOMAIN or n.op_type not in JAX_OPS
        }
    )
    if bad:
        raise UnsupportedModel(
            f"ops outside the JAX subset: {', '.join(bad)} "
            f"(supported: {', '.join(sorted(JAX_OPS))})"
        )


def _default_opset(model_proto: Any) -> int:
    for entry in model_proto.opset_import:
        if entry.domain in ("", JAX_DOMAIN):
            return int(entry.version)
    raise UnsupportedModel("the model imports no default-domain opset")


def _float_dtype(value: Any, role: str) -> np.dtype:
    from onnx import helper

    kind = value.type.WhichOneof("value")
    elem = value.type.tensor_type.elem_type if kind == "tensor_type" else None
    if elem not in _FLOAT_TYPES:
        from onnx import TensorProto

        name = TensorProto.DataType.Name(elem) if elem is not None else str(kind)
        raise UnsupportedModel(
            f"{role} `{value.name}` is {name}; the JAX path serves "
            f"{', '.join(_FLOAT_TYPES.values())} tensors only"
        )
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem))


def _input_spec(value: Any) -> InputSpec:
    dtype = _float_dtype(value, "input")
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        raise UnsupportedModel(f"input `{value.name}` has no shape in the file")
    shape: list[int | None] = []
    for axis, dim in enumerate(tensor_type.shape.dim):
        if dim.WhichOneof("value") == "dim_value":
            shape.append(int(dim.dim_value))
        elif axis == 0:
            shape.append(None)  # the batch axis, symbolic in the export
        else:
            raise UnsupportedModel(
                f"input `{value.name}` has a symbolic dimension {dim.dim_param or '?'!r} "
                f"at axis {axis}; only the leading batch axis may vary"
            )
    return InputSpec(value.name, dtype, tuple(shape))


def _sorted_nodes(graph: Any, available: set[str]) -> list[Node]:
    """Kahn's algorithm, stable in file order (which ONNX already requires sorted)."""
    pending = [Node.from_proto(n) for n in graph.node]
    ready = set(available)
    ordered: list[Node] = []
    while pending:
        waiting = []
        for node in pending:
            if all(not name or name in ready for name in node.inputs):
                ordered.append(node)
                ready.update(name for name in node.outputs if name)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):
            missing = sorted({i for n in waiting for i in n.inputs if i and i not in ready})
            raise UnsupportedModel(
                f"the graph cannot be ordered: {', '.join(missing)} never computed"
            )
        pending = waiting
    return ordered


def _check_constant_uses(nodes: Sequence[Node], constants: dict[str, np.ndarray]) -> None:
    """Integer constants only as Reshape shapes; Reshape shapes only as constants."""
    for node in nodes:
        for position, name in enumerate(node.inputs):
            is_shape = node.op_type == "Reshape" and position == 1
            if is_shape and name not in constants:
                raise node.fail(
                    f"shape input `{name}` is computed at run time; only constant shapes "
                    "(initializers) are supported"
                )
            array = constants.get(name)
            if array is not None and not is_shape and not _is_float(array.dtype):
                raise node.fail(
                    f"input `{name}` is a constant of type {array.dtype}; the JAX path "
                    "computes in floating point only"
                )


def _is_float(dtype: np.dtype) -> bool:
    # bfloat16 (ml_dtypes) has NumPy kind "V", so ask JAX's type lattice instead.
    return bool(jnp.issubdtype(dtype, jnp.floating))


def _constant(name: str, array: np.ndarray, bf16: bool) -> np.ndarray:
    if _is_float(array.dtype) and array.dtype.itemsize > 4:
        # Without JAX's global x64 mode a float64 constant would silently become
        # float32; no graph whose inputs pass _float_dtype needs one.
        raise UnsupportedModel(f"constant `{name}` is {array.dtype}; the JAX path has no float64")
    if bf16 and _is_float(array.dtype):
        return array.astype(jnp.bfloat16)
    return array
