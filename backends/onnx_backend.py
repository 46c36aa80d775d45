"""The onnxruntime backend: one ONNX artifact, served on a cpu or gpu target.

`load` builds the session (providers from `providers.py`, threads from the
target), refuses to serve on the wrong device unless `--cpu-fallback` asked
for it, and checks the artifact's signature against the plan's. `infer`
checks each batch against that signature (`batch.py`, as the worker does)
before onnxruntime sees it, so a bad batch fails with a message naming the
tensor and both shapes; then BYTES elements become the UTF-8 `str` that
onnxruntime takes. An error inside onnxruntime becomes a `BackendError`
rather than a crash.

onnxruntime is imported in `load`, never at module import.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inferplane.backends import batch, providers
from inferplane.backends.registry import default_cache_dir
from inferplane.backends.runtime import (
    BackendError,
    BadBatch,
    LoadFailed,
    RuntimeInfo,
    WrongDevice,
)
from inferplane.backends.tensors import DATATYPES
from inferplane.compiler import plan

log = logging.getLogger(__name__)

# onnxruntime's type strings → KServe datatypes.
ORT_TYPES: Mapping[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(bfloat16)": "BF16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


def session_options(ort: Any, target: plan.Target) -> Any:
    """onnxruntime SessionOptions for one replica on `target`."""
    options = ort.SessionOptions()
    if target.threads is not None:
        options.intra_op_num_threads = target.threads
    # One batch at a time per replica: parallelism comes from replicas and from
    # intra-op threads, so the graph runs its nodes in order.
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


class OnnxBackend:
    """Serves `model.artifact` on `target` through onnxruntime (see the module docstring)."""

    def __init__(
        self,
        model: plan.Model,
        target: plan.Target,
        base_dir: Path,
        *,
        cpu_fallback: bool = False,
        cache_dir: Path | None = None,
    ) -> None:
        self._model = model
        self._target = target
        self._path = Path(base_dir) / model.artifact.path
        self._cpu_fallback = cpu_fallback
        # TensorRT's engine cache goes under the same folder as the other built artifacts.
        self._cache_dir = cache_dir if cache_dir is not None else default_cache_dir(Path(base_dir))
        self._label = batch.label(model)
        self._session: Any = None
        self._info: RuntimeInfo | None = None
        self._invalid_argument: type[Exception] = Exception

    # -- load -------------------------------------------------------------------

    def load(self) -> None:
        ort = _import_onnxruntime()
        if not self._path.is_file():
            raise LoadFailed(f"{self._label}: artifact {self._path} does not exist")
        available = list(ort.get_available_providers())
        package = providers.installed_package(available)
        requested = providers.requested_providers(
            self._target.hardware, self._model.precision, available, self._cache_dir
        )
        self._make_tensorrt_cache(requested)
        session, error = self._create_session(ort, requested)
        try:
            placement = providers.check_placement(
                self._target.hardware,
                requested,
                session.get_providers(),
                available,
                package,
                self._cpu_fallback,
                error=error,
            )
        except WrongDevice as wrong:
            raise WrongDevice(f"{self._label} on target {self._target.name}: {wrong}") from None
        for note in (*package.notes, *placement.notes):
            log.warning("%s on target %s: %s", self._label, self._target.name, note)
        _check_signature(self._label, self._model.signature, session)
        self._session = session
        self._invalid_argument = ort.capi.onnxruntime_pybind11_state.InvalidArgument
        self._info = RuntimeInfo(
            runtime=f"onnxruntime {ort.__version__} (package {package.name})",
            device=placement.device,
            providers=tuple(session.get_providers()),
            fallback=placement.fallback,
            notes=(*package.notes, *placement.notes),
        )
        log.info("%s loaded on %s: %s", self._label, placement.device, self._info.runtime)

    def _make_tensorrt_cache(self, requested: Sequence[providers.Provider]) -> None:
        for _, options in requested:
            if "trt_engine_cache_path" in options:
                try:
                    Path(options["trt_engine_cache_path"]).mkdir(parents=True, exist_ok=True)
                except OSError as error:
                    raise LoadFailed(f"{self._label}: TensorRT engine cache: {error}") from error

    def _create_session(
        self, ort: Any, requested: Sequence[providers.Provider]
    ) -> tuple[Any, str | None]:
        """The session, and the error of a GPU provider that failed to start, if any."""
        options = session_options(ort, self._target)
        try:
            return _new_session(ort, self._path, options, requested), None
        except Exception as error:  # onnxruntime raises its own exception types
            if not any(name in providers.GPU_PROVIDERS for name, _ in requested):
                raise LoadFailed(
                    f"{self._label}: onnxruntime cannot load {self._path}: {error}"
                ) from error
            gpu_error = error
        # A GPU provider may have failed to start (no device, wrong driver); if the
        # model loads on the CPU alone, that was it, and check_placement decides.
        try:
            session = _new_session(ort, self._path, options, [(providers.CPU, {})])
        except Exception as error:
            raise LoadFailed(
                f"{self._label}: onnxruntime cannot load {self._path}: {gpu_error} "
                f"(on the CPU alone: {error})"
            ) from error
        return session, str(gpu_error)

    # -- serve ------------------------------------------------------------------

    def warm_up(self, batch_sizes: Sequence[int]) -> None:
        self._loaded()
        for size in batch_sizes:
            if size < 1:
                raise ValueError(f"batch size {size} is not positive")
            zeros = {spec.name: _zeros(spec, size) for spec in self._model.signature.inputs}
            try:
                self.infer(zeros)
            except BackendError as error:
                raise LoadFailed(f"{self._label}: warm-up at batch size {size}: {error}") from error

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self._loaded()
        size, feed = prepare_batch(self._label, self._model.signature.inputs, inputs)
        names = [spec.name for spec in self._model.signature.outputs]
        try:
            results = session.run(names, feed)
        except self._invalid_argument as error:
            raise BadBatch(f"{self._label}: onnxruntime rejected the batch: {error}") from error
        except Exception as error:  # an internal failure: the worker reports it, and lives
            raise BackendError(
                f"{self._label}: onnxruntime failed: {type(error).__name__}: {error}"
            ) from error
        outputs = {}
        for spec, result in zip(self._model.signature.outputs, results, strict=True):
            if _shape_problem(spec, result.shape, size):
                raise BackendError(
                    f"{self._label}: output `{spec.name}` has shape {list(result.shape)} for "
                    f"a batch of {size}; the plan says {batch.spec_text(spec)}"
                )
            outputs[spec.name] = _as_bytes(result) if spec.datatype == "BYTES" else result
        return outputs

    def describe(self) -> RuntimeInfo:
        self._loaded()
        assert self._info is not None
        return self._info

    def _loaded(self) -> Any:
        if self._session is None:
            raise BackendError(f"{self._label}: not loaded (call load() first)")
        return self._session


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        raise LoadFailed(
            "onnxruntime is not installed: install inferplane[cpu] (onnxruntime) "
            "or inferplane[gpu] (onnxruntime-gpu), not both"
        ) from error
    return onnxruntime


def _new_session(
    ort: Any, path: Path, options: Any, requested: Sequence[providers.Provider]
) -> Any:
    # enable_fallback=0 turns off onnxruntime's own retry on other providers
    # (printed to stdout, at creation and again when a run hits an EP failure):
    # check_placement and --cpu-fallback decide where a model runs.
    return ort.InferenceSession(
        str(path),
        sess_options=options,
        providers=[name for name, _ in requested],
        provider_options=[dict(opts) for _, opts in requested],
        enable_fallback=0,
    )


# -- the signature at load ------------------------------------------------------


def _check_signature(label: str, signature: plan.Signature, session: Any) -> None:
    problems = [
        *_side_problems("input", signature.inputs, session.get_inputs()),
        *_side_problems("output", signature.outputs, session.get_outputs()),
    ]
    if problems:
        raise LoadFailed(
            f"{label}: the artifact's signature differs from the plan's: " + "; ".join(problems)
        )


def _side_problems(kind: str, specs: Sequence[plan.TensorSpec], args: Sequence[Any]) -> list[str]:
    by_name = {arg.name: arg for arg in args}
    problems = []
    for spec in specs:
        if spec.datatype not in DATATYPES:
            problems.append(f"{kind} `{spec.name}`: {spec.datatype} has no NumPy dtype")
        arg = by_name.pop(spec.name, None)
        if arg is None:
            problems.append(
                f"{kind} `{spec.name}`: in the plan ({batch.spec_text(spec)}), not in the model"
            )
            continue
        if ORT_TYPES.get(arg.type) != spec.datatype or _dims_problem(spec.shape, arg.shape):
            problems.append(
                f"{kind} `{spec.name}`: plan {batch.spec_text(spec)}, model {_arg_text(arg)}"
                + _dims_problem(spec.shape, arg.shape)
            )
    problems += [
        f"{kind} `{n}`: in the model ({_arg_text(a)}), not in the plan" for n, a in by_name.items()
    ]
    return problems


def _dims_problem(plan_shape: Sequence[int], model_shape: Sequence[Any] | None) -> str:
    """'' when the model accepts the plan's shape, else a parenthesised reason."""
    if model_shape is None:
        return ""  # the file gives no shape: onnxruntime checks at run time
    if len(plan_shape) != len(model_shape):
        return f" (rank {len(plan_shape)} against {len(model_shape)})"
    for want, got in zip(plan_shape, model_shape, strict=True):
        if want == -1 and isinstance(got, int):
            return " (the plan's batch axis, -1, must be a dynamic dimension in the model)"
        if want != -1 and isinstance(got, int) and got != want:
            return " (fixed dimensions differ)"
    return ""


def _arg_text(arg: Any) -> str:
    datatype = ORT_TYPES.get(arg.type, arg.type)
    dims = "?" if arg.shape is None else ", ".join("?" if d is None else str(d) for d in arg.shape)
    return f"{datatype}[{dims}]"


# -- each batch -----------------------------------------------------------------


def prepare_batch(
    label: str, specs: Sequence[plan.TensorSpec], inputs: Mapping[str, Any]
) -> tuple[int, dict[str, np.ndarray]]:
    """The batch size of `inputs` and the arrays to give onnxruntime.

    Raises BadBatch naming the tensor and both sides (`batch.check_batch`).
    No value is cast: only BYTES elements change form, to the str onnxruntime takes.
    """
    size = batch.check_batch(label, specs, inputs)
    feed = {
        spec.name: _as_str(f"{label}: input `{spec.name}`", inputs[spec.name])
        if spec.datatype == "BYTES"
        else inputs[spec.name]
        for spec in specs
    }
    return size, feed


def _as_str(where: str, array: np.ndarray) -> np.ndarray:
    """A checked BYTES array (bytes or str elements) as onnxruntime takes it: str.

    onnxruntime turns any other object into text with `str()`, so b"abc" would
    reach the model as "b'abc'"; and a str must encode to UTF-8 to cross over.
    """
    items = []
    for index, item in enumerate(array.flat):
        if isinstance(item, bytes):
            try:
                item = item.decode("utf-8")
            except UnicodeDecodeError as error:
                raise BadBatch(
                    f"{where}: element {index} is not UTF-8 ({error.reason} at byte "
                    f"{error.start}); onnxruntime takes string tensors as text"
                ) from None
        elif not _encodes(item):
            raise BadBatch(f"{where}: element {index} holds a lone surrogate, not text")
        items.append(item)
    out = np.empty(array.shape, dtype=object)
    out.flat[:] = items
    return out


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shape_problem(spec: plan.TensorSpec, shape: Sequence[int], rows: int) -> bool:
    """True when `shape` does not fit the plan's, its batch axis being `rows` long."""
    if len(shape) != len(spec.shape):
        return True
    return any(
        got != (rows if want == -1 else want) for want, got in zip(spec.shape, shape, strict=True)
    )


def _zeros(spec: plan.TensorSpec, rows: int) -> np.ndarray:
    shape = [rows if d == -1 else d for d in spec.shape]
    if spec.datatype == "BYTES":
        return np.full(shape, b"", dtype=object)
    return np.zeros(shape, dtype=DATATYPES[spec.datatype])


def _as_bytes(result: np.ndarray) -> np.ndarray:
    """onnxruntime returns string tensors as str; BYTES tensors hold bytes."""
    out = np.empty(result.shape, dtype=object)
    out.flat[:] = [
        item.encode("utf-8") if isinstance(item, str) else bytes(item) for item in result.flat
    ]
    return out
