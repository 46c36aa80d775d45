"""Real `infc worker` processes for the integration tests, always stopped afterwards.

`start_worker` launches one with the test's Python (so the same environment),
waits (bounded) for its ready line on stdout, and reads the bound address from
it; a worker that exits first fails the wait with its stderr. Every process
started through the `workers` fixture is killed when its test ends.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from inferplane.protos import worker_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
WAIT_S = 60.0  # the longest any test waits for a worker to start or stop
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
INFC = [sys.executable, "-c", "from inferplane.cli.main import main; main()"]


class WorkerExited(AssertionError):
    """The worker stopped before printing its ready line."""


@dataclass
class Worker:
    process: subprocess.Popen
    stderr_path: Path
    lines: queue.Queue = field(default_factory=queue.Queue)
    ready_line: str = ""
    address: str = ""
    _channels: list[grpc.Channel] = field(default_factory=list)

    def wait_ready(self, timeout_s: float = WAIT_S) -> str:
        try:
            line = self.lines.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError(
                f"no ready line within {timeout_s}s; stderr:\n{self.stderr()}"
            ) from None
        if line is None:
            code = self.process.wait(timeout=WAIT_S)
            raise WorkerExited(f"worker exited with {code} before it was ready:\n{self.stderr()}")
        self.ready_line = line.rstrip("\n")
        self.address = self.ready_line.split(" ready on ", 1)[1].split(" (", 1)[0]
        return self.ready_line

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stub(self) -> worker_pb2_grpc.WorkerStub:
        channel = grpc.insecure_channel(
            self.address,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        self._channels.append(channel)
        return worker_pb2_grpc.WorkerStub(channel)

    def terminate(self, timeout_s: float = WAIT_S) -> int:
        """SIGTERM, then the exit code (bounded)."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()
        if self.process.poll() is None:
            self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        if self.process.stdout:
            self.process.stdout.close()


def start_worker(spec: Path, target: str, listen: str, *extra: str, log_dir: Path) -> Worker:
    """Start `infc worker`; call `wait_ready` on the result."""
    log_dir.mkdir(parents=True, exist_ok=True)
    stderr_path = log_dir / f"worker-{target}-{len(list(log_dir.iterdir()))}.log"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [*INFC, "worker", str(spec), "--target", target, "--listen", listen, *extra],
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
    worker = Worker(process, stderr_path)

    def read() -> None:
        for line in process.stdout:
            worker.lines.put(line)
        worker.lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return worker


@pytest.fixture
def workers(tmp_path: Path) -> Iterator:
    """`workers(spec, target, listen, *extra)`: started workers, killed after the test."""
    started: list[Worker] = []

    def start(spec: Path, target: str, listen: str = "127.0.0.1:0", *extra: str) -> Worker:
        worker = start_worker(spec, target, listen, *extra, log_dir=tmp_path / "logs")
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.close()


@pytest.fixture(scope="module")
def demo_worker(example_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """One worker for demo.infer's `laptop`, shared by a module's tests."""
    worker = start_worker(
        SPECS / "demo.infer", "laptop", "127.0.0.1:0", log_dir=tmp_path_factory.mktemp("logs")
    )
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.close()
