"""Lowerings of the windowed ops: Conv, MaxPool, AveragePool, GlobalAveragePool.

Layouts are ONNX's: X is (N, C, D1, …, Dn), a Conv weight (M, C/group, k1, …,
kn), which are also `lax.conv_general_dilated`'s defaults. Padding is always
resolved here to explicit (begin, end) pairs, so that ONNX's rules — not
XLA's — decide where SAME puts its odd pixel and how `ceil_mode` sizes the
output. Spatial sizes must be fixed; only the batch axis is symbolic.

Output size of a pool along one axis, with ek = (k - 1)·d + 1 the dilated
kernel: SAME: ceil(in / s). Otherwise floor((in + pb + pe - ek) / s) + 1, or
with `ceil_mode` the ceiling of the division, less one when that last window
would start in the end padding (ONNX's rule, which onnxruntime follows). The
extra cells that `ceil_mode` reads past the end padding are padding that
neither max nor average sees: -inf for MaxPool, and outside the divisor for
AveragePool even with `count_include_pad`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import lax

from inferplane.backends.jax_ops_common import Context, Node, static_dims

Pads = list[tuple[int, int]]


def explicit_pads(
    node: Node,
    sizes: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
) -> Pads:
    """(begin, end) per spatial axis from `pads` or `auto_pad`."""
    rank = len(sizes)
    auto_pad = node.attr_str("auto_pad", "NOTSET")
    if auto_pad == "NOTSET":
        pads = node.attr_ints("pads", [0] * 2 * rank, count=2 * rank)
        if any(p < 0 for p in pads):
            raise node.fail(f"negative pads {pads}")
        return list(zip(pads[:rank], pads[rank:], strict=True))
    if auto_pad == "VALID":
        return [(0, 0)] * rank
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        raise node.fail(f"auto_pad {auto_pad!r}")
    pads = []
    for size, k, s, d in zip(sizes, kernel, strides, dilations, strict=True):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small, large = total // 2, total - total // 2
        # SAME_UPPER puts the odd cell at the end, SAME_LOWER at the beginning.
        pads.append((small, large) if auto_pad == "SAME_UPPER" else (large, small))
    return pads


def conv(node: Node, args: list[Any], context: Context) -> Any:
    x, w = jnp.asarray(args[0]), jnp.asarray(args[1])
    bias = args[2] if len(args) > 2 else None
    rank = w.ndim - 2
    if rank < 1 or x.ndim != w.ndim:
        raise node.fail(f"input {x.shape} and weight {w.shape} do not make a convolution")
    kernel = static_dims(node, w.shape[2:], "the weight")
    if node.attr_ints("kernel_shape", kernel) != kernel:
        raise node.fail(f"kernel_shape {node.attrs['kernel_shape']} differs from weight {kernel}")
    strides = node.attr_ints("strides", [1] * rank, count=rank)
    dilations = node.attr_ints("dilations", [1] * rank, count=rank)
    sizes = static_dims(node, x.shape[2:], "spatial dimensions")
    pads = explicit_pads(node, sizes, kernel, strides, dilations)
    dtype = jnp.result_type(x, w)
    y = lax.conv_general_dilated(
        x,
        w,
        window_strides=strides,
        padding=pads,
        rhs_dilation=dilations,
        feature_group_count=node.attr_int("group", 1),
        precision=context.precision,
        preferred_element_type=jnp.float32,
    )
    if bias is not None:
        y = y + jnp.reshape(jnp.asarray(bias).astype(jnp.float32), (1, -1) + (1,) * rank)
    return y.astype(dtype)


def _pool_window(node: Node, x: Any, *, dilations_allowed: bool) -> tuple:
    """Kernel, strides, dilations and the padding (incl. ceil_mode's extra) of a pool."""
    node.only_first_output()
    sizes = static_dims(node, x.shape[2:], "spatial dimensions")
    rank = len(sizes)
    kernel = node.attr_ints("kernel_shape", None, count=rank)
    strides = node.attr_ints("strides", [1] * rank, count=rank)
    dilations = node.attr_ints("dilations", [1] * rank, count=rank)
    if not dilations_allowed and dilations != [1] * rank:
        raise node.fail("dilations need opset 19 for AveragePool")
    pads = explicit_pads(node, sizes, kernel, strides, dilations)
    same = node.attr_str("auto_pad", "NOTSET").startswith("SAME")
    ceil_mode = node.attr_int("ceil_mode", 0)
    padding = []
    for size, k, s, d, (begin, end) in zip(sizes, kernel, strides, dilations, pads, strict=True):
        span = size + begin + end - ((k - 1) * d + 1)
        if span < 0:
            raise node.fail(f"kernel {kernel} does not fit the input {sizes} with pads {pads}")
        if same:
            out = -(-size // s)
        elif ceil_mode:
            out = -(-span // s) + 1
            if (out - 1) * s >= size + begin:
                out -= 1  # the last window would start in the end padding
        else:
            out = span // s + 1
        extra = max(0, (out - 1) * s + (k - 1) * d + 1 - (size + begin + end))
        padding.append((begin, end, extra))
    return kernel, strides, dilations, padding


def max_pool(node: Node, args: list[Any], context: Context) -> Any:
    x = jnp.asarray(args[0])
    kernel, strides, dilations, padding = _pool_window(node, x, dilations_allowed=True)
    return lax.reduce_window(
        x,
        jnp.array(-jnp.inf, x.dtype),
        lax.max,
        window_dimensions=(1, 1, *kernel),
        window_strides=(1, 1, *strides),
        padding=((0, 0), (0, 0), *((b, e + extra) for b, e, extra in padding)),
        window_dilation=(1, 1, *dilations),
    )


def average_pool(node: Node, args: list[Any], context: Context) -> Any:
    x = jnp.asarray(args[0])
    allowed = context.opset >= 19
    kernel, strides, dilations, padding = _pool_window(node, x, dilations_allowed=allowed)
    window = {
        "window_dimensions": (1, 1, *kernel),
        "window_strides": (1, 1, *strides),
        "window_dilation": (1, 1, *dilations),
    }
    total = lax.reduce_window(
        x.astype(jnp.float32),
        np.float32(0),
        lax.add,
        padding=((0, 0), (0, 0), *((b, e + extra) for b, e, extra in padding)),
        **window,
    )
    # The divisor per output cell: how many cells of its window count. A mask
    # over the padded extent (1 = counted) summed with the same window; it is a
    # constant, since spatial sizes are fixed.
    include_pad = node.attr_int("count_include_pad", 0)
    mask = np.ones([1, 1], np.float32)
    for size, (begin, end, extra) in zip(x.shape[2:], padding, strict=True):
        counted = np.zeros(begin + size + end + extra, np.float32)
        if include_pad:
            counted[: begin + size + end] = 1
        else:
            counted[begin : begin + size] = 1
        mask = np.multiply.outer(mask, counted)
    divisor = lax.reduce_window(
        jnp.asarray(mask), np.float32(0), lax.add, padding="VALID", **window
    )
    return (total / divisor).astype(x.dtype)


def global_average_pool(node: Node, args: list[Any], context: Context) -> Any:
    x = jnp.asarray(args[0])
    spatial = tuple(range(2, x.ndim))
    return jnp.mean(x.astype(jnp.float32), axis=spatial, keepdims=True).astype(x.dtype)


LOWERINGS = {
    "Conv": conv,
    "MaxPool": max_pool,
    "AveragePool": average_pool,
    "GlobalAveragePool": global_average_pool,
}
