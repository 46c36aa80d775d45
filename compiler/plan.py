"""The routing plan: the contract between the compiler and the gateway.

Plain data, as pydantic models, serialised to deterministic JSON: lists are
sorted by name (and version), no timestamps, no absolute paths, and a
`content_hash` over everything else, so that the same spec (or a reformatted
one) gives byte-identical JSON. `docs/plan.schema.json` is generated from
these models (`make schema`) and checked by a test.

Units are spelled in the field names: `_s` seconds, `_rps` requests per
second, `_bytes`, `_percent` from 0 to 100.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PLAN_VERSION = 1
# The compiler warns (W0504) when a built artifact's top-1 agrees with the fp32
# source's on fewer than this share of the evaluation set.
MIN_TOP1_AGREEMENT = 0.99


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TensorSpec(_Data):
    name: str
    datatype: str = Field(description="KServe v2 datatype: FP32, INT64, BYTES, …")
    shape: list[int] = Field(description="-1 marks the dynamic batch axis (always first)")


class Signature(_Data):
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class Artifact(_Data):
    path: str = Field(description="the ONNX file, relative to the spec's folder")
    sha256: str
    format: Literal["onnx"] = "onnx"


class Agreement(_Data):
    """A built artifact against its fp32 source, both run on onnxruntime's CPU provider."""

    eval: str = Field(description="the evaluation set (.npz), relative to the spec's folder")
    samples: int
    batch_size: int = Field(
        description="samples per run: the model's max batch size (int8 answers depend on "
        "their batch, its activation ranges being taken per batch)"
    )
    top1_agreement: float = Field(
        description="share (0 to 1) of samples whose top-1 of the first output is the source's"
    )
    max_abs_diff: float = Field(description="largest |artifact - source| over the first output")


class ReplicaRange(_Data):
    min: int
    max: int


class Batching(_Data):
    max_batch_size: int
    window_s: float = Field(description="the longest a request waits for a batch to fill")
    adaptive: bool = Field(description="false when `fixed` pins the batch size and window")


class Estimate(_Data):
    """Batch service time on one replica, as `latency(b) = fixed_s + b * per_item_s`."""

    basis: Literal["estimated", "measured"]
    detail: str = Field(description="how the figures were obtained, for the review")
    flops_per_item: float
    fixed_s: float
    per_item_s: float
    single_latency_s: float = Field(description="one request, batch size 1")
    max_batch_latency_s: float = Field(description="one batch of max_batch_size")
    capacity_rps: float = Field(description="one replica, full batches back to back")


class Shard(_Data):
    target: str
    weight: int
    share: float = Field(description="weight over the model's total weight")
    replicas: ReplicaRange
    batching: Batching
    estimate: Estimate


class LatencyObjective(_Data):
    percentile: Literal["p50", "p90", "p95", "p99", "p999"]
    seconds: float


class Slos(_Data):
    latency: list[LatencyObjective] = []
    throughput_rps: float | None = None
    availability_percent: float | None = None


class Redaction(_Data):
    input: str
    kinds: list[str]
    patterns: list[str] = []


class Privacy(_Data):
    on_prem_only: bool = False
    redactions: list[Redaction] = []


class Capacity(_Data):
    """The model as a whole, with its shards' weights, at the largest replica counts."""

    capacity_rps: float
    single_latency_s: float = Field(description="the slowest shard's batch-1 latency")
    basis: Literal["estimated", "measured"]


class Model(_Data):
    name: str
    version: int
    precision: Literal["fp32", "fp16", "bf16", "int8"]
    source: Artifact = Field(description="the fp32 ONNX file the spec names")
    artifact: Artifact = Field(
        description="what the workers load: the source for fp32 and bf16 (the tpu runtime "
        "casts to bf16), else the int8 or fp16 file the compiler built into its cache"
    )
    agreement: Agreement | None = Field(
        default=None,
        description="the artifact's agreement with the source, when it is built and the "
        "model names an evaluation set",
    )

    @model_validator(mode="before")
    @classmethod
    def _source_of_older_plans(cls, data: object) -> object:
        """A plan written before `source` existed served its source: the artifact."""
        if isinstance(data, dict) and "source" not in data and "artifact" in data:
            return {**data, "source": data["artifact"]}
        return data

    signature: Signature
    shards: list[Shard]
    slos: Slos
    privacy: Privacy
    capacity: Capacity


class Location(_Data):
    kind: Literal["onprem", "cloud", "edge"]
    site: str


class Target(_Data):
    name: str
    hardware: Literal["cpu", "gpu", "tpu"]
    location: Location
    replicas: ReplicaRange
    threads: int | None = None
    accelerator: str | None = None
    devices: int = 1
    topology: str | None = None
    workers: list[str] = Field(
        default=[], description="remote worker endpoints; empty means local workers"
    )


class ModelRef(_Data):
    model: str
    version: int


class RouteEntry(_Data):
    model: str
    version: int
    percent: float


class Route(_Data):
    name: str
    entries: list[RouteEntry]
    fallback: ModelRef | None = None


class Tls(_Data):
    cert: str
    key: str
    client_ca: str | None = None


class Gateway(_Data):
    listen: str = "127.0.0.1:8001"
    metrics: str | None = None
    tls: Tls | None = None
    auth_tokens_env: str | None = None
    max_message_bytes: int = 64 * 1024 * 1024


class Plan(_Data):
    plan_version: int = PLAN_VERSION
    content_hash: str = Field(
        default="", description="sha256 of this plan's JSON with this field empty"
    )
    source: str = Field(description="the spec's file name")
    gateway: Gateway
    targets: list[Target]
    models: list[Model]
    routes: list[Route]

    def to_json(self) -> str:
        """Deterministic JSON, two-space indented, ending in a newline."""
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=False) + "\n"

    def with_hash(self) -> Plan:
        body = self.model_copy(update={"content_hash": ""}).to_json()
        digest = hashlib.sha256(body.encode()).hexdigest()
        return self.model_copy(update={"content_hash": f"sha256:{digest}"})

    def model(self, name: str, version: int) -> Model | None:
        return next((m for m in self.models if m.name == name and m.version == version), None)

    def target(self, name: str) -> Target | None:
        return next((t for t in self.targets if t.name == name), None)


def load_plan(text: str) -> Plan:
    """Read a plan's JSON (pydantic raises ValidationError on a bad one)."""
    return Plan.model_validate_json(text)
