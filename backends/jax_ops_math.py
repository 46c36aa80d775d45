"""Lowerings of the arithmetic ops: MatMul, Gemm, the four binary ops, activations.

Contractions (MatMul, Gemm) always accumulate in float32 and round to the
operands' dtype, so that bf16 models keep an fp32 accumulator on every
platform (the TPU's MXU does this natively; XLA:CPU would not be obliged to).
Softmax is computed in float32 for the same reason: exp and the sum are where
bfloat16's 8-bit mantissa hurts most.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from inferplane.backends.jax_ops_common import Context, Node


def _contract(a: Any, b: Any, context: Context) -> tuple[Any, Any]:
    """`a @ b` accumulated in float32, and the dtype to round the result to."""
    dtype = jnp.result_type(a, b)
    product = jnp.matmul(a, b, precision=context.precision, preferred_element_type=jnp.float32)
    return product, dtype


def matmul(node: Node, args: list[Any], context: Context) -> Any:
    # jnp.matmul has NumPy's semantics, which are ONNX's: 1-D operands are
    # promoted and squeezed, leading dimensions broadcast as a batch.
    product, dtype = _contract(args[0], args[1], context)
    return product.astype(dtype)


def gemm(node: Node, args: list[Any], context: Context) -> Any:
    """Y = alpha · A' · B' + beta · C, with C broadcast to Y (unidirectionally)."""
    a, b = jnp.asarray(args[0]), jnp.asarray(args[1])
    c = args[2] if len(args) > 2 else None
    if a.ndim != 2 or b.ndim != 2:
        raise node.fail(f"A and B must be 2-D, got shapes {a.shape} and {b.shape}")
    if node.attr_int("transA", 0):
        a = a.T
    if node.attr_int("transB", 0):
        b = b.T
    alpha, beta = node.attr_float("alpha", 1.0), node.attr_float("beta", 1.0)
    product, dtype = _contract(a, b, context)
    if alpha != 1.0:
        product = product * alpha
    if c is not None and beta != 0.0:
        product = product + beta * jnp.asarray(c).astype(jnp.float32)
    return product.astype(dtype)


def _binary(function: Any) -> Any:
    def lowering(node: Node, args: list[Any], context: Context) -> Any:
        if "broadcast" in node.attrs or "axis" in node.attrs:
            # Opset < 7 spelled broadcasting with attributes; since 7 it is NumPy's.
            raise node.fail("the legacy `broadcast`/`axis` attributes (opset < 7)")
        return function(args[0], args[1])

    return lowering


def relu(node: Node, args: list[Any], context: Context) -> Any:
    return jnp.maximum(args[0], 0)


def sigmoid(node: Node, args: list[Any], context: Context) -> Any:
    return jax.nn.sigmoid(args[0])


def tanh(node: Node, args: list[Any], context: Context) -> Any:
    return jnp.tanh(args[0])


def softmax(node: Node, args: list[Any], context: Context) -> Any:
    """Opset ≥ 13: along `axis` (default -1). Before 13: the input is flattened
    to 2-D at `axis` (default 1) and normalised along the second dimension."""
    x = jnp.asarray(args[0])
    wide = x.astype(jnp.float32)
    if context.opset >= 13:
        axis = _axis(node, node.attr_int("axis", -1), x.ndim)
        return jax.nn.softmax(wide, axis=axis).astype(x.dtype)
    axis = _axis(node, node.attr_int("axis", 1), x.ndim)
    rows = math.prod(x.shape[:axis])
    columns = math.prod(x.shape[axis:])
    flat = jnp.reshape(wide, (rows, columns))
    return jnp.reshape(jax.nn.softmax(flat, axis=1), x.shape).astype(x.dtype)


def _axis(node: Node, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise node.fail(f"axis {axis} is out of range for rank {rank}")
    return axis % rank


LOWERINGS = {
    "MatMul": matmul,
    "Gemm": gemm,
    "Add": _binary(jnp.add),
    "Sub": _binary(jnp.subtract),
    "Mul": _binary(jnp.multiply),
    "Div": _binary(jnp.divide),
    "Relu": relu,
    "Sigmoid": sigmoid,
    "Tanh": tanh,
    "Softmax": softmax,
}
