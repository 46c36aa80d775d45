"""Compiler benchmark: check and plan a generated spec of 300 models on 20 targets.

`make bench` runs this file. It writes a deterministic, realistic spec (the
same text on every run) into a temporary folder next to copies of the example
ONNX files from specs/models, then times the compiler in this process with
`time.perf_counter`:

- cold: the first `Compilation` of the process. It includes building the Lark
  grammar, importing `onnx` and reading and checking the ONNX files, but not
  importing the compiler's own modules, which is timed apart (once per
  process, like the interpreter's start).
- uncached: fresh `Compilation`s whose ONNX files were touched first (a new
  mtime), so every run reads and checks them again, as each `infc` process
  does; grammar and `onnx` import are already warm.
- warm: fresh `Compilation`s with everything cached (the ONNX summaries are
  cached per process on path, mtime and size), i.e. parse, checks and
  lowering alone.

A fresh `Compilation` per run, `.plan` forces parse, checks and lowering. The
phases (parse, AST, each pass, the plan's JSON) are timed separately by running
the same steps as `Compilation` does; specs of 1/8, 1/4 and 1/2 the size show
how the time grows; and `infc plan SPEC --json` is timed once end to end as a
subprocess, interpreter start included.

Each repeated run costs about one cold run, so `--budget` (seconds, default 60)
bounds them: a slower compiler gets fewer runs, and when even one run of each
figure would not fit, the repeated runs of the full spec and the subprocess
are skipped (said so in the output), the phases are timed on the largest of
the smaller specs that fit, and the verdict rests on the cold run alone.

A benchmark reports, it does not assert: the script exits 0 whatever the
figures, 1 only when the example models are missing or the spec does not
compile.

    .venv/bin/python bench/compiler_bench.py [--runs 7] [--budget 60]
    .venv/bin/python bench/compiler_bench.py --write-spec PATH   # the spec alone
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "specs" / "models"
ONNX_FILES = (
    "fraud.onnx",
    "fraud-v4.onnx",
    "fraud-lite.onnx",
    "recs.onnx",
    "recs-lite.onnx",
    "triage.onnx",
    "obstacle.onnx",
    "intent.onnx",
)
N_MODELS = 300  # model definitions (a name with three versions counts three)
N_ROUTES = 20
SEED = 20240611
TARGET_S = 1.0


# ---------------------------------------------------------------------------
# The generated spec
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    hardware: str  # cpu | gpu | tpu
    kind: str  # onprem | cloud | edge
    site: str
    replicas: str  # "2..8" or "2"
    threads: int | None = None
    accelerator: str | None = None
    devices: int | None = None
    topology: str | None = None
    workers: tuple[str, ...] = ()


# 20 targets: 8 cpu, 8 gpu, 4 tpu; 8 on-prem, 10 cloud, 2 edge.
TARGETS = (
    Target("cpu-fra-1", "cpu", "onprem", "fra-dc1", "4..16", threads=8),
    Target("cpu-fra-2", "cpu", "onprem", "fra-dc1", "2..8", threads=4),
    Target("cpu-ams", "cpu", "onprem", "ams-dc2", "2..12", threads=8),
    Target("cpu-radiology", "cpu", "onprem", "st-marys-radiology", "2", threads=8),
    Target("gpu-fra-a100", "gpu", "onprem", "fra-dc1", "1..4", accelerator="A100", devices=2),
    Target("gpu-fra-l4", "gpu", "onprem", "fra-dc1", "1..8", accelerator="L4", devices=1),
    Target(
        "gpu-ams-l4",
        "gpu",
        "onprem",
        "ams-dc2",
        "1..6",
        accelerator="L4",
        devices=1,
        workers=("gpu-0.ams.internal:9100", "gpu-1.ams.internal:9100"),
    ),
    Target(
        "gpu-radiology", "gpu", "onprem", "st-marys-radiology", "1..2", accelerator="A10", devices=1
    ),
    Target("cpu-use1", "cpu", "cloud", "aws:us-east-1", "4..32", threads=8),
    Target("cpu-euw1", "cpu", "cloud", "gcp:europe-west1", "2..6", threads=2),
    Target("cpu-weu", "cpu", "cloud", "azure:westeurope", "2..10", threads=4),
    Target("gpu-use1-t4", "gpu", "cloud", "aws:us-east-1", "1..8", accelerator="T4", devices=1),
    Target("gpu-euw1-l4", "gpu", "cloud", "gcp:europe-west1", "1..4", accelerator="L4", devices=1),
    Target(
        "gpu-weu-h100", "gpu", "cloud", "azure:westeurope", "0..4", accelerator="H100", devices=4
    ),
    Target(
        "tpu-usc1-a",
        "tpu",
        "cloud",
        "gcp:us-central1",
        "0..4",
        accelerator="v5e",
        devices=4,
        topology="2x2",
        workers=("tpu-0.infer.svc:9100", "tpu-1.infer.svc:9100"),
    ),
    Target(
        "tpu-usc1-b",
        "tpu",
        "cloud",
        "gcp:us-central1",
        "1..2",
        accelerator="v5e",
        devices=8,
        topology="2x4",
    ),
    Target(
        "tpu-euw4",
        "tpu",
        "cloud",
        "gcp:europe-west4",
        "0..4",
        accelerator="v6e",
        devices=4,
        topology="2x2",
    ),
    Target(
        "tpu-use5",
        "tpu",
        "cloud",
        "gcp:us-east5",
        "0..2",
        accelerator="v5p",
        devices=4,
        topology="2x2x1",
    ),
    Target(
        "robot-gpu",
        "gpu",
        "edge",
        "warehouse-7/robot",
        "1",
        accelerator="Jetson Orin NX",
        devices=1,
    ),
    Target("robot-cpu", "cpu", "edge", "warehouse-7/robot", "1", threads=2),
)
TARGET_BY_NAME = {t.name: t for t in TARGETS}

# The language's precision rules (LANGUAGE.md, "Precision per hardware").
PRECISIONS = {"cpu": ("fp32", "int8"), "gpu": ("fp32", "fp16", "int8"), "tpu": ("fp32", "bf16")}


@dataclass(frozen=True)
class Family:
    """One kind of service, with the real signature of its example ONNX files."""

    stem: str  # model name prefix
    route: str  # route name prefix
    sources: tuple[str, ...]  # the main model's files, cycled through its versions
    lite: str | None  # a distilled fallback's file, served under `<stem>-lite-…`
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    pools: tuple[tuple[str, ...], ...]  # placements: target sets to shard on
    privacy: str | None  # a `privacy` line, or None
    p99_ms: int
    batches: tuple[int, ...]
    windows: tuple[str, ...]
    weight: int  # relative frequency among services


ONPREM_CPU = ("cpu-fra-1", "cpu-fra-2", "cpu-ams")
ONPREM_GPU = ("gpu-fra-a100", "gpu-fra-l4", "gpu-ams-l4")
CLOUD_CPU = ("cpu-use1", "cpu-euw1", "cpu-weu")
CLOUD_GPU = ("gpu-use1-t4", "gpu-euw1-l4", "gpu-weu-h100")
TPU = ("tpu-usc1-a", "tpu-usc1-b", "tpu-euw4", "tpu-use5")

FAMILIES = (
    Family(
        "fraud-scorer",
        "authorize",
        ("fraud.onnx", "fraud-v4.onnx"),
        "fraud-lite.onnx",
        ("features fp32[batch, 30]",),
        ("score    fp32[batch, 2]",),
        (ONPREM_CPU, ONPREM_GPU, ONPREM_CPU + ONPREM_GPU),
        "on-prem-only",
        25,
        (32, 64, 128),
        ("1ms", "2ms"),
        30,
    ),
    Family(
        "recs",
        "storefront",
        ("recs.onnx",),
        "recs-lite.onnx",
        ("history fp32[batch, 64]",),
        ("ranking fp32[batch, 10]",),
        (CLOUD_GPU, CLOUD_CPU + CLOUD_GPU, TPU, CLOUD_GPU + TPU),
        None,
        50,
        (64, 128, 256),
        ("2ms", "5ms"),
        25,
    ),
    Family(
        "support-intent",
        "helpdesk",
        ("intent.onnx",),
        None,
        ("text   bytes[batch]",),
        ("intent fp32[batch, 12]",),
        (CLOUD_CPU, CLOUD_CPU + CLOUD_GPU, ONPREM_CPU),
        "redact email phone credit-card iban in text",
        100,
        (8, 16, 32),
        ("5ms", "10ms"),
        20,
    ),
    Family(
        "triage",
        "worklist",
        ("triage.onnx",),
        None,
        ("image   fp32[batch, 1, 8, 8]",),
        ("finding fp32[batch, 10]",),
        (("gpu-radiology", "cpu-radiology"), ("gpu-fra-a100", "cpu-fra-1")),
        "on-prem-only",
        25,
        (8, 16),
        ("2ms",),
        10,
    ),
    Family(
        "obstacle",
        "avoidance",
        ("obstacle.onnx",),
        None,
        ("ranges fp32[batch, 32]",),
        ("hazard fp32[batch, 4]",),
        (("robot-gpu", "robot-cpu"), ("robot-gpu",), CLOUD_GPU),
        None,
        5,
        (1, 2, 4),
        ("250us", "500us"),
        15,
    ),
)

REGIONS = ("emea", "amer", "apac", "dach", "nordics", "iberia", "benelux", "uk", "latam", "anz")
SPLITS = {1: ((100,),), 2: ((90, 10), (95, 5), (50, 50)), 3: ((80, 15, 5), (70, 20, 10))}


@dataclass
class Block:
    name: str
    version: int
    family: Family
    source: str
    lite: bool = False


def _model_text(block: Block, rng: random.Random) -> list[str]:
    fam = block.family
    pool = rng.choice(fam.pools)
    shards = sorted(rng.sample(pool, k=rng.randint(1, min(3, len(pool)))))
    hardware = {TARGET_BY_NAME[s].hardware for s in shards}
    allowed = [
        p for p in ("fp32", "fp16", "bf16", "int8") if all(p in PRECISIONS[h] for h in hardware)
    ]
    # fp32 most of the time; the intent model (string ops) always stays fp32.
    precision = "fp32"
    if fam.stem != "support-intent" and len(allowed) > 1 and rng.random() < 0.4:
        precision = rng.choice([p for p in allowed if p != "fp32"])
    comment = "  # distilled fallback" if block.lite else ""
    lines = [f"model {block.name} {{{comment}"]
    lines.append(f'  source  "models/{block.source}"')
    if block.version != 1 or rng.random() < 0.5:
        lines.append(f"  version {block.version}")
    if precision != "fp32":
        lines.append(f"  precision {precision}")
    lines += [f"  input  {t}" for t in fam.inputs]
    lines += [f"  output {t}" for t in fam.outputs]
    for shard in shards:
        weight = rng.choice((1, 1, 2, 3, 4))
        lines.append(f"  shard  {shard}" + (f" weight {weight}" if weight > 1 else ""))
    batch = rng.choice(fam.batches) * (2 if block.lite else 1)
    if batch > 1:
        fixed = " fixed" if rng.random() < 0.1 else ""
        lines.append(f"  batch  max {batch} window {rng.choice(fam.windows)}{fixed}")
    p99 = fam.p99_ms // (2 if block.lite else 1)
    lines.append(f"  slo    p99 {p99}ms")
    if rng.random() < 0.5:
        lines.append(f"  slo    p50 {max(1, p99 // 4)}ms")
    if rng.random() < 0.6:
        lines.append(f"  slo    throughput {rng.choice((100, 200, 500, 1000, 2000))}rps")
    if rng.random() < 0.4:
        lines.append(f"  slo    availability {rng.choice(('99.5', '99.9', '99.95', '99.99'))}%")
    if fam.privacy:
        lines.append(f"  privacy {fam.privacy}")
    lines.append("}")
    return lines


def _target_text(t: Target) -> list[str]:
    lines = [f"target {t.name} {{", f"  hardware {t.hardware}"]
    if t.threads:
        lines.append(f"  threads  {t.threads}")
    if t.accelerator:
        lines.append(f'  accelerator "{t.accelerator}"')
    if t.devices:
        lines.append(f"  devices  {t.devices}")
    if t.topology:
        lines.append(f'  topology "{t.topology}"')
    lines.append(f'  location {t.kind} "{t.site}"')
    lines.append(f"  replicas {t.replicas}")
    if t.workers:
        lines.append("  workers [" + ", ".join(f'"{w}"' for w in t.workers) + "]")
    lines.append("}")
    return lines


def generate_spec(n_models: int = N_MODELS, n_routes: int = N_ROUTES, seed: int = SEED) -> str:
    """The benchmark's spec: the same text for the same arguments."""
    rng = random.Random(seed)
    services: list[tuple[Family, str, list[Block], Block | None]] = []
    counts: dict[str, int] = {}
    total = 0
    while total < n_models:
        fam = rng.choices(FAMILIES, weights=[f.weight for f in FAMILIES])[0]
        counts[fam.stem] = counts.get(fam.stem, 0) + 1
        n = counts[fam.stem]
        suffix = f"{REGIONS[(n - 1) % len(REGIONS)]}-{(n - 1) // len(REGIONS) + 1}"
        n_versions = min(rng.choices((1, 2, 3), weights=(55, 30, 15))[0], n_models - total)
        first = rng.randint(1, 5)
        versions = [
            Block(
                f"{fam.stem}-{suffix}",
                first + i,
                fam,
                fam.sources[(first + i) % len(fam.sources)],
            )
            for i in range(n_versions)
        ]
        total += n_versions
        lite = None
        if fam.lite and total < n_models and rng.random() < 0.5:
            lite = Block(f"{fam.stem.split('-')[0]}-lite-{suffix}", 1, fam, fam.lite, lite=True)
            total += 1
        services.append((fam, suffix, versions, lite))

    out = [
        "# bench.infer — generated by bench/compiler_bench.py: "
        f"{n_models} models on {len(TARGETS)} targets, {n_routes} routes.",
        f"# Deterministic (seed {seed}); the sources are the example models of specs/models.",
        "",
        "gateway {",
        '  listen  "0.0.0.0:8001"',
        '  metrics "0.0.0.0:9464"',
        "  tls {",
        '    cert      "certs/gateway.pem"',
        '    key       "certs/gateway-key.pem"',
        '    client_ca "certs/ca.pem"',
        "  }",
        '  auth tokens_env "INFERPLANE_TOKENS"',
        "  max_message 8MiB",
        "}",
        "",
    ]
    for t in TARGETS:
        out += [*_target_text(t), ""]
    for _fam, _suffix, versions, lite in services:
        for block in [*versions, *([lite] if lite else [])]:
            out += [*_model_text(block, rng), ""]

    # Routes: prefer services with a canary (several versions) and a fallback.
    ranked = sorted(
        range(len(services)),
        key=lambda i: (-(len(services[i][2]) > 1) - (services[i][3] is not None), i),
    )
    for i in sorted(ranked[:n_routes]):
        fam, suffix, versions, lite = services[i]
        split = rng.choice(SPLITS[len(versions)])
        out.append(f"route {fam.route}-{suffix} {{")
        for block, percent in zip(reversed(versions), split, strict=True):
            out.append(f"  {block.name}@{block.version} {percent}%")
        if lite is not None:
            out.append(f"  fallback {lite.name}")
        elif len(versions) > 1:
            out.append(f"  fallback {versions[0].name}@{versions[0].version}")
        out += ["}", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------


class Workdir:
    """A temporary folder with the spec and copies of the example models."""

    def __init__(self, root: Path) -> None:
        self.models = root / "models"
        self.models.mkdir()
        for name in ONNX_FILES:  # copies: touching them leaves specs/models alone
            shutil.copy2(MODELS / name, self.models / name)
        self.spec = root / "bench.infer"
        self._tick = time.time_ns()

    def touch(self) -> None:
        """Give every ONNX copy a new mtime, so that the per-process cache misses."""
        self._tick += 1_000_000_000
        for path in self.models.glob("*.onnx"):
            os.utime(path, ns=(self._tick, self._tick))


def _compile(text: str, spec: Path):
    from inferplane.compiler.compilation import Compilation

    compilation = Compilation(text, str(spec), spec.parent)
    compilation.plan  # noqa: B018 - forces parse, every pass and lowering
    return compilation


def _phases(text: str, spec: Path) -> dict[str, float]:
    """The steps that `Compilation` runs, each timed, then the plan's JSON."""
    from inferplane.compiler.compilation import PASSES
    from inferplane.compiler.diagnostics import Diagnostics
    from inferplane.compiler.parser import parse
    from inferplane.compiler.passes.build_ast import build_ast
    from inferplane.compiler.unit import Unit

    times: dict[str, float] = {}
    out = Diagnostics(str(spec))
    t0 = time.perf_counter()
    syntax = parse(text, out)
    t1 = time.perf_counter()
    unit = Unit(str(spec), spec.parent, syntax, build_ast(syntax, out))
    t2 = time.perf_counter()
    times["parse (lex, Lark, syntax tree)"] = t1 - t0
    times["build_ast"] = t2 - t1
    for compiler_pass in PASSES:
        start = time.perf_counter()
        unit = compiler_pass(unit, out)
        times[compiler_pass.__name__] = time.perf_counter() - start
    if unit.plan is None:
        raise RuntimeError("the spec has errors")
    start = time.perf_counter()
    unit.plan.to_json()
    times[JSON_PHASE] = time.perf_counter() - start
    return times


JSON_PHASE = "plan.to_json (the --json output)"


def _timed(runs: int, before: Callable[[], None], body: Callable[[], object]) -> list[float]:
    samples = []
    for _ in range(runs):
        before()
        start = time.perf_counter()
        body()
        samples.append(time.perf_counter() - start)
    return samples


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f}"


def _secs(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:,.0f} s"


def _row(label: str, *cells: str) -> str:
    return f"{label:48}" + "".join(f"{c:>11}" for c in cells)


def _nothing() -> None:
    pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per figure (default 7)")
    parser.add_argument(
        "--budget",
        type=float,
        default=60.0,
        help="seconds the repeated runs may take, judged from the cold run: a slower "
        "compiler gets fewer runs, and one too slow for a single run of each figure "
        "gets only the cold run and the smaller specs (default 60)",
    )
    parser.add_argument(
        "--write-spec",
        metavar="PATH",
        help="write the generated spec here and exit without timing anything (its sources "
        "are models/*.onnx, relative to PATH's folder)",
    )
    args = parser.parse_args(argv)

    missing = [name for name in ONNX_FILES if not (MODELS / name).is_file()]
    if missing:
        print(
            f"compiler_bench: the example models are missing from {MODELS}: "
            f"{', '.join(missing)}.\nBuild them first with `make models` (`make bench` does).",
            file=sys.stderr,
        )
        return 1

    text = generate_spec()
    lines = text.count("\n") + 1
    if args.write_spec:
        Path(args.write_spec).write_text(text, encoding="utf-8")
        print(f"wrote {args.write_spec}: {lines:,} lines; its sources are models/*.onnx next to it")
        return 0
    print(
        f"machine: {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {platform.machine()}",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="infc-bench-") as tmp:
        work = Workdir(Path(tmp))
        work.spec.write_text(text, encoding="utf-8")
        work.touch()

        # The compiler's own modules (pydantic models, lark) load once per process, like
        # the interpreter itself: timed apart, and left out of the cold figure.
        start = time.perf_counter()
        importlib.import_module("inferplane.compiler.compilation")
        imports = time.perf_counter() - start
        # Cold: the first compilation in this process (Lark grammar, `import onnx`, ONNX reads).
        start = time.perf_counter()
        compilation = _compile(text, work.spec)
        cold = time.perf_counter() - start

        diagnostics = compilation.diagnostics
        errors = [d for d in diagnostics if d.is_error]
        plan = compilation.plan
        if plan is None or errors:
            from inferplane.compiler import render

            print(render.to_json(diagnostics), file=sys.stderr)
            print(f"compiler_bench: the generated spec has {len(errors)} errors", file=sys.stderr)
            return 1
        print(
            f"spec: {lines:,} lines, {len(plan.models)} models "
            f"({len({m.name for m in plan.models})} names), {len(plan.targets)} targets, "
            f"{len(plan.routes)} routes; 0 errors, {len(diagnostics)} warnings; "
            f"plan JSON {len(plan.to_json()) / 1024:,.0f} KiB",
            flush=True,
        )
        print(f"cold compile: {cold:.3f} s", flush=True)

        # Repeated runs: as many as the budget allows (each costs about `cold`).
        runs = max(1, min(args.runs, int(args.budget / (4 * cold))))
        slow = 4 * cold > args.budget  # even one run of each figure would not fit
        skipped = f"skipped: one compile takes {_secs(cold)}"
        if slow:
            print(
                f"(a slow compile: no repeated runs of the full spec, phases measured on a "
                f"smaller one, to stay near --budget {args.budget:g} s)",
                flush=True,
            )
        elif runs < args.runs:
            print(f"(a slow compile: {runs} runs per figure, for --budget {args.budget:g} s)")

        # How the time grows with the spec: smaller specs of the same make, warm.
        scaling: list[tuple[int, str, int, float]] = []
        spent = 0.0
        for size in (N_MODELS // 8, N_MODELS // 4, N_MODELS // 2):
            if slow and scaling and spent + 4 * scaling[-1][3] > args.budget:
                break  # the next size (double) would take about four times as long
            small = generate_spec(size, max(1, min(N_ROUTES, size // 4)))
            samples = _timed(
                1 if slow else 3, _nothing, functools.partial(_compile, small, work.spec)
            )
            spent += sum(samples)
            scaling.append((size, small, small.count("\n") + 1, statistics.median(samples)))

        # The phases: of the full spec, or in a slow case of the largest smaller one.
        phase_size, phase_text = (scaling[-1][0], scaling[-1][1]) if slow else (N_MODELS, text)
        phases: dict[str, dict[str, list[float]]] = {"warm": {}, "uncached": {}}
        for regime, before in (("warm", _nothing), ("uncached", work.touch)):
            for _ in range(runs):
                before()
                for phase, seconds in _phases(phase_text, work.spec).items():
                    phases[regime].setdefault(phase, []).append(seconds)
        compile_once = functools.partial(_compile, text, work.spec)
        uncached = [] if slow else _timed(runs, work.touch, compile_once)
        warm = [] if slow else _timed(runs, _nothing, compile_once)

        end_to_end = interpreter = None
        if not slow:
            infc = Path(sys.executable).with_name("infc")
            work.touch()
            command = [str(infc), "plan", str(work.spec), "--json", "--color", "never"]
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, cwd=tmp, check=False)
            end_to_end = time.perf_counter() - start
            status = "ok" if done.returncode == 0 else f"exit {done.returncode}"
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            interpreter = time.perf_counter() - start

    def stats(samples: list[float]) -> tuple[str, ...]:
        if not samples:
            return ("—", "—", "0", f"  ({skipped})")
        return (_ms(statistics.median(samples)), _ms(min(samples)), str(len(samples)))

    print()
    print(_row(f"{N_MODELS} models: fresh Compilation(...).plan", "median ms", "min ms", "runs"))
    print(_row("(before it: import the compiler's modules)", _ms(imports), _ms(imports), "1"))
    print(_row("cold: first run (grammar, import onnx, ONNX)", _ms(cold), _ms(cold), "1"))
    print(_row("uncached: ONNX files read again each run", *stats(uncached)))
    print(_row("warm: ONNX summaries cached", *stats(warm)))
    print()
    print(_row(f"phases, {phase_size} models (median ms)", "warm", "uncached"))
    totals = {"warm": 0.0, "uncached": 0.0}
    for phase in phases["warm"]:
        cells = []
        for regime in ("warm", "uncached"):
            median = statistics.median(phases[regime][phase])
            cells.append(_ms(median))
            if phase != JSON_PHASE:
                totals[regime] += median
        print(_row(phase, *cells))
    print(_row("sum, without the JSON output", _ms(totals["warm"]), _ms(totals["uncached"])))
    print()
    print(_row("scaling: one Compilation, warm (median ms)", "lines", "ms"))
    for size, _text, size_lines, seconds in scaling:
        print(_row(f"  {size} models", f"{size_lines:,}", _ms(seconds)))
    full = statistics.median(warm) if warm else cold
    print(
        _row(
            f"  {N_MODELS} models" + (" (the cold run)" if not warm else ""),
            f"{lines:,}",
            _ms(full),
        )
    )
    print()
    if end_to_end is None:
        print(_row("`infc plan --json` subprocess, end to end", "—", f"  ({skipped})"))
    else:
        print(_row("`infc plan --json` subprocess, end to end", _ms(end_to_end), status))
        print(_row("  of which `python -c pass`", _ms(interpreter)))
    print()

    if uncached:
        figure = f"check+plan median {_secs(statistics.median(uncached))} (cold {_secs(cold)})"
        worst = max(statistics.median(uncached), cold)
    else:
        figure = f"check+plan {_secs(cold)} (cold, one run; repeated runs skipped)"
        worst = cold
    met = "met" if worst < TARGET_S else "NOT met"
    print(
        f"{len(plan.models)} models / {len(plan.targets)} targets / {lines:,} lines: "
        f"{figure} — target < {TARGET_S:g} s: {met}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
