"""The gateway benchmark's peers (MLServer, Triton) on the same ONNX files, and perf_analyzer.

Each peer lives in its own virtualenv under `<root>/.peers/` (their pins clash
with the project's and with each other), made from this interpreter's base
Python with the pins in `bench/peers/*-requirements.txt`:

- "mlserver": MLServer 1.7.1 with the custom onnxruntime runtime
  `bench/peers/mlserver_runtime.py`, adaptive batching (max 64, 2 ms);
- "triton": Triton 2.51 through nvidia-pytriton 0.7.0, a Python function per
  model calling onnxruntime (`bench/peers/pytriton_server.py`), dynamic
  batcher (max 64, 2000 µs).

Both serve KServe v2 over gRPC on a free loopback port, onnxruntime with one
intra-op thread as the inferplane worker. `ensure_envs` builds what is missing
and says why a peer is unavailable instead of raising; `start_peer` starts one
in its own process group and waits (bounded) until it and its models are
ready. `ensure_perf_analyzer` assembles Triton's load generator from
registry packages (bench/peers/README.md says why these versions), and
`run_perf_analyzer` runs one bounded measurement and parses it.

Standard library only: bench/gateway_bench.py imports this from the
project's environment, and everything peer-specific runs in the peers' own.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS_DIR = HERE / "peers"
REPO = HERE.parent
HOST = "127.0.0.1"
MAX_BATCH = 64  # the bench spec's `batch max 64 window 2ms`
WINDOW_S = 0.002
START_TIMEOUT_S = 120.0
STOP_GRACE_S = 20.0
INSTALL_TIMEOUT_S = 1200.0
LOCK_TIMEOUT_S = 1800.0
STAMP = ".inferplane-stamp"

# perf_analyzer: the newest binary that runs on glibc 2.36, and the two libraries it links.
TRITONCLIENT = "tritonclient==2.46.0"
CUDART = "nvidia-cuda-runtime-cu12==12.9.79"
LIBB64 = "libb64-0d"


class PeerError(RuntimeError):
    """A peer could not be installed, started or measured."""


@dataclass(frozen=True)
class PeerEnv:
    name: str
    folder: str  # the virtualenv, under <root>/.peers
    requirements: str  # under bench/peers
    checks: tuple[str, ...]  # each must run in the virtualenv (in its own process) once installed

    def venv(self, root: Path) -> Path:
        return scratch(root) / self.folder

    def python(self, root: Path) -> Path:
        return self.venv(root) / "bin" / "python"


ENVS = {
    "mlserver": PeerEnv(
        "mlserver",
        "mlserver-venv",
        "mlserver-requirements.txt",
        # apart: MLServer's and tritonclient's protos clash in one process (probe.py runs alone)
        ("import mlserver, onnxruntime", "import tritonclient.grpc"),
    ),
    "triton": PeerEnv(
        "triton",
        "pytriton-venv",
        "pytriton-requirements.txt",
        ("import pytriton.triton, onnxruntime, tritonclient.grpc",),
    ),
}


def scratch(root: Path) -> Path:
    """Where the peers' virtualenvs, install logs and perf_analyzer live (not tracked)."""
    return root / ".peers"


# ---------------------------------------------------------------------- small helpers


def _tail(text: str, lines: int = 1) -> str:
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:]) if kept else "(no output)"


def _run(argv: list[str], *, timeout: float, cwd: Path | None = None, env=None) -> str:
    """Run a command to the end; its output, or PeerError with its last line."""
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as error:
        raise PeerError(f"{Path(argv[0]).name} ran past {timeout:g} s") from error
    except OSError as error:
        raise PeerError(f"cannot run {argv[0]}: {error}") from error
    if done.returncode != 0:
        raise PeerError(f"{' '.join(argv[:3])} … failed: {_tail(done.stdout)}")
    return done.stdout


def _niced(argv: list[str]) -> list[str]:
    """Installs run at low priority: the two cores are shared."""
    nice = shutil.which("nice")
    return [nice, "-n", "10", *argv] if nice else argv


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _stamp_matches(folder: Path, digest: str) -> bool:
    try:
        return (folder / STAMP).read_text().strip() == digest
    except OSError:
        return False


@contextlib.contextmanager
def _locked(root: Path, timeout_s: float = LOCK_TIMEOUT_S):
    """One installer at a time under <root>/.peers (bounded wait)."""
    scratch(root).mkdir(parents=True, exist_ok=True)
    with (scratch(root) / ".lock").open("w") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as busy:
                if time.monotonic() > deadline:
                    raise PeerError(
                        f"another install held {scratch(root)}/.lock too long"
                    ) from busy
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def free_port() -> int:
    """A loopback port nobody listens on now (the OS's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def pinned(requirements: str, package: str) -> str:
    """The version `package` is pinned to in bench/peers/<requirements>, or '?'."""
    text = (PEERS_DIR / requirements).read_text()
    found = re.search(rf"^{re.escape(package)}==(\S+)", text, re.MULTILINE | re.IGNORECASE)
    return found.group(1) if found else "?"


# ---------------------------------------------------------------------- virtualenvs


def base_python() -> str | None:
    """A Python 3.11 outside any virtualenv: the peers' pins and PyTriton's stub need 3.11."""
    if sys.version_info[:2] == (3, 11):
        return os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    return shutil.which("python3.11")


def _env_digest(env: PeerEnv, python: str) -> str:
    requirements = (PEERS_DIR / env.requirements).read_text()
    return _digest(requirements, os.path.realpath(python))


def _env_works(env: PeerEnv, root: Path) -> bool:
    try:
        for check in env.checks:
            _run([str(env.python(root)), "-c", check], timeout=120)
    except PeerError:
        return False
    return True


def _build_env(env: PeerEnv, root: Path, python: str, log: Callable[[str], object]) -> None:
    venv = env.venv(root)
    install_log = scratch(root) / f"{env.name}-install.log"
    shutil.rmtree(venv, ignore_errors=True)
    log(f"peers: creating {venv} (pip install -r bench/peers/{env.requirements}) …")
    started = time.monotonic()
    _run([python, "-m", "venv", str(venv)], timeout=300)
    pip = [str(env.python(root)), "-m", "pip", "install", "--no-input"]
    try:
        output = _run(
            _niced([*pip, "-r", str(PEERS_DIR / env.requirements)]), timeout=INSTALL_TIMEOUT_S
        )
    except PeerError as error:
        install_log.write_text(str(error))
        raise PeerError(f"pip install failed ({error}); see {install_log}") from error
    install_log.write_text(output)
    if not _env_works(env, root):
        raise PeerError(f"installed, but one of {env.checks} fails in {venv}")
    log(f"peers: {venv} ready in {time.monotonic() - started:.0f} s")


def ensure_env(name: str, root: Path = REPO, log: Callable[[str], object] = print) -> str | None:
    """None when peer `name`'s virtualenv is ready (building it if needed), else why not."""
    env = ENVS[name]
    python = base_python()
    if python is None:
        return "no python3.11 to build its virtualenv from"
    digest = _env_digest(env, python)
    try:
        with _locked(root):
            if _stamp_matches(env.venv(root), digest) and _env_works(env, root):
                return None
            _build_env(env, root, python, log)
            (env.venv(root) / STAMP).write_text(digest + "\n")
    except PeerError as error:
        return str(error).splitlines()[0]
    return None


def ensure_envs(root: Path = REPO, log: Callable[[str], object] = print) -> dict[str, str | None]:
    """For each peer ("mlserver", "triton"): None when ready, else a one-line reason. Never raises
    for an install failure: the benchmark runs without the peers it cannot have."""
    return {name: ensure_env(name, root, log) for name in ENVS}


# ---------------------------------------------------------------------- servers


class PeerServer:
    """A peer in its own process group: `.pid` is the group's root; `stop()` ends it all."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        address: str,
        line: str,
        cwd: Path,
        env: dict[str, str] | None,
        log: Path,
    ) -> None:
        self.name, self.address, self.line, self.log = name, address, line, log
        self._log_file = log.open("wb")
        self._stopped = False
        try:
            self.process = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as error:
            self._log_file.close()
            raise PeerError(f"cannot start {name}: {error}") from error

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return _tail(self.log.read_text(errors="replace"), lines)
        except OSError:
            return "(no log)"

    def wait_ready(self, python: Path, models: list[str], timeout_s: float) -> None:
        """Poll ServerReady and ModelReady (bench/peers/probe.py, in the peer's venv)."""
        argv = [str(python), str(PEERS_DIR / "probe.py"), self.address, "--timeout", f"{timeout_s}"]
        for model in models:
            argv += ["--model", model]
        probe = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + timeout_s + 30.0  # the probe's own bound, and a margin
            while probe.poll() is None and self.process.poll() is None:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.25)
            if probe.poll() == 0:
                return
            if self.process.poll() is not None:
                why = f"it exited with status {self.process.returncode}"
            elif probe.poll() is not None:
                why = _tail(probe.stdout.read())
            else:
                why = f"no answer in {timeout_s:g} s"
        finally:
            if probe.poll() is None:
                probe.kill()
                probe.wait(5)
            probe.stdout.close()
        raise PeerError(
            f"{self.name} did not become ready ({why}); the end of {self.log}:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """SIGTERM to the root (it stops its own children), then SIGKILL to the whole group."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(STOP_GRACE_S)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)
        finally:
            self._log_file.close()


def _model_settings(name: str, path: Path) -> dict:
    return {
        "name": name,
        "implementation": "mlserver_runtime.OnnxRuntime",
        "parameters": {"uri": str(path)},
        "max_batch_size": MAX_BATCH,
        "max_batch_time": WINDOW_S,
    }


def _mlserver(model_paths: dict[str, Path], folder: Path, root: Path) -> PeerServer:
    """MLServer 1.7.1: gRPC and HTTP on free loopback ports, metrics off, one inference worker."""
    repo = folder / "mlserver"
    repo.mkdir(parents=True, exist_ok=True)
    grpc_port, http_port = free_port(), free_port()
    settings = {
        "debug": False,
        "host": HOST,
        "grpc_port": grpc_port,
        "http_port": http_port,
        "metrics_port": free_port(),
        "metrics_endpoint": None,
        "metrics_dir": str(repo / ".metrics"),
        "environments_dir": str(repo / ".envs"),
        "grpc_max_message_length": 64 * 1024 * 1024,
    }
    (repo / "settings.json").write_text(json.dumps(settings, indent=2))
    for name, path in model_paths.items():
        (repo / name).mkdir(exist_ok=True)
        text = json.dumps(_model_settings(name, Path(path).resolve()), indent=2)
        (repo / name / "model-settings.json").write_text(text)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PEERS_DIR), env.get("PYTHONPATH")]))
    venv = ENVS["mlserver"].venv(root)
    address = f"{HOST}:{grpc_port}"
    version = pinned("mlserver-requirements.txt", "mlserver")
    line = (
        f"MLServer {version} on {address} (custom onnxruntime runtime, adaptive batching max "
        f"{MAX_BATCH} / {WINDOW_S * 1e3:g} ms, 1 inference worker)"
    )
    argv = [str(venv / "bin" / "mlserver"), "start", str(repo)]
    return PeerServer(
        "MLServer", argv, address=address, line=line, cwd=repo, env=env, log=folder / "mlserver.log"
    )


def _triton(model_paths: dict[str, Path], folder: Path, root: Path) -> PeerServer:
    """Triton through PyTriton: gRPC on a free loopback port, HTTP and metrics off."""
    grpc_port = free_port()
    address = f"{HOST}:{grpc_port}"
    delay_us = round(WINDOW_S * 1e6)
    argv = [str(ENVS["triton"].python(root)), str(PEERS_DIR / "pytriton_server.py")]
    for name, path in model_paths.items():
        argv += ["--model", f"{name}={Path(path).resolve()}"]
    argv += ["--grpc-port", str(grpc_port), "--max-batch", str(MAX_BATCH)]
    argv += ["--delay-us", str(delay_us), "--workspace", str(folder / "pytriton-workspace")]
    version = pinned("pytriton-requirements.txt", "nvidia-pytriton")
    line = (
        f"Triton (nvidia-pytriton {version}) on {address} (Python function calling onnxruntime, "
        f"dynamic batcher max {MAX_BATCH} / {delay_us} µs)"
    )
    log = folder / "triton.log"
    return PeerServer("Triton", argv, address=address, line=line, cwd=folder, env=None, log=log)


STARTERS = {"mlserver": _mlserver, "triton": _triton}


def start_peer(
    name: str,
    model_paths: dict[str, Path],
    folder: Path,
    *,
    root: Path = REPO,
    timeout_s: float = START_TIMEOUT_S,
) -> PeerServer:
    """Start peer `name` ("mlserver" or "triton") serving `model_paths` ({model name: ONNX file})
    and wait until it and every model are ready; its files and log go in `folder`.
    Raises PeerError (with the end of the server's log) when it does not get ready in time;
    the server is stopped then."""
    folder.mkdir(parents=True, exist_ok=True)
    server = STARTERS[name](model_paths, folder, root)
    try:
        server.wait_ready(ENVS[name].python(root), list(model_paths), timeout_s)
    except BaseException:
        server.stop()
        raise
    return server


# ---------------------------------------------------------------------- perf_analyzer


def _perf_analyzer_dir(root: Path) -> Path:
    return scratch(root) / "perf_analyzer"


def perf_analyzer_env(root: Path = REPO) -> dict[str, str]:
    """This environment with LD_LIBRARY_PATH leading to perf_analyzer's libb64 and libcudart."""
    env = dict(os.environ)
    lib = str(_perf_analyzer_dir(root) / "lib")
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [lib, env.get("LD_LIBRARY_PATH")]))
    return env


def _extract(wheel: Path, suffix: str, target: Path) -> None:
    """Copy the one member of `wheel` whose name ends with `suffix` to `target`."""
    with zipfile.ZipFile(wheel) as archive:
        members = [m for m in archive.namelist() if m.endswith(suffix)]
        if not members:
            raise PeerError(f"{wheel.name} has no {suffix}")
        with archive.open(members[0]) as source, target.open("wb") as sink:
            shutil.copyfileobj(source, sink)


def _pip_download(requirement: str, into: Path) -> Path:
    python = base_python() or sys.executable
    argv = [python, "-m", "pip", "download", "--no-deps", "--no-input", requirement]
    _run([*argv, "-d", str(into)], timeout=600)
    name = requirement.split("==")[0].replace("-", "_")
    wheels = [w for w in into.glob("*.whl") if w.name.lower().startswith(name.lower())]
    if not wheels:
        raise PeerError(f"pip download {requirement} brought no wheel")
    return wheels[0]


def _apt_download(package: str, into: Path) -> Path:
    """`apt-get download` (no root needed); once more after `apt-get update` when root."""
    try:
        _run(["apt-get", "download", package], cwd=into, timeout=300)
    except PeerError:
        if os.geteuid() != 0:
            raise
        _run(["apt-get", "update", "-qq"], timeout=600)
        _run(["apt-get", "download", package], cwd=into, timeout=300)
    debs = list(into.glob(f"{package}_*.deb"))
    if not debs:
        raise PeerError(f"apt-get download {package} brought no .deb")
    return debs[0]


def _assemble_perf_analyzer(folder: Path, tmp: Path) -> None:
    (folder / "bin").mkdir(parents=True, exist_ok=True)
    (folder / "lib").mkdir(parents=True, exist_ok=True)
    binary = folder / "bin" / "perf_analyzer"
    _extract(_pip_download(TRITONCLIENT, tmp), "/bin/perf_analyzer", binary)
    binary.chmod(0o755)
    cudart = _pip_download(CUDART, tmp)
    _extract(cudart, "/lib/libcudart.so.12", folder / "lib" / "libcudart.so.12")
    _run(["dpkg", "-x", str(_apt_download(LIBB64, tmp)), str(tmp / "b64")], timeout=60)
    found = list((tmp / "b64").rglob("libb64.so.0d"))
    if not found:
        raise PeerError(f"{LIBB64} has no libb64.so.0d")
    shutil.copyfile(found[0], folder / "lib" / "libb64.so.0d")


def _perf_analyzer_works(binary: Path, root: Path) -> bool:
    try:
        out = _run([str(binary), "--version"], timeout=30, env=perf_analyzer_env(root))
    except PeerError:
        return False
    return "Perf Analyzer" in out


def ensure_perf_analyzer(root: Path = REPO, log: Callable[[str], object] = print) -> Path | str:
    """The path of a working perf_analyzer (assembled under <root>/.peers/perf_analyzer from
    the tritonclient wheel, Debian's libb64 and PyPI's libcudart), or why there is none.
    Run it with `perf_analyzer_env(root)` (run_perf_analyzer does)."""
    folder = _perf_analyzer_dir(root)
    binary = folder / "bin" / "perf_analyzer"
    digest = _digest(TRITONCLIENT, CUDART, LIBB64)
    try:
        with _locked(root):
            if _stamp_matches(folder, digest) and _perf_analyzer_works(binary, root):
                return binary
            shutil.rmtree(folder, ignore_errors=True)
            log(f"peers: assembling {binary} ({TRITONCLIENT}, {CUDART}, Debian {LIBB64}) …")
            folder.mkdir(parents=True)
            with tempfile.TemporaryDirectory(dir=scratch(root)) as tmp:
                _assemble_perf_analyzer(folder, Path(tmp))
            if not _perf_analyzer_works(binary, root):
                return f"{binary} was assembled but does not run"
            (folder / STAMP).write_text(digest + "\n")
    except PeerError as error:
        return str(error).splitlines()[0]
    return binary


def _parse_report(path: Path, output: str) -> dict[str, float]:
    """perf_analyzer's -f report (latencies in µs, turned into ms) and its printed average."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise PeerError("perf_analyzer wrote an empty report")
    row = rows[-1]
    result = {"infer_s": float(row["Inferences/Second"])}
    for key, column in (("p50_ms", "p50 latency"), ("p99_ms", "p99 latency")):
        result[key] = float(row[column]) / 1e3
    for key, column in (
        ("server_queue_ms", "Server Queue"),
        ("server_infer_ms", "Server Compute Infer"),
    ):
        if row.get(column):
            result[key] = float(row[column]) / 1e3
    average = re.search(r"Avg latency: (\d+) usec", output)
    if average:
        result["avg_ms"] = float(average.group(1)) / 1e3
    return result


def run_perf_analyzer(
    binary: Path,
    address: str,
    model: str,
    concurrency: int,
    batch: int,
    seconds: float,
    *,
    width: int | None = None,
    root: Path = REPO,
) -> dict[str, float | str]:
    """One perf_analyzer measurement over gRPC: `concurrency` synchronous callers sending
    `batch`-row requests of random data, three windows of seconds/3 (up to six when the
    first ones vary by more than 25%). Returns infer_s (inferences per second, as
    perf_analyzer counts them: rows), req_s, p50_ms, p99_ms, avg_ms, the server's own
    server_queue_ms and server_infer_ms when it reports them (Triton does), and `output`
    (its text); raises PeerError when it fails or runs past its bound."""
    window_ms = max(200, round(seconds * 1e3 / 3))
    max_trials = 6
    with tempfile.TemporaryDirectory(prefix="perf-analyzer-") as tmp:
        report = Path(tmp) / "report.csv"
        argv = [str(binary), "-i", "grpc", "-u", address, "-m", model, "-b", str(batch)]
        argv += ["--concurrency-range", str(concurrency), "--measurement-interval", str(window_ms)]
        argv += ["--stability-percentage", "25", "--max-trials", str(max_trials)]
        argv += ["-f", str(report)]
        if width is not None:
            argv += ["--shape", f"x:{width}"]
        timeout = max_trials * window_ms / 1e3 * 2 + 60
        try:
            output = _run(argv, timeout=timeout, env=perf_analyzer_env(root))
        except PeerError as error:
            if "failed to get model config" in str(error):
                raise PeerError(
                    f"{address} does not answer ModelConfig, which perf_analyzer needs ({error})"
                ) from error
            raise
        result: dict[str, float | str] = dict(_parse_report(report, output))
    result["req_s"] = float(result["infer_s"]) / batch
    result["output"] = output
    return result
