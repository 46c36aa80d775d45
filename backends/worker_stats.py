"""Counts and compute time per model and batch size, since the worker started.

The gateway's adaptive batcher fits its service-time model (`latency(b) =
fixed + b * per_item`) from these figures, so they are kept per batch size
and measured inside the runtime only (no queueing, no transport). Thread-safe:
batches of different models run concurrently.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BatchStats:
    batch_size: int
    count: int
    compute_ns: int


@dataclass(frozen=True)
class ModelStats:
    name: str
    version: int
    inference_count: int  # items (rows) served
    execution_count: int  # batches run
    compute_ns: int
    failure_count: int  # batches that failed once the model was found and ready
    batches: tuple[BatchStats, ...]  # by batch size, ascending


@dataclass
class _Counts:
    failures: int = 0
    by_size: dict[int, list[int]] = field(default_factory=dict)  # size -> [count, ns]


class Statistics:
    """Per (model, version) counters; `snapshot` copies them for a report."""

    def __init__(self, keys: list[tuple[str, int]]) -> None:
        self._lock = threading.Lock()
        self._counts = {key: _Counts() for key in keys}

    def record(self, key: tuple[str, int], batch_size: int, compute_ns: int) -> None:
        with self._lock:
            entry = self._counts[key].by_size.setdefault(batch_size, [0, 0])
            entry[0] += 1
            entry[1] += compute_ns

    def failure(self, key: tuple[str, int]) -> None:
        with self._lock:
            self._counts[key].failures += 1

    def snapshot(self) -> tuple[ModelStats, ...]:
        with self._lock:
            return tuple(_model_stats(key, counts) for key, counts in self._counts.items())


def _model_stats(key: tuple[str, int], counts: _Counts) -> ModelStats:
    batches = tuple(
        BatchStats(size, count, ns) for size, (count, ns) in sorted(counts.by_size.items())
    )
    return ModelStats(
        name=key[0],
        version=key[1],
        inference_count=sum(b.batch_size * b.count for b in batches),
        execution_count=sum(b.count for b in batches),
        compute_ns=sum(b.compute_ns for b in batches),
        failure_count=counts.failures,
        batches=batches,
    )
