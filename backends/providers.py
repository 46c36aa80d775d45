"""Which onnxruntime execution providers a target asks for, and whether it got them.

Pure: this module never imports onnxruntime, so the rules are tested with
plain lists of provider names.

1. `requested_providers` turns the target's hardware (and the model's
   precision) into the ordered `(provider, options)` list for the session:
   cpu → CPU; gpu → TensorRT, CUDA, then CPU last, which onnxruntime uses
   node by node for ops the GPU providers lack.
2. onnxruntime drops a provider it cannot start (missing CUDA or TensorRT
   libraries) with no more than a log line, and carries on on the CPU. So,
   after the session exists, `check_placement` compares what it really runs
   with what the target asked for and raises `WrongDevice` with the cause and
   the fix, unless the worker runs with `--cpu-fallback`, the explicit
   opt-in for development, in which case the result says so for the log.
3. `installed_package` tells the CPU build (`onnxruntime`) from the GPU build
   (`onnxruntime-gpu`): both install the same `onnxruntime` module folder, so
   the messages and the worker's report need the distribution's name.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from inferplane.backends.runtime import WrongDevice

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
# The providers that put a gpu target's compute on the GPU, best first.
GPU_PROVIDERS = (TENSORRT, CUDA)

CPU_PACKAGE = "onnxruntime"
GPU_PACKAGE = "onnxruntime-gpu"
# Other builds that also install the `onnxruntime` module folder.
OTHER_PACKAGES = ("onnxruntime-directml", "onnxruntime-openvino", "onnxruntime-qnn")

CUDA_REQUIREMENTS = (
    "https://onnxruntime.ai/docs/execution-providers/CUDA-ExecutionProvider.html#requirements"
)
FALLBACK_HINT = "or run with --cpu-fallback to serve it on the CPU (development only)"

Provider = tuple[str, dict[str, str]]


@dataclass(frozen=True)
class InstalledPackage:
    """The distribution that provides the `onnxruntime` module."""

    name: str  # "onnxruntime", "onnxruntime-gpu", or "unknown" (a source build)
    version: str  # the distribution's version, "" when unknown
    notes: tuple[str, ...] = ()  # e.g. two clashing builds installed together


@dataclass(frozen=True)
class Placement:
    """Where a session really computes, as accepted by `check_placement`."""

    device: str  # "cpu" or "gpu"
    fallback: bool = False  # a gpu target served on the CPU by --cpu-fallback
    notes: tuple[str, ...] = ()  # what to log: the fallback, a provider that did not start


def requested_providers(
    hardware: str, precision: str, available: Sequence[str], cache_dir: Path | None
) -> list[Provider]:
    """The ordered `(provider, options)` list for a session on `hardware`.

    GPU providers missing from `available` are left out (onnxruntime would
    only warn and ignore them); `check_placement` then reports what is missing.
    Options are strings, the form onnxruntime's provider options take.
    """
    if hardware == "cpu":
        # Threads are a session option (intra_op_num_threads), not a provider one.
        return [(CPU, {})]
    if hardware == "tpu":
        raise ValueError("tpu targets run through JAX, not onnxruntime")
    if hardware != "gpu":
        raise ValueError(f"unknown hardware {hardware!r}")
    providers: list[Provider] = []
    if TENSORRT in available:
        providers.append((TENSORRT, _tensorrt_options(precision, cache_dir)))
    if CUDA in available:
        providers.append((CUDA, {}))
    # Last, so that ops the GPU providers do not implement still run.
    providers.append((CPU, {}))
    return providers


def _tensorrt_options(precision: str, cache_dir: Path | None) -> dict[str, str]:
    options = {
        "trt_fp16_enable": str(precision == "fp16"),
        # int8 artifacts are dynamically quantized ONNX graphs: their integer ops
        # run through the CUDA and CPU kernels. TensorRT's own int8 mode needs a
        # calibration table, which the plan does not have.
        "trt_int8_enable": "False",
    }
    if cache_dir is not None:
        # Building an engine takes seconds to minutes; the cache makes restarts fast.
        options["trt_engine_cache_enable"] = "True"
        options["trt_engine_cache_path"] = str(cache_dir / "tensorrt")
    return options


def check_placement(
    hardware: str,
    requested: Sequence[Provider],
    actual: Sequence[str],
    available: Sequence[str],
    package: InstalledPackage,
    cpu_fallback: bool,
    *,
    error: str | None = None,
) -> Placement:
    """Accept the session's providers `actual` for `hardware`, or raise WrongDevice.

    `error` is what onnxruntime raised when a session with the GPU providers
    could not be created at all (the backend then retried on the CPU alone).
    """
    if hardware == "cpu":
        if CPU not in actual:
            raise WrongDevice(f"the session runs on {list(actual)}, not {CPU}")
        return Placement(device="cpu")
    if hardware != "gpu":
        raise ValueError(f"onnxruntime serves cpu and gpu targets, not {hardware!r}")
    running = [p for p in GPU_PROVIDERS if p in actual]
    if running:
        dropped = [name for name, _ in requested if name in GPU_PROVIDERS and name not in actual]
        notes = tuple(
            f"{name} was requested but did not start (onnxruntime's log says why); "
            f"running on {running[0]}"
            for name in dropped
        )
        return Placement(device="gpu", notes=notes)
    cause = _missing_gpu_cause(available, package, error)
    if not cpu_fallback:
        raise WrongDevice(
            f"the target needs a GPU, but onnxruntime would run on the CPU: {cause}; "
            f"{FALLBACK_HINT}"
        )
    return Placement(
        device="cpu",
        fallback=True,
        notes=(f"gpu target served on the CPU because of --cpu-fallback: {cause}",),
    )


def _missing_gpu_cause(
    available: Sequence[str], package: InstalledPackage, error: str | None
) -> str:
    """Why no GPU provider is in the session, and what fixes it."""
    if not any(p in available for p in GPU_PROVIDERS):
        if package.name == CPU_PACKAGE:
            return (
                f"the installed package `{CPU_PACKAGE}` is the CPU build; install "
                f"inferplane[gpu] ({GPU_PACKAGE}) instead of inferplane[cpu], after "
                f"uninstalling {CPU_PACKAGE} (both write the same module folder)"
            )
        return (
            f"package `{package.name}` offers no CUDA or TensorRT provider "
            f"(available: {', '.join(available)}); install inferplane[gpu] ({GPU_PACKAGE})"
        )
    version = f" {package.version}" if package.version else ""
    cause = (
        f"CUDA could not load: check the CUDA/cuDNN libraries {GPU_PACKAGE}{version} "
        f"needs ({CUDA_REQUIREMENTS})"
    )
    if error:
        return f"{cause}; onnxruntime said: {error}"
    return f"{cause}; onnxruntime's log above names the library it could not open"


def installed_package(
    available: Sequence[str] = (),
    version_of: Callable[[str], str] | None = None,
) -> InstalledPackage:
    """Which onnxruntime distribution is installed, from the package metadata.

    `available` (onnxruntime's available providers) decides which build's
    files are really there when two clashing builds are both installed.
    `version_of` defaults to `importlib.metadata.version`; tests pass a fake.
    """
    found = _installed_versions(version_of or importlib.metadata.version)
    if not found:
        return InstalledPackage(
            "unknown", "", ("no onnxruntime distribution found (a source build?)",)
        )
    if len(found) == 1:
        ((name, version),) = found.items()
        return InstalledPackage(name, version)
    # pip installed the builds over each other; the last one's files won.
    name = GPU_PACKAGE if GPU_PACKAGE in found and CUDA in available else CPU_PACKAGE
    if name not in found:
        name = next(iter(found))
    note = (
        f"{', '.join(found)} are installed together; they write the same `onnxruntime` "
        f"module folder, so the providers seen are those of whichever was installed last "
        f"(it looks like {name}). Uninstall them all, then install one extra: "
        f"inferplane[cpu] or inferplane[gpu]"
    )
    return InstalledPackage(name, found[name], (note,))


def _installed_versions(version_of: Callable[[str], str]) -> Mapping[str, str]:
    found = {}
    for name in (CPU_PACKAGE, GPU_PACKAGE, *OTHER_PACKAGES):
        try:
            found[name] = version_of(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found
