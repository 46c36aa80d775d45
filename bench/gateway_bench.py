"""Gateway benchmark: `infc serve` against the compute ceiling and the RPC ceiling, in one run.

`make bench` runs this file after the runtime benchmark. In a temporary folder
it builds two models from seeded random weights (`bench/models.py`): a
compute-bound MLP 512→2048→2048→512→16 and a tiny 16→16 MatMul+Add
(overhead-bound), and a spec serving both on one local cpu target (`threads
1`, one replica: the 2 cores are shared with the load generator), `batch max 64
window 2ms`, `slo p99 50ms`. Then, in this one run:

- the compute ceiling: onnxruntime in this process (one intra-op thread, the
  worker's session options) at batch sizes 1, 2, 4, … 64, before and after
  the load phases; the best inferences/s seen is the ceiling;
- the gateway: `infc serve SPEC --listen 127.0.0.1:0 --metrics off` as a
  subprocess, stopped with SIGTERM (then SIGKILL) whatever happens;
- the RPC ceiling: a do-nothing grpc.aio server (`bench/loadgen.py
  --null-server`) that answers ModelInfer with a canned response;
- the peers a user would pick instead, serving the same ONNX files with the
  same batch limits (max 64, a 2 ms window): Triton through `nvidia-pytriton`
  with its dynamic batcher, and MLServer with adaptive batching. Each runs
  from its own pinned virtualenv under `.peers/`, built on first use from
  `bench/peers/*-requirements.txt` (`bench/peer_servers.py`; their pins clash
  with ours and with each other); a peer that cannot be installed is named
  and left out (`--no-peers` leaves both out).

One load generator (`bench/loadgen.py`, one grpc.aio client in this process)
runs each phase against each model on each server, interleaved (phase by
phase, the gateway and the do-nothing server back to back): closed loop at
concurrency 1 and 32 with batch-1 requests, closed loop at concurrency 16
with batch-8 requests, and an open loop of Poisson arrivals at a fixed rate
(batch 1) against the 50 ms SLO. Each phase warms up, then measures a fixed
window. Server CPU time is read from /proc (utime + stime) of the server
process and all its descendants (the gateway's workers run in their own
process groups) at the window's start and end.

It prints Markdown tables (`bench/gateway_report.py`): phase × model ×
system → req/s, inferences/s, p50, p99, server CPU ms per inference, client
CPU ms per request, how busy the two cores were, errors or SLO misses, and
the gateway's mean batch size (from its ModelStatistics); then the ratios
(gateway vs the compute ceiling, the do-nothing server and each peer) and
the issue's targets, each marked met or missed. Last, perf_analyzer (Triton's
own load generator) measures the gateway and Triton on the tiny model as a
cross-check of the load generator. It reports and does not assert: exit 0
whatever the figures, 1 only when it cannot run. About 7 minutes (the first
run also builds the peers' virtualenvs, about a minute more).

    .venv/bin/python bench/gateway_bench.py [--seconds 5] [--warmup 1] [--rate 400] [--no-peers]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import gateway_report
import loadgen
import numpy as np
import onnxruntime as ort
import peer_servers
from models import MLP, MODELS, SLO_P99_MS, TINY, BenchModel, write_spec

from inferplane.backends.profiling import host_facts
from inferplane.compiler.compilation import Compilation
from inferplane.protos import grpc_service_pb2 as pb
from inferplane.protos import grpc_service_pb2_grpc as pb_grpc

HERE = Path(__file__).resolve().parent
TICK = os.sysconf("SC_CLK_TCK")
START_TIMEOUT_S = 120.0
ORT_SIZES = (1, 2, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class Phase:
    name: str
    rows: int  # inferences per request
    concurrency: int = 0  # closed loop when > 0
    rate: float = 0.0  # open loop when > 0


def phases(rate: float) -> tuple[Phase, ...]:
    return (
        Phase("closed c=1, batch 1", rows=1, concurrency=1),
        Phase("closed c=32, batch 1", rows=1, concurrency=32),
        Phase("closed c=16, batch 8", rows=8, concurrency=16),
        Phase(f"open {rate:g} req/s Poisson, batch 1", rows=1, rate=rate),
    )


# ---------------------------------------------------------------------- CPU times from /proc


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, utime + stime in ticks) of `pid`, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # fields[0] is field 3, `state`
    return int(fields[1]), int(fields[11]) + int(fields[12])


def tree_cpu_s(root: int) -> tuple[float, float]:
    """CPU seconds (user + system) of `root`, and of all its live descendants together."""
    parents, ticks = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (found := _stat(int(entry))) is not None:
            parents[int(entry)], ticks[int(entry)] = found
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    descendants = sum(ticks.get(pid, 0) for pid in tree if pid != root)
    return ticks.get(root, 0) / TICK, descendants / TICK


def host_ticks() -> tuple[int, int]:
    """(idle, total) ticks of all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return values[3] + values[4], sum(values)


@dataclass(frozen=True)
class Snapshot:
    server_cpu_s: float  # the server process and its descendants (the gateway's workers)
    front_cpu_s: float  # the server process alone
    client_cpu_s: float
    host: tuple[int, int]


def prober(server_pid: int):
    def probe() -> Snapshot:
        times = os.times()
        front, workers = tree_cpu_s(server_pid)
        return Snapshot(front + workers, front, times.user + times.system, host_ticks())

    return probe


# ---------------------------------------------------------------------- servers


class Server:
    """A subprocess in its own session that prints one line when it serves; stopped at exit."""

    def __init__(self, name: str, argv: list[str], ready_prefix: str, log: Path) -> None:
        self.name, self.log = name, log
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            start_new_session=True,
            text=True,
        )
        self.line = self._wait_line(ready_prefix)
        found = re.search(r" on (\S+?:\d+)", self.line)
        if found is None:
            self.stop()
            raise SystemExit(f"gateway_bench: no address in {self.name}'s line: {self.line}")
        self.address = found.group(1)

    def _wait_line(self, prefix: str) -> str:
        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            for line in self.process.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            if line.startswith(prefix):
                return line.strip()
        self.stop()
        tail = self.log.read_text(errors="replace").splitlines()[-20:]
        raise SystemExit(f"gateway_bench: {self.name} did not start; its log:\n" + "\n".join(tail))

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self._log_file.close()


def start_gateway(spec: Path, folder: Path) -> Server:
    infc = Path(sys.executable).with_name("infc")
    argv = [str(infc)] if infc.exists() else [sys.executable, "-m", "inferplane.cli.main"]
    argv += ["serve", str(spec), "--listen", "127.0.0.1:0", "--metrics", "off", "--grace", "2"]
    return Server("infc serve", argv, "serving ", folder / "serve.log")


def start_null(folder: Path) -> Server:
    argv = [sys.executable, str(HERE / "loadgen.py"), "--null-server", "--listen", "127.0.0.1:0"]
    return Server("the do-nothing server", argv, "listening on ", folder / "null.log")


# ---------------------------------------------------------------------- compute ceiling


@dataclass
class OrtRow:
    batch: int
    inf_s: float
    p50_us: float
    cpu_us_per_inf: float


def ort_sweep(path: Path, model: BenchModel, seconds: float) -> list[OrtRow]:
    """onnxruntime in this process with the worker's options, batch 1…64, back to back."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    rows = []
    for batch in ORT_SIZES:
        feed = {"x": rng.standard_normal((batch, model.inputs)).astype(np.float32)}
        for _ in range(3):
            session.run(None, feed)
        times, cpu0, start = [], time.process_time(), time.perf_counter()
        while (now := time.perf_counter()) - start < seconds or len(times) < 5:
            session.run(None, feed)
            times.append(time.perf_counter() - now)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
        served = batch * len(times)
        rows.append(OrtRow(batch, served / wall, float(np.median(times)) * 1e6, cpu / served * 1e6))
    return rows


# ---------------------------------------------------------------------- the run


@dataclass
class Result:
    phase: Phase
    model: BenchModel
    system: str
    run: loadgen.Run
    mean_batch: float | None = None  # the gateway's rows per batch sent, from its statistics

    @property
    def server_cpu_ms_per_inf(self) -> float:
        first, last = self.run.probes
        inferences = self.run.ok * self.run.rows
        return (last.server_cpu_s - first.server_cpu_s) / inferences * 1e3 if inferences else 0.0

    @property
    def front_cpu_ms_per_inf(self) -> float:
        first, last = self.run.probes
        inferences = self.run.ok * self.run.rows
        return (last.front_cpu_s - first.front_cpu_s) / inferences * 1e3 if inferences else 0.0

    @property
    def client_cpu_ms_per_req(self) -> float:
        first, last = self.run.probes
        return (last.client_cpu_s - first.client_cpu_s) / self.run.ok * 1e3 if self.run.ok else 0.0

    @property
    def host_busy(self) -> float:
        first, last = self.run.probes
        idle, total = last.host[0] - first.host[0], last.host[1] - first.host[1]
        return 1.0 - idle / total if total else 0.0


async def run_phase(address: str, pid: int, phase: Phase, model: BenchModel, args) -> loadgen.Run:
    payload = loadgen.infer_request(model.name, model.inputs, phase.rows)
    async with loadgen.channel(address) as chan:
        call = loadgen.infer_call(chan)
        probe = prober(pid)
        if phase.concurrency:
            return await loadgen.closed_loop(
                call,
                payload,
                phase.rows,
                phase.concurrency,
                warmup_s=args.warmup,
                seconds=args.seconds,
                probe=probe,
            )
        return await loadgen.open_loop(
            call,
            payload,
            phase.rows,
            phase.rate,
            warmup_s=args.warmup,
            seconds=args.seconds,
            slo_s=SLO_P99_MS / 1e3,
            probe=probe,
        )


async def batch_counts(address: str, model: str) -> tuple[int, int]:
    """(inferences, executions) the server's ModelStatistics reports for `model`."""
    async with loadgen.channel(address) as chan:
        stats = await pb_grpc.GRPCInferenceServiceStub(chan).ModelStatistics(
            pb.ModelStatisticsRequest(name=model), timeout=10
        )
    rows = [(s.inference_count, s.execution_count) for s in stats.model_stats]
    return sum(r[0] for r in rows), sum(r[1] for r in rows)


async def load_phases(systems: list[tuple[str, Server]], args) -> list[Result]:
    results = []
    for phase in phases(args.rate):
        for model in MODELS:
            for system, server in systems:
                gateway = system == "gateway"
                before = await batch_counts(server.address, model.name) if gateway else None
                run = await run_phase(server.address, server.pid, phase, model, args)
                result = Result(phase, model, system, run)
                if before is not None:
                    after = await batch_counts(server.address, model.name)
                    executions = after[1] - before[1]
                    result.mean_batch = (after[0] - before[0]) / executions if executions else None
                results.append(result)
                print(f"  {phase.name:<32} {model.name:<5} {system:<10} {_summary(result)}")
    return results


def _summary(result: Result) -> str:
    run = result.run
    errors = f", errors {dict(run.errors)}" if run.errors else ""
    return (
        f"{run.req_s:8.0f} req/s {run.inf_s:8.0f} inf/s p50 {run.percentile_ms(50):6.2f} ms "
        f"p99 {run.percentile_ms(99):6.2f} ms cpu {result.server_cpu_ms_per_inf:.3f} ms/inf"
        f"{errors}"
    )


def _facts(spec: Path) -> None:
    host = host_facts()
    packages = ", ".join(f"{k} {v}" for k, v in host.packages.items())
    load = os.getloadavg()
    print(f"host: {host.cpu}, {host.cores} cores, {host.os}, Python {host.python}, {packages}")
    print(f"load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"spec: {spec} (one cpu target, threads 1, 1 replica; batch max 64 window 2ms)")


PEERS = ("triton", "mlserver")


def start_peers(paths: dict[str, Path], folder: Path, wanted: bool) -> list[tuple[str, object]]:
    """The peers that install and start here; each one left out is named."""
    if not wanted:
        print("peers: left out (--no-peers)")
        return []
    reasons = peer_servers.ensure_envs(log=lambda line: print(f"peers: {line}"))
    started = []
    for name in PEERS:
        if reasons.get(name):
            print(f"peers: {name} left out: {reasons[name]}")
            continue
        try:
            peer = peer_servers.start_peer(name, paths, folder)
        except peer_servers.PeerError as error:
            print(f"peers: {name} left out: it did not start: {error}")
            continue
        print(f"peers: {peer.line} (pid {peer.pid})")
        started.append((name, peer))
    return started


def cross_check(systems: list[tuple[str, object]], seconds: float) -> list[tuple[str, str, dict]]:
    """perf_analyzer on the tiny model, batch 1, c=1 and c=32, against the
    gateway and Triton (MLServer has no ModelConfig, which perf_analyzer needs)."""
    binary = peer_servers.ensure_perf_analyzer(log=lambda line: print(f"perf_analyzer: {line}"))
    if isinstance(binary, str):
        print(f"perf_analyzer: left out: {binary}")
        return []
    rows = []
    for system, server in systems:
        if system not in ("gateway", "triton"):
            continue
        for concurrency in (1, 32):
            try:
                result = peer_servers.run_perf_analyzer(
                    binary, server.address, TINY.name, concurrency, 1, seconds, width=TINY.inputs
                )
            except peer_servers.PeerError as error:
                print(f"perf_analyzer: {system} c={concurrency}: {error}")
                continue
            rows.append((system, f"c={concurrency}", result))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window per phase")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up before each window")
    parser.add_argument("--rate", type=float, default=400.0, help="open-loop arrivals per second")
    parser.add_argument("--ort-seconds", type=float, default=0.3, help="per onnxruntime batch")
    parser.add_argument("--no-peers", action="store_true", help="leave Triton and MLServer out")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        folder = Path(tmp)
        spec = write_spec(folder)
        compilation = Compilation(spec.read_text(), str(spec), folder)
        if compilation.plan is None:
            messages = "; ".join(d.message for d in compilation.diagnostics)
            print(f"gateway_bench: the bench spec does not compile: {messages}", file=sys.stderr)
            return 1
        _facts(spec)
        paths = {m.name: folder / "models" / f"{m.name}.onnx" for m in MODELS}
        print(f"mlp: {MLP.macs_per_row / 1e6:.1f} M multiply-adds per row")
        sweeps: dict[str, list[list[OrtRow]]] = {m.name: [] for m in MODELS}
        for model in MODELS:
            sweeps[model.name].append(ort_sweep(paths[model.name], model, args.ort_seconds))
        systems: list[tuple[str, object]] = []
        try:
            gateway = start_gateway(spec, folder)
            systems.append(("gateway", gateway))
            null = start_null(folder)
            systems.append(("do-nothing", null))
            print(f"{gateway.line} (pid {gateway.pid}); do-nothing server {null.line}")
            systems += start_peers(paths, folder, not args.no_peers)
            results = asyncio.run(load_phases(systems, args))
            checks = cross_check(systems, max(3.0, args.seconds)) if not args.no_peers else []
        finally:
            for _, server in reversed(systems):
                server.stop()
        for model in MODELS:
            sweeps[model.name].append(ort_sweep(paths[model.name], model, args.ort_seconds))
        gateway_report.report(results, sweeps, checks)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
