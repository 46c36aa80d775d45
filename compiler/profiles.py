"""Measured profiles: what `infc profile` writes and the compiler reads.

A profile file sits beside its spec, `<spec stem>.profile.json`
(`payments.infer` → `payments.profile.json`). It holds one entry per model
version and target, measured on the hardware the target names:

    Profile
     └─ entries: [Entry]            model, version, target   (who)
          ├─ source_sha256, artifact_sha256, precision      (what ran)
          ├─ hardware, accelerator, threads, devices         (the target, then)
          ├─ cpu_fallback, runtime, host, measured_at        (where and when)
          ├─ rows: [Row]                                     batch size → p50, p99, items/s
          └─ fit: Fit                                        latency(b) = fixed_s + b·per_item_s

The compiler uses an entry only while it still describes the shard: the same
ONNX file (by sha256), the same precision, and a target with the same
hardware, accelerator, threads and devices, measured up to at least the
shard's `batch max`. An entry that exists but no longer matches is *stale*:
the compiler falls back to the estimate and says why (`stale_reason`). An
entry measured with `--cpu-fallback` never stands for a gpu or tpu target.

`measured_at` lives in the file only: the plan shows the day, taken from the
file, so that the plan stays a pure function of the spec, the models and the
profile.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inferplane.compiler.plan import Estimate

PROFILE_VERSION = 1
SUFFIX = ".profile.json"


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Host(_Data):
    """The machine the measurement ran on."""

    cpu: str = Field(description="CPU model, from /proc/cpuinfo where there is one")
    cores: int = Field(description="cores this process could use")
    os: str
    python: str
    packages: dict[str, str] = Field(
        default={}, description="versions of the runtime packages installed"
    )


class Runtime(_Data):
    """What the backend reported it ran on (`Backend.describe()`)."""

    runtime: str = Field(description='e.g. "onnxruntime 1.32.0 (package onnxruntime)"')
    device: str = Field(description="cpu, gpu or tpu: where the compute happened")
    providers: list[str] = Field(default=[], description="execution providers or JAX platform")
    notes: list[str] = []


class Row(_Data):
    """One batch size, timed `iterations` times back to back."""

    batch_size: int = Field(ge=1)
    iterations: int = Field(ge=1)
    p50_s: float = Field(ge=0)
    p99_s: float = Field(ge=0)
    throughput_items_per_s: float = Field(
        ge=0, description="items served per second at this batch size"
    )


class Fit(_Data):
    """Least squares over the rows' p50s, clamped so that neither term is negative."""

    fixed_s: float = Field(ge=0)
    per_item_s: float = Field(ge=0)


class Entry(_Data):
    model: str
    version: int
    target: str
    source_sha256: str = Field(description="the ONNX file the spec names")
    artifact_sha256: str = Field(description="the file the runtime loaded")
    precision: str
    hardware: Literal["cpu", "gpu", "tpu"]
    accelerator: str | None = None
    threads: int | None = None
    devices: int = 1
    cpu_fallback: bool = Field(
        default=False, description="a gpu/tpu target measured on the CPU; never used for planning"
    )
    runtime: Runtime
    host: Host
    measured_at: str = Field(description="ISO 8601, UTC")
    rows: list[Row] = Field(min_length=1)
    fit: Fit

    def row(self, batch_size: int) -> Row | None:
        return next((r for r in self.rows if r.batch_size == batch_size), None)

    @property
    def max_batch_size(self) -> int:
        return max(r.batch_size for r in self.rows)

    @property
    def key(self) -> tuple[str, int, str, bool]:
        """Entries with the same key replace each other when profiles are merged."""
        return (self.model, self.version, self.target, self.cpu_fallback)


class Profile(_Data):
    profile_version: Literal[1] = PROFILE_VERSION
    entries: list[Entry] = []

    def to_json(self) -> str:
        ordered = sorted(self.entries, key=lambda e: e.key)
        body = self.model_copy(update={"entries": ordered}).model_dump(mode="json")
        return json.dumps(body, indent=2) + "\n"

    def merged(self, new: list[Entry]) -> Profile:
        """This profile with `new` added, replacing entries of the same key."""
        keys = {e.key for e in new}
        kept = [e for e in self.entries if e.key not in keys]
        return self.model_copy(update={"entries": [*kept, *new]})


class ProfileError(Exception):
    """A profile file that exists but cannot be read or is not a profile."""


def profile_path(spec_file: str, base_dir: Path) -> Path | None:
    """Where the profile of a spec lives, or None when the text came from no file."""
    if not spec_file or spec_file.startswith("<"):
        return None  # "<spec>", "<stdin>": no file, so no neighbour either
    return base_dir / (Path(spec_file).stem + SUFFIX)


def read_profile(path: Path) -> Profile | None:
    """The profile at `path`; None when there is none; ProfileError when it is bad."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise ProfileError(f"cannot read {path.name}: {getattr(e, 'strerror', None) or e}") from e
    try:
        return Profile.model_validate_json(text)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the top level"
        raise ProfileError(f"{path.name} is not a profile: {first['msg']} at {where}") from e


def load_profile(spec_file: str, base_dir: Path) -> Profile | None:
    """The profile beside a spec, if any (raises ProfileError for a bad one)."""
    path = profile_path(spec_file, base_dir)
    return read_profile(path) if path is not None else None


@dataclass(frozen=True)
class Wanted:
    """What a shard is now: what a profile entry must still describe to be used."""

    model: str
    version: int
    target: str
    source_sha256: str
    precision: str
    hardware: str
    accelerator: str | None
    threads: int | None
    devices: int
    max_batch_size: int
    source: str = ""  # the spec's `source`, for messages


def _match(profile: Profile, wanted: Wanted) -> tuple[Entry | None, str | None]:
    """The usable entry, or the reason why the entries that exist are not usable."""
    mine = [
        e
        for e in profile.entries
        if (e.model, e.version, e.target) == (wanted.model, wanted.version, wanted.target)
    ]
    if not mine:
        return None, None
    reasons = []
    # Real hardware first: a fallback entry is only a candidate on a cpu target.
    for entry in sorted(mine, key=lambda e: e.cpu_fallback):
        reason = _mismatch(entry, wanted)
        if reason is None:
            return entry, None
        reasons.append(reason)
    return None, reasons[0]


def _mismatch(entry: Entry, wanted: Wanted) -> str | None:
    if entry.cpu_fallback and wanted.hardware != "cpu":
        return f"measured on the CPU with --cpu-fallback, not on {wanted.hardware}"
    if entry.source_sha256 != wanted.source_sha256:
        name = wanted.source or "the model file"
        return (
            f"{name} changed since it was profiled (sha256 {entry.source_sha256[:12]} then, "
            f"{wanted.source_sha256[:12]} now)"
        )
    if entry.precision != wanted.precision:
        return f"precision was {entry.precision} when profiled, now {wanted.precision}"
    for field in ("hardware", "accelerator", "threads", "devices"):
        old, new = getattr(entry, field), getattr(wanted, field)
        if old != new:
            return (
                f"target `{wanted.target}` had {field} {_show(old)} when profiled, now {_show(new)}"
            )
    if wanted.max_batch_size > entry.max_batch_size:
        return (
            f"batch max {wanted.max_batch_size} is above the largest batch measured "
            f"({entry.max_batch_size})"
        )
    return None


def _show(value: object) -> str:
    return "not set" if value is None else f'"{value}"' if isinstance(value, str) else str(value)


def lookup(profile: Profile | None, wanted: Wanted) -> Entry | None:
    """The entry that still describes the shard, or None."""
    return _match(profile, wanted)[0] if profile is not None else None


def stale_reason(profile: Profile | None, wanted: Wanted) -> str | None:
    """Why the shard's entries cannot be used; None when one can, or there are none."""
    return _match(profile, wanted)[1] if profile is not None else None


def measured_estimate(entry: Entry, max_batch_size: int, flops_per_item: float) -> Estimate:
    """A plan `Estimate` (basis "measured") from a matching entry.

    Batch-1 latency and the latency at `batch max` are the measured p50s, the
    capacity the measured throughput at `batch max`. A `batch max` between two
    measured sizes (a smaller one than was profiled, not a power of two) takes
    both from the fitted line instead, and the detail says so.
    """
    first = entry.row(1) or min(entry.rows, key=lambda r: r.batch_size)
    at_max = entry.row(max_batch_size)
    fit = entry.fit
    single_s = first.p50_s if first.batch_size == 1 else fit.fixed_s + fit.per_item_s
    if at_max is not None:
        max_s, capacity = at_max.p50_s, at_max.throughput_items_per_s
        how = f"capacity the measured throughput at batch {max_batch_size}"
    else:
        max_s = fit.fixed_s + max_batch_size * fit.per_item_s
        capacity = max_batch_size / max_s if max_s > 0 else 0.0
        how = f"batch {max_batch_size} (not measured) and capacity from the fitted line"
    detail = (
        f"profiled on {_where(entry)}, {_runtime(entry)}, "
        f"{entry.measured_at[:10]}; batch-1 latency is the measured p50, {how}; "
        f"fit {fit.fixed_s * 1e6:.3g} µs + {fit.per_item_s * 1e6:.3g} µs/item"
    )
    return Estimate(
        basis="measured",
        detail=detail,
        flops_per_item=flops_per_item,
        fixed_s=fit.fixed_s,
        per_item_s=fit.per_item_s,
        single_latency_s=single_s,
        max_batch_latency_s=max_s,
        capacity_rps=capacity,
    )


def _where(entry: Entry) -> str:
    cores = f"{entry.host.cores} core{'s' if entry.host.cores != 1 else ''}"
    host = f"{entry.host.cpu} ({cores})"
    if entry.runtime.device == "cpu":
        return host
    return f"{entry.runtime.device} {entry.accelerator or ''}".rstrip() + f", host {host}"


def _runtime(entry: Entry) -> str:
    name = re.sub(r"\s*\(.*\)$", "", entry.runtime.runtime)
    return " ".join([name, *entry.runtime.providers])
