"""Whether the gateway process itself is the bottleneck: its CPU use over the last moments.

    gauge = LoadGauge()                  # wall and CPU clocks injectable
    if gauge.saturated(): ...            # cheap: samples at most every `period_s`

A Python gateway runs its requests on one event loop. When that loop is busy
nearly all the time, requests wait inside gRPC before the gateway reads them,
so a shard's queue looks short and its worker idle: the batcher would send
small batches, each paying the loop a stream message out and one back, which
makes the loop busier still. `saturated()` is true while the process used at
least `threshold` of one core (CPU seconds over wall seconds, all its threads)
in the last sampling period; the batcher then holds batches for their window
(`batching.py`, step 5'). Measured on 2 cores, tiny model at concurrency 32:
1,818–1,831 req/s without, 2,526–2,620 with (docs/performance.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class LoadGauge:
    """CPU seconds per wall second of this process, sampled every `period_s`."""

    def __init__(
        self,
        *,
        threshold: float = 0.85,
        period_s: float = 0.05,
        wall: Callable[[], float] = time.monotonic,
        cpu: Callable[[], float] = time.process_time,
    ):
        if not threshold > 0:
            raise ValueError(f"threshold must be > 0, got {threshold!r}")
        if not period_s > 0:
            raise ValueError(f"period_s must be > 0, got {period_s!r}")
        self.threshold, self.period_s = threshold, period_s
        self._wall, self._cpu = wall, cpu
        self._at, self._cpu_at = wall(), cpu()
        self.load = 0.0  # cores used in the last complete period
        self._saturated = False

    def saturated(self) -> bool:
        now = self._wall()
        if now - self._at >= self.period_s:
            used = self._cpu()
            self.load = (used - self._cpu_at) / (now - self._at)
            self._saturated = self.load >= self.threshold
            self._at, self._cpu_at = now, used
        return self._saturated
