"""What every op lowering shares: the node view, the context, the error.

An op lowering is `(node, args, context) -> array | tuple[array, ...]`: `args`
holds one value per ONNX input (None for an omitted optional input), each a
JAX array (traced) or a NumPy constant. Lowerings raise `UnsupportedModel`
through `node.fail(...)`, so that every message names the op and the node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from inferplane.backends.runtime import LoadFailed


class UnsupportedModel(LoadFailed):
    """The graph uses something outside the JAX lowering's documented subset."""


@dataclass(frozen=True)
class Context:
    """Per-model settings the lowerings read."""

    opset: int  # of the default domain: Softmax's semantics changed at 13
    precision: Any  # jax.lax.Precision for MatMul, Gemm and Conv


@dataclass(frozen=True)
class Node:
    """One ONNX node with its attributes decoded to Python values."""

    op_type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_proto(cls, proto: Any) -> Node:
        from onnx import helper

        attrs = {a.name: helper.get_attribute_value(a) for a in proto.attribute}
        return cls(
            op_type=proto.op_type,
            name=proto.name or (proto.output[0] if proto.output else "?"),
            inputs=tuple(proto.input),
            outputs=tuple(proto.output),
            attrs=attrs,
        )

    def fail(self, message: str) -> UnsupportedModel:
        return UnsupportedModel(f"{self.op_type} node `{self.name}`: {message}")

    def attr_int(self, name: str, default: int) -> int:
        return int(self.attrs.get(name, default))

    def attr_float(self, name: str, default: float) -> float:
        return float(self.attrs.get(name, default))

    def attr_ints(
        self, name: str, default: Sequence[int] | None, count: int | None = None
    ) -> list[int]:
        """An ints attribute; `count` checks its length (e.g. one per spatial axis)."""
        if name not in self.attrs:
            if default is None:
                raise self.fail(f"attribute `{name}` is required")
            return list(default)
        values = [int(v) for v in self.attrs[name]]
        if count is not None and len(values) != count:
            raise self.fail(f"attribute `{name}` has {len(values)} values, expected {count}")
        return values

    def attr_str(self, name: str, default: str) -> str:
        value = self.attrs.get(name, default)
        return value.decode() if isinstance(value, bytes) else str(value)

    def only_first_output(self) -> None:
        """Refuse optional extra outputs (MaxPool's Indices) that we do not compute."""
        extra = [o for o in self.outputs[1:] if o]
        if extra:
            raise self.fail(f"optional output(s) {', '.join(extra)} are not supported")


def static_dims(node: Node, shape: Sequence[Any], what: str) -> list[int]:
    """Dimensions that must be known when tracing (spatial sizes, not the batch)."""
    dims = []
    for dim in shape:
        if not isinstance(dim, int):
            raise node.fail(f"{what} must have fixed sizes, got {tuple(shape)}")
        dims.append(dim)
    return dims
