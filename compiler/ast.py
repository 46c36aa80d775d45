"""The checked shape of a spec: typed, frozen nodes that all carry spans.

`passes/build_ast.py` makes these from the syntax tree, reading each field as
the schema says; the later passes only read them. Values that a diagnostic
may point at are `Spanned`, so that the caret lands on the value itself.
Quantities are stored in base units: seconds, requests per second, bytes,
and percentages as numbers from 0 to 100.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from inferplane.compiler.spans import NO_SPAN, Span

T = TypeVar("T")

BATCH = "batch"  # the dynamic batch axis in a tensor's dimensions


@dataclass(frozen=True, slots=True)
class Spanned(Generic[T]):
    value: T
    span: Span = NO_SPAN


@dataclass(frozen=True, slots=True)
class Tls:
    cert: Spanned[str] | None
    key: Spanned[str] | None
    client_ca: Spanned[str] | None
    span: Span


@dataclass(frozen=True, slots=True)
class Gateway:
    listen: Spanned[str] | None
    metrics: Spanned[str] | None
    tls: Tls | None
    auth_tokens_env: Spanned[str] | None
    max_message: Spanned[int] | None  # bytes
    span: Span


@dataclass(frozen=True, slots=True)
class Location:
    kind: Spanned[str]  # onprem | cloud | edge
    site: Spanned[str]
    span: Span


@dataclass(frozen=True, slots=True)
class Replicas:
    min: int
    max: int
    span: Span


@dataclass(frozen=True, slots=True)
class Target:
    name: Spanned[str]
    hardware: Spanned[str] | None  # cpu | gpu | tpu
    location: Location | None
    replicas: Replicas | None  # None means the default, exactly 1
    threads: Spanned[int] | None
    accelerator: Spanned[str] | None
    devices: Spanned[int] | None
    topology: Spanned[str] | None
    workers: tuple[Spanned[str], ...]
    span: Span

    @property
    def replica_range(self) -> tuple[int, int]:
        return (self.replicas.min, self.replicas.max) if self.replicas else (1, 1)


@dataclass(frozen=True, slots=True)
class Tensor:
    name: Spanned[str]
    dtype: Spanned[str]  # the language's name: fp32, int64, bytes, …
    dims: tuple[Spanned[int | str], ...]  # an int, or BATCH
    span: Span

    @property
    def has_batch_axis(self) -> bool:
        return bool(self.dims) and self.dims[0].value == BATCH

    def signature(self) -> str:
        dims = ", ".join(str(d.value) for d in self.dims)
        return f"{self.dtype.value}[{dims}]"


@dataclass(frozen=True, slots=True)
class Shard:
    target: Spanned[str]
    weight: Spanned[int]
    span: Span


@dataclass(frozen=True, slots=True)
class Batch:
    max: Spanned[int]
    window: Spanned[float]  # seconds
    fixed: bool
    span: Span


@dataclass(frozen=True, slots=True)
class LatencySlo:
    percentile: Spanned[str]  # p50 | p90 | p95 | p99 | p999
    seconds: Spanned[float]
    span: Span


@dataclass(frozen=True, slots=True)
class ThroughputSlo:
    rps: Spanned[float]
    span: Span


@dataclass(frozen=True, slots=True)
class AvailabilitySlo:
    percent: Spanned[float]
    span: Span


@dataclass(frozen=True, slots=True)
class Redaction:
    """`privacy redact KIND… in INPUT`; `patterns` are the `pattern "RE"` kinds."""

    kinds: tuple[Spanned[str], ...]
    patterns: tuple[Spanned[str], ...]
    input: Spanned[str]
    span: Span


@dataclass(frozen=True, slots=True)
class Model:
    name: Spanned[str]
    version: Spanned[int]
    source: Spanned[str] | None
    precision: Spanned[str]
    eval: Spanned[str] | None  # the evaluation set (.npz), relative to the spec
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    shards: tuple[Shard, ...]
    batch: Batch | None
    latency_slos: tuple[LatencySlo, ...]
    throughput_slo: ThroughputSlo | None
    availability_slo: AvailabilitySlo | None
    on_prem_only: Span | None  # where `privacy on-prem-only` is written
    redactions: tuple[Redaction, ...]
    span: Span
    # False when an input or output line could not be read (E0201 reported):
    # the graph's tensors are then not all expected to be declared.
    signature_complete: bool = True

    @property
    def key(self) -> tuple[str, int]:
        return (self.name.value, self.version.value)

    @property
    def label(self) -> str:
        return f"{self.name.value}@{self.version.value}"


@dataclass(frozen=True, slots=True)
class ModelRef:
    name: Spanned[str]
    version: Spanned[int] | None  # None: the highest version
    span: Span

    @property
    def text(self) -> str:
        if self.version is None:
            return self.name.value
        return f"{self.name.value}@{self.version.value}"


@dataclass(frozen=True, slots=True)
class RouteEntry:
    model: ModelRef
    percent: Spanned[float]
    span: Span


@dataclass(frozen=True, slots=True)
class Route:
    name: Spanned[str]
    entries: tuple[RouteEntry, ...]
    fallback: ModelRef | None
    span: Span


@dataclass(frozen=True, slots=True)
class Spec:
    gateway: Gateway | None
    targets: tuple[Target, ...]
    models: tuple[Model, ...]
    routes: tuple[Route, ...]

    def target(self, name: str) -> Target | None:
        return next((t for t in self.targets if t.name.value == name), None)

    def versions(self, name: str) -> list[Model]:
        return sorted(
            (m for m in self.models if m.name.value == name),
            key=lambda m: m.version.value,
        )

    def resolve(self, ref: ModelRef) -> Model | None:
        """The model a reference names: that version, or the highest one."""
        versions = self.versions(ref.name.value)
        if ref.version is None:
            return versions[-1] if versions else None
        return next((m for m in versions if m.version.value == ref.version.value), None)
