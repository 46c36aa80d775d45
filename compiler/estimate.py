"""Service-time estimates from FLOPs, for models that no profile has measured yet.

One replica's batch service time is modelled as a straight line,

    latency(b)  = fixed_s + b · per_item_s
    fixed_s     = overhead per batch + graph nodes · dispatch per node
    per_item_s  = flops_per_item / (effective FLOP/s of one unit · units)
                  + per-item floor

where a unit is one CPU thread, one GPU or one TPU chip, and units is the
target's `threads` (cpu; 1 when not set) or `devices` (gpu, tpu). The
per-batch overhead covers the runtime call and host↔device copies, the
per-node dispatch a kernel launch (or an onnxruntime op dispatch) for each
graph node, and the per-item floor the copies in and out that every request
costs however few FLOPs its model has. Without the last two, a tiny model
would seem to serve millions of requests a second.

The figures in `TABLE` are *effective* small-batch throughputs: a vendor's
dense peak (no sparsity) times the share of it that inference at small batch
sizes reaches, `fraction`. They are order-of-magnitude guides for the
compiler's SLO warnings (W0501–W0503) and for `infc plan`, not predictions:
memory-bound models, tiny layers and framework overheads can be several times
slower. `infc profile` measures the real line on the real hardware, and its
profiles replace these estimates (basis "measured"). docs/estimates.md shows
the table and says what it is good for.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass

from inferplane.compiler.plan import Estimate
from inferplane.compiler.schema import PRECISIONS


@dataclass(frozen=True)
class Rate:
    """One precision on one unit: a datasheet peak and the share of it reached."""

    peak: float  # dense FLOP/s (or OP/s for int8), from the vendor's datasheet
    fraction: float  # of the peak, at small inference batches

    @property
    def effective(self) -> float:
        return self.peak * self.fraction


@dataclass(frozen=True)
class Unit:
    """The throughput of one unit of some hardware, and its per-batch overhead."""

    name: str  # "cpu thread", "A100", "v5e"
    rates: Mapping[str, Rate]  # by precision
    overhead_s: float  # fixed cost of one batch
    per_node_s: float = 0.0  # dispatch of one graph node, once per batch
    per_item_floor_s: float = 0.0  # copies in and out, per request in the batch


# Per-batch overheads: an onnxruntime CPU run with the worker's tensor copies;
# a CUDA run's launches and host↔device copies; an XLA executable's dispatch
# and transfers to the TPU. The CPU figures are calibrated against `infc
# profile` on a 2-core x86 host (onnxruntime 1.32): the demo's fraud models
# measured 15 us at batch 1 (estimated 17-18 us), fraud-lite 0.06 us per extra
# item, the text model 2 us per extra item (string ops; the floor below is the
# middle ground).
CPU_OVERHEAD_S = 10e-6
GPU_OVERHEAD_S = 300e-6
TPU_OVERHEAD_S = 500e-6
# Per node per batch: an onnxruntime CPU op dispatch; a CUDA kernel launch; XLA
# fuses a graph into few kernels, so little per node on a TPU.
CPU_PER_NODE_S, GPU_PER_NODE_S, TPU_PER_NODE_S = 1e-6, 8e-6, 0.5e-6
# Per item: copying the request's tensors in and the response out of the batch.
CPU_PER_ITEM_S, GPU_PER_ITEM_S, TPU_PER_ITEM_S = 0.2e-6, 0.5e-6, 0.5e-6

# Shares of peak at small batches (sizes 1-128). CPU: onnxruntime's MLAS
# kernels reach ~40% of fp32 FMA peak on inference-sized GEMMs; its int8
# (dynamic quantization) kernels ~20% of the int8 peak, about 2× fp32 in
# practice. GPU: fp32 on CUDA cores ~25%; tensor cores are hard to fill at small
# batches, ~10% for fp16, and int8 is counted at 5% (no faster than fp16) since
# dynamically quantized graphs on CUDA use less mature integer kernels. TPU:
# ~20% of the MXU at small batches; fp32 matmuls run as six bf16 passes
# (JAX precision HIGHEST), so a sixth of the bf16 peak.
CPU_FP32, CPU_INT8 = 0.40, 0.20
GPU_FP32, GPU_FP16, GPU_INT8 = 0.25, 0.10, 0.05
TPU_FRACTION = 0.20


def _gpu(name: str, fp32: float, fp16: float, int8: float) -> Unit:
    """A GPU from its datasheet's dense TFLOPS (fp32 CUDA cores, fp16/int8 tensor cores)."""
    rates = {
        "fp32": Rate(fp32 * 1e12, GPU_FP32),
        "fp16": Rate(fp16 * 1e12, GPU_FP16),
        "int8": Rate(int8 * 1e12, GPU_INT8),
    }
    return Unit(name, rates, GPU_OVERHEAD_S, GPU_PER_NODE_S, GPU_PER_ITEM_S)


def _tpu(name: str, bf16: float) -> Unit:
    """A TPU chip from Google Cloud's bf16 peak TFLOPS per chip."""
    rates = {
        "bf16": Rate(bf16 * 1e12, TPU_FRACTION),
        "fp32": Rate(bf16 * 1e12 / 6, TPU_FRACTION),
    }
    return Unit(name, rates, TPU_OVERHEAD_S, TPU_PER_NODE_S, TPU_PER_ITEM_S)


# A 3 GHz x86 core with AVX2's two 256-bit FMA units: 3e9 · 2 units · 8 lanes ·
# 2 FLOP = 96 GFLOP/s fp32; int8 dot products (VNNI / VPMADDUBSW) pack 4× the
# lanes, 384 GOP/s.
CPU_THREAD = Unit(
    "cpu thread",
    {"fp32": Rate(96e9, CPU_FP32), "int8": Rate(384e9, CPU_INT8)},
    CPU_OVERHEAD_S,
    CPU_PER_NODE_S,
    CPU_PER_ITEM_S,
)

# NVIDIA datasheets, dense (without structured sparsity), SXM parts for
# A100/H100/H200: fp32 TFLOPS, fp16 tensor TFLOPS, int8 tensor TOPS.
GPUS: Mapping[str, Unit] = {
    "T4": _gpu("T4", 8.1, 65, 130),
    "L4": _gpu("L4", 30.3, 121, 242),
    "A10": _gpu("A10", 31.2, 125, 250),
    "A100": _gpu("A100", 19.5, 312, 624),
    "H100": _gpu("H100", 67, 989, 1979),
    "H200": _gpu("H200", 67, 989, 1979),
}

# Google Cloud TPU documentation, bf16 peak per chip.
TPUS: Mapping[str, Unit] = {
    "v4": _tpu("v4", 275),
    "v5e": _tpu("v5e", 197),
    "v5p": _tpu("v5p", 459),
    "v6e": _tpu("v6e", 918),
}

# An unknown or unnamed accelerator gets the slowest of its kind's table, so
# that the SLO warnings err on the side of warning.
DEFAULT_GPU = _gpu("default (T4-class)", 8.1, 65, 130)
DEFAULT_TPU = _tpu("default (v5e-class)", 197)

# The whole table, for docs/estimates.md and the tests.
TABLE: Mapping[str, Mapping[str, Unit]] = {
    "cpu": {"thread": CPU_THREAD},
    "gpu": {**GPUS, "default": DEFAULT_GPU},
    "tpu": {**TPUS, "default": DEFAULT_TPU},
}

# Other spellings of the names above, as clouds write them, one token each.
_ALIASES = {"v5litepod": "v5e", "v5lite": "v5e", "trillium": "v6e"}


def estimate(
    flops_per_item: float,
    hardware: str,
    precision: str,
    accelerator: str | None,
    devices: int,
    threads: int | None,
    max_batch: int,
    nodes: int = 0,
) -> Estimate:
    """The estimated service-time line of one replica (see the module docstring)."""
    if (
        flops_per_item < 0
        or nodes < 0
        or devices < 1
        or max_batch < 1
        or (threads is not None and threads < 1)
    ):
        raise ValueError("flops and nodes must be >= 0, and devices, threads and max_batch >= 1")

    unit, where, note = _unit(hardware, accelerator)
    if hardware == "cpu":
        count = threads or 1
        units = f"{count} thread{'s' if count > 1 else ''}"
        if threads is None:
            units += " (threads not set, 1 assumed)"
    else:
        count = devices
        units = f"{count} {'chip' if hardware == 'tpu' else 'device'}{'s' if count > 1 else ''}"

    rate = unit.rates.get(precision)
    used = precision
    if rate is None:  # precision the hardware does not have: E0401 reports it
        rate, used = unit.rates["fp32"], f"fp32, as {hardware} has no {precision}"
    if note:
        used += f"; {note}"

    per_item_s = flops_per_item / (rate.effective * count) + unit.per_item_floor_s
    fixed_s = unit.overhead_s + nodes * unit.per_node_s
    max_batch_latency_s = fixed_s + max_batch * per_item_s
    detail = (
        f"{_si(flops_per_item)}FLOP/item on {where} × {units} "
        f"at {_si(rate.effective)}FLOP/s each ({used}), "
        f"{fixed_s * 1e6:.3g} µs per batch ({nodes} node{'s' if nodes != 1 else ''}), "
        f"{unit.per_item_floor_s * 1e6:.2g} µs per item floor (estimate table)"
    )
    return Estimate(
        basis="estimated",
        detail=detail,
        flops_per_item=flops_per_item,
        fixed_s=fixed_s,
        per_item_s=per_item_s,
        single_latency_s=fixed_s + per_item_s,
        max_batch_latency_s=max_batch_latency_s,
        capacity_rps=max_batch / max_batch_latency_s,
    )


def _unit(hardware: str, accelerator: str | None) -> tuple[Unit, str, str]:
    """The table entry for a target, its name in the detail, and a note on a default."""
    if hardware == "cpu":
        return CPU_THREAD, "cpu", ""
    if hardware not in ("gpu", "tpu"):
        raise ValueError(f"unknown hardware {hardware!r}")
    default = DEFAULT_GPU if hardware == "gpu" else DEFAULT_TPU
    if accelerator is None:
        return default, hardware, f"no accelerator named, so the {default.name} figures"
    unit = lookup_accelerator(hardware, accelerator)
    if unit is None:
        why = f'unknown accelerator "{accelerator}"'
        return default, hardware, f"{why}, so the {default.name} figures"
    return unit, f"{hardware} {unit.name}", ""


def lookup_accelerator(hardware: str, accelerator: str) -> Unit | None:
    """The table entry an accelerator's name points at, or None.

    Case and punctuation do not matter, and the longer names that clouds and
    Kubernetes node labels use work when one word, or two adjacent words, of
    them is a known name: "nvidia-tesla-t4", "A100-80GB", "nvidia-h200-141gb",
    "tpu-v5-lite-podslice" (v5e), "v5litepod-8", "tpu-v6e-slice".
    """
    known = GPUS if hardware == "gpu" else TPUS if hardware == "tpu" else {}
    by_word = {name.lower(): unit for name, unit in known.items()}
    words = [w for w in re.split(r"[^a-z0-9]+", accelerator.lower()) if w]
    for word in [*words, *(a + b for a, b in itertools.pairwise(words))]:
        unit = by_word.get(_ALIASES.get(word, word))
        if unit is not None:
            return unit
    return None


def _si(value: float) -> str:
    """1234567 → "1.23 M", 0 → "0 ": the number and its prefix, ready for a unit."""
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g} {prefix}"
    return f"{value:.3g} "


def table_markdown() -> str:
    """`TABLE` as the Markdown table in docs/estimates.md (a test keeps them equal)."""
    lines = [
        "| hardware | unit | precision | peak | fraction | effective "
        "| per batch | per node | per item floor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for hardware, units in TABLE.items():
        for name, unit in units.items():
            for precision in sorted(unit.rates, key=PRECISIONS.index):
                rate = unit.rates[precision]
                lines.append(
                    f"| {hardware} | {name} | {precision} | {_si(rate.peak)}FLOP/s "
                    f"| {rate.fraction:.0%} | {_si(rate.effective)}FLOP/s "
                    f"| {unit.overhead_s * 1e6:.3g} µs | {unit.per_node_s * 1e6:.2g} µs "
                    f"| {unit.per_item_floor_s * 1e6:.2g} µs |"
                )
    return "\n".join(lines) + "\n"
