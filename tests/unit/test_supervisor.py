"""The local supervisor against fake worker processes: no process, no socket.

A `FakeWorker` is scripted by the test (print the ready line, crash, ignore
SIGTERM); `Harness` records spawns, `on_change` calls and restart delays, and
drives a fake clock that the fake `sleep` advances.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest

from inferplane.gateway.supervisor import (
    Backoff,
    Supervisor,
    WorkersFailed,
    local_targets,
    parse_ready_line,
)


class FakeStream:
    def __init__(self) -> None:
        self._lines: asyncio.Queue[bytes] = asyncio.Queue()

    def put(self, line: str) -> None:
        self._lines.put_nowait(line.encode() + b"\n")

    def close(self) -> None:
        self._lines.put_nowait(b"")

    async def readline(self) -> bytes:
        line = await self._lines.get()
        if not line:
            self._lines.put_nowait(b"")  # EOF stays EOF
        return line


class FakeWorker:
    def __init__(self, pid: int, argv: list[str], *, obeys_sigterm: bool = True) -> None:
        self.pid = pid
        self.argv = argv
        self.stdout = FakeStream()
        self.stderr = FakeStream()
        self.obeys_sigterm = obeys_sigterm
        self.signals: list[int] = []
        self._exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    @property
    def returncode(self) -> int | None:
        return self._exit.result() if self._exit.done() else None

    @property
    def address(self) -> str:
        return self.argv[self.argv.index("--listen") + 1]

    def ready(self) -> None:
        target = self.argv[self.argv.index("--target") + 1]
        self.stdout.put(f"worker {target} ready on {self.address} (4 models)")

    def exit(self, code: int) -> None:
        if not self._exit.done():
            self.stdout.close()
            self.stderr.close()
            self._exit.set_result(code)

    async def wait(self) -> int:
        return await asyncio.shield(self._exit)

    def signal_group(self, sig: int) -> None:
        if self.returncode is not None:
            return
        self.signals.append(sig)
        if sig == signal.SIGKILL:
            self.exit(-9)
        elif self.obeys_sigterm:
            self.exit(0)


class Harness:
    def __init__(self, tmp_path: Path, *, auto_ready: bool = True, **options) -> None:
        self.now = 100.0
        self.auto_ready = auto_ready
        self.spawned: list[FakeWorker] = []
        self.changes: list[tuple[str, list[str]]] = []
        self.delays: list[float] = []
        self.spawn_hook = None
        self.sleep_hook = None
        plan = options.pop("plan", None) or make_plan(("laptop", 2, []))
        self.supervisor = Supervisor(
            plan,
            tmp_path / "demo.infer",
            run_dir=tmp_path / "run",
            clock=lambda: self.now,
            spawn=self.spawn,
            sleep=self.sleep,
            on_change=lambda target, endpoints: self.changes.append((target, list(endpoints))),
            python="python",
            **options,
        )

    async def spawn(self, argv):
        worker = FakeWorker(1000 + len(self.spawned), list(argv))
        self.spawned.append(worker)
        if self.spawn_hook is not None:
            self.spawn_hook(worker)
        elif self.auto_ready:
            worker.ready()
        return worker

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        if self.sleep_hook is not None:
            await self.sleep_hook()
        self.now += delay
        await asyncio.sleep(0)

    def live(self) -> list[FakeWorker]:
        return [w for w in self.spawned if w.returncode is None]


def make_plan(*targets: tuple[str, int, list[str]]) -> SimpleNamespace:
    """Just what the supervisor reads of a plan: targets' names, replicas and workers."""
    return SimpleNamespace(
        targets=[
            SimpleNamespace(name=name, replicas=SimpleNamespace(min=low, max=8), workers=workers)
            for name, low, workers in targets
        ]
    )


async def settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def until(condition, timeout_s: float = 2.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), timeout_s)


def test_backoff_doubles_to_the_cap_and_resets_after_a_stable_run():
    backoff = Backoff()
    delays = [backoff.after_exit(1.0) for _ in range(9)]
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff.after_exit(30.0) == 0.5
    assert backoff.after_exit(0.1) == 1


def test_parse_ready_line():
    assert parse_ready_line("worker laptop ready on unix:/r/l-0.sock (4 models)") == (
        "unix:/r/l-0.sock"
    )
    line = "worker box ready on 127.0.0.1:5 (1 of 2 models; failed: mystery@1)"
    assert parse_ready_line(line) == "127.0.0.1:5"
    assert parse_ready_line("2025-01-01 INFO event=listening") is None


def test_local_targets_skip_remote_workers_and_start_at_least_one():
    plan = make_plan(("a", 2, []), ("b", 0, []), ("remote", 1, ["tpu-0:9100"]))
    assert local_targets(plan) == [("a", 2), ("b", 1)]
    assert local_targets(plan, remote={"a"}) == [("b", 1)]  # `infc serve --remote a=…`


def test_workers_get_the_spec_copy_and_the_folder_its_paths_start_at(tmp_path: Path):
    async def main() -> None:
        h = Harness(tmp_path, base_dir=tmp_path / "specs")
        await h.supervisor.start()
        await h.supervisor.wait_ready(timeout_s=5)
        for worker in h.spawned:
            at = worker.argv.index("--base-dir")
            assert worker.argv[at + 1] == str((tmp_path / "specs").resolve())
        await h.supervisor.stop(grace_s=1)

    asyncio.run(main())


def test_remote_targets_get_no_local_worker(tmp_path: Path):
    async def main() -> None:
        plan = make_plan(("laptop", 2, []), ("box", 1, []))
        h = Harness(tmp_path, plan=plan, remote={"laptop"})
        await h.supervisor.start()
        await h.supervisor.wait_ready(timeout_s=5)
        assert [w.argv[w.argv.index("--target") + 1] for w in h.spawned] == ["box"]
        assert h.supervisor.worker_count == 1
        await h.supervisor.stop(grace_s=1)

    asyncio.run(main())


def test_workers_start_in_their_slots_and_are_reported_when_ready(tmp_path: Path):
    async def main() -> None:
        h = Harness(tmp_path, cpu_fallback=True, worker_grace_s=5.0)
        await h.supervisor.start()
        await h.supervisor.wait_ready(timeout_s=5)
        assert len(h.spawned) == 2
        first = h.spawned[0].argv
        assert first[:3] == ["python", "-c", "from inferplane.cli.main import main; main()"]
        assert first[3:] == [
            "worker",
            str((tmp_path / "demo.infer").resolve()),
            "--target",
            "laptop",
            "--listen",
            f"unix:{tmp_path / 'run' / 'laptop-0.sock'}",
            "--cpu-fallback",
            "--grace",
            "5.0",
            "--parent-pid",
            str(os.getpid()),
        ]
        both = [w.address for w in h.spawned]
        assert h.supervisor.endpoints("laptop") == both
        assert h.changes[-1] == ("laptop", both)
        assert h.supervisor.pids() == {"laptop-0": 1000, "laptop-1": 1001}
        await h.supervisor.stop(grace_s=1)

    asyncio.run(main())


def test_the_host_location_is_passed_to_each_worker(tmp_path: Path):
    async def main() -> None:
        h = Harness(tmp_path, location="onprem:localhost")
        await h.supervisor.start()
        await h.supervisor.wait_ready(timeout_s=5)
        for worker in h.spawned:
            at = worker.argv.index("--location")
            assert worker.argv[at : at + 2] == ["--location", "onprem:localhost"]
        await h.supervisor.stop(grace_s=1)

    asyncio.run(main())


def test_a_crashed_worker_leaves_the_set_at_once_and_restarts_with_backoff(tmp_path: Path):
    async def main() -> None:
        h = Harness(tmp_path)
        await h.supervisor.start()
        await h.supervisor.wait_ready(timeout_s=5)
        crashed, survivor = h.spawned
        h.changes.clear()
        crashed.exit(1)
        await until(lambda: len(h.spawned) == 3)
        # Out of the set before the restart, then back in once the new one is ready.
        assert h.changes[0] == ("laptop", [survivor.address])
        await until(lambda: len(h.changes) == 2)
        assert h.changes[1] == ("laptop", [crashed.address, survivor.address])
        assert h.delays == [0.5]

        # Crashing again at once doubles the delay each time...
        for expected in (1, 2, 4):
            h.spawned[-1].exit(1)
            await until(lambda e=expected: h.delays[-1:] == [e] and len(h.live()) == 2)
        # ...and a worker that stayed up long enough starts over.
        h.now += 60
        h.spawned[-1].exit(1)
        await until(lambda: len(h.delays) == 5 and len(h.live()) == 2)
        assert h.delays == [0.5, 1, 2, 4, 0.5]
        await h.supervisor.stop(grace_s=1)
        assert h.live() == []

    asyncio.run(main())


def test_a_worker_that_exits_before_ready_fails_its_target_with_the_reason(tmp_path: Path):
    async def main() -> None:
        h = Harness(tmp_path, plan=make_plan(("gpu", 1, [])))

        def broken(worker: FakeWorker) -> None:
            worker.stderr.put("infc: target `gpu` needs a GPU; pass --cpu-fallback")
            worker.exit(1)

        h.spawn_hook = broken
        await h.supervisor.start()
        with pytest.raises(WorkersFailed, match=r"target `gpu`.*code 1.*needs a GPU"):
            await h.supervisor.wait_ready(timeout_s=5)
        await h.supervisor.stop(grace_s=1)
        assert h.changes == []

    asyncio.run(main())


def test_one_ready_worker_is_enough_for_its_target(tmp_path: Path):
    async def main() -> None:
        h = Harness(tmp_path)

        def first_fails(worker: FakeWorker) -> None:
            if worker.pid == 1000:
                worker.exit(1)
            else:
                worker.ready()

        h.spawn_hook = first_fails
        await h.supervisor.start()
        await h.supervisor.wait_ready(timeout_s=5)
        assert h.supervisor.endpoints("laptop")
        await h.supervisor.stop(grace_s=1)

    asyncio.run(main())


def test_a_worker_without_a_ready_line_is_killed_after_the_timeout(tmp_path: Path):
    async def main() -> None:
        plan = make_plan(("laptop", 1, []))
        h = Harness(tmp_path, plan=plan, auto_ready=False, ready_timeout_s=0.05)
        await h.supervisor.start()
        with pytest.raises(WorkersFailed, match=r"no ready line within 0\.05s"):
            await h.supervisor.wait_ready(timeout_s=5)
        assert h.spawned[0].signals == [signal.SIGKILL]
        await h.supervisor.stop(grace_s=1)
        assert h.live() == []

    asyncio.run(main())


def test_stop_terminates_then_kills_stragglers_and_leaves_no_process(tmp_path: Path):
    async def main() -> None:
        h = Harness(tmp_path)
        await h.supervisor.start()
        await h.supervisor.wait_ready(timeout_s=5)
        obedient, stubborn = h.spawned
        stubborn.obeys_sigterm = False
        await h.supervisor.stop(grace_s=0.05)
        assert obedient.signals == [signal.SIGTERM]
        assert stubborn.signals == [signal.SIGTERM, signal.SIGKILL]
        assert h.live() == []
        assert len(h.spawned) == 2  # nothing restarted while stopping
        assert h.changes[-1] == ("laptop", [])

    asyncio.run(main())


def test_stop_during_a_restart_backoff_starts_nothing_more(tmp_path: Path):
    async def main() -> None:
        h = Harness(tmp_path, plan=make_plan(("laptop", 1, [])))
        h.sleep_hook = asyncio.Event().wait  # never wakes: only stop() ends the backoff
        await h.supervisor.start()
        await h.supervisor.wait_ready(timeout_s=5)
        h.spawned[0].exit(1)
        await until(lambda: h.delays == [0.5])
        await h.supervisor.stop(grace_s=1)
        await settle()
        assert len(h.spawned) == 1

    asyncio.run(main())


def test_a_cancelled_supervisor_kills_its_workers(tmp_path: Path):
    async def main() -> None:
        h = Harness(tmp_path)
        await h.supervisor.start()
        await h.supervisor.wait_ready(timeout_s=5)
        for task in h.supervisor._tasks:
            task.cancel()
        await asyncio.gather(*h.supervisor._tasks, return_exceptions=True)
        assert h.live() == []
        assert all(w.signals == [signal.SIGKILL] for w in h.spawned)

    asyncio.run(main())


def test_worker_output_goes_to_the_log_under_its_name(tmp_path: Path, caplog):
    async def main() -> None:
        h = Harness(tmp_path, plan=make_plan(("laptop", 1, [])))

        def chatty(worker: FakeWorker) -> None:
            worker.stderr.put("INFO event=model_ready model=fraud@1")
            worker.ready()

        h.spawn_hook = chatty
        await h.supervisor.start()
        await h.supervisor.wait_ready(timeout_s=5)
        await until(lambda: "model_ready" in caplog.text)
        await h.supervisor.stop(grace_s=1)

    with caplog.at_level("INFO", logger="inferplane.gateway.supervisor"):
        asyncio.run(main())
    assert "worker=laptop-0 INFO event=model_ready model=fraud@1" in caplog.text
    assert "event=worker_started worker=laptop-0 pid=1000" in caplog.text
