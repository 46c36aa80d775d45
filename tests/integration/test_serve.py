"""`infc serve` as a real process: gateway, local workers, the demo client, metrics, a crash,
drain; and the on-prem rule checked against the location its workers report (`--location`).

The spec is a copy of specs/demo.infer (with its models) in tmp_path, pinned
to two replicas so that one can die while the other serves. Its clients run in
subprocesses: tritonclient and inferplane's stubs declare the same protobuf
package and cannot load in one process (the placement tests, which need no
tritonclient, call with inferplane's stubs from here). Every wait is bounded; the server
and any worker it started are killed when the test ends, whatever happened.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

# Looked up, not imported: tritonclient's stubs would clash with the gateway's here.
for _module in ("onnxruntime", "tritonclient", "inferplane.gateway.app"):
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f"needs {_module}", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
INFC = [sys.executable, "-c", "from inferplane.cli.main import main; main()"]
START_S = 120.0  # the longest the server may take to print its serving line
STOP_S = 30.0  # the longest it may take to exit after SIGTERM
LISTEN = ("--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0")  # free ports, shown on stdout

# Sends single-row fraud requests from 8 threads for a while (to the model or route
# named by the optional third argument); prints `ok=N failed=M`.
LOAD = """
import sys, threading, time
import numpy as np
import tritonclient.grpc as triton
client = triton.InferenceServerClient(url=sys.argv[1])
until = time.monotonic() + float(sys.argv[2])
model = sys.argv[3] if len(sys.argv) > 3 else "fraud-scorer"
counts = {"ok": 0, "failed": 0}
errors = []
lock = threading.Lock()
def run():
    row = np.zeros((1, 30), dtype=np.float32)
    while time.monotonic() < until:
        tensor = triton.InferInput("features", [1, 30], "FP32")
        tensor.set_data_from_numpy(row)
        try:
            client.infer(model, [tensor], client_timeout=10)
            key = "ok"
        except Exception as error:
            key = "failed"
            errors.append(str(error)[:200])
        with lock:
            counts[key] += 1
threads = [threading.Thread(target=run) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(f"ok={counts['ok']} failed={counts['failed']}")
for error in sorted(set(errors))[:5]: print("error:", error)
"""


class Server:
    def __init__(self, spec: Path, log: Path, *extra: str) -> None:
        self.log = log
        with log.open("wb") as stderr:
            self.process = subprocess.Popen(
                [*INFC, "serve", str(spec), *LISTEN, "--grace", "5", *extra],
                stdout=subprocess.PIPE,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                text=True,
                cwd=spec.parent,
            )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_serving(self) -> str:
        deadline = time.monotonic() + START_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                code = self.process.wait(timeout=STOP_S)
                raise AssertionError(f"infc serve exited with {code}:\n{self.stderr()}")
            if line.startswith("serving "):
                return line.rstrip("\n")
        raise AssertionError(f"no serving line within {START_S}s:\n{self.stderr()}")

    def next_line(self, timeout_s: float = 10.0) -> str:
        line = self.lines.get(timeout=timeout_s)
        assert line is not None, f"infc serve closed stdout:\n{self.stderr()}"
        return line.rstrip("\n")

    def sigterm(self) -> int:
        """SIGTERM, then its exit code (within STOP_S)."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=STOP_S)

    def stderr(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def worker_pids(self) -> dict[str, list[int]]:
        """Worker name → pids of its ready processes, oldest first (from the log)."""
        found: dict[str, list[int]] = {}
        for name, pid in re.findall(r"event=worker_ready worker=(\S+) pid=(\d+)", self.stderr()):
            found.setdefault(name, []).append(int(pid))
        return found

    def close(self) -> None:
        for pids in self.worker_pids().values():
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)  # each worker leads its own group
        if self.process.poll() is None:
            self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        if self.process.stdout:
            self.process.stdout.close()


def assert_scraped(url: str) -> None:
    """Prometheus text at `url` counts the demo client's requests and batches."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    ok = re.findall(r"^inferplane_requests_total\{([^}]*)\} (\S+)$", text, re.M)
    answered = sum(float(v) for labels, v in ok if 'code="OK"' in labels)
    assert answered > 0, text
    assert re.search(r'^inferplane_batch_size_count\{model="fraud-scorer"', text, re.M), text
    assert re.search(r'^inferplane_worker_up\{replica="laptop-0",target="laptop"\} 1', text, re.M)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().split(")")[-1].split()[0] != "Z"
    return True


def client(*args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=ROOT,
        check=False,
    )


@pytest.fixture
def demo_copy(example_models: Path, tmp_path: Path) -> Path:
    """demo.infer and its models in tmp_path, with two replicas of `laptop`.

    The latency SLOs are loosened to seconds: this test is about losing no
    request when a worker dies, and on a loaded 2-core CI machine admission
    would otherwise (rightly) shed the odd request that the demo's 20 ms
    objectives cannot meet.
    """
    shutil.copytree(example_models, tmp_path / "models")
    text = (SPECS / "demo.infer").read_text(encoding="utf-8")
    assert "replicas 1..2" in text and "slo    p99 20ms" in text
    text = text.replace("replicas 1..2", "replicas 2")
    for tight in ("p99 20ms", "p50 5ms", "p99 10ms", "p99 50ms"):
        text = text.replace(f"slo    {tight}", f"slo    {tight.split()[0]} 5s")
    spec = tmp_path / "demo.infer"
    spec.write_text(text, encoding="utf-8")
    return spec


@pytest.mark.timeout(360)
def test_serve_answers_the_demo_client_survives_a_worker_crash_and_drains(
    demo_copy: Path, tmp_path: Path
):
    server = Server(demo_copy, tmp_path / "serve.log")
    try:
        line = server.wait_serving()
        match = re.fullmatch(
            r"serving \S+ on (127\.0\.0\.1:\d+): 4 models, 2 workers \(plaintext\)", line
        )
        assert match, line
        address = match.group(1)
        metrics_line = server.next_line()
        metrics_url = re.fullmatch(r"metrics on (http://127\.0\.0\.1:\d+/metrics)", metrics_line)
        assert metrics_url, metrics_line

        demo = client(str(SPECS / "demo_client.py"), address)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "all requests answered" in demo.stdout
        assert "64 concurrent single-row requests: 64 answers" in demo.stdout
        assert re.search(r"fraud-scorer@\d: .*\d+×\d+", demo.stdout), demo.stdout
        assert_scraped(metrics_url.group(1))

        # Kill one worker in the middle of a load: the supervisor restarts it.
        victim = server.worker_pids()["laptop-0"][0]
        load = subprocess.Popen(
            [sys.executable, "-c", LOAD, address, "4"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
        try:
            time.sleep(1.0)
            os.kill(victim, signal.SIGKILL)
            output, _ = load.communicate(timeout=60)
        finally:
            if load.poll() is None:
                load.kill()
                load.wait(timeout=10)
        counts = re.search(r"ok=(\d+) failed=(\d+)", output)
        assert counts, output
        assert int(counts.group(1)) > 0, output
        # The gateway retries a batch on the other replica when its worker dies.
        assert int(counts.group(2)) == 0, output
        deadline = time.monotonic() + START_S
        while len(server.worker_pids().get("laptop-0", [])) < 2:
            assert time.monotonic() < deadline, server.stderr()
            time.sleep(0.2)
        assert f"event=worker_exited worker=laptop-0 pid={victim} code=-9" in server.stderr()
        assert "event=worker_restart worker=laptop-0 in_s=0.5" in server.stderr()

        # SIGTERM: drain, stop the workers, exit 0, in bounded time.
        workers = [pid for pids in server.worker_pids().values() for pid in pids]
        started = time.monotonic()
        assert server.sigterm() == 0, server.stderr()
        assert time.monotonic() - started < STOP_S
        assert not [pid for pid in workers if alive(pid)]
        assert "event=workers_stopped workers=2" in server.stderr()
    finally:
        server.close()


def test_serve_refuses_a_spec_with_errors(tmp_path: Path):
    spec = tmp_path / "broken.infer"
    spec.write_text("target t {\n  hardware quantum\n}\n", encoding="utf-8")
    result = subprocess.run(
        [*INFC, "serve", str(spec), "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "error[" in result.stderr
    assert result.stdout == ""


# --- the on-prem rule against the location the workers report

LAB_SPEC = """\
target box {
  hardware cpu
  threads  1
  location onprem "lab-1"
}

model fraud-lite {
  source "models/fraud-lite.onnx"
  input  features fp32[batch, 30]
  output score    fp32[batch, 2]
  shard  box
  privacy on-prem-only
}
"""
REFUSED_WATCH_S = 3.0  # how long a refused worker is watched staying out (several re-probes)


@pytest.fixture
def lab_spec(example_models: Path, tmp_path: Path) -> Path:
    """One on-prem-only model on one on-prem target, declared at site `lab-1`."""
    (tmp_path / "models").mkdir()
    shutil.copy(example_models / "fraud-lite.onnx", tmp_path / "models")
    spec = tmp_path / "lab.infer"
    spec.write_text(LAB_SPEC, encoding="utf-8")
    return spec


def lab_request():
    """One row for the lab spec's `fraud-lite`, as a ModelInferRequest."""
    import numpy as np

    from inferplane.gateway import converters
    from inferplane.gateway.domain import InferRequest

    features = np.ones((1, 30), np.float32)
    return converters.infer_request_to_proto(
        InferRequest("fraud-lite", "", "p0", {"features": features})
    )


def worker_location(server: Server) -> tuple[str, str, str]:
    """What the local worker's Health says of where it runs (over its unix socket)."""
    import grpc

    from inferplane.protos import worker_pb2, worker_pb2_grpc

    (address,) = re.findall(
        r"event=worker_ready worker=box-0 pid=\d+ address=(\S+)", server.stderr()
    )
    with grpc.insecure_channel(address) as channel:
        health = worker_pb2_grpc.WorkerStub(channel).Health(worker_pb2.HealthRequest(), timeout=10)
    return health.location_kind, health.location_site, health.location_source


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    ("location", "placed"), [("cloud:gcp-europe", False), ("onprem:lab-1", True)]
)
def test_serve_admits_only_workers_that_report_the_declared_on_prem_site(
    lab_spec: Path, tmp_path: Path, location: str, placed: bool
):
    import grpc

    from inferplane.gateway import converters
    from inferplane.protos import grpc_service_pb2 as pb
    from inferplane.protos import grpc_service_pb2_grpc as pb_grpc

    # The flag, passed on to the worker, wins over any INFERPLANE_LOCATION here.
    server = Server(lab_spec, tmp_path / "serve.log", "--location", location)
    request = lab_request()
    try:
        line = server.wait_serving()
        match = re.fullmatch(
            r"serving \S+ on (127\.0\.0\.1:\d+): 1 model, 1 worker \(plaintext\)", line
        )
        assert match, line
        assert worker_location(server) == (*location.split(":", 1), "host")
        with grpc.insecure_channel(match.group(1)) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            if placed:
                # The serving line follows the first placement probe: ready at once.
                assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
                reply = stub.ModelInfer(request, timeout=30)
                assert converters.infer_response_from_proto(reply)["score"].shape == (1, 2)
                assert "event=placement_" not in server.stderr()
            else:
                end = time.monotonic() + REFUSED_WATCH_S
                while time.monotonic() < end:
                    assert not stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
                    time.sleep(0.2)
                with pytest.raises(grpc.RpcError) as refused:
                    stub.ModelInfer(request, timeout=30)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
                log = server.stderr()
                assert log.count("event=placement_refused") == 1, log  # re-probed, logged once
                assert (
                    "event=placement_refused target=box replica=box/0 endpoint=unix:" in log
                    and " kind=cloud site=gcp-europe source=host models=fraud-lite@1 " in log
                ), log
        assert server.sigterm() == 0, server.stderr()
    finally:
        server.close()


GUARDED = """\
gateway {
  tls {
    cert "certs/server.pem"
    key  "certs/server-key.pem"
  }
  auth tokens_env "LAB_TOKENS"
}

"""


@pytest.mark.timeout(240)
def test_serve_puts_the_spec_tls_and_tokens_in_force(
    lab_spec: Path, tmp_path: Path, tls_files, monkeypatch: pytest.MonkeyPatch
):
    import grpc

    from inferplane.gateway import converters
    from inferplane.protos import grpc_service_pb2_grpc as pb_grpc

    (tmp_path / "certs").mkdir()
    for name in ("server.pem", "server-key.pem"):
        shutil.copy(tls_files.folder / name, tmp_path / "certs" / name)
    lab_spec.write_text(GUARDED + lab_spec.read_text(encoding="utf-8"), encoding="utf-8")

    # No tokens: one clear error before anything starts, never an open gateway.
    monkeypatch.delenv("LAB_TOKENS", raising=False)
    refused = subprocess.run(
        [*INFC, "serve", str(lab_spec), *LISTEN],
        capture_output=True,
        text=True,
        timeout=START_S,
        cwd=tmp_path,
        check=False,
    )
    assert refused.returncode == 1, refused.stderr
    assert refused.stdout == ""
    assert refused.stderr.startswith(
        'infc: `auth tokens_env "LAB_TOKENS"`: the variable is not set'
    )
    assert "worker" not in refused.stderr

    monkeypatch.setenv("LAB_TOKENS", "lab-token-1 lab-token-2")
    server = Server(lab_spec, tmp_path / "serve.log", "--location", "onprem:lab-1")
    request = lab_request()
    try:
        line = server.wait_serving()
        match = re.fullmatch(
            r"serving \S+ on (127\.0\.0\.1:\d+): 1 model, 1 worker \(tls; bearer tokens\)", line
        )
        assert match, line
        credentials = grpc.ssl_channel_credentials(tls_files.ca.read_bytes())
        with grpc.secure_channel(match.group(1), credentials) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            token = (("authorization", "Bearer lab-token-2"),)
            reply = stub.ModelInfer(request, metadata=token, timeout=30)
            assert converters.infer_response_from_proto(reply)["score"].shape == (1, 2)
            with pytest.raises(grpc.RpcError) as unauthenticated:
                stub.ModelInfer(request, timeout=30)
            assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "lab-token" not in server.stderr()
        assert server.sigterm() == 0, server.stderr()
    finally:
        server.close()


@pytest.mark.timeout(240)
def test_serve_uses_remote_workers_named_on_the_command_line(
    lab_spec: Path, tmp_path: Path, workers
):
    """`--remote box=ADDR`: no local worker; the gateway serves through the one given."""
    import grpc

    from inferplane.gateway import converters
    from inferplane.protos import grpc_service_pb2 as pb
    from inferplane.protos import grpc_service_pb2_grpc as pb_grpc

    worker = workers(lab_spec, "box", "127.0.0.1:0", "--location", "onprem:lab-1")
    worker.wait_ready()
    server = Server(lab_spec, tmp_path / "serve.log", "--remote", f"box={worker.address}")
    request = lab_request()
    try:
        line = server.wait_serving()
        match = re.fullmatch(
            r"serving \S+ on (127\.0\.0\.1:\d+): 1 model, 0 workers \(plaintext\)", line
        )
        assert match, line
        with grpc.insecure_channel(match.group(1)) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
            reply = stub.ModelInfer(request, timeout=30)
            assert converters.infer_response_from_proto(reply)["score"].shape == (1, 2)
        assert "event=worker_ready" not in server.stderr()  # nothing started locally
        assert server.sigterm() == 0, server.stderr()
        assert worker.process.poll() is None  # a remote worker is not ours to stop
    finally:
        server.close()


@pytest.mark.timeout(360)
def test_apply_swaps_the_plan_under_load_without_a_failed_request(demo_copy: Path, tmp_path: Path):
    server = Server(demo_copy, tmp_path / "serve.log")
    original = demo_copy.read_text(encoding="utf-8")
    try:
        line = server.wait_serving()
        address = re.search(r" on (127\.0\.0\.1:\d+):", line).group(1)
        load = subprocess.Popen(
            [sys.executable, "-c", LOAD, address, "6", "payments"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
        try:
            time.sleep(1.5)
            # The canary goes to half, and a batching window doubles: the gateway's own.
            assert "fraud-scorer@2 10%" in original and "window 2ms" in original
            canary = original.replace("fraud-scorer@1 90%", "fraud-scorer@1 50%")
            canary = canary.replace("fraud-scorer@2 10%", "fraud-scorer@2 50%")
            demo_copy.write_text(canary.replace("window 2ms", "window 4ms", 1), encoding="utf-8")
            applied = client(
                "-m", "inferplane.cli.main", "apply", str(demo_copy), "--gateway", address
            )
            assert applied.returncode == 0, applied.stdout + applied.stderr
            assert "~ route payments" in applied.stdout, applied.stdout
            assert re.search(
                r"applied: the gateway at \S+ serves sha256:\w+ \(was sha256:\w+\)", applied.stdout
            )
            same = client("-m", "inferplane.cli.main", "plan", str(demo_copy), "--against", address)
            assert same.returncode == 0 and "No changes" in same.stdout, same.stdout + same.stderr
            # A change only a restart can make: refused, each reason named, old plan on.
            demo_copy.write_text(
                canary.replace("batch  max 64", "batch  max 128"), encoding="utf-8"
            )
            refused = client(
                "-m", "inferplane.cli.main", "apply", str(demo_copy), "--gateway", address
            )
            assert refused.returncode == 1, refused.stdout + refused.stderr
            assert "refused the plan" in refused.stderr and "batch max 64 → 128" in refused.stderr
            output, _ = load.communicate(timeout=60)
        finally:
            if load.poll() is None:
                load.kill()
                load.wait(timeout=10)
        counts = re.search(r"ok=(\d+) failed=(\d+)", output)
        assert counts, output
        assert int(counts.group(1)) > 0 and int(counts.group(2)) == 0, output
        assert "event=plan_swapped" in server.stderr()
        assert server.sigterm() == 0, server.stderr()
    finally:
        server.close()


@pytest.mark.timeout(240)
def test_workers_over_the_network_speak_mutual_tls(
    lab_spec: Path, tmp_path: Path, workers, tls_files
):
    """`infc worker --tls-cert … --tls-client-ca …` and `infc serve --worker-tls-ca …`:
    the gateway reaches the worker over mutual TLS; a plaintext client, or one without
    the gateway's certificate, does not."""
    import asyncio
    import socket

    import grpc

    from inferplane.backends import tls
    from inferplane.gateway import converters
    from inferplane.gateway.errors import GatewayError
    from inferplane.gateway.worker_client import GrpcWorkerClient
    from inferplane.protos import grpc_service_pb2_grpc as pb_grpc

    with socket.socket() as spare:  # a free port for the plaintext health server
        spare.bind(("127.0.0.1", 0))
        health_address = f"127.0.0.1:{spare.getsockname()[1]}"
    worker = workers(
        lab_spec,
        "box",
        "127.0.0.1:0",
        "--location",
        "onprem:lab-1",
        "--tls-cert",
        str(tls_files.server_cert),
        "--tls-key",
        str(tls_files.server_key),
        "--tls-client-ca",
        str(tls_files.ca),
        "--health-listen",
        health_address,
    )
    worker.wait_ready()
    # kubelet's probe: plaintext grpc.health.v1 beside the TLS worker, and nothing else there.
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from inferplane.protos import worker_pb2, worker_pb2_grpc

    with grpc.insecure_channel(health_address) as channel:
        checked = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        assert checked.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as no_infer:
            worker_pb2_grpc.WorkerStub(channel).Health(worker_pb2.HealthRequest(), timeout=10)
        assert no_infer.value.code() == grpc.StatusCode.UNIMPLEMENTED

    async def probe(credentials) -> str:
        client = GrpcWorkerClient(worker.address, credentials=credentials)
        try:
            health = await client.health(timeout=10)
            return "ready" if health.ready else "not ready"
        except GatewayError as error:
            return error.worker_status
        finally:
            await client.close()

    mutual = tls.channel_credentials(tls_files.ca, tls_files.client_cert, tls_files.client_key)
    assert asyncio.run(probe(mutual)) == "ready"
    assert asyncio.run(probe(None)) == "UNAVAILABLE"  # plaintext
    assert asyncio.run(probe(tls.channel_credentials(tls_files.ca))) == "UNAVAILABLE"  # no cert

    server = Server(
        lab_spec,
        tmp_path / "serve.log",
        "--remote",
        f"box={worker.address}",
        "--worker-tls-ca",
        str(tls_files.ca),
        "--worker-tls-cert",
        str(tls_files.client_cert),
        "--worker-tls-key",
        str(tls_files.client_key),
    )
    request = lab_request()
    try:
        line = server.wait_serving()
        address = re.search(r" on (127\.0\.0\.1:\d+):", line).group(1)
        with grpc.insecure_channel(address) as channel:
            reply = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
            assert converters.infer_response_from_proto(reply)["score"].shape == (1, 2)
        assert server.sigterm() == 0, server.stderr()
    finally:
        server.close()


def test_worker_tls_options_are_checked_before_anything_starts(lab_spec: Path, tls_files):
    worker = ["worker", str(lab_spec), "--target", "box", "--listen", "127.0.0.1:0"]
    cert = ["--tls-cert", str(tls_files.server_cert)]
    cases = [
        ([*worker, *cert], "infc: --tls-cert and --tls-key go together"),
        ([*worker, *cert, "--tls-key", str(tls_files.client_key)], "infc: --tls-cert"),
        (
            ["serve", str(lab_spec), *LISTEN, "--worker-tls-cert", str(tls_files.client_cert)],
            "infc: --worker-tls-cert and --worker-tls-key need --worker-tls-ca",
        ),
        (
            ["serve", str(lab_spec), *LISTEN, "--worker-tls-ca", str(lab_spec.parent / "no.pem")],
            "infc: --worker-tls-ca",
        ),
    ]
    for argv, says in cases:
        done = subprocess.run(
            [*INFC, *argv], capture_output=True, text=True, timeout=START_S, check=False
        )
        assert done.returncode == 1 and done.stdout == "", (argv, done.stdout, done.stderr)
        assert done.stderr.startswith(says), (argv, done.stderr)


@pytest.mark.timeout(240)
def test_a_restarted_worker_serves_the_spec_the_gateway_compiled(lab_spec: Path, tmp_path: Path):
    """The spec file is edited (here: broken) while serving; a worker that crashes
    restarts on the copy `infc serve` compiled, and serves on."""
    import grpc

    from inferplane.gateway import converters
    from inferplane.protos import grpc_service_pb2 as pb
    from inferplane.protos import grpc_service_pb2_grpc as pb_grpc

    server = Server(lab_spec, tmp_path / "serve.log", "--location", "onprem:lab-1")
    request = lab_request()
    try:
        line = server.wait_serving()
        address = re.search(r" on (127\.0\.0\.1:\d+):", line).group(1)
        lab_spec.write_text("this is not a spec\n", encoding="utf-8")
        (victim,) = server.worker_pids()["box-0"]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + START_S
        while len(server.worker_pids().get("box-0", [])) < 2:
            assert time.monotonic() < deadline, server.stderr()
            time.sleep(0.2)
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            deadline = time.monotonic() + START_S
            while not stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready:
                assert time.monotonic() < deadline, server.stderr()
                time.sleep(0.2)
            reply = stub.ModelInfer(request, timeout=30)
            assert converters.infer_response_from_proto(reply)["score"].shape == (1, 2)
        assert server.sigterm() == 0, server.stderr()
    finally:
        server.close()
