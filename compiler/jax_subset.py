"""The ONNX ops that a tpu target can run: the JAX/XLA lowering's subset.

A tpu worker does not run onnxruntime; the backend lowers the ONNX graph to JAX
and XLA compiles it. That lowering (`backends/`, a later issue) implements
exactly `JAX_OPS`, in the default ONNX domain only, and reads the set from here,
so that the compiler's E0405 check and the backend cannot disagree. Adding an op
means adding its lowering there and its name here, in one change.

`bytes` tensors, which XLA cannot hold, are the other half of E0405; the
compiler checks those from the model's signature.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inferplane.compiler.onnx_model import OnnxModel

JAX_DOMAIN = "ai.onnx"

JAX_OPS = frozenset(
    {
        "MatMul",
        "Gemm",
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Relu",
        "Sigmoid",
        "Tanh",
        "Softmax",
        "Conv",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "Reshape",
        "Flatten",
        "Concat",
        "Identity",
    }
)


def unsupported_ops(model: OnnxModel) -> list[str]:
    """The model's ops outside `JAX_OPS`, sorted; other domains as `domain:Op`."""
    return sorted(
        op if domain == JAX_DOMAIN else f"{domain}:{op}"
        for domain, op in model.op_types
        if not (domain == JAX_DOMAIN and op in JAX_OPS)
    )
