"""`InferStream`: many batches over one long-lived stream, answered as they finish.

A reader task takes each request off the stream and hands it to the batch
pool at once (or, for a model whose batches are `quick`, runs it right there
on the event loop: a batch of a few microseconds costs less than the hop to a
pool thread and back); each finished batch comes back to the event loop and
is written, with its `seq`, in the order batches finish. `answer` (the
servicer's) never raises: a failed batch is an in-band answer, and the stream
serves on. Finished answers reach the loop through `_Finished`, which keeps
at most one wake-up of the loop pending: under load, one wake-up delivers
several answers.

The stream ends when nothing is in flight and either the client has
half-closed (status OK), or the worker drains (status UNAVAILABLE: a batch the
worker never read was never run, so the client retries unanswered ones
elsewhere). A batch read after the drain began is answered in-band
UNAVAILABLE by the core, like a unary call.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor

import grpc

from inferplane.protos import worker_pb2 as pb

_END, _DRAIN = object(), object()  # queue markers: the client half-closed; the worker drains


class _Finished:
    """Answers finished in pool threads, handed to `deliver` on the loop in bunches."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[list], None]):
        self._loop, self._deliver = loop, deliver
        self._lock = threading.Lock()
        self._answers: list = []

    def put(self, answer: object) -> None:
        """From a pool thread: the first answer of a bunch schedules its delivery."""
        with self._lock:
            self._answers.append(answer)
            if len(self._answers) > 1:
                return  # a delivery is pending and takes this one too
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        with self._lock:
            answers, self._answers = self._answers, []
        self._deliver(answers)


class Streams:
    """The worker's open streams, so that a drain can end the idle ones at once."""

    def __init__(
        self,
        pool: Executor,
        answer: Callable[[pb.InferRequest], pb.InferResponse],
        drain_message: str,
        quick: Callable[[pb.InferRequest], bool] = lambda request: False,
    ):
        self._pool = pool
        self._answer = answer
        self._quick = quick
        self._drain_message = drain_message
        self._open: set[asyncio.Queue] = set()
        self.draining = False

    def drain(self) -> None:
        """Streams end once their batches in flight are answered; call on the loop."""
        self.draining = True
        for queue in self._open:
            queue.put_nowait(_DRAIN)

    async def serve(
        self,
        requests: AsyncIterator[pb.InferRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.InferResponse]:
        """One stream: its answers, as its batches finish."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        in_flight = 0

        def deliver(answers: list) -> None:
            for answer in answers:
                queue.put_nowait(answer)

        finished = _Finished(loop, deliver)

        def run(request: pb.InferRequest) -> None:
            try:
                answer: object = self._answer(request)
            except BaseException as error:  # a bug in `answer` itself: it ends the stream
                answer = error
            finished.put(answer)

        async def read() -> None:
            nonlocal in_flight
            async for request in requests:
                in_flight += 1
                if self._quick(request):
                    # Cheaper than the hop to a pool thread and back.
                    try:
                        queue.put_nowait(self._answer(request))
                    except BaseException as error:  # a bug in `answer`: it ends the stream
                        queue.put_nowait(error)
                else:
                    self._pool.submit(run, request)

        reader = loop.create_task(read())
        reader.add_done_callback(lambda _: queue.put_nowait(_END))
        self._open.add(queue)
        if self.draining:
            queue.put_nowait(_DRAIN)
        reading, draining = True, False
        try:
            while reading or in_flight:
                item = await queue.get()
                if item is _END:
                    reader.result()  # a broken request stream ends the call with its error
                    reading = False
                elif item is _DRAIN:
                    draining = True
                elif isinstance(item, BaseException):
                    raise item
                else:
                    in_flight -= 1
                    yield item
                if draining and not in_flight:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, self._drain_message)
        finally:
            self._open.discard(queue)
            reader.cancel()
