"""Lowerings of the shape ops: Reshape, Flatten, Concat, Identity.

The batch axis is symbolic while exporting, so shapes are written relative to
the input's own (possibly symbolic) dimensions rather than as numbers: a
Reshape's 0 copies the input's dimension, symbolic batch included, and its -1
is left to `jnp.reshape`, which solves it symbolically (b·64 / 64 = b). A
reshape that cannot hold for every batch size, such as (b, 8, 8) to (-1, 3),
fails at export with JAX's explanation and the node's name.
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import numpy as np

from inferplane.backends.jax_ops_common import Context, Node


def reshape(node: Node, args: list[Any], context: Context) -> Any:
    x, shape = jnp.asarray(args[0]), args[1]
    if not isinstance(shape, np.ndarray):  # _check_constant_uses guarantees this
        raise node.fail("the shape input must be a constant")
    requested = [int(v) for v in shape.reshape(-1)]
    allow_zero = node.attr_int("allowzero", 0)
    dims: list[Any] = []
    for axis, value in enumerate(requested):
        if value == 0 and not allow_zero:
            if axis >= x.ndim:
                raise node.fail(f"shape {requested}: 0 at axis {axis} of a rank-{x.ndim} input")
            dims.append(x.shape[axis])
        elif value < -1:
            raise node.fail(f"shape {requested}: {value} is not a dimension")
        else:
            dims.append(value)
    if requested.count(-1) > 1:
        raise node.fail(f"shape {requested} has more than one -1")
    return jnp.reshape(x, tuple(dims))


def flatten(node: Node, args: list[Any], context: Context) -> Any:
    """To 2-D: the dimensions before `axis` (default 1) times those from it on."""
    x = jnp.asarray(args[0])
    axis = node.attr_int("axis", 1)
    if not -x.ndim <= axis <= x.ndim:
        raise node.fail(f"axis {axis} is out of range for rank {x.ndim}")
    if axis < 0:
        axis += x.ndim
    return jnp.reshape(x, (math.prod(x.shape[:axis]), math.prod(x.shape[axis:])))


def concat(node: Node, args: list[Any], context: Context) -> Any:
    if "axis" not in node.attrs:
        raise node.fail("attribute `axis` is required")
    parts = [jnp.asarray(a) for a in args if a is not None]
    rank = parts[0].ndim
    axis = node.attr_int("axis", 0)
    if not -rank <= axis < rank:
        raise node.fail(f"axis {axis} is out of range for rank {rank}")
    return jnp.concatenate(parts, axis=axis)


def identity(node: Node, args: list[Any], context: Context) -> Any:
    return args[0]


LOWERINGS = {
    "Reshape": reshape,
    "Flatten": flatten,
    "Concat": concat,
    "Identity": identity,
}
