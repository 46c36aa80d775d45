"""Which backend serves a model: onnxruntime for cpu and gpu targets, JAX for tpu.

Runtimes are imported here, lazily, so that importing the worker (or the
compiler) never loads onnxruntime or JAX unless a model needs them.
"""

from __future__ import annotations

from pathlib import Path

from inferplane.backends.runtime import Backend
from inferplane.compiler import plan


def default_cache_dir(base_dir: Path) -> Path:
    """Where built artifacts (quantized models, exported StableHLO) are cached."""
    return base_dir / ".inferplane" / "cache"


def create_backend(
    model: plan.Model,
    target: plan.Target,
    base_dir: Path,
    *,
    cpu_fallback: bool = False,
    cache_dir: Path | None = None,
) -> Backend:
    """A backend for `model` on `target`, not loaded yet (call `load`)."""
    cache = cache_dir if cache_dir is not None else default_cache_dir(base_dir)
    if target.hardware == "tpu":
        from inferplane.backends.jax_backend import JaxBackend

        return JaxBackend(model, target, base_dir, cpu_fallback=cpu_fallback, cache_dir=cache)
    from inferplane.backends.onnx_backend import OnnxBackend

    return OnnxBackend(model, target, base_dir, cpu_fallback=cpu_fallback, cache_dir=cache)
