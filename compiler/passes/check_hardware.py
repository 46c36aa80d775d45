"""Pass: what the hardware can run.

E0401 a precision that a shard's hardware does not support; E0404 batching
above 1 while an input or output has no `batch` axis; E0405 a `bytes` (or any
non-float) tensor on a tpu shard (the op subset is checked with the ONNX file,
in check_models); E0201 for accelerator fields on a cpu target.
"""

from __future__ import annotations

from inferplane.compiler import ast, schema
from inferplane.compiler import diagnostics as codes
from inferplane.compiler.diagnostics import Diagnostics, Note
from inferplane.compiler.suggest import one_of
from inferplane.compiler.unit import Unit

_TPU_DTYPES = frozenset({"fp32", "fp16", "bf16"})


def check_hardware(unit: Unit, out: Diagnostics) -> Unit:
    spec = unit.spec
    for target in spec.targets:
        _check_target_fields(target, out)
    for model in spec.models:
        _check_precision(spec, model, out)
        _check_batch_axis(model, out)
        _check_tpu_tensors(spec, model, out)
    return unit


def _check_target_fields(target: ast.Target, out: Diagnostics) -> None:
    if target.hardware is None:
        return
    hardware = target.hardware.value
    misplaced = []
    if hardware == "cpu":
        misplaced = [("accelerator", target.accelerator), ("devices", target.devices)]
    if hardware != "tpu":
        misplaced.append(("topology", target.topology))
    for field, value in misplaced:
        if value is not None:
            out.add(
                codes.WRONG_KIND,
                f"`{field}` does not apply to {hardware} target `{target.name.value}`",
                value.span,
                label=f"target is {hardware}",
                notes=[Note("hardware declared here", target.hardware.span)],
                help=f"remove `{field}`, or change the target's hardware",
            )


def _check_precision(spec: ast.Spec, model: ast.Model, out: Diagnostics) -> None:
    precision = model.precision.value
    for shard in model.shards:
        target = spec.target(shard.target.value)
        if target is None or target.hardware is None:
            continue
        hardware = target.hardware.value
        allowed = schema.PRECISION_BY_HARDWARE[hardware]
        if precision in allowed:
            continue
        out.add(
            codes.PRECISION,
            f"precision {precision} of model `{model.label}` is not supported on {hardware} "
            f"target `{target.name.value}`",
            model.precision.span,
            label=f"{hardware} runs {one_of(allowed)}",
            notes=[Note(f"sharded on `{target.name.value}` here", shard.target.span)],
            help=f"use {one_of(allowed)}, or move the shard to hardware that runs {precision}",
        )


def _check_batch_axis(model: ast.Model, out: Diagnostics) -> None:
    if model.batch is None or model.batch.max.value <= 1:
        return
    for tensor in (*model.inputs, *model.outputs):
        if tensor.has_batch_axis:
            continue
        dims = ", ".join(str(d.value) for d in tensor.dims)
        suggestion = f"{tensor.dtype.value}[batch{', ' + dims if dims else ''}]"
        out.add(
            codes.NO_BATCH_AXIS,
            f"model `{model.label}` batches up to {model.batch.max.value} but "
            f"`{tensor.name.value}` has no batch axis",
            tensor.span,
            label=f"declared {tensor.signature()}",
            notes=[Note("batching declared here", model.batch.span)],
            help=f"declare the batch axis first, `{suggestion}`, or use `batch max 1`",
        )


def _check_tpu_tensors(spec: ast.Spec, model: ast.Model, out: Diagnostics) -> None:
    tpu_shards = [
        s
        for s in model.shards
        if (t := spec.target(s.target.value)) and t.hardware and t.hardware.value == "tpu"
    ]
    if not tpu_shards:
        return
    for tensor in (*model.inputs, *model.outputs):
        dtype = tensor.dtype.value
        if dtype in _TPU_DTYPES:
            continue
        if dtype == "bytes":
            label = "XLA has no string tensors"
            help_text = "serve text models on cpu or gpu targets"
        else:
            # JAX runs without 64-bit types by default; integers would be narrowed silently.
            label = "the tpu runtime takes floating-point tensors only"
            help_text = "feed fp32, fp16 or bf16 tensors, or serve this model on cpu or gpu"
        out.add(
            codes.TPU_UNSUPPORTED,
            f"model `{model.label}` has {dtype} tensor `{tensor.name.value}` but is sharded "
            f"on tpu target `{tpu_shards[0].target.value}`",
            tensor.dtype.span,
            label=label,
            notes=[Note("tpu shard here", tpu_shards[0].target.span)],
            help=help_text,
        )
