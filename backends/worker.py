"""The worker's transport-neutral core: one target's models, their states, batches, counts.

`WorkerCore(plan, target, base_dir)` picks the models with a shard on the
target; `load_all()` builds, loads, checks and warms up each one; then
`infer`, `health` and `statistics` serve the gRPC edge (`worker_service.py`),
which only converts. The lifecycle of each model:

    LOADING ──artifact sha256, load, device check, warm-up──▶ READY
        └──────any error──────────────────────────────────▶ FAILED (with the reason)

The artifact's sha256 is checked against the plan's before a backend exists
(`artifact_check.py`): a worker never serves a file that differs from the one
the plan was reviewed with. Each batch is checked against the plan's
signature and the target's `batch max` (`batch.py`) before any runtime sees it.

A model that fails to load fails alone: the others serve. The one exception
is the host itself: when every model fails because the host lacks the
target's hardware, `load_all` raises `HardwareMissing` and the worker refuses
to start (the DESIGN's rule), unless `--cpu-fallback` opts in to the CPU.

Errors, each with a message for users; `worker_service.STATUS` maps them:

    WorkerError
    ├── TargetError       the plan has no such target, or it serves no model
    ├── HardwareMissing   this host cannot run the target's hardware at all
    ├── ModelNotFound     no such model (version) on this target
    ├── ModelNotReady     loading, or failed to load (the reason says why)
    └── Draining          stopping: the batch should go to another replica
    BadBatch (runtime.py) the tensors do not fit the model's signature
"""

from __future__ import annotations

import enum
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from inferplane.backends import batch
from inferplane.backends.artifact_check import check_artifact
from inferplane.backends.host_location import HostLocation
from inferplane.backends.logfmt import kv
from inferplane.backends.registry import create_backend
from inferplane.backends.runtime import (
    Backend,
    BackendError,
    LoadFailed,
    RuntimeInfo,
    WrongDevice,
)
from inferplane.backends.worker_stats import ModelStats, Statistics
from inferplane.compiler.plan import Model, Plan

log = logging.getLogger("inferplane.worker")

BackendFactory = Callable[..., Backend]


class WorkerError(Exception):
    """Base of the worker's own errors; `str(error)` is shown to users."""


class TargetError(WorkerError):
    """The plan has no such target, or the target serves no model."""


class HardwareMissing(WorkerError):
    """Not one model can run here: the host lacks the target's hardware."""


class ModelNotFound(WorkerError):
    """The target serves no model of that name and version."""


class ModelNotReady(WorkerError):
    """The model is loading, or failed to load; the message gives the reason."""


class Draining(WorkerError):
    """The worker is stopping and takes no new batches."""


class ModelState(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class ModelHealth:
    name: str
    version: int
    state: ModelState
    reason: str  # why it failed; "" otherwise
    runtime: str  # e.g. "onnxruntime 1.32.0 (package onnxruntime)"; "" before loading
    providers: tuple[str, ...]
    device: str  # where its compute happens; "" unless loaded
    artifact_sha256: str
    precision: str
    max_batch_size: int


@dataclass(frozen=True)
class Health:
    ready: bool  # every model is READY
    draining: bool
    target: str
    hardware: str  # what the target declares
    device: str  # where compute really happens ("" while no model is ready)
    location_kind: str
    location_site: str
    location_source: str  # "host": the deployment said so; "declared": the spec's, unverified
    cpu_fallback: bool  # some ready model runs on the CPU in place of the target's hardware
    plan_hash: str
    worker_version: str
    models: tuple[ModelHealth, ...]


@dataclass(frozen=True)
class InferResult:
    outputs: dict[str, np.ndarray]  # in the signature's order
    batch_size: int
    compute_ns: int  # inside the runtime only


@dataclass
class _Slot:
    """One model version on this worker; mutated under the core's lock only."""

    model: Model
    max_batch_size: int
    state: ModelState = ModelState.LOADING
    reason: str = ""
    backend: Backend | None = None
    info: RuntimeInfo | None = None
    wrong_device: bool = False

    @property
    def key(self) -> tuple[str, int]:
        return (self.model.name, self.model.version)


def label(model: Model) -> str:
    """How the worker's messages and logs name a model version: `name@version`."""
    return f"{model.name}@{model.version}"


def warm_up_sizes(max_batch_size: int) -> list[int]:
    """1, 2, 4, … below the maximum, then the maximum itself."""
    sizes, size = [], 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    return [*sizes, max(max_batch_size, 1)]


@functools.cache
def _worker_version() -> str:
    try:
        return metadata.version("inferplane")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        return "unknown"


class WorkerCore:
    """Serves the models of `target_name` in `plan`; safe to call from many threads."""

    def __init__(
        self,
        plan: Plan,
        target_name: str,
        base_dir: Path,
        cpu_fallback: bool = False,
        backend_factory: BackendFactory = create_backend,
        *,
        cache_dir: Path | None = None,
        clock: Callable[[], int] = time.perf_counter_ns,
        location: HostLocation | None = None,
    ) -> None:
        target = plan.target(target_name)
        if target is None:
            known = ", ".join(t.name for t in plan.targets) or "none"
            raise TargetError(f"the plan has no target `{target_name}`; its targets are: {known}")
        self.plan = plan
        self.target = target
        self.base_dir = base_dir
        self.cpu_fallback = cpu_fallback
        self.location = location  # the host's, from the deployment; None: the spec's
        self._factory = backend_factory
        self._cache_dir = cache_dir
        self._clock = clock
        self._slots = [
            _Slot(model, shard.batching.max_batch_size)
            for model in plan.models
            for shard in model.shards
            if shard.target == target.name
        ]
        if not self._slots:
            raise TargetError(f"target `{target.name}` serves no model: no model has a shard on it")
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._draining = False
        self.stats = Statistics([slot.key for slot in self._slots])

    # -- lifecycle ---------------------------------------------------------------------

    def load_all(self, cancelled: Callable[[], bool] = lambda: False) -> None:
        """Load, check and warm up every model, one after another.

        Raises HardwareMissing when every model failed for want of the target's
        hardware; any other failure only marks its model FAILED.
        """
        if self.cpu_fallback and self.target.hardware != "cpu":
            log.warning(
                kv(
                    "cpu_fallback",
                    target=self.target.name,
                    hardware=self.target.hardware,
                    note="--cpu-fallback: models may run on the CPU (for development only)",
                )
            )
        for slot in self._slots:
            if cancelled():
                self._fail(slot, "not loaded: the worker was stopped while loading")
                continue
            self._load(slot)
        if all(slot.wrong_device for slot in self._slots):
            raise HardwareMissing(
                f"worker for target `{self.target.name}` refuses to start: {self._slots[0].reason}"
            )

    def _load(self, slot: _Slot) -> None:
        name = label(slot.model)
        started = time.monotonic()
        try:
            check_artifact(self.base_dir / slot.model.artifact.path, slot.model.artifact.sha256)
        except LoadFailed as error:
            self._fail(slot, str(error))
            return
        stage = "creating its backend"
        try:
            backend = self._factory(
                slot.model,
                self.target,
                self.base_dir,
                cpu_fallback=self.cpu_fallback,
                cache_dir=self._cache_dir,
            )
            stage = "loading"
            backend.load()
            info = backend.describe()
            self._check_device(slot, info)
            stage = "warming up"
            sizes = warm_up_sizes(slot.max_batch_size)
            backend.warm_up(sizes)
        except WrongDevice as error:
            slot.wrong_device = True
            self._fail(slot, str(error))
        except BackendError as error:
            reason = str(error) if stage == "loading" else f"{stage} failed: {error}"
            self._fail(slot, reason)
        except Exception as error:  # a bug, or a runtime's own exception: log its traceback
            self._fail(slot, f"{stage} failed: {type(error).__name__}: {error}", traceback=True)
        else:
            with self._lock:
                slot.backend, slot.info, slot.state = backend, info, ModelState.READY
            log.info(
                kv(
                    "model_ready",
                    model=name,
                    runtime=info.runtime,
                    device=info.device,
                    providers=info.providers,
                    warm_up=sizes,
                    load_ms=round((time.monotonic() - started) * 1000),
                    notes="; ".join(info.notes) or None,
                )
            )

    def _check_device(self, slot: _Slot, info: RuntimeInfo) -> None:
        hardware = self.target.hardware
        if info.device == hardware:
            return
        if self.cpu_fallback and info.device == "cpu":
            log.warning(kv("model_on_cpu", model=label(slot.model), hardware=hardware))
            return
        hint = (
            ""
            if self.cpu_fallback
            else "; pass --cpu-fallback to run it on the CPU for development"
        )
        raise WrongDevice(
            f"target `{self.target.name}` declares hardware {hardware}, but model "
            f"`{label(slot.model)}` would run on {info.device or 'an unknown device'} "
            f"({info.runtime}){hint}"
        )

    def _fail(self, slot: _Slot, reason: str, traceback: bool = False) -> None:
        with self._lock:
            slot.state, slot.reason = ModelState.FAILED, reason
        log.error(kv("model_failed", model=label(slot.model), reason=reason), exc_info=traceback)

    def begin_drain(self) -> None:
        """Take no new batches; the ones running finish (see `wait_idle`)."""
        with self._lock:
            self._draining = True

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no batch is running; False when `timeout_s` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout_s)

    # -- requests ------------------------------------------------------------------------

    def _resolve(self, name: str, version: int) -> _Slot:
        """The slot of `name@version`; version 0 means the highest served here."""
        candidates = [s for s in self._slots if s.model.name == name]
        if version == 0 and candidates:
            return max(candidates, key=lambda s: s.model.version)
        for slot in candidates:
            if slot.model.version == version:
                return slot
        if candidates:
            versions = ", ".join(label(s.model) for s in candidates)
            raise ModelNotFound(
                f"target `{self.target.name}` serves no version {version} of model "
                f"`{name}`; it serves {versions}"
            )
        served = ", ".join(label(s.model) for s in self._slots)
        raise ModelNotFound(
            f"target `{self.target.name}` serves no model `{name}`; it serves {served}"
        )

    def infer(
        self,
        name: str,
        version: int,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str] = (),
    ) -> InferResult:
        """Run one batch; `outputs` picks some outputs (empty: all, in signature order)."""
        with self._lock:
            if self._draining:
                raise Draining(
                    f"worker for target `{self.target.name}` is draining: "
                    "send the batch to another replica"
                )
            slot = self._resolve(name, version)
            if slot.state is not ModelState.READY:
                why = "is still loading" if slot.state is ModelState.LOADING else "failed to load"
                detail = f": {slot.reason}" if slot.reason else ""
                raise ModelNotReady(f"model `{label(slot.model)}` {why}{detail}")
            backend = slot.backend
            self._in_flight += 1
        assert backend is not None
        try:
            signature, model_label = slot.model.signature, batch.label(slot.model)
            size = batch.check_batch(model_label, signature.inputs, inputs, slot.max_batch_size)
            batch.check_outputs(model_label, signature.outputs, outputs)
            start = self._clock()
            produced = backend.infer(inputs)
            elapsed = self._clock() - start
            wanted = outputs or [spec.name for spec in slot.model.signature.outputs]
            missing = [n for n in wanted if n not in produced]
            if missing:
                raise RuntimeError(
                    f"the backend of model `{label(slot.model)}` returned no output `{missing[0]}`"
                )
        except Exception:
            self.stats.failure(slot.key)
            raise
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()
        self.stats.record(slot.key, size, elapsed)
        return InferResult({n: produced[n] for n in wanted}, size, elapsed)

    # -- reports -------------------------------------------------------------------------

    def health(self) -> Health:
        with self._lock:
            models = tuple(self._model_health(slot) for slot in self._slots)
            draining = self._draining
        ready = [m for m in models if m.state is ModelState.READY]
        devices = sorted({m.device for m in ready})
        return Health(
            ready=len(ready) == len(models),
            draining=draining,
            target=self.target.name,
            hardware=self.target.hardware,
            device=",".join(devices),
            location_kind=self.location.kind if self.location else self.target.location.kind,
            location_site=self.location.site if self.location else self.target.location.site,
            location_source="host" if self.location else "declared",
            cpu_fallback=any(m.device != self.target.hardware for m in ready),
            plan_hash=self.plan.content_hash,
            worker_version=_worker_version(),
            models=models,
        )

    @staticmethod
    def _model_health(slot: _Slot) -> ModelHealth:
        info = slot.info if slot.state is ModelState.READY else None
        return ModelHealth(
            name=slot.model.name,
            version=slot.model.version,
            state=slot.state,
            reason=slot.reason,
            runtime=info.runtime if info else "",
            providers=info.providers if info else (),
            device=info.device if info else "",
            artifact_sha256=slot.model.artifact.sha256,
            precision=slot.model.precision,
            max_batch_size=slot.max_batch_size,
        )

    def statistics(self) -> tuple[ModelStats, ...]:
        return self.stats.snapshot()
