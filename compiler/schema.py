"""What the language allows: blocks, fields, and the closed sets of words.

The grammar is structural; this table is what makes `windw` an unknown field
and `fp33` an unknown dtype. docs/language.md is written from it.
"""

from __future__ import annotations

DEFINITIONS = ("gateway", "target", "model", "route")

FIELDS: dict[str, tuple[str, ...]] = {
    "gateway": ("listen", "metrics", "tls", "auth", "max_message"),
    "tls": ("cert", "key", "client_ca"),
    "target": (
        "hardware",
        "location",
        "replicas",
        "threads",
        "accelerator",
        "devices",
        "topology",
        "workers",
    ),
    "model": (
        "source",
        "version",
        "precision",
        "eval",
        "input",
        "output",
        "shard",
        "batch",
        "slo",
        "privacy",
    ),
    "route": ("fallback",),  # plus `MODEL[@VERSION] PERCENT` lines
}

# Fields that must appear (at least once) in each block.
REQUIRED: dict[str, tuple[str, ...]] = {
    "target": ("hardware", "location"),
    "model": ("source", "input", "output", "shard"),
}

# Fields that may appear more than once.
REPEATABLE = frozenset({"input", "output", "shard", "slo", "privacy"})

HARDWARE = ("cpu", "gpu", "tpu")
LOCATIONS = ("onprem", "cloud", "edge")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
PRECISION_BY_HARDWARE = {
    "cpu": ("fp32", "int8"),
    "gpu": ("fp32", "fp16", "int8"),
    "tpu": ("fp32", "bf16"),
}
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}
REDACT_KINDS = ("email", "phone", "credit-card", "iban", "ssn", "ip")

# The language's dtypes and their KServe v2 names.
DTYPES = {
    "bool": "BOOL",
    "int8": "INT8",
    "uint8": "UINT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "fp16": "FP16",
    "bf16": "BF16",
    "fp32": "FP32",
    "fp64": "FP64",
    "bytes": "BYTES",
}
