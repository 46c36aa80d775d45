"""The tpu backend's artifact: an ONNX graph exported once as serialized StableHLO.

`exported_model(...)` returns a `jax.export.Exported` for the graph, built by
`jax_lowering.lower` and `jax.export.export` on first use and read back from
the cache afterwards:

- one symbolic batch dimension `b`, shared by every input whose leading axis
  is dynamic, so that one artifact serves every batch size;
- lowered for the platforms ("tpu", "cpu"), so that the artifact a TPU host
  runs is byte for byte the one that `--cpu-fallback` runs in development;
- cached as `<onnx sha256>-<precision>-jax<version>-lowering<N>.stablehlo`:
  the ONNX file's bytes, the precision, the JAX release (a serialized export
  is only promised to load into a JAX at least as new as the one that wrote
  it) and the lowering's own version all change what is built;
- written atomically (a temporary file in the same folder, then `os.replace`),
  so that workers sharing a cache folder never read half a file.

A cache file that does not deserialize is logged, rebuilt and overwritten.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferplane.backends.runtime import LoadFailed

log = logging.getLogger(__name__)

PLATFORMS = ("tpu", "cpu")


@dataclass(frozen=True)
class Artifact:
    exported: Any  # jax.export.Exported
    path: Path
    built: bool  # False when it came from the cache


def cache_name(sha256: str, precision: str) -> str:
    import jax

    from inferplane.backends.jax_lowering import LOWERING_VERSION

    return f"{sha256}-{precision}-jax{jax.__version__}-lowering{LOWERING_VERSION}.stablehlo"


def exported_model(
    model_proto: Any, sha256: str, precision: str, cache_dir: Path, label: str
) -> Artifact:
    """The cached export for this graph and precision, building it when missing."""
    from jax import export

    path = cache_dir / cache_name(sha256, precision)
    if path.is_file():
        try:
            return Artifact(export.deserialize(bytearray(path.read_bytes())), path, built=False)
        except Exception as error:  # a truncated or foreign file: say so, then rebuild
            log.warning("%s: cached artifact %s is unreadable (%s); rebuilding", label, path, error)
    exported = build(model_proto, precision, label)
    _write_atomically(path, exported.serialize(), label)
    log.info("%s: exported StableHLO for %s to %s", label, "/".join(PLATFORMS), path)
    return Artifact(exported, path, built=True)


def build(model_proto: Any, precision: str, label: str) -> Any:
    """Lower and export; UnsupportedModel (a LoadFailed) when the graph is outside the subset."""
    import jax
    from jax import export

    from inferplane.backends.jax_lowering import UnsupportedModel, lower

    try:
        fn, specs = lower(model_proto, precision)
        (batch,) = export.symbolic_shape("b")
        args = [
            jax.ShapeDtypeStruct(tuple(batch if d is None else d for d in spec.shape), spec.dtype)
            for spec in specs
        ]
        return export.export(jax.jit(fn), platforms=PLATFORMS)(*args)
    except UnsupportedModel as error:
        raise UnsupportedModel(f"{label}: {error}") from error
    except Exception as error:  # JAX's tracing and lowering errors
        raise LoadFailed(
            f"{label}: cannot export the graph with JAX: {type(error).__name__}: {error}"
        ) from error


def _write_atomically(path: Path, data: bytes | bytearray, label: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            os.chmod(temporary, 0o644)  # mkstemp makes it 0600; other workers read it
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError as error:
        raise LoadFailed(f"{label}: cannot write the artifact cache {path}: {error}") from error
