"""Service-time estimates from the hardware table, before any profile exists."""

from __future__ import annotations

import itertools
import pathlib

import pytest

from inferplane.compiler.estimate import (
    CPU_THREAD,
    DEFAULT_GPU,
    DEFAULT_TPU,
    GPUS,
    TABLE,
    TPUS,
    estimate,
    lookup_accelerator,
    table_markdown,
)
from inferplane.compiler.schema import PRECISION_BY_HARDWARE

DOCS = pathlib.Path(__file__).parents[2] / "docs" / "estimates.md"


def cpu(flops: float = 1.2e6, precision: str = "fp32", threads: int | None = 4, max_batch=64):
    return estimate(flops, "cpu", precision, None, 1, threads, max_batch)


def test_the_line_and_its_derived_figures():
    e = cpu(flops=1.2e6, threads=4, max_batch=64)
    assert e.basis == "estimated"
    assert e.flops_per_item == 1.2e6
    assert e.fixed_s == pytest.approx(50e-6)
    assert e.per_item_s == pytest.approx(1.2e6 / (4 * CPU_THREAD.rates["fp32"].effective))
    assert e.single_latency_s == pytest.approx(e.fixed_s + e.per_item_s)
    assert e.max_batch_latency_s == pytest.approx(e.fixed_s + 64 * e.per_item_s)
    assert e.capacity_rps == pytest.approx(64 / e.max_batch_latency_s)


def test_the_detail_states_the_basis():
    assert cpu(flops=1.2e6, threads=4).detail == (
        "1.2 MFLOP/item on cpu × 4 threads at 38.4 GFLOP/s each (fp32), "
        "50 µs per batch (estimate table)"
    )


def test_more_flops_cost_more():
    estimates = [cpu(flops=f) for f in (0, 1e3, 1e6, 1e9, 1e12)]
    for smaller, larger in itertools.pairwise(estimates):
        assert larger.single_latency_s > smaller.single_latency_s
        assert larger.max_batch_latency_s > smaller.max_batch_latency_s
        assert larger.capacity_rps < smaller.capacity_rps


def test_larger_batches_take_longer_and_serve_more():
    estimates = [cpu(max_batch=b) for b in (1, 2, 8, 64, 512)]
    for smaller, larger in itertools.pairwise(estimates):
        assert larger.max_batch_latency_s > smaller.max_batch_latency_s
        assert larger.capacity_rps > smaller.capacity_rps
        assert larger.single_latency_s == smaller.single_latency_s


def test_batch_one_is_the_single_request():
    e = cpu(max_batch=1)
    assert e.max_batch_latency_s == e.single_latency_s
    assert e.capacity_rps == pytest.approx(1 / e.single_latency_s)


def test_int8_is_faster_than_fp32_on_cpu():
    assert cpu(precision="int8").per_item_s < cpu(precision="fp32").per_item_s


def test_threads_and_devices_divide_the_per_item_time():
    assert cpu(threads=4).per_item_s == pytest.approx(cpu(threads=1).per_item_s / 4)
    one, two = (estimate(1e9, "gpu", "fp16", "A100", n, None, 32) for n in (1, 2))
    assert two.per_item_s == pytest.approx(one.per_item_s / 2)
    assert two.fixed_s == one.fixed_s


def test_unset_threads_means_one_and_says_so():
    e = cpu(threads=None)
    assert e.per_item_s == pytest.approx(cpu(threads=1).per_item_s)
    assert "1 thread (threads not set, 1 assumed)" in e.detail


def test_an_unknown_accelerator_gets_the_default_and_says_so():
    e = estimate(1e9, "gpu", "fp16", "B200", 1, None, 32)
    assert e.per_item_s == pytest.approx(1e9 / DEFAULT_GPU.rates["fp16"].effective)
    assert e.fixed_s == DEFAULT_GPU.overhead_s
    assert 'unknown accelerator "B200"' in e.detail
    assert "default" in e.detail


def test_no_accelerator_gets_the_default_and_says_so():
    e = estimate(1e9, "tpu", "bf16", None, 4, None, 32)
    assert e.per_item_s == pytest.approx(1e9 / (4 * DEFAULT_TPU.rates["bf16"].effective))
    assert "no accelerator named" in e.detail
    assert "default" in e.detail


def test_a_known_accelerator_is_named_in_the_detail():
    e = estimate(1e9, "gpu", "fp16", "A100", 2, None, 32)
    assert e.per_item_s == pytest.approx(1e9 / (2 * GPUS["A100"].rates["fp16"].effective))
    assert "gpu A100 × 2 devices" in e.detail
    assert "default" not in e.detail


def test_the_defaults_are_the_slowest_of_their_kind():
    for units, default in ((GPUS, DEFAULT_GPU), (TPUS, DEFAULT_TPU)):
        for precision, rate in default.rates.items():
            assert rate.effective <= min(u.rates[precision].effective for u in units.values())


@pytest.mark.parametrize(
    ("hardware", "spelling", "name"),
    [
        ("gpu", "a100", "A100"),
        ("gpu", "A100-80GB", "A100"),
        ("gpu", "nvidia-tesla-t4", "T4"),
        ("gpu", "nvidia-l4", "L4"),
        ("gpu", "NVIDIA H200 141GB", "H200"),
        ("gpu", "A10", "A10"),
        ("tpu", "v5e", "v5e"),
        ("tpu", "tpu-v5-lite-podslice", "v5e"),
        ("tpu", "v5litepod-8", "v5e"),
        ("tpu", "tpu-v5p-slice", "v5p"),
        ("tpu", "TPU v4", "v4"),
        ("tpu", "trillium", "v6e"),
    ],
)
def test_cloud_spellings_of_accelerators(hardware, spelling, name):
    assert lookup_accelerator(hardware, spelling) is TABLE[hardware][name]


@pytest.mark.parametrize(
    ("hardware", "spelling"), [("gpu", "B200"), ("gpu", "L40S"), ("tpu", "v3"), ("gpu", "v5e")]
)
def test_unknown_accelerators(hardware, spelling):
    assert lookup_accelerator(hardware, spelling) is None


def test_a_precision_the_hardware_lacks_falls_back_to_fp32():
    e = cpu(precision="fp16")
    assert e.per_item_s == pytest.approx(cpu(precision="fp32").per_item_s)
    assert "fp32, as cpu has no fp16" in e.detail


def test_zero_flops_leaves_the_overhead():
    e = cpu(flops=0, max_batch=10)
    assert e.per_item_s == 0
    assert e.capacity_rps == pytest.approx(10 / 50e-6)


@pytest.mark.parametrize(
    "args",
    [
        (-1.0, "cpu", "fp32", None, 1, 1, 1),
        (1.0, "cpu", "fp32", None, 1, 0, 1),
        (1.0, "gpu", "fp32", None, 0, None, 1),
        (1.0, "cpu", "fp32", None, 1, 1, 0),
        (1.0, "fpga", "fp32", None, 1, 1, 1),
    ],
)
def test_bad_arguments_are_refused(args):
    with pytest.raises(ValueError):
        estimate(*args)


def test_the_table_covers_every_precision_the_language_allows():
    for hardware, units in TABLE.items():
        for unit in units.values():
            assert set(PRECISION_BY_HARDWARE[hardware]) <= set(unit.rates)
            for rate in unit.rates.values():
                assert 0 < rate.fraction <= 1
                assert 0 < rate.effective < rate.peak


def test_overheads_grow_from_cpu_to_gpu_to_tpu():
    assert CPU_THREAD.overhead_s < DEFAULT_GPU.overhead_s < DEFAULT_TPU.overhead_s


def test_the_docs_show_the_table_as_it_is():
    assert table_markdown() in DOCS.read_text(), "paste table_markdown() into docs/estimates.md"
    for units in TABLE.values():
        for name in units:
            assert f"| {name} |" in table_markdown()
