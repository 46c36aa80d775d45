"""Pass: model files. Each source is a valid ONNX model that matches its declaration.

E0402 a source that is missing or not valid ONNX; E0403 declared inputs and
outputs that differ from the graph's (names, dtypes, ranks, fixed dimensions;
the message shows both sides); E0405 a model on a tpu shard that uses ONNX ops
outside the JAX subset. The files read are kept in `unit.model_files` for
the SLO estimates and for lowering.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from inferplane.compiler import ast
from inferplane.compiler import diagnostics as codes
from inferplane.compiler.diagnostics import Diagnostics, Note
from inferplane.compiler.jax_subset import unsupported_ops
from inferplane.compiler.onnx_model import OnnxError, OnnxModel, OnnxTensor, read_onnx
from inferplane.compiler.unit import Unit


def check_models(unit: Unit, out: Diagnostics) -> Unit:
    files: dict[tuple[str, int], OnnxModel] = {}
    for model in unit.spec.models:
        if model.source is None:
            continue
        path = _shown(unit.base_dir / model.source.value)
        try:
            found = read_onnx(path)
        except OnnxError as e:
            out.add(
                codes.MODEL_FILE,
                f"cannot use the source of model `{model.label}`: {e}",
                model.source.span,
                label="not a usable ONNX file",
                help=f"sources are relative to the spec's folder ({_shown(unit.base_dir)}/)",
            )
            continue
        files[model.key] = found
        _compare(model, "input", model.inputs, found.inputs, out)
        _compare(model, "output", model.outputs, found.outputs, out)
        _check_tpu_ops(unit.spec, model, found, out)
    return replace(unit, model_files=files)


def _shown(path: Path) -> Path:
    """The path as the user will look for it: relative to where infc runs, if inside."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _graph_signature(tensor: OnnxTensor) -> str:
    dtype = tensor.dtype or tensor.onnx_type
    if tensor.dims is None:
        return f"{dtype}[unknown shape]"
    dims = ", ".join("?" if d is None else str(d) for d in tensor.dims)
    return f"{dtype}[{dims}]"


def _mismatch(declared: ast.Tensor, found: OnnxTensor) -> str:
    """Why a declared tensor does not fit the graph's, or "" when it does."""
    if found.dtype != declared.dtype.value:
        return "dtype"
    if found.dims is None:
        return ""
    if len(found.dims) != len(declared.dims):
        return "rank"
    for want, have in zip(declared.dims, found.dims, strict=True):
        if want.value == ast.BATCH:
            if isinstance(have, int):
                return f"the model fixes the batch dimension to {have}"
        elif isinstance(have, int) and have != want.value:
            return "dimension"
    return ""


def _compare(
    model: ast.Model,
    kind: str,
    declared: tuple[ast.Tensor, ...],
    found: tuple[OnnxTensor, ...],
    out: Diagnostics,
) -> None:
    graph = {t.name: t for t in found}
    for tensor in declared:
        have = graph.get(tensor.name.value)
        if have is None:
            names = ", ".join(f"`{t.name}` {_graph_signature(t)}" for t in found)
            out.add(
                codes.SIGNATURE,
                f"model `{model.label}` declares {kind} `{tensor.name.value}`, "
                f"which its ONNX file does not have",
                tensor.name.span,
                label=f"not a graph {kind}",
                help=f"the graph's {kind}s are {names}" if names else f"the graph has no {kind}s",
            )
            continue
        why = _mismatch(tensor, have)
        if why:
            out.add(
                codes.SIGNATURE,
                f"{kind} `{tensor.name.value}` of model `{model.label}` does not match its "
                f"ONNX file: declared {tensor.signature()}, the model has "
                f"{_graph_signature(have)}",
                tensor.span,
                label=f"{why} differs" if why in ("dtype", "rank", "dimension") else why,
                help=f"declare `{kind} {tensor.name.value} {_suggest(have)}`",
            )
    if not model.signature_complete:
        return  # a tensor line failed to read; it was reported there
    declared_names = {t.name.value for t in declared}
    for have in found:
        if have.name not in declared_names:
            out.add(
                codes.SIGNATURE,
                f"the ONNX file of model `{model.label}` has {kind} `{have.name}` "
                f"{_graph_signature(have)}, which the spec does not declare",
                model.source.span if model.source else model.name.span,
                label=f"undeclared {kind} `{have.name}`",
                help=f"declare `{kind} {have.name} {_suggest(have)}`",
            )


def _suggest(tensor: OnnxTensor) -> str:
    dtype = tensor.dtype or "?"
    if tensor.dims is None:
        return f"{dtype}[…]"
    dims = [
        "batch" if i == 0 and not isinstance(d, int) else ("?" if d is None else str(d))
        for i, d in enumerate(tensor.dims)
    ]
    return f"{dtype}[{', '.join(dims)}]"


def _check_tpu_ops(spec: ast.Spec, model: ast.Model, found: OnnxModel, out: Diagnostics) -> None:
    for shard in model.shards:
        target = spec.target(shard.target.value)
        if target is None or target.hardware is None or target.hardware.value != "tpu":
            continue
        missing = unsupported_ops(found)
        if missing:
            out.add(
                codes.TPU_UNSUPPORTED,
                f"model `{model.label}` uses ONNX ops that the tpu runtime cannot lower: "
                f"{', '.join(missing)}",
                shard.target.span,
                label=f"`{target.name.value}` is a tpu target",
                notes=[Note("model source here", model.source.span if model.source else None)],
                help="serve it on cpu or gpu, or export the model with the supported ops "
                "(docs/language.md lists them)",
            )
        return
