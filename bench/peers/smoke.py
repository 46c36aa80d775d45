"""Smoke test of the gateway benchmark's peers: install, start, load briefly, perf_analyzer, stop.

    .venv/bin/python bench/peers/smoke.py [--seconds 2] [--peer mlserver --peer triton]

In a temporary folder it writes the two bench models (`bench/models.py`),
makes sure the peers' virtualenvs and perf_analyzer exist
(`bench/peer_servers.py`), then for each peer: starts it, runs the repo's load
generator (`bench/loadgen.py`, closed loop, batch-1 requests) against each
model at concurrency 1 and 32 for a couple of seconds, runs perf_analyzer
against it for the tiny model at concurrency 1, and stops it whatever happens.
Exits 1 when a peer that is installed fails to start or answers with errors.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/

import loadgen
import peer_servers
from models import MODELS, TINY, write_spec

CONCURRENCIES = (1, 32)


async def closed_loop(address: str, model, concurrency: int, seconds: float) -> loadgen.Run:
    payload = loadgen.infer_request(model.name, model.inputs, rows=1)
    async with loadgen.channel(address) as chan:
        return await loadgen.closed_loop(
            loadgen.infer_call(chan),
            payload,
            1,
            concurrency,
            warmup_s=0.5,
            seconds=seconds,
            probe=lambda: None,
        )


def load(server: peer_servers.PeerServer, seconds: float) -> bool:
    """Closed loops against each model; True when every request was answered OK."""
    clean = True
    for model in MODELS:
        for concurrency in CONCURRENCIES:
            run = asyncio.run(closed_loop(server.address, model, concurrency, seconds))
            errors = f"  errors {dict(run.errors)}" if run.errors else ""
            clean = clean and not run.errors and run.ok > 0
            print(
                f"  {server.name:<8} {model.name:<4} c={concurrency:<2} {run.req_s:7.0f} req/s  "
                f"p50 {run.percentile_ms(50):6.2f} ms  p99 {run.percentile_ms(99):6.2f} ms{errors}",
                flush=True,
            )
    return clean


def perf_analyzer(binary, server: peer_servers.PeerServer, seconds: float) -> None:
    try:
        result = peer_servers.run_perf_analyzer(
            binary, server.address, TINY.name, 1, 1, seconds, width=TINY.inputs
        )
    except peer_servers.PeerError as error:
        print(f"  {server.name:<8} perf_analyzer tiny c=1: failed: {error}", flush=True)
        return
    inside = ""
    if "server_queue_ms" in result:
        inside = (
            f"  (server: queue {result['server_queue_ms']:.2f} ms, "
            f"infer {result['server_infer_ms']:.2f} ms)"
        )
    print(
        f"  {server.name:<8} perf_analyzer tiny c=1 b=1: {result['infer_s']:.0f} infer/s  "
        f"p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms{inside}",
        flush=True,
    )


def smoke(name: str, paths: dict[str, Path], folder: Path, binary, seconds: float) -> bool:
    started = time.monotonic()
    server = peer_servers.start_peer(name, paths, folder / name)
    try:
        print(f"{server.line}, pid {server.pid}, ready in {time.monotonic() - started:.1f} s")
        clean = load(server, seconds)
        if isinstance(binary, Path):
            perf_analyzer(binary, server, 1.5 * seconds)
        return clean
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measured window per loop")
    parser.add_argument("--peer", action="append", choices=sorted(peer_servers.ENVS))
    args = parser.parse_args(argv)
    started = time.monotonic()
    missing = peer_servers.ensure_envs()
    binary = peer_servers.ensure_perf_analyzer()
    print(f"environments checked in {time.monotonic() - started:.0f} s: {missing}")
    print(f"perf_analyzer: {binary}")
    ok = True
    with tempfile.TemporaryDirectory(prefix="peers-smoke-") as tmp:
        folder = Path(tmp)
        write_spec(folder)
        paths = {m.name: folder / "models" / f"{m.name}.onnx" for m in MODELS}
        for name in args.peer or sorted(peer_servers.ENVS):
            if missing[name] is not None:
                print(f"{name}: unavailable: {missing[name]}")
                continue
            try:
                ok = smoke(name, paths, folder, binary, args.seconds) and ok
            except peer_servers.PeerError as error:
                print(f"{name}: {error}")
                ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
