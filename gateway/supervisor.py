"""The local supervisor of `infc serve`: starts, watches and restarts local workers.

For each target without remote `workers` it keeps `replicas.min` (at least
one) `infc worker` processes, each in its own process group and listening on
a unix socket in `run_dir`. The control flow of one worker slot:

    spawn ─▶ wait (bounded) for the ready line on stdout ─▶ endpoint added
      ▲                                                       │ on_change
      │                                                       ▼
    backoff (0.5 s doubling to 30 s; reset    ◀── exits ── endpoint removed at once
    once a worker stayed up STABLE_S)                         │ on_change

`on_change(target, endpoints)` (the gateway's `set_replicas`) always gets the
whole live set of a target, so a dead worker's share goes to the others the
moment it exits. `stop(grace_s)` sends SIGTERM to every worker's group (they
drain), waits at most the grace period, then SIGKILLs what is left. Worker
stdout and stderr lines are forwarded to this module's log under the worker's
name; workers never log payloads, so neither does this.

Processes come from an injectable `spawn` (tests pass fakes), and time from
an injected `clock` and `sleep`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from inferplane.backends.logfmt import kv
from inferplane.compiler.plan import Plan

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 120.0  # the longest a worker may take to load its models
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
STABLE_S = 30.0  # a worker up this long resets the backoff
KILL_WAIT_S = 5.0  # after SIGKILL, how long to wait for the exit to be reaped
TAIL_LINES = 20  # stderr lines kept per worker, to explain a failed start
INFC = ("-c", "from inferplane.cli.main import main; main()")


class Stream(Protocol):
    async def readline(self) -> bytes: ...


class WorkerProcess(Protocol):
    """What the supervisor needs of a started worker (a real one, or a test's fake)."""

    pid: int
    stdout: Stream
    stderr: Stream

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def signal_group(self, sig: int) -> None:
        """Send `sig` to the worker's process group (nothing once it has exited)."""


Spawn = Callable[[Sequence[str]], Awaitable[WorkerProcess]]
OnChange = Callable[[str, Sequence[str]], None]


class _OsProcess:
    """An asyncio subprocess in its own process group."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self.pid = process.pid
        self.stdout = process.stdout
        self.stderr = process.stderr

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    async def wait(self) -> int:
        return await self._process.wait()

    def signal_group(self, sig: int) -> None:
        if self._process.returncode is not None:
            return  # reaped: its pid (and group id) may already belong to someone else
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)


async def spawn_process(argv: Sequence[str]) -> WorkerProcess:
    """Start `argv` with piped stdout and stderr, in a new process group."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own group (uvloop has no process_group)
        # No preexec_fn: the worker arranges to die with us itself (--parent-pid).
    )
    return _OsProcess(process)


class Backoff:
    """Restart delays: FIRST_BACKOFF_S doubling to MAX_BACKOFF_S, reset after a stable run.

    `after_exit(uptime_s)` returns how long to wait before the next start.
    A worker that stayed up at least `stable_s` is restarted after the first
    delay again, so a crash once a day is not punished for yesterday's.
    """

    def __init__(
        self,
        first_s: float = FIRST_BACKOFF_S,
        max_s: float = MAX_BACKOFF_S,
        stable_s: float = STABLE_S,
    ) -> None:
        self.first_s, self.max_s, self.stable_s = first_s, max_s, stable_s
        self._next_s = first_s

    def after_exit(self, uptime_s: float) -> float:
        if uptime_s >= self.stable_s:
            self._next_s = self.first_s
        delay = self._next_s
        self._next_s = min(self.max_s, self._next_s * 2)
        return delay


class WorkersFailed(RuntimeError):
    """Some target has no worker that became ready; the message says why."""


@dataclass
class _Slot:
    """One worker position of a target: its process comes and goes, the slot stays."""

    target: str
    index: int
    argv: tuple[str, ...]
    socket_path: Path
    process: WorkerProcess | None = None
    endpoint: str | None = None  # set while its worker is ready
    attempts: int = 0
    failures: int = 0
    reason: str = ""  # why the last failed attempt failed
    timed_out: bool = False  # this attempt printed no ready line in time
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))

    @property
    def name(self) -> str:
        return f"{self.target}-{self.index}"

    @property
    def settled(self) -> bool:
        """Its first start is decided: ready now, or failed at least once."""
        return self.endpoint is not None or self.failures > 0


def parse_ready_line(line: str) -> str | None:
    """The address in `worker NAME ready on ADDR (…)`, or None for any other line."""
    if not line.startswith("worker ") or " ready on " not in line:
        return None
    rest = line.split(" ready on ", 1)[1]
    return rest.split(" (", 1)[0].strip() or None


def local_targets(plan: Plan, remote: Collection[str] = ()) -> list[tuple[str, int]]:
    """(target, worker count) for each target that `infc serve` runs locally:
    those without `workers` in the spec and not in `remote` (`--remote`)."""
    return [
        (t.name, max(1, t.replicas.min))
        for t in plan.targets
        if not t.workers and t.name not in remote
    ]


class Supervisor:
    def __init__(
        self,
        plan: Plan,
        spec_path: str | os.PathLike[str],
        *,
        cpu_fallback: bool = False,
        location: str | None = None,
        run_dir: str | os.PathLike[str],
        clock: Callable[[], float] = time.monotonic,
        spawn: Spawn = spawn_process,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_change: OnChange | None = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
        worker_grace_s: float | None = None,
        python: str = sys.executable,
        remote: Collection[str] = (),
        base_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self._clock = clock
        self._spawn = spawn
        self._sleep = sleep
        self._on_change = on_change or (lambda target, endpoints: None)
        self._ready_timeout_s = ready_timeout_s
        self._stopping = False
        self._stop_event = asyncio.Event()
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._slots: list[_Slot] = []
        spec = str(Path(spec_path).resolve())
        run_dir = Path(run_dir)
        for target, count in local_targets(plan, remote):
            for index in range(count):
                socket_path = run_dir / f"{target}-{index}.sock"
                argv = [python, *INFC, "worker", spec, "--target", target]
                argv += ["--listen", f"unix:{socket_path}"]
                if cpu_fallback:
                    argv.append("--cpu-fallback")
                if location is not None:  # else they inherit INFERPLANE_LOCATION, if any
                    argv += ["--location", location]
                if worker_grace_s is not None:
                    argv += ["--grace", str(worker_grace_s)]
                if base_dir is not None:  # the spec is a copy: its paths start there
                    argv += ["--base-dir", str(Path(base_dir).resolve())]
                argv += ["--parent-pid", str(os.getpid())]  # backends/parent_watch.py
                self._slots.append(_Slot(target, index, tuple(argv), socket_path))

    # -- what callers read ---------------------------------------------------

    @property
    def worker_count(self) -> int:
        return len(self._slots)

    def endpoints(self, target: str) -> list[str]:
        """The live (ready) endpoints of `target`, in slot order."""
        return [s.endpoint for s in self._slots if s.target == target and s.endpoint]

    def pids(self) -> dict[str, int]:
        """Worker name → pid of its running process."""
        return {
            s.name: s.process.pid
            for s in self._slots
            if s.process is not None and s.process.returncode is None
        }

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Start every slot's watcher; returns at once (see `wait_ready`)."""
        for slot in self._slots:
            self._tasks.append(asyncio.create_task(self._run_slot(slot), name=slot.name))

    async def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until every slot's first start is decided; WorkersFailed when a target has none.

        A slot that failed keeps restarting in the background: a target with at
        least one ready worker is served.
        """
        deadline = self._clock() + timeout_s
        while not all(s.settled for s in self._slots):
            remaining = deadline - self._clock()
            if remaining <= 0:
                waiting = ", ".join(s.name for s in self._slots if not s.settled)
                raise WorkersFailed(f"workers not ready within {timeout_s:g}s: {waiting}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        for target in dict.fromkeys(s.target for s in self._slots):
            if not self.endpoints(target):
                slot = next(s for s in self._slots if s.target == target)
                raise WorkersFailed(f"no worker of target `{target}` started: {slot.reason}")

    async def stop(self, grace_s: float) -> None:
        """SIGTERM every worker (they drain), wait `grace_s`, SIGKILL the rest."""
        self._stopping = True
        self._stop_event.set()
        for slot in self._slots:
            if slot.process is not None:
                slot.process.signal_group(signal.SIGTERM)
        tasks = [t for t in self._tasks if not t.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s + 1.0)
            if pending:
                for slot in self._slots:
                    if slot.process is not None and slot.process.returncode is None:
                        log.warning(kv("worker_killed", worker=slot.name, grace_s=grace_s))
                        slot.process.signal_group(signal.SIGKILL)
                _, pending = await asyncio.wait(pending, timeout=KILL_WAIT_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        log.info(kv("workers_stopped", workers=len(self._slots)))

    # -- one slot ----------------------------------------------------------------

    async def _run_slot(self, slot: _Slot) -> None:
        backoff = Backoff()
        try:
            while not self._stopping:
                started = self._clock()
                await self._run_once(slot)
                if self._stopping:
                    break
                delay = backoff.after_exit(self._clock() - started)
                log.warning(
                    kv("worker_restart", worker=slot.name, in_s=delay, reason=slot.reason or None)
                )
                sleeper = asyncio.ensure_future(self._sleep(delay))
                stopper = asyncio.ensure_future(self._stop_event.wait())
                try:
                    await asyncio.wait((sleeper, stopper), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    sleeper.cancel()
                    stopper.cancel()
        finally:
            # Whatever ended this watcher (a bug, a cancel), its process ends with it.
            process = slot.process
            if process is not None and process.returncode is None:
                process.signal_group(signal.SIGKILL)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(process.wait(), KILL_WAIT_S)

    async def _run_once(self, slot: _Slot) -> None:
        """One process of the slot, from spawn to exit."""
        with contextlib.suppress(FileNotFoundError):
            slot.socket_path.unlink()  # a crashed worker leaves its socket file behind
        slot.attempts += 1
        slot.tail.clear()
        slot.timed_out = False
        try:
            process = await self._spawn(slot.argv)
        except OSError as error:
            self._failed(slot, f"cannot start: {error}")
            return
        slot.process = process
        log.info(kv("worker_started", worker=slot.name, pid=process.pid, attempt=slot.attempts))
        if self._stopping:  # stop() ran while it was being spawned
            process.signal_group(signal.SIGTERM)
        stderr = asyncio.create_task(self._forward_stderr(slot, process))
        try:
            address = await self._await_ready(slot, process)
            if address is not None:
                slot.endpoint = address
                log.info(kv("worker_ready", worker=slot.name, pid=process.pid, address=address))
                self._publish(slot.target)
                await self._forward_stdout(slot, process)
            code = await process.wait()
        finally:
            if process.returncode is None:
                process.signal_group(signal.SIGKILL)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(process.wait(), KILL_WAIT_S)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(stderr, 1.0)
            was_ready = slot.endpoint is not None
            slot.endpoint = None
            if was_ready:
                self._publish(slot.target)  # at once: its share goes to the others
        if self._stopping:
            log.info(kv("worker_exited", worker=slot.name, pid=process.pid, code=code))
            return
        if was_ready:
            reason = f"exited with code {code}"
        elif slot.timed_out:
            reason = f"no ready line within {self._ready_timeout_s:g}s"
        else:
            reason = f"exited with code {code} before it was ready"
            if slot.tail:
                reason += f": {slot.tail[-1]}"
        self._failed(slot, reason)
        log.warning(kv("worker_exited", worker=slot.name, pid=process.pid, code=code))

    async def _await_ready(self, slot: _Slot, process: WorkerProcess) -> str | None:
        """The worker's address from its ready line; None when it exits or times out."""

        async def read() -> str | None:
            while True:
                raw = await process.stdout.readline()
                if not raw:
                    return None
                line = raw.decode("utf-8", "replace").rstrip("\n")
                address = parse_ready_line(line)
                if address is not None:
                    if " of " in line:  # `(1 of 2 models; failed: …)`: serves the others
                        log.warning(kv("worker_partial", worker=slot.name, line=line))
                    return address
                log.info("worker=%s %s", slot.name, line)

        try:
            return await asyncio.wait_for(read(), self._ready_timeout_s)
        except TimeoutError:
            slot.timed_out = True
            log.error(kv("worker_timeout", worker=slot.name, timeout_s=self._ready_timeout_s))
            process.signal_group(signal.SIGKILL)
            return None

    async def _forward_stdout(self, slot: _Slot, process: WorkerProcess) -> None:
        while raw := await process.stdout.readline():
            log.info("worker=%s %s", slot.name, raw.decode("utf-8", "replace").rstrip("\n"))

    async def _forward_stderr(self, slot: _Slot, process: WorkerProcess) -> None:
        while raw := await process.stderr.readline():
            line = raw.decode("utf-8", "replace").rstrip("\n")
            slot.tail.append(line)
            log.info("worker=%s %s", slot.name, line)

    def _failed(self, slot: _Slot, reason: str) -> None:
        slot.failures += 1
        slot.reason = reason
        self._changed.set()

    def _publish(self, target: str) -> None:
        self._changed.set()
        endpoints = self.endpoints(target)
        log.info(kv("replicas", target=target, endpoints=endpoints or "none"))
        try:
            self._on_change(target, endpoints)
        except Exception:
            log.exception(kv("on_change_failed", target=target))
