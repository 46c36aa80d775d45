"""The seam between a worker and the engines that compute: the `Backend` protocol.

A backend serves one model artifact on one kind of hardware. The worker
builds one per (model, version) of its target with `create_backend` (see
`registry.py`), calls `load` once, `warm_up` with the batch sizes it will see,
then `infer` with whole batches. Backends raise only the errors below, each
carrying a message a user can act on; the worker maps them to statuses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np


class BackendError(Exception):
    """Base of the errors a backend raises; `str(error)` is shown to users."""


class WrongDevice(BackendError):
    """The runtime would not run on the hardware the plan asks for (and no opt-in)."""


class LoadFailed(BackendError):
    """The artifact could not be loaded, or its signature differs from the plan's."""


class BadBatch(BackendError):
    """A batch whose tensors do not match the model: names, dtypes or shapes."""


@dataclass(frozen=True)
class RuntimeInfo:
    """What a backend really runs on, for health reports and logs."""

    runtime: str  # "onnxruntime 1.32.0 (package onnxruntime)" or "jax 0.12.0"
    device: str  # "cpu", "gpu", "tpu": where the compute really happens
    providers: tuple[str, ...] = ()  # onnxruntime providers, or the JAX platform
    fallback: bool = False  # True when running on the CPU by --cpu-fallback
    notes: tuple[str, ...] = field(default=())  # e.g. why a provider was dropped


class Backend(Protocol):
    def load(self) -> None:
        """Load the artifact and check it; raises LoadFailed or WrongDevice."""

    def warm_up(self, batch_sizes: Sequence[int]) -> None:
        """Run zero-filled batches of these sizes so the first requests are not slow."""

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch: arrays by input name in, arrays by output name out.

        Raises BadBatch when the inputs do not fit the model's signature.
        """

    def describe(self) -> RuntimeInfo:
        """What the loaded backend runs on."""
