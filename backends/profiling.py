"""Measure a loaded backend: latency and throughput per batch size, and the fitted line.

What `infc profile` and `make bench` run, against the `Backend` protocol only:

1. `make_inputs` builds a realistic batch from the model's signature: random
   normal floats, small integers, short ticket-like strings for BYTES.
2. `measure` warms each batch size up, then times `backend.infer` with
   `time.perf_counter_ns` back to back, `iterations` times or until the batch
   size has had `max_seconds`, whichever comes first (at least 3 runs), and
   keeps the p50, the p99 and the items served per second.
3. `fit_line` fits `latency(b) = fixed_s + b · per_item_s` to the p50s by
   least squares, with neither term below zero.
4. `profile_model` does all three for batch sizes 1, 2, 4, … up to the
   shard's `batch max` (included), and `entry_for` wraps the result with the
   model, target and host facts into a `profiles.Entry`.

The inputs are seeded, so two runs send the same data.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from inferplane.backends.runtime import Backend, RuntimeInfo
from inferplane.backends.tensors import DATATYPES
from inferplane.compiler import plan, profiles

MIN_RUNS = 3
SEED = 20241128
# What a support ticket looks like: the intent model's inputs in `make bench`
# and `infc profile` (short, mixed, with the odd digit and address).
TICKETS = (
    b"my card was charged twice for order 48213, please refund one of them",
    b"I cannot log in since the password reset, the link says it expired",
    b"how do I change the delivery address on an order I already placed?",
    b"the app crashes when I open my statements on android",
    b"please close my account and delete my data, thanks",
    b"where is my parcel? tracking has not moved for five days",
    b"I was billed for a subscription I cancelled last month",
    b"can I get an invoice with our company VAT number on it",
)
RUNTIME_PACKAGES = ("onnxruntime", "onnxruntime-gpu", "jax", "jaxlib", "numpy")


def batch_sizes(max_batch: int) -> list[int]:
    """1, 2, 4, … below `max_batch`, then `max_batch` itself."""
    if max_batch < 1:
        raise ValueError(f"batch max must be at least 1, not {max_batch}")
    sizes, size = [], 1
    while size < max_batch:
        sizes.append(size)
        size *= 2
    return [*sizes, max_batch]


def make_inputs(
    signature: plan.Signature, batch: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """One batch of `batch` items for each input of `signature`."""
    inputs = {}
    for spec in signature.inputs:
        shape = [batch if d == -1 else d for d in spec.shape]
        dtype = DATATYPES[spec.datatype]
        if spec.datatype == "BYTES":
            count = int(np.prod(shape, dtype=np.int64))
            picks = rng.integers(0, len(TICKETS), size=count)
            array = np.empty(count, dtype=object)
            array[:] = [TICKETS[i] for i in picks]
            inputs[spec.name] = array.reshape(shape)
        elif dtype.kind == "f":
            inputs[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            inputs[spec.name] = rng.random(shape) < 0.5
        else:  # integers: small non-negative values, valid as ids and counts
            inputs[spec.name] = rng.integers(0, 10, size=shape).astype(dtype)
    return inputs


def measure(
    backend: Backend,
    signature: plan.Signature,
    sizes: Sequence[int],
    *,
    iterations: int = 1000,
    warmup: int = 5,
    max_seconds: float = 1.0,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> list[profiles.Row]:
    """Time `backend.infer` at each batch size (see the module docstring)."""
    if iterations < 1 or warmup < 0 or max_seconds <= 0:
        raise ValueError("iterations must be >= 1, warmup >= 0 and max_seconds > 0")
    rng = np.random.default_rng(SEED)
    rows = []
    for size in sizes:
        batch = make_inputs(signature, size, rng)
        for _ in range(warmup):
            backend.infer(batch)
        budget_ns = max_seconds * 1e9
        times: list[int] = []
        spent = 0
        while len(times) < iterations and (spent < budget_ns or len(times) < MIN_RUNS):
            start = clock()
            backend.infer(batch)
            elapsed = clock() - start
            times.append(elapsed)
            spent += elapsed
        seconds = np.array(times, dtype=np.float64) / 1e9
        rows.append(
            profiles.Row(
                batch_size=size,
                iterations=len(times),
                # Rounded to what the clock resolves: the file stays readable.
                p50_s=round(float(np.percentile(seconds, 50)), 9),
                p99_s=round(float(np.percentile(seconds, 99)), 9),
                throughput_items_per_s=round(size * len(times) / max(seconds.sum(), 1e-9), 1),
            )
        )
    return rows


def fit_line(rows: Sequence[profiles.Row]) -> profiles.Fit:
    """Least squares of p50 on batch size, neither term negative.

    One row, or rows of one size, cannot separate the terms: it all goes to
    `fixed_s`. A negative slope (noise on a model whose cost does not grow with
    the batch) becomes a flat line at the mean; a negative intercept becomes a
    line through the origin.
    """
    if not rows:
        raise ValueError("no rows to fit")
    b = np.array([r.batch_size for r in rows], dtype=np.float64)
    y = np.array([r.p50_s for r in rows], dtype=np.float64)
    if len(set(b.tolist())) < 2:
        fixed, per_item = y.mean(), 0.0
    else:
        per_item, fixed = np.polyfit(b, y, 1)
        if per_item < 0:
            fixed, per_item = y.mean(), 0.0
        elif fixed < 0:
            fixed, per_item = 0.0, (b @ y) / (b @ b)
    # Picoseconds are far below the noise, and keep the file readable.
    return profiles.Fit(fixed_s=round(float(fixed), 12), per_item_s=round(float(per_item), 12))


@dataclass(frozen=True)
class Measured:
    """One model on one loaded backend."""

    rows: list[profiles.Row]
    fit: profiles.Fit
    runtime: RuntimeInfo


def profile_model(
    backend: Backend,
    model: plan.Model,
    shard_max_batch: int,
    *,
    iterations: int = 1000,
    warmup: int = 5,
    max_seconds: float = 1.0,
) -> Measured:
    """Measure a loaded backend at batch sizes 1, 2, 4, … `shard_max_batch`."""
    rows = measure(
        backend,
        model.signature,
        batch_sizes(shard_max_batch),
        iterations=iterations,
        warmup=warmup,
        max_seconds=max_seconds,
    )
    return Measured(rows, fit_line(rows), backend.describe())


def entry_for(
    model: plan.Model,
    target: plan.Target,
    measured: Measured,
    host: profiles.Host,
    *,
    source_sha256: str,
    measured_at: datetime | None = None,
) -> profiles.Entry:
    """The profile entry of one measurement; `source_sha256` is the spec's ONNX file."""
    when = (measured_at or datetime.now(UTC)).astimezone(UTC)
    info = measured.runtime
    return profiles.Entry(
        model=model.name,
        version=model.version,
        target=target.name,
        source_sha256=source_sha256,
        artifact_sha256=model.artifact.sha256,
        precision=model.precision,
        hardware=target.hardware,
        accelerator=target.accelerator,
        threads=target.threads,
        devices=target.devices,
        cpu_fallback=info.fallback,
        runtime=profiles.Runtime(
            runtime=info.runtime,
            device=info.device,
            providers=list(info.providers),
            notes=list(info.notes),
        ),
        host=host,
        measured_at=when.isoformat(timespec="seconds").replace("+00:00", "Z"),
        rows=measured.rows,
        fit=measured.fit,
    )


def format_count(per_second: float) -> str:
    """Items per second for tables: 950, 12.3k, 1.06M (three significant digits)."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        rounded = float(f"{per_second / scale:.3g}")  # 999.6k rounds up to 1M
        if rounded >= 1:
            return f"{rounded:g}{suffix}"
    return f"{float(f'{per_second:.3g}'):g}"


def host_facts(cpuinfo: Path = Path("/proc/cpuinfo")) -> profiles.Host:
    """This machine: CPU model, usable cores, OS, Python, runtime package versions."""
    packages = {}
    for name in RUNTIME_PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return profiles.Host(
        cpu=_cpu_model(cpuinfo),
        cores=_cores(),
        os=_os_name(),
        python=platform.python_version(),
        packages=packages,
    )


def _cpu_model(cpuinfo: Path) -> str:
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        # x86 says "model name"; some ARM kernels only "Hardware" or "Model".
        if key.strip() in ("model name", "Hardware", "Model") and value.strip():
            return value.strip()
    return platform.machine() or "unknown CPU"


def _os_name() -> str:
    # Not platform.platform(): it runs `uname -p` in a subprocess.
    if hasattr(os, "uname"):
        u = os.uname()
        return f"{u.sysname} {u.release} {u.machine}"
    return f"{platform.system()} {platform.release()}"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
