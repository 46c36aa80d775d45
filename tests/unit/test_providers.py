"""Provider choice and the refuse-on-fallback rule, with plain lists of names.

No onnxruntime here: `available` and the session's providers are what a CPU
build, a GPU build, or a GPU build whose CUDA libraries are missing report.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from inferplane.backends.providers import (
    CPU,
    CUDA,
    TENSORRT,
    InstalledPackage,
    check_placement,
    installed_package,
    requested_providers,
)
from inferplane.backends.runtime import WrongDevice

CPU_BUILD = [CPU, "AzureExecutionProvider"]  # what onnxruntime (CPU) 1.32 reports
GPU_BUILD = [TENSORRT, CUDA, CPU]
CPU_PACKAGE = InstalledPackage("onnxruntime", "1.32.0")
GPU_PACKAGE = InstalledPackage("onnxruntime-gpu", "1.32.0")


def names(providers) -> list[str]:
    return [name for name, _ in providers]


# -- requested_providers ----------------------------------------------------------


def test_cpu_target_asks_for_the_cpu_provider_alone():
    assert requested_providers("cpu", "fp32", GPU_BUILD, None) == [(CPU, {})]


def test_gpu_target_asks_for_tensorrt_then_cuda_then_cpu(tmp_path: Path):
    requested = requested_providers("gpu", "fp32", GPU_BUILD, tmp_path)
    assert names(requested) == [TENSORRT, CUDA, CPU]
    trt = requested[0][1]
    assert trt["trt_fp16_enable"] == "False"
    assert trt["trt_int8_enable"] == "False"
    assert trt["trt_engine_cache_enable"] == "True"
    assert trt["trt_engine_cache_path"] == str(tmp_path / "tensorrt")


def test_fp16_turns_on_tensorrt_fp16_but_int8_stays_off():
    fp16 = dict(requested_providers("gpu", "fp16", GPU_BUILD, None))[TENSORRT]
    int8 = dict(requested_providers("gpu", "int8", GPU_BUILD, None))[TENSORRT]
    assert fp16["trt_fp16_enable"] == "True"
    assert int8["trt_int8_enable"] == "False"
    assert int8["trt_fp16_enable"] == "False"
    assert "trt_engine_cache_path" not in fp16  # no cache folder given


def test_gpu_providers_missing_from_the_build_are_not_requested():
    assert names(requested_providers("gpu", "fp32", [CUDA, CPU], None)) == [CUDA, CPU]
    assert names(requested_providers("gpu", "fp32", CPU_BUILD, None)) == [CPU]


def test_tpu_is_not_onnxruntimes_job():
    with pytest.raises(ValueError, match="JAX"):
        requested_providers("tpu", "bf16", GPU_BUILD, None)


# -- check_placement --------------------------------------------------------------


def test_cpu_target_on_the_cpu_is_served():
    placement = check_placement("cpu", [(CPU, {})], [CPU], CPU_BUILD, CPU_PACKAGE, False)
    assert (placement.device, placement.fallback, placement.notes) == ("cpu", False, ())


def test_gpu_target_with_tensorrt_and_cuda_is_served_on_the_gpu():
    requested = requested_providers("gpu", "fp32", GPU_BUILD, None)
    placement = check_placement("gpu", requested, GPU_BUILD, GPU_BUILD, GPU_PACKAGE, False)
    assert (placement.device, placement.fallback, placement.notes) == ("gpu", False, ())


def test_tensorrt_dropped_but_cuda_running_is_still_the_gpu_with_a_note():
    requested = requested_providers("gpu", "fp32", GPU_BUILD, None)
    placement = check_placement("gpu", requested, [CUDA, CPU], GPU_BUILD, GPU_PACKAGE, False)
    assert placement.device == "gpu"
    assert not placement.fallback
    assert len(placement.notes) == 1
    assert TENSORRT in placement.notes[0]
    assert "running on CUDAExecutionProvider" in placement.notes[0]


def test_gpu_target_with_the_cpu_package_is_refused_with_the_install_fix():
    requested = requested_providers("gpu", "fp32", CPU_BUILD, None)
    with pytest.raises(WrongDevice) as raised:
        check_placement("gpu", requested, [CPU], CPU_BUILD, CPU_PACKAGE, False)
    message = str(raised.value)
    assert "the installed package `onnxruntime` is the CPU build" in message
    assert "install inferplane[gpu] (onnxruntime-gpu) instead of inferplane[cpu]" in message
    assert "--cpu-fallback" in message


def test_gpu_target_with_an_unknown_build_lacking_cuda_names_what_it_has():
    requested = requested_providers("gpu", "fp32", CPU_BUILD, None)
    package = InstalledPackage("onnxruntime-openvino", "1.20.0")
    available = ["OpenVINOExecutionProvider", CPU]
    with pytest.raises(WrongDevice, match=r"offers no CUDA.*OpenVINOExecutionProvider"):
        check_placement("gpu", requested, [CPU], available, package, False)


def test_cuda_available_but_dropped_from_the_session_is_refused():
    requested = requested_providers("gpu", "fp32", GPU_BUILD, None)
    with pytest.raises(WrongDevice) as raised:
        check_placement("gpu", requested, [CPU], GPU_BUILD, GPU_PACKAGE, False)
    message = str(raised.value)
    assert "CUDA could not load" in message
    assert "CUDA/cuDNN libraries onnxruntime-gpu 1.32.0 needs" in message
    assert "--cpu-fallback" in message


def test_a_gpu_provider_error_is_quoted():
    requested = requested_providers("gpu", "fp32", GPU_BUILD, None)
    error = "CUDA failure 100: no CUDA-capable device is detected"
    with pytest.raises(WrongDevice, match="onnxruntime said: CUDA failure 100"):
        check_placement("gpu", requested, [CPU], GPU_BUILD, GPU_PACKAGE, False, error=error)


def test_cpu_fallback_serves_a_gpu_target_on_the_cpu_with_a_note():
    requested = requested_providers("gpu", "fp32", GPU_BUILD, None)
    placement = check_placement("gpu", requested, [CPU], GPU_BUILD, GPU_PACKAGE, True)
    assert placement.device == "cpu"
    assert placement.fallback
    (note,) = placement.notes
    assert "--cpu-fallback" in note
    assert "CUDA could not load" in note


def test_cpu_fallback_is_not_used_when_the_gpu_works():
    requested = requested_providers("gpu", "fp32", GPU_BUILD, None)
    placement = check_placement("gpu", requested, GPU_BUILD, GPU_BUILD, GPU_PACKAGE, True)
    assert (placement.device, placement.fallback) == ("gpu", False)


def test_a_cpu_target_whose_session_lacks_the_cpu_provider_is_refused():
    with pytest.raises(WrongDevice, match="not CPUExecutionProvider"):
        check_placement("cpu", [(CPU, {})], [CUDA], GPU_BUILD, GPU_PACKAGE, False)


# -- installed_package ------------------------------------------------------------


def versions(**installed: str):
    """A fake `importlib.metadata.version` over `installed` (underscores for dashes)."""
    table = {name.replace("_", "-"): version for name, version in installed.items()}

    def version_of(name: str) -> str:
        if name not in table:
            raise importlib.metadata.PackageNotFoundError(name)
        return table[name]

    return version_of


def test_the_cpu_build_is_named():
    package = installed_package(CPU_BUILD, versions(onnxruntime="1.32.0"))
    assert package == InstalledPackage("onnxruntime", "1.32.0")


def test_the_gpu_build_is_named():
    package = installed_package(GPU_BUILD, versions(onnxruntime_gpu="1.32.0"))
    assert package == InstalledPackage("onnxruntime-gpu", "1.32.0")


@pytest.mark.parametrize(
    ("available", "expected"), [(GPU_BUILD, "onnxruntime-gpu"), (CPU_BUILD, "onnxruntime")]
)
def test_both_builds_installed_give_a_note_and_the_build_whose_files_won(available, expected):
    both = versions(onnxruntime="1.32.0", onnxruntime_gpu="1.31.0")
    package = installed_package(available, both)
    assert package.name == expected
    (note,) = package.notes
    assert "onnxruntime, onnxruntime-gpu are installed together" in note
    assert "install one extra: inferplane[cpu] or inferplane[gpu]" in note


def test_no_distribution_found_is_unknown_with_a_note():
    package = installed_package(CPU_BUILD, versions())
    assert package.name == "unknown"
    assert package.notes
