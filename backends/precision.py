"""Precision artifacts: the int8 and fp16 files that workers load instead of the fp32 source.

A spec names one fp32 ONNX source per model; its `precision` decides what the
workers load:

    fp32  the source itself
    bf16  the source itself: the tpu runtime casts weights to bfloat16 through
          JAX dtypes when it loads the model
    int8  onnxruntime's dynamic quantization of the source (`quantize_dynamic`):
          MatMul, Conv, Gather… weights stored as QInt8, one scale per output
          channel (`per_channel`: a column whose weights are all small keeps
          its resolution instead of sharing the largest column's scale), on 7
          bits (`reduce_range`: x86 CPUs without VNNI multiply u8×s8 pairs into
          saturating int16 sums, and 7-bit weights cannot saturate them, so the
          agreement measured here holds on every worker); activations are
          quantized to uint8 at run time, per batch, by the graph itself.
    fp16  onnxconverter-common's `convert_float_to_float16` with
          `keep_io_types=True`, so that inputs and outputs keep the fp32 dtypes
          the spec declares and only the inside of the graph runs in fp16.
          Ops whose outputs are fp32 by definition (`_FP16_BLOCKED`, plus the
          converter's own list) are left in fp32. Values beyond fp16's range are
          clamped by the converter (its truncation warnings are silenced here:
          the agreement measurement shows their cost).

Built artifacts are cached by content: `cache_dir/<sha16>-<precision>-<settings>-
<converter><version>.onnx`, where `<sha16>` is the start of the source's sha256,
`<settings>` names the recipe (`pc7`: per channel, 7-bit; `io32`: fp32 inputs
and outputs) and the converter's version pins the bytes it writes
(`3f2a…-int8-pc7-ort1.32.0.onnx`). A file is written to a temporary name in
the cache and renamed into place, so a reader never sees half a model and two
builders racing write the same bytes; a name that exists is reused as is.

`measure_agreement` runs the source and an artifact on onnxruntime's CPU
provider over an evaluation set and compares their first outputs: the share of
samples whose top-1 (argmax over the last axis) is the same, and the largest
absolute difference. A first output without a class axis (one value per sample)
has a trivial top-1; only its difference then says anything. The samples go in
batches of `batch_size`, in the file's order, because an int8 answer depends on
its batch: dynamic quantization takes each activation's range over the whole
batch, so one outlier coarsens its neighbours. The compiler passes the model's
`batch max`, the batches the gateway forms under load, so the figure is that
of a busy service (smaller batches agree as well or better, as a rule).

onnxruntime, onnx and the converter are imported inside the functions: this
module imports with the standard library alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

BUILT = ("int8", "fp16")  # the precisions that have an artifact of their own
INT8_SETTINGS = {"per_channel": True, "reduce_range": True}  # weights are QInt8
_FP16_BLOCKED = ("TfIdfVectorizer",)  # defined to output fp32 only


class PrecisionError(Exception):
    """An artifact could not be built or measured; `str(error)` is shown to users."""


class MissingDependency(PrecisionError):
    """A package the precision needs is not installed."""

    def __init__(self, package: str, install: str) -> None:
        super().__init__(f"{package} is not installed ({install})")
        self.package = package
        self.install = install


@dataclass(frozen=True)
class Agreement:
    """How an artifact's answers compare with the fp32 source's on an evaluation set."""

    samples: int
    top1_agreement: float  # 0 to 1: the share of samples with the same top-1
    max_abs_diff: float  # the largest |artifact - source| over the first output


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependency(
            "onnxruntime", "install the `cpu` extra: pip install 'inferplane[cpu]'"
        ) from None
    return onnxruntime


def _converter() -> Any:
    try:
        import onnxconverter_common
    except ImportError:
        raise MissingDependency(
            "onnxconverter-common",
            "install the `gpu` extra (pip install 'inferplane[gpu]') or onnxconverter-common",
        ) from None
    return onnxconverter_common


def settings_tag(precision: str) -> str:
    """The recipe's part of an artifact's file name."""
    if precision == "int8":
        channel = "pc" if INT8_SETTINGS["per_channel"] else "pt"
        return channel + ("7" if INT8_SETTINGS["reduce_range"] else "8")
    if precision == "fp16":
        return "io32"
    raise ValueError(f"precision {precision} has no artifact of its own")


def artifact_name(source_sha256: str, precision: str, converter: str) -> str:
    """`<sha16>-<precision>-<settings>-<converter>.onnx`, e.g. `…-int8-pc7-ort1.32.0.onnx`."""
    return f"{source_sha256[:16]}-{precision}-{settings_tag(precision)}-{converter}.onnx"


def build_artifact(
    source: Path, precision: str, cache_dir: Path, source_sha256: str | None = None
) -> Path:
    """The file workers load for `source` at `precision`: built once, then reused.

    fp32 and bf16 return `source`. `source_sha256`, when the caller has it
    (the compiler does), spares reading and hashing the source again when the
    artifact is already cached. Raises `MissingDependency` when the converter
    is not installed and `PrecisionError` when the build fails.
    """
    if precision not in BUILT:
        return Path(source)
    digest = source_sha256 or hashlib.sha256(Path(source).read_bytes()).hexdigest()
    if precision == "int8":
        converter = f"ort{_onnxruntime().__version__}"
    else:
        converter = f"occ{_converter().__version__}"
    path = Path(cache_dir) / artifact_name(digest, precision, converter)
    if path.is_file():
        return path
    import onnx

    model = onnx.load_from_string(Path(source).read_bytes())
    path.parent.mkdir(parents=True, exist_ok=True)
    with _temporary(path) as scratch:
        try:
            if precision == "int8":
                _quantize(model, scratch)
            else:
                scratch.write_bytes(_to_fp16(model).SerializeToString())
        except MissingDependency:
            raise
        except Exception as e:  # the converters raise anything; say which step failed
            raise PrecisionError(f"{_STEP[precision]} failed: {e}") from e
        os.replace(scratch, path)
    return path


_STEP = {
    "int8": "onnxruntime's dynamic quantization",
    "fp16": "onnxconverter-common's fp16 conversion",
}


@contextlib.contextmanager
def _temporary(final: Path) -> Iterator[Path]:
    """A scratch file beside `final` (same file system, so the rename is atomic)."""
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(fd)
    scratch = Path(name)
    try:
        yield scratch
    finally:
        scratch.unlink(missing_ok=True)


class _FromOnnxruntime(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Keep the quantizer's advice ("consider pre-processing") out of infc's output.

    It logs through the root logger with `logging.warning`, which would also
    configure logging for the whole process when nothing has yet.
    """
    root = logging.getLogger()
    handler, noise = logging.NullHandler(), _FromOnnxruntime()
    root.addHandler(handler)
    root.addFilter(noise)
    try:
        yield
    finally:
        root.removeFilter(noise)
        root.removeHandler(handler)


def _quantize(model: Any, out: Path) -> None:
    _onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # A ModelProto, not the source's path: given a path, the quantizer writes
    # a shape-inferred copy next to the source.
    with _quiet_root_logger():
        quantize_dynamic(
            model,
            out,
            weight_type=QuantType.QInt8,
            per_channel=INT8_SETTINGS["per_channel"],
            reduce_range=INT8_SETTINGS["reduce_range"],
        )


def _to_fp16(model: Any) -> Any:
    _converter()
    from onnxconverter_common.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the float32 number … will be truncated"
        return convert_float_to_float16(
            model, keep_io_types=True, op_block_list=[*DEFAULT_OP_BLOCK_LIST, *_FP16_BLOCKED]
        )


def measure_agreement(
    source: Path, artifact: Path, eval_inputs: Mapping[str, np.ndarray], *, batch_size: int = 1
) -> Agreement:
    """Top-1 agreement and largest difference of `artifact` against `source`.

    `eval_inputs` holds one array per graph input, samples along the first
    axis. Both models run on onnxruntime's CPU provider, one thread, on
    consecutive batches of `batch_size` samples (the last one may be smaller).
    """
    import numpy as np

    ort = _onnxruntime()
    samples = len(next(iter(eval_inputs.values()))) if eval_inputs else 0
    if samples == 0:
        raise PrecisionError("the evaluation set has no samples")
    try:
        reference = _session(ort, source)
        candidate = _session(ort, artifact)
        output = reference.get_outputs()[0].name
        feeds = {name: _feedable(np.asarray(array)) for name, array in eval_inputs.items()}
        agree, largest = 0, 0.0
        step = max(1, batch_size)
        for start in range(0, samples, step):
            chunk = {name: array[start : start + step] for name, array in feeds.items()}
            want = np.asarray(reference.run([output], chunk)[0], dtype=np.float64)
            have = np.asarray(candidate.run([output], chunk)[0], dtype=np.float64)
            agree += int(_same_top1(want, have).sum())
            diff = np.abs(want - have)
            diff = np.where(np.isfinite(diff), diff, np.finfo(np.float64).max)
            largest = max(largest, float(diff.max(initial=0.0)))
    except PrecisionError:
        raise
    except Exception as e:  # onnxruntime's errors carry the reason in their text
        raise PrecisionError(f"onnxruntime (CPU) could not run both models: {e}") from e
    return Agreement(samples=samples, top1_agreement=agree / samples, max_abs_diff=largest)


def _session(ort: Any, path: Path) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1  # same sums every run
    options.log_severity_level = 3  # errors only; they come back as exceptions anyway
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _feedable(array: np.ndarray) -> np.ndarray:
    """Text as onnxruntime takes it: an object array of str."""
    import numpy as np

    if array.dtype.kind == "S":
        return np.char.decode(array, "utf-8").astype(object)
    if array.dtype.kind == "U":
        return array.astype(object)
    return array


def _same_top1(want: np.ndarray, have: np.ndarray) -> np.ndarray:
    """Per sample: True when every top-1 (argmax over the last axis) is the same."""
    import numpy as np

    if want.ndim < 2:
        return np.ones(len(want), dtype=bool)  # no class axis: nothing to rank
    same = want.argmax(axis=-1) == have.argmax(axis=-1)
    return same.reshape(len(same), -1).all(axis=1)
