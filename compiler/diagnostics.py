"""Diagnostics: records, never exceptions.

Every check appends `Diagnostic` records to a list and carries on, so that one
run reports every problem it can find. The codes are registered here with the
severity they always have; the contract in docs/language.md lists them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from inferplane.compiler.spans import Span


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Code:
    code: str
    severity: Severity
    title: str


def _error(code: str, title: str) -> Code:
    return Code(code, Severity.ERROR, title)


def _warning(code: str, title: str) -> Code:
    return Code(code, Severity.WARNING, title)


SYNTAX = _error("E0001", "syntax error")
DUPLICATE = _error("E0101", "duplicate definition")
UNKNOWN_TARGET = _error("E0102", "unknown target")
UNKNOWN_MODEL = _error("E0103", "unknown model or version")
UNKNOWN_INPUT = _error("E0104", "redaction names no input of the model")
WRONG_KIND = _error("E0201", "value of the wrong kind or unit, or unknown field")
OUT_OF_RANGE = _error("E0202", "value out of range")
ROUTE_SUM = _error("E0203", "route percentages do not add up to 100%")
MISSING_FIELD = _error("E0204", "required field missing")
REPEATED_FIELD = _error("E0205", "field given more than once")
OFF_PREM_SHARD = _error("E0301", "on-prem-only model sharded off-prem")
OFF_PREM_ROUTE = _error("E0302", "on-prem-only model routed with an off-prem model")
REDACT_NOT_BYTES = _error("E0303", "redaction on an input that is not bytes")
PRECISION = _error("E0401", "precision not supported by the hardware")
MODEL_FILE = _error("E0402", "model source missing or not a valid ONNX model")
SIGNATURE = _error("E0403", "declared inputs/outputs do not match the ONNX model")
NO_BATCH_AXIS = _error("E0404", "batching above 1 without a batch axis")
TPU_UNSUPPORTED = _error("E0405", "model not supported on a tpu shard")
EVAL_SET = _error("E0406", "evaluation set unreadable, not matching the inputs, or not runnable")
OVER_CAPACITY = _warning("W0501", "throughput SLO above the estimated capacity")
BELOW_LATENCY = _warning("W0502", "latency SLO below the single-request latency")
WINDOW_TOO_LONG = _warning("W0503", "batch window leaves no room for compute")
LOW_AGREEMENT = _warning("W0504", "quantized artifact agrees with fp32 on fewer than 99%")

CODES: dict[str, Code] = {
    c.code: c
    for c in (
        SYNTAX,
        DUPLICATE,
        UNKNOWN_TARGET,
        UNKNOWN_MODEL,
        UNKNOWN_INPUT,
        WRONG_KIND,
        OUT_OF_RANGE,
        ROUTE_SUM,
        MISSING_FIELD,
        REPEATED_FIELD,
        OFF_PREM_SHARD,
        OFF_PREM_ROUTE,
        REDACT_NOT_BYTES,
        PRECISION,
        MODEL_FILE,
        SIGNATURE,
        NO_BATCH_AXIS,
        TPU_UNSUPPORTED,
        EVAL_SET,
        OVER_CAPACITY,
        BELOW_LATENCY,
        WINDOW_TOO_LONG,
        LOW_AGREEMENT,
    )
}


@dataclass(frozen=True, slots=True)
class Note:
    """A pointer to another place that explains the diagnostic."""

    message: str
    span: Span | None = None


@dataclass(frozen=True, slots=True)
class Diagnostic:
    code: Code
    message: str
    span: Span
    file: str = ""
    label: str = ""  # printed under the carets
    notes: tuple[Note, ...] = ()
    help: str = ""  # how to fix it, e.g. "did you mean `gpu-fra`?"

    @property
    def severity(self) -> Severity:
        return self.code.severity

    @property
    def is_error(self) -> bool:
        return self.code.severity is Severity.ERROR


@dataclass
class Diagnostics:
    """The list a compilation appends to, with the file name filled in once."""

    file: str
    items: list[Diagnostic] = field(default_factory=list)

    def add(
        self,
        code: Code,
        message: str,
        span: Span,
        *,
        label: str = "",
        notes: tuple[Note, ...] | list[Note] = (),
        help: str = "",
    ) -> None:
        self.items.append(Diagnostic(code, message, span, self.file, label, tuple(notes), help))

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.items)

    def sorted(self) -> list[Diagnostic]:
        return sorted(self.items, key=lambda d: (d.span.line, d.span.column, d.code.code))
