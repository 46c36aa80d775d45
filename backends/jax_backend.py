"""The JAX backend: one ONNX artifact, served on a tpu target through XLA.

`load`:

1. imports JAX (here, never at module import);
2. picks the device: a TPU when JAX sees one; otherwise `WrongDevice`, unless
   the worker was started with `--cpu-fallback`, in which case it logs a
   warning and runs on JAX's CPU platform;
3. reads the ONNX file, refuses it when its sha256 is not the plan's (the
   worker core checked that before; this covers the backend used on its own),
   and checks its signature against the plan's;
4. gets the exported StableHLO from the cache, or lowers and exports it
   (`jax_artifact.py`, `jax_lowering.py`);
5. wraps the deserialized export's `call` in `jax.jit`, which compiles once per
   batch size (`warm_up` does that ahead of traffic).

`infer` checks each batch exactly as the worker and the onnxruntime backend
do (`batch.py`: names, dtypes, ranks, fixed dimensions, one batch size),
places it on the device, runs the export and casts the results to the
signature's dtypes.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inferplane.backends import batch
from inferplane.backends.artifact_check import check_artifact
from inferplane.backends.jax_checks import check_signature
from inferplane.backends.runtime import BackendError, LoadFailed, RuntimeInfo, WrongDevice
from inferplane.backends.tensors import DATATYPES
from inferplane.compiler import plan

log = logging.getLogger(__name__)


class JaxBackend:
    """Serves `model.artifact` on a tpu `target` through JAX (see the module docstring)."""

    def __init__(
        self,
        model: plan.Model,
        target: plan.Target,
        base_dir: Path,
        *,
        cpu_fallback: bool = False,
        cache_dir: Path,
    ) -> None:
        self._model = model
        self._target = target
        self._path = Path(base_dir) / model.artifact.path
        self._cpu_fallback = cpu_fallback
        self._cache_dir = Path(cache_dir)
        self._label = batch.label(model)
        self._call: Any = None
        self._device: Any = None
        self._input_order: tuple[str, ...] = ()
        self._output_order: tuple[str, ...] = ()
        self._info: RuntimeInfo | None = None

    # -- load -------------------------------------------------------------------

    def load(self) -> None:
        jax = _import_jax()
        device, fallback = self._pick_device(jax)
        data = self._read_artifact()
        # The worker's shared check (hashed once per file and mtime): the file is
        # the plan's, so the plan's sha256 can key the StableHLO cache.
        sha256 = self._model.artifact.sha256
        try:
            check_artifact(self._path, sha256)
        except LoadFailed as error:
            raise LoadFailed(f"{self._label}: {error}") from None
        notes = []
        model_proto = self._parse(data)
        check_signature(self._label, self._model.signature, model_proto)

        from inferplane.backends.jax_artifact import exported_model

        precision = self._model.precision
        artifact = exported_model(model_proto, sha256, precision, self._cache_dir, self._label)
        if device.platform not in artifact.exported.platforms:
            raise LoadFailed(
                f"{self._label}: {artifact.path} was exported for "
                f"{', '.join(artifact.exported.platforms)}, not {device.platform}"
            )
        constants = {t.name for t in model_proto.graph.initializer}
        self._input_order = tuple(
            v.name for v in model_proto.graph.input if v.name not in constants
        )
        self._output_order = tuple(v.name for v in model_proto.graph.output)
        self._call = jax.jit(artifact.exported.call)
        self._device = device
        notes.append(
            f"{precision} StableHLO {'built' if artifact.built else 'cached'}: {artifact.path}"
        )
        if fallback:
            notes.append("no TPU: running on JAX's CPU platform by --cpu-fallback")
        if device.platform == "tpu" and self._target.devices > 1:
            notes.append(f"serves on 1 of the target's {self._target.devices} TPU devices")
        self._info = RuntimeInfo(
            runtime=f"jax {jax.__version__} (jaxlib {_jaxlib_version()})",
            device=device.platform,
            providers=(f"jax:{device.platform}",),
            fallback=fallback,
            notes=tuple(notes),
        )
        log.info("%s loaded on %s: %s", self._label, device, self._info.runtime)

    def _pick_device(self, jax: Any) -> tuple[Any, bool]:
        """The device to run on, and whether that is the --cpu-fallback CPU."""
        devices = jax.devices()
        platforms = sorted({d.platform for d in devices})
        if "tpu" in platforms:
            return next(d for d in devices if d.platform == "tpu"), False
        where = f"{self._label} on target {self._target.name}"
        seen = f"JAX sees platforms [{', '.join(platforms)}]{_why_no_tpu(jax)}"
        if not self._cpu_fallback:
            raise WrongDevice(
                f"{where}: no TPU: {seen}; run on a TPU host (install jax[tpu]) or pass "
                "--cpu-fallback for development"
            )
        log.warning("%s: no TPU (%s); running on JAX's CPU platform by --cpu-fallback", where, seen)
        return jax.devices("cpu")[0], True

    def _read_artifact(self) -> bytes:
        try:
            return self._path.read_bytes()
        except FileNotFoundError:
            raise LoadFailed(f"{self._label}: artifact {self._path} does not exist") from None
        except OSError as error:
            raise LoadFailed(f"{self._label}: cannot read {self._path}: {error}") from error

    def _parse(self, data: bytes) -> Any:
        import onnx

        try:
            return onnx.load_model_from_string(data)
        except Exception as error:  # protobuf's DecodeError and kin
            raise LoadFailed(
                f"{self._label}: {self._path} is not an ONNX model: {error}"
            ) from error

    # -- serve ------------------------------------------------------------------

    def warm_up(self, batch_sizes: Sequence[int]) -> None:
        """Compile (and run once) at each batch size: XLA compiles per shape."""
        self._loaded()
        for size in batch_sizes:
            if size < 1:
                raise ValueError(f"batch size {size} is not positive")
            zeros = {
                spec.name: np.zeros(
                    [size if d == -1 else d for d in spec.shape], DATATYPES[spec.datatype]
                )
                for spec in self._model.signature.inputs
            }
            try:
                self.infer(zeros)
            except BackendError as error:
                raise LoadFailed(f"{self._label}: warm-up at batch size {size}: {error}") from error

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        call = self._loaded()
        import jax

        batch.check_batch(self._label, self._model.signature.inputs, inputs)
        arrays = [jax.device_put(inputs[name], self._device) for name in self._input_order]
        try:
            results = call(*arrays)
        except Exception as error:  # XLA runtime failures: the worker reports them, and lives
            raise BackendError(
                f"{self._label}: JAX failed: {type(error).__name__}: {error}"
            ) from error
        by_name = dict(zip(self._output_order, results, strict=True))
        return {
            spec.name: np.asarray(by_name[spec.name], dtype=DATATYPES[spec.datatype])
            for spec in self._model.signature.outputs
        }

    def describe(self) -> RuntimeInfo:
        self._loaded()
        assert self._info is not None
        return self._info

    def _loaded(self) -> Any:
        if self._call is None:
            raise BackendError(f"{self._label}: not loaded (call load() first)")
        return self._call


def _import_jax() -> Any:
    try:
        import jax
    except ImportError as error:
        raise LoadFailed(
            "JAX is not installed: install inferplane[tpu] (jax[tpu] on a TPU host)"
        ) from error
    return jax


def _why_no_tpu(jax: Any) -> str:
    """JAX's own reason when libtpu is installed and still no TPU came up, else ''.

    JAX quietly falls back to the CPU when the TPU backend fails (most often:
    another process holds the chips), and "install jax[tpu]" would mislead.
    """
    if importlib.util.find_spec("libtpu") is None:
        return ""
    try:
        jax.devices("tpu")
    except RuntimeError as error:
        return f" (libtpu is installed, but the TPU did not start: {error})"
    return ""


def _jaxlib_version() -> str:
    import jaxlib

    return jaxlib.__version__
