"""`InferStream` over real sockets: a real `infc worker`, and `serve` in this process.

The real process (demo.infer's `laptop`, via the conftest fixtures) shows the
stream's answers, its in-band errors and its end on half-close and on
SIGTERM. `serve` runs in a thread of this process where a test needs to hold
a batch or a load: its `fraud-scorer` backends wait at gates the test opens,
so a slow batch and a fast one are in flight at once, or Health is asked
while a model loads. Every wait is bounded; every stream, server and process
is stopped when its test ends.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import grpc
import numpy as np
import pytest

from inferplane.backends import tensors
from inferplane.backends.registry import create_backend
from inferplane.backends.worker import WorkerCore
from inferplane.backends.worker_service import serve
from inferplane.compiler.compilation import Compilation
from inferplane.protos import worker_pb2 as pb
from inferplane.protos import worker_pb2_grpc as pb_grpc

pytest.importorskip("onnxruntime")

SPECS = Path(__file__).resolve().parents[2] / "specs"
WAIT_S = 60.0  # the longest a test waits for a worker to start or stop
ANSWER_S = 30.0  # the longest a test waits for one answer
UNAVAILABLE, OK = grpc.StatusCode.UNAVAILABLE.value[0], 0


def batch(model: str, seq: int, rows: int = 1, version: int = 1, **override) -> pb.InferRequest:
    if model == "support-intent":
        array = np.array([b"where is my refund"] * rows, dtype=object)
        name = "text"
    else:
        array = np.random.default_rng(seq).normal(size=(rows, 30)).astype(np.float32)
        name = "features"
    datatype, shape, raw = tensors.to_raw(array)
    inputs = [pb.Tensor(name=name, datatype=datatype, shape=shape, raw=raw)]
    return pb.InferRequest(
        **{"model": model, "version": version, "inputs": inputs, "seq": seq, **override}
    )


class Stream:
    """One InferStream from a test: `send` feeds it, `answer` reads one (bounded),
    `close` half-closes, `end` waits for its status."""

    _END = object()

    def __init__(self, address: str) -> None:
        self._channel = grpc.insecure_channel(address)
        self._requests: queue.Queue = queue.Queue()
        self._answers: queue.Queue = queue.Queue()
        self._call = pb_grpc.WorkerStub(self._channel).InferStream(
            iter(self._requests.get, None), timeout=WAIT_S
        )
        self.status: grpc.StatusCode | None = None
        self.details = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for answer in self._call:
                self._answers.put(answer)
            self.status = grpc.StatusCode.OK
        except grpc.RpcError as error:
            self.status, self.details = error.code(), error.details() or ""
        self._answers.put(self._END)

    def send(self, request: pb.InferRequest) -> None:
        self._requests.put(request)

    def close(self) -> None:
        self._requests.put(None)

    def answer(self) -> pb.InferResponse:
        item = self._answers.get(timeout=ANSWER_S)
        assert item is not self._END, f"the stream ended: {self.status} {self.details}"
        return item

    def answers(self, count: int) -> dict[int, pb.InferResponse]:
        return {a.seq: a for a in (self.answer() for _ in range(count))}

    def end(self) -> grpc.StatusCode:
        item = self._answers.get(timeout=ANSWER_S)
        assert item is self._END, f"an answer where the stream should end: {item}"
        return self.status

    def cancel(self) -> None:
        self._requests.put(None)  # lets grpc's request thread finish
        self._call.cancel()
        self._channel.close()


@pytest.fixture
def streams() -> Iterator:
    """`streams(address)`: open streams, cancelled after the test."""
    opened: list[Stream] = []

    def open_(address: str) -> Stream:
        opened.append(Stream(address))
        return opened[-1]

    yield open_
    for stream in opened:
        stream.cancel()


# -- a real worker process -------------------------------------------------------------------


def test_batches_in_flight_on_one_stream_come_back_with_their_seqs(demo_worker, streams):
    stream = streams(demo_worker.address)
    sent = {
        seq: batch(model, seq, rows)
        for seq, (model, rows) in enumerate(
            [("fraud-scorer", 7), ("fraud-lite", 1), ("support-intent", 3), ("fraud-lite", 32)] * 3,
            start=100,
        )
    }
    for request in sent.values():
        stream.send(request)
    answers = stream.answers(len(sent))
    assert set(answers) == set(sent)
    unary = demo_worker.stub()
    for seq, answer in answers.items():
        assert answer.error_code == OK, answer.error_message
        expected = unary.Infer(sent[seq], timeout=ANSWER_S)
        assert answer.batch_size == expected.batch_size == sent[seq].inputs[0].shape[0]
        assert [(t.name, t.raw) for t in answer.outputs] == [
            (t.name, t.raw) for t in expected.outputs
        ]
    stream.close()
    assert stream.end() is grpc.StatusCode.OK


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        (
            batch(
                "fraud-scorer",
                1,
                inputs=[pb.Tensor(name="features", datatype="FP64", shape=[1, 30], raw=bytes(240))],
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "model fraud-scorer@1: input `features`: expected FP32[-1, 30], got FP64[1, 30]",
        ),
        (
            batch("fraud-scorer", 1, version=9),
            grpc.StatusCode.NOT_FOUND,
            "serves no version 9 of model `fraud-scorer`",
        ),
    ],
    ids=["invalid-argument", "not-found"],
)
def test_a_failed_batch_is_answered_in_band_and_the_stream_serves_on(
    demo_worker, streams, request_, code, message
):
    stream = streams(demo_worker.address)
    stream.send(request_)
    failed = stream.answer()
    assert (failed.seq, failed.error_code) == (1, code.value[0])
    assert message in failed.error_message
    with pytest.raises(grpc.RpcError) as unary:  # the same status as a unary call
        demo_worker.stub().Infer(request_, timeout=ANSWER_S)
    assert (unary.value.code(), unary.value.details()) == (code, failed.error_message)
    stream.send(batch("fraud-lite", 2, rows=4))
    ok = stream.answer()
    assert (ok.seq, ok.error_code, ok.batch_size) == (2, OK, 4)
    stream.close()
    assert stream.end() is grpc.StatusCode.OK


def test_sigterm_ends_an_idle_stream_without_waiting_out_the_grace(workers, streams, tmp_path):
    worker = workers(SPECS / "demo.infer", "laptop", f"unix:{tmp_path}/w.sock", "--grace", "30")
    worker.wait_ready()
    stream = streams(worker.address)
    stream.send(batch("fraud-lite", 1))
    assert stream.answer().error_code == OK
    signalled = time.monotonic()
    assert worker.terminate(timeout_s=WAIT_S) == 0
    assert time.monotonic() - signalled < 10  # not the 30 s grace: the idle stream ended
    assert stream.end() is grpc.StatusCode.UNAVAILABLE
    assert "is draining: the stream ends" in stream.details
    assert "drain_timeout" not in worker.stderr()


# -- `serve` in this process, with batches and loads the test holds -----------------------------


class Gated:
    """A real backend that waits at `loaded` before loading and at `gate` in each
    batch (not in warm-up); `entered` tells the test a batch is waiting."""

    def __init__(self, backend, worker: InProcess) -> None:
        self._backend, self._worker = backend, worker

    def load(self) -> None:
        assert self._worker.loaded.wait(WAIT_S), "the test never let the model load"
        self._backend.load()

    def warm_up(self, batch_sizes: Sequence[int]) -> None:
        self._backend.warm_up(batch_sizes)

    def describe(self):
        return self._backend.describe()

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._worker.entered.set()
        assert self._worker.gate.wait(WAIT_S), "the test never opened the gate"
        return self._backend.infer(inputs)


class Lines:
    """`serve`'s stdout: the ready line, handed to the test through a queue."""

    def __init__(self) -> None:
        self.lines: queue.Queue = queue.Queue()

    def write(self, text: str) -> None:
        self.lines.put(text)

    def flush(self) -> None:
        pass


class InProcess:
    """`serve` in a thread over demo.infer's `laptop`, its `fraud-scorer` models gated."""

    def __init__(self) -> None:
        self.gate, self.entered = threading.Event(), threading.Event()
        self.loaded, self.stop = threading.Event(), threading.Event()
        self.out = Lines()
        self.outcome: list[bool | BaseException] = []  # what `serve` returned, or raised
        self.thread: threading.Thread | None = None
        self.address = ""

    def start(self, listen: str, grace_s: float) -> None:
        def factory(model, target, base_dir, **options):
            backend = create_backend(model, target, base_dir, **options)
            return Gated(backend, self) if model.name == "fraud-scorer" else backend

        plan = Compilation.from_path(SPECS / "demo.infer").plan
        core = WorkerCore(plan, "laptop", SPECS, backend_factory=factory)

        def run() -> None:
            try:
                drained = serve(
                    core,
                    listen,
                    grace_s=grace_s,
                    out=self.out,
                    stop=self.stop,
                    handle_signals=False,
                )
                self.outcome.append(drained)
            except BaseException as error:
                self.outcome.append(error)
                self.out.write("")

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def wait_ready(self) -> None:
        line = self.out.lines.get(timeout=WAIT_S)
        assert " ready on " in line, f"serve did not start: {self.outcome}"
        self.address = line.split(" ready on ", 1)[1].split(" ", 1)[0]

    def wait_returned(self, timeout_s: float = WAIT_S) -> bool | BaseException:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), f"serve did not return within {timeout_s}s"
        return self.outcome[0]

    def shut(self) -> None:
        self.gate.set()
        self.loaded.set()
        self.stop.set()
        if self.thread is not None:
            self.wait_returned()


@pytest.fixture
def serving(example_models) -> Iterator:
    """`serving(listen=..., grace_s=..., loaded=True)`: a started `InProcess`, shut afterwards."""
    started: list[InProcess] = []

    def start(listen: str = "127.0.0.1:0", grace_s: float = 20.0, loaded: bool = True):
        worker = InProcess()
        started.append(worker)
        if loaded:
            worker.loaded.set()
        worker.start(listen, grace_s)
        if loaded:
            worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.shut()


def test_health_answers_while_the_models_load(serving, tmp_path):
    address = f"unix:{tmp_path}/w.sock"
    worker = serving(address, loaded=False)
    stub = pb_grpc.WorkerStub(channel := grpc.insecure_channel(address))
    try:
        health = stub.Health(pb.HealthRequest(), timeout=ANSWER_S, wait_for_ready=True)
        states = {f"{m.name}@{m.version}": m.state for m in health.models}
        assert states["fraud-scorer@1"] == pb.MODEL_STATE_LOADING
        assert not health.ready
        worker.loaded.set()
        worker.wait_ready()
        assert stub.Health(pb.HealthRequest(), timeout=ANSWER_S).ready
    finally:
        channel.close()


def test_a_fast_batch_overtakes_a_slow_one(serving, streams):
    worker = serving()
    stream = streams(worker.address)
    stream.send(batch("fraud-scorer", 1, rows=2))
    assert worker.entered.wait(ANSWER_S)
    stream.send(batch("fraud-lite", 2))
    stream.send(batch("support-intent", 3))
    assert sorted(stream.answers(2)) == [2, 3]
    worker.gate.set()
    slow = stream.answer()
    assert (slow.seq, slow.error_code, slow.batch_size) == (1, OK, 2)
    stream.close()
    assert stream.end() is grpc.StatusCode.OK


def test_a_drain_refuses_new_batches_in_band_and_lets_running_ones_finish(serving, streams):
    worker = serving()
    stream = streams(worker.address)
    stream.send(batch("fraud-scorer", 1, rows=3))
    assert worker.entered.wait(ANSWER_S)
    worker.stop.set()  # what SIGTERM does
    deadline = time.monotonic() + ANSWER_S
    while True:  # the drain begins within serve's poll of `stop`
        stream.send(batch("fraud-lite", 2))
        refused = stream.answer()
        assert refused.seq == 2
        if refused.error_code == UNAVAILABLE or time.monotonic() > deadline:
            break
    assert refused.error_code == UNAVAILABLE
    assert "is draining" in refused.error_message
    worker.gate.set()
    finished = stream.answer()
    assert (finished.seq, finished.error_code, finished.batch_size) == (1, OK, 3)
    assert stream.end() is grpc.StatusCode.UNAVAILABLE
    assert "is draining: the stream ends" in stream.details
    assert worker.wait_returned() is True  # drained within the grace period


def test_a_batch_that_outlives_the_grace_period_does_not_hold_the_stop(serving, streams):
    worker = serving(grace_s=0.5)
    stream = streams(worker.address)
    stream.send(batch("fraud-scorer", 1))
    assert worker.entered.wait(ANSWER_S)
    stopped = time.monotonic()
    worker.stop.set()
    assert worker.wait_returned() is False  # the gate is still shut: not drained
    assert time.monotonic() - stopped < 10
    assert stream.end() in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
