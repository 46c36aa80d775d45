"""The event loop that the gateway and the workers run on: uvloop when installed.

    from inferplane.backends.event_loop import run
    return run(main())

uvloop runs the same asyncio programs with less CPU per callback; with grpc.aio
that is less CPU per RPC and per stream message (measured in
docs/performance.md). `INFERPLANE_EVENT_LOOP=asyncio` picks the standard loop
(to compare, or where uvloop misbehaves); so does a platform without uvloop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
ENV = "INFERPLANE_EVENT_LOOP"


def loop_name() -> str:
    """`uvloop` or `asyncio`: what `run` will use here."""
    if os.environ.get(ENV, "").strip().lower() == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on a new loop of `loop_name()`'s kind."""
    if loop_name() == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
