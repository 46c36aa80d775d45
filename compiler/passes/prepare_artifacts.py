"""Pass: build the int8 and fp16 artifacts that workers load, and measure what they cost.

For each model whose `precision` has an artifact of its own (`int8`: onnxruntime's
dynamic quantization of the fp32 source; `fp16`: the fp16 converter, inputs and
outputs kept fp32; `backends/precision.py` has the recipes) and which has no
error of its own, the source is built into the spec's artifact cache,
`<spec dir>/.inferplane/cache`. When the model names an evaluation set
(`eval "PATH.npz"`), the source and the artifact both run over it on
onnxruntime's CPU provider and their top-1 agreement is recorded for the plan.
fp32 and bf16 models serve their source (the tpu runtime casts to bf16 itself).

- E0406: an evaluation set that is missing, unreadable, not an `.npz`, or whose
  arrays do not match the declared inputs: one array per input and no other,
  the input's dtype, its dimensions after the batch axis, one sample count.
  Checked for every model that names one, whatever its precision, unless its
  declared tensors differ from the graph (E0403 says so first). Also when
  onnxruntime's CPU provider cannot run the source and the artifact on it.
- W0504: the artifact's top-1 agrees with the source's on fewer than
  `plan.MIN_TOP1_AGREEMENT` (99%) of the samples. They run in batches of the
  model's `batch max`: int8 activations are quantized per batch.
- E0402: the build fails, or the converter it needs is not installed (the
  message names the package and the extra that brings it).

This pass is the compiler's one side effect: a write into a content-addressed
cache (files named by the source's sha256, the recipe and the converter's
version, written to a temporary name and renamed into place). It never changes
anything deployed: the plan names the built file and its sha256, and only
`infc apply` moves a gateway onto a plan. Compiling again reuses the file;
deleting the cache costs a rebuild, nothing more.

onnxruntime and the converter are imported only when a model needs a build, so
a spec without int8 or fp16 never loads them; numpy only for an `eval`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from inferplane.compiler import ast, plan
from inferplane.compiler import diagnostics as codes
from inferplane.compiler.diagnostics import Diagnostics, Note
from inferplane.compiler.unit import Unit

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

BUILT = ("int8", "fp16")  # as `backends/precision.py` has them (a test checks)

# The language's dtypes as NumPy names them in an .npz; `bytes` takes str or bytes arrays.
_NUMPY_DTYPES = {
    "bool": "bool",
    "int8": "int8",
    "uint8": "uint8",
    "int16": "int16",
    "int32": "int32",
    "int64": "int64",
    "fp16": "float16",
    "bf16": "bfloat16",
    "fp32": "float32",
    "fp64": "float64",
}


@dataclass(frozen=True)
class Prepared:
    """A model's built artifact and, with an evaluation set, its measured agreement."""

    artifact: plan.Artifact
    agreement: plan.Agreement | None


def prepare_artifacts(unit: Unit, out: Diagnostics) -> Unit:
    prepared: dict[tuple[str, int], Prepared] = {}
    for model in unit.spec.models:
        clean = model.key in unit.model_files and not _has_errors(model, out)
        eval_set = None
        if model.eval is not None and not _has_errors(model, out, codes.SIGNATURE):
            eval_set = _read_eval(unit, model, out)  # against inputs that match the graph
        if not clean or model.precision.value not in BUILT:
            continue
        built = _build(unit, model, out)
        if built is None:
            continue
        agreement = None
        if eval_set is not None:
            agreement = _measure(unit, model, built, eval_set, out)
        artifact = plan.Artifact(
            path=built.relative_to(unit.base_dir).as_posix(),
            sha256=hashlib.sha256(built.read_bytes()).hexdigest(),
        )
        prepared[model.key] = Prepared(artifact, agreement)
    return replace(unit, artifacts=prepared)


def _has_errors(model: ast.Model, out: Diagnostics, code: codes.Code | None = None) -> bool:
    """Whether an error (of `code`, if given) was reported inside the model's block."""
    first, last = model.span.line, model.span.end_line
    return any(
        d.is_error and first <= d.span.line <= last and code in (None, d.code) for d in out.items
    )


def _build(unit: Unit, model: ast.Model, out: Diagnostics) -> Path | None:
    from inferplane.backends import precision as builds
    from inferplane.backends.registry import default_cache_dir

    kind = model.precision.value
    cache = default_cache_dir(unit.base_dir)
    try:
        source = unit.base_dir / model.source.value
        known = unit.model_files[model.key].sha256  # check_models read it already
        return builds.build_artifact(source, kind, cache, source_sha256=known)
    except builds.MissingDependency as e:
        out.add(
            codes.MODEL_FILE,
            f"cannot build the {kind} artifact of model `{model.label}`: "
            f"{e.package} is not installed",
            model.precision.span,
            label=f"{kind} needs {e.package}",
            help=e.install,
        )
    except builds.PrecisionError as e:
        out.add(
            codes.MODEL_FILE,
            f"cannot build the {kind} artifact of model `{model.label}`: {e}",
            model.precision.span,
            label=f"no {kind} artifact",
            help="serve the model at fp32, or export a source the converter accepts",
        )
    except OSError as e:
        out.add(
            codes.MODEL_FILE,
            f"cannot write the {kind} artifact of model `{model.label}` into the cache "
            f"{cache}: {e.strerror or e}",
            model.precision.span,
            label=f"no {kind} artifact",
            help="built artifacts are cached in `.inferplane/cache` beside the spec; "
            "make that folder writable",
        )
    return None


def _measure(
    unit: Unit, model: ast.Model, built: Path, eval_set: dict[str, np.ndarray], out: Diagnostics
) -> plan.Agreement | None:
    from inferplane.backends import precision as builds

    kind = model.precision.value
    batch = model.batch.max.value if model.batch else 1
    try:
        found = builds.measure_agreement(
            unit.base_dir / model.source.value, built, eval_set, batch_size=batch
        )
    except builds.MissingDependency as e:
        out.add(
            codes.MODEL_FILE,
            f"cannot measure the {kind} artifact of model `{model.label}`: "
            f"{e.package} is not installed",
            model.eval.span,
            label=f"measuring needs {e.package}",
            help=e.install,
        )
        return None
    except builds.PrecisionError as e:
        out.add(
            codes.EVAL_SET,
            f"cannot measure the {kind} artifact of model `{model.label}` on evaluation set "
            f"`{model.eval.value}`: {e}",
            model.eval.span,
            label="not measurable here",
            help="the measurement runs both models on onnxruntime's CPU provider; drop `eval` "
            "for an artifact that only its target's runtime can run",
        )
        return None
    if found.top1_agreement < plan.MIN_TOP1_AGREEMENT:
        changed = found.samples - round(found.top1_agreement * found.samples)
        out.add(
            codes.LOW_AGREEMENT,
            f"the {kind} artifact of model `{model.label}` agrees with fp32 on "
            f"{_percent(found.top1_agreement)} of {found.samples} samples "
            f"(batches of {batch}), below {_percent(plan.MIN_TOP1_AGREEMENT)}",
            model.precision.span,
            label=f"{changed} of {found.samples} top-1 answers change",
            notes=[Note("measured on this evaluation set", model.eval.span)],
            help="serve this model at fp32, or keep it and say in a comment why the "
            "loss is acceptable",
        )
    return plan.Agreement(
        eval=model.eval.value,
        samples=found.samples,
        batch_size=batch,
        top1_agreement=found.top1_agreement,  # exact, so the plan and W0504 agree
        max_abs_diff=float(f"{found.max_abs_diff:.6g}"),
    )


def _percent(share: float) -> str:
    """99.6%, 100%: one decimal, truncated, so never rounded up to the threshold."""
    return f"{math.floor(share * 1000 + 1e-9) / 10:g}%"


# ---- the evaluation set (E0406) ---------------------------------------------------


def _read_eval(unit: Unit, model: ast.Model, out: Diagnostics) -> dict[str, np.ndarray] | None:
    """The evaluation set's arrays by input name, or None after reporting E0406."""
    if not model.signature_complete or not model.inputs:
        return None  # a tensor line failed to read; that was reported
    import numpy as np

    written = model.eval.value
    path = unit.base_dir / written

    def fail(problem: str, label: str, help: str) -> None:
        out.add(
            codes.EVAL_SET,
            f"evaluation set `{written}` of model `{model.label}` {problem}",
            model.eval.span,
            label=label,
            help=help,
        )

    save = "save one array per input, samples first: np.savez(PATH, " + ", ".join(
        f"{t.name.value}=…" for t in model.inputs
    )
    save += ")"
    try:
        archive = np.load(path, allow_pickle=False)
    except OSError as e:
        reason = e.strerror or str(e)
        fail(f"cannot be read: {reason}", "not readable", f"paths are relative to the spec; {save}")
        return None
    except Exception:  # NumPy raises many kinds for a file that is not its own
        fail("is not a NumPy .npz archive", "not an .npz archive", save)
        return None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        fail("is a single array, not an .npz archive", "not an .npz archive", save)
        return None
    with archive:
        arrays: dict[str, np.ndarray] = {}
        for name in archive.files:
            try:
                arrays[name] = archive[name]
            except Exception as e:  # pickled objects, a truncated member
                fail(f"has an unreadable array `{name}`: {e}", "not readable", save)
                return None
    problems = _mismatches(model.inputs, arrays)
    if problems:
        fail(
            "does not match the model's inputs: " + "; ".join(problems),
            "arrays differ from the inputs",
            save,
        )
        return None
    return {t.name.value: arrays[t.name.value] for t in model.inputs}


def _mismatches(inputs: tuple[ast.Tensor, ...], arrays: dict[str, np.ndarray]) -> list[str]:
    declared = {t.name.value: t for t in inputs}
    problems = [f"no array `{name}`" for name in declared if name not in arrays]
    problems += [f"array `{name}` is not an input" for name in arrays if name not in declared]
    counts = set()
    for name, array in arrays.items():
        tensor = declared.get(name)
        if tensor is None:
            continue
        want = f"{tensor.signature()}"
        if not tensor.has_batch_axis:
            problems.append(f"input `{name}` has no `batch` axis to hold the samples")
            continue
        if not _dtype_fits(tensor.dtype.value, array):
            problems.append(f"array `{name}` holds {array.dtype}, the input is {want}")
        trailing = tuple(d.value for d in tensor.dims[1:])
        if array.ndim != len(tensor.dims) or array.shape[1:] != trailing:
            problems.append(f"array `{name}` has shape {tuple(array.shape)}, the input is {want}")
        elif array.shape[0] == 0:
            problems.append(f"array `{name}` has no samples")
        else:
            counts.add(array.shape[0])
    if len(counts) > 1:
        problems.append(f"the arrays hold different numbers of samples ({sorted(counts)})")
    return problems


def _dtype_fits(dtype: str, array: np.ndarray) -> bool:
    if dtype == "bytes":
        return array.dtype.kind in "US"
    return array.dtype.name == _NUMPY_DTYPES[dtype]
