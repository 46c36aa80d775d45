"""Cumulative figures of one model version (or route), as ModelStatistics reports them."""

from __future__ import annotations

from dataclasses import dataclass, field

from inferplane.gateway import domain


@dataclass
class Counts:
    """Cumulative figures of one model version (or route), for ModelStatistics."""

    success: list[int] = field(default_factory=lambda: [0, 0])  # count, ns
    fail: list[int] = field(default_factory=lambda: [0, 0])
    queue: list[int] = field(default_factory=lambda: [0, 0])
    # The three compute phases as Triton counts them, each once per request
    # (perf_analyzer requires the three counts to agree): the gateway merging
    # the batch's inputs, the runtime's own time as the worker reports it,
    # and the gateway splitting the outputs. The transport to and from the
    # worker is in none of them (perf_analyzer shows it as overhead).
    compute_input: list[int] = field(default_factory=lambda: [0, 0])
    compute: list[int] = field(default_factory=lambda: [0, 0])
    compute_output: list[int] = field(default_factory=lambda: [0, 0])
    inferences: int = 0
    executions: int = 0
    # batch size -> [executions, input ns, infer ns, output ns]
    batches: dict[int, list[int]] = field(default_factory=dict)
    last_ms: int = 0

    def record(self, name: str, version: int) -> domain.ModelStats:
        d = domain.Duration
        return domain.ModelStats(
            name=name,
            version=version,
            last_inference_ms=self.last_ms,
            inference_count=self.inferences,
            execution_count=self.executions,
            success=d(*self.success),
            fail=d(*self.fail),
            queue=d(*self.queue),
            compute_input=d(*self.compute_input),
            compute_infer=d(*self.compute),
            compute_output=d(*self.compute_output),
            batches=tuple(
                domain.BatchStats(size, d(count, into), d(count, infer), d(count, out))
                for size, (count, into, infer, out) in sorted(self.batches.items())
            ),
        )
