"""Runtime benchmark: per-batch latency of each backend on the example models.

`make bench` runs this file after the compiler benchmark. For every ONNX file
in specs/models it writes a one-model spec into a temporary folder (a copy of
the file, `batch max 64`, a cpu target with `threads 1`, and a tpu target when
the model is in the JAX subset), compiles it, and builds the backends the
workers would use (`backends.registry.create_backend`):

- onnxruntime on the CPU (CPUExecutionProvider, one intra-op thread), for
  every model;
- JAX on its CPU platform (`--cpu-fallback`), for the models a tpu target can
  run (no `bytes` tensors, ops inside `compiler/jax_subset.py`).

Each backend is timed in this process by `backends.profiling.measure`, the
code behind `infc profile`: seeded realistic inputs, warm-up runs (which also
let XLA compile each batch size), then back-to-back `infer` calls timed with
`time.perf_counter_ns` at batch sizes 1, 8 and 64, up to `--iterations` runs
or `--max-seconds` per batch size. It prints p50, p99 and items per second.

It writes nothing into the repository (the spec, the model copies and the JAX
export cache live in a temporary folder) and reports, it does not assert: exit
0 whatever the figures, 1 only when the example models are missing.

    .venv/bin/python bench/runtime_bench.py [--iterations 2000] [--max-seconds 0.5]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

from inferplane.backends.profiling import format_count, host_facts, measure
from inferplane.backends.registry import create_backend
from inferplane.backends.runtime import BackendError
from inferplane.compiler import plan
from inferplane.compiler.compilation import Compilation
from inferplane.compiler.jax_subset import unsupported_ops
from inferplane.compiler.onnx_model import OnnxModel, read_onnx
from inferplane.compiler.review import table
from inferplane.compiler.units import format_duration

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "specs" / "models"
SIZES = (1, 8, 64)
TARGETS = """\
target bench-cpu {
  hardware cpu
  threads  1
  location onprem "bench"
}

target bench-tpu {
  hardware tpu
  location onprem "bench"
}
"""


def _tensor_line(kind: str, tensor) -> str:
    dims = ", ".join("batch" if i == 0 else str(d) for i, d in enumerate(tensor.dims))
    return f"  {kind} {tensor.name} {tensor.dtype}[{dims}]"


def _in_jax_subset(model: OnnxModel) -> bool:
    tensors = (*model.inputs, *model.outputs)
    return not unsupported_ops(model) and all(t.dtype != "bytes" for t in tensors)


def _spec(name: str, model: OnnxModel) -> str:
    shards = ["  shard bench-cpu"] + (["  shard bench-tpu"] if _in_jax_subset(model) else [])
    lines = [
        f"model {name} {{",
        f'  source "models/{model.path.name}"',
        *(_tensor_line("input", t) for t in model.inputs),
        *(_tensor_line("output", t) for t in model.outputs),
        *shards,
        "  batch max 64 window 1ms",
        "}",
    ]
    return TARGETS + "\n" + "\n".join(lines) + "\n"


def _compile(folder: Path, onnx: Path) -> tuple[plan.Plan, bool]:
    """The plan of a one-model spec for `onnx`, and whether it has a tpu shard."""
    (folder / "models").mkdir(parents=True)
    shutil.copy(onnx, folder / "models" / onnx.name)
    model = read_onnx(folder / "models" / onnx.name)
    text = _spec(onnx.stem, model)
    (folder / "bench.infer").write_text(text)
    compilation = Compilation(text, str(folder / "bench.infer"), folder)
    if compilation.plan is None:
        messages = "; ".join(d.message for d in compilation.diagnostics if d.is_error)
        raise SystemExit(f"runtime_bench: {onnx.name}: the bench spec does not compile: {messages}")
    return compilation.plan, _in_jax_subset(model)


def _run(result: plan.Plan, target_name: str, folder: Path, args) -> tuple[list, str] | str:
    """Rows of one backend, and what it ran on; or why it could not run."""
    model, target = result.models[0], result.target(target_name)
    try:
        backend = create_backend(
            model, target, folder, cpu_fallback=True, cache_dir=folder / "cache"
        )
        started = time.perf_counter()
        backend.load()
        load_s = time.perf_counter() - started
        rows = measure(
            backend,
            model.signature,
            SIZES,
            iterations=args.iterations,
            warmup=5,
            max_seconds=args.max_seconds,
        )
    except (BackendError, ImportError) as error:
        return str(error)
    info = backend.describe()
    return rows, f"{info.runtime} {'/'.join(info.providers)} (load {load_s:.2f}s)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--iterations", type=int, default=2000, help="timed runs per batch size, at most"
    )
    parser.add_argument("--max-seconds", type=float, default=0.5, help="time budget per batch size")
    args = parser.parse_args()
    files = sorted(MODELS.glob("*.onnx"))
    if not files:
        print(f"runtime_bench: no models in {MODELS}; run `make models`", file=sys.stderr)
        return 1
    # The JAX backend warns once per model that it runs on the CPU by opt-in.
    logging.basicConfig(level=logging.ERROR)

    host = host_facts()
    print(
        f"Runtime benchmark on {host.cpu}, {host.cores} cores, Python {host.python}, "
        + ", ".join(f"{k} {v}" for k, v in host.packages.items())
    )
    print(f"batch sizes {', '.join(map(str, SIZES))}; p50 and p99 of back-to-back infer calls\n")
    rows = [["model", "runtime", "batch", "p50", "p99", "items/s", "p50 vs onnxruntime"]]
    runtimes: dict[str, str] = {}
    baseline: dict[int, float] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="inferplane-runtime-bench-") as tmp:
        for onnx in files:
            folder = Path(tmp) / onnx.stem
            result, jax_ok = _compile(folder, onnx)
            for label, target in (("onnxruntime", "bench-cpu"), ("jax-cpu", "bench-tpu")):
                if target == "bench-tpu" and not jax_ok:
                    continue
                outcome = _run(result, target, folder, args)
                if isinstance(outcome, str):
                    rows.append([onnx.stem, label, "-", "failed", outcome[:60], "", ""])
                    baseline = {}
                    continue
                measured, runtime = outcome
                runtimes.setdefault(label, runtime)
                if label == "onnxruntime":
                    baseline = {r.batch_size: r.p50_s for r in measured}
                for i, r in enumerate(measured):
                    ratio = ""
                    if label != "onnxruntime" and baseline.get(r.batch_size):
                        ratio = f"×{r.p50_s / baseline[r.batch_size]:.1f}"
                    rows.append(
                        [
                            onnx.stem if i == 0 and label == "onnxruntime" else "",
                            label if i == 0 else "",
                            str(r.batch_size),
                            format_duration(r.p50_s),
                            format_duration(r.p99_s),
                            format_count(r.throughput_items_per_s),
                            ratio,
                        ]
                    )
    print("\n".join(table(rows, indent=0)))
    print()
    for label, runtime in runtimes.items():
        print(f"{label}: {runtime} (first model)")
    print(f"total {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
