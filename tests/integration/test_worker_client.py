"""The gateway's worker client over a real gRPC stream, against a scripted worker.

The scripted worker is an in-process grpc.aio server on a unix socket that
answers `InferStream` by model name: `echo` answers its input back, `slow`
answers after `SLOW_S`, `bad` answers INVALID_ARGUMENT in-band, `hang` never
answers, `die` ends the stream with UNAVAILABLE (a worker that went away).
Each test checks one promise of gateway/worker_client.py: answers matched by
`seq` whatever their order, in-band errors that keep the stream, a broken
stream failing what was in flight with a retriable status and the next batch
opening a new stream, and the timeout.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import numpy as np
import pytest

from inferplane.gateway.errors import DeadlineExceeded, InvalidArgument, Unavailable
from inferplane.gateway.worker_client import GrpcWorkerClient
from inferplane.protos import worker_pb2 as pb
from inferplane.protos import worker_pb2_grpc as pb_grpc

SLOW_S = 0.3
BOUND_S = 10.0  # no test waits longer than this for anything


class ScriptedWorker(pb_grpc.WorkerServicer):
    def __init__(self) -> None:
        self.streams = 0

    async def InferStream(self, requests, context):
        self.streams += 1
        answers: asyncio.Queue = asyncio.Queue()
        running: set[asyncio.Task] = set()

        async def answer(request: pb.InferRequest) -> None:
            if request.model == "slow":
                await asyncio.sleep(SLOW_S)
            if request.model == "hang":
                await asyncio.sleep(BOUND_S)
            if request.model == "bad":
                code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
                await answers.put(
                    pb.InferResponse(seq=request.seq, error_code=code, error_message="x: bad")
                )
                return
            outputs = [
                pb.Tensor(name="y", datatype=t.datatype, shape=t.shape, raw=t.raw)
                for t in request.inputs
            ]
            await answers.put(pb.InferResponse(seq=request.seq, outputs=outputs, compute_ns=7))

        async def read() -> None:
            async for request in requests:
                if request.model == "die":
                    await answers.put(None)
                    return
                task = asyncio.create_task(answer(request))
                running.add(task)
                task.add_done_callback(running.discard)
            await answers.put(None)

        reader = asyncio.create_task(read())
        while (response := await answers.get()) is not None:
            yield response
        reader.cancel()
        for task in running:
            task.cancel()
        await context.abort(grpc.StatusCode.UNAVAILABLE, "worker went away")


@pytest.fixture
def run(tmp_path: Path):
    """Run `test(client, worker)` against a scripted worker on a unix socket."""

    def runner(test) -> None:
        async def main() -> None:
            worker = ScriptedWorker()
            server = grpc.aio.server()
            pb_grpc.add_WorkerServicer_to_server(worker, server)
            address = f"unix:{tmp_path / 'w.sock'}"
            server.add_insecure_port(address)
            await server.start()
            client = GrpcWorkerClient(address)
            try:
                await asyncio.wait_for(test(client, worker), BOUND_S)
            finally:
                await client.close()
                await server.stop(None)

        asyncio.run(main())

    return runner


def x(value: float) -> dict[str, np.ndarray]:
    return {"x": np.full((1, 2), value, np.float32)}


def test_answers_are_matched_by_seq_whatever_their_order(run) -> None:
    async def test(client: GrpcWorkerClient, worker: ScriptedWorker) -> None:
        slow = asyncio.create_task(client.infer("slow", 1, x(1.0)))
        await asyncio.sleep(0.05)
        fast = [asyncio.create_task(client.infer("echo", 1, x(float(i)))) for i in range(2, 6)]
        done, _ = await asyncio.wait([slow, *fast], return_when=asyncio.FIRST_COMPLETED)
        assert slow not in done  # the fast ones overtook it on the same stream
        results = await asyncio.gather(slow, *fast)
        for value, (outputs, compute_ns) in zip([1, 2, 3, 4, 5], results, strict=True):
            assert outputs["y"].tolist() == [[value, value]]
            assert compute_ns == 7
        assert worker.streams == 1

    run(test)


def test_an_in_band_error_keeps_its_status_and_the_stream(run) -> None:
    async def test(client: GrpcWorkerClient, worker: ScriptedWorker) -> None:
        with pytest.raises(InvalidArgument, match="x: bad"):
            await client.infer("bad", 1, x(1.0))
        outputs, _ = await client.infer("echo", 1, x(2.0))
        assert outputs["y"].tolist() == [[2.0, 2.0]]
        assert worker.streams == 1

    run(test)


def test_a_broken_stream_fails_what_was_in_flight_as_retriable_and_reopens(run) -> None:
    async def test(client: GrpcWorkerClient, worker: ScriptedWorker) -> None:
        waiting = asyncio.create_task(client.infer("hang", 1, x(1.0)))
        await asyncio.sleep(0.05)
        with pytest.raises(Unavailable) as died:
            await client.infer("die", 1, x(1.0))
        with pytest.raises(Unavailable) as lost:
            await waiting
        assert died.value.worker_status == lost.value.worker_status == "UNAVAILABLE"
        outputs, _ = await client.infer("echo", 1, x(3.0))
        assert outputs["y"].tolist() == [[3.0, 3.0]]
        assert worker.streams == 2

    run(test)


def test_a_batch_not_answered_in_time_is_deadline_exceeded(run) -> None:
    async def test(client: GrpcWorkerClient, worker: ScriptedWorker) -> None:
        with pytest.raises(DeadlineExceeded, match="no answer within"):
            await client.infer("hang", 1, x(1.0), timeout=0.1)
        outputs, _ = await client.infer("echo", 1, x(4.0))  # the stream is still good
        assert outputs["y"].tolist() == [[4.0, 4.0]]

    run(test)
