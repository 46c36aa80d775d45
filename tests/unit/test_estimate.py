"""Service-time estimates from the hardware table, before any profile exists."""

from __future__ import annotations

import itertools
import math
import pathlib

import pytest

from inferplane.compiler.estimate import (
    CPU_OVERHEAD_S,
    CPU_PER_ITEM_S,
    CPU_PER_NODE_S,
    CPU_THREAD,
    DEFAULT_GPU,
    DEFAULT_TPU,
    GPU_OVERHEAD_S,
    GPU_PER_ITEM_S,
    GPU_PER_NODE_S,
    GPUS,
    TABLE,
    TPU_OVERHEAD_S,
    TPU_PER_ITEM_S,
    TPU_PER_NODE_S,
    TPUS,
    estimate,
    lookup_accelerator,
    table_markdown,
)
from inferplane.compiler.schema import PRECISION_BY_HARDWARE

DOCS = pathlib.Path(__file__).parents[2] / "docs" / "estimates.md"


# Each kind of hardware, an accelerator of it, and the constants its line uses:
# per-batch overhead, dispatch per node, per-item floor.
KINDS = [
    pytest.param("cpu", None, CPU_OVERHEAD_S, CPU_PER_NODE_S, CPU_PER_ITEM_S, id="cpu"),
    pytest.param("gpu", "A100", GPU_OVERHEAD_S, GPU_PER_NODE_S, GPU_PER_ITEM_S, id="gpu"),
    pytest.param("gpu", None, GPU_OVERHEAD_S, GPU_PER_NODE_S, GPU_PER_ITEM_S, id="gpu-default"),
    pytest.param("tpu", "v5e", TPU_OVERHEAD_S, TPU_PER_NODE_S, TPU_PER_ITEM_S, id="tpu"),
    pytest.param("tpu", None, TPU_OVERHEAD_S, TPU_PER_NODE_S, TPU_PER_ITEM_S, id="tpu-default"),
]


def cpu(
    flops: float = 1.2e6,
    precision: str = "fp32",
    threads: int | None = 4,
    max_batch=64,
    nodes: int = 0,
):
    return estimate(flops, "cpu", precision, None, 1, threads, max_batch, nodes)


def on(hardware: str, accelerator: str | None, flops=1e9, max_batch=32, nodes=0):
    return estimate(flops, hardware, "fp32", accelerator, 1, None, max_batch, nodes)


def test_the_line_and_its_derived_figures():
    e = cpu(flops=1.2e6, threads=4, max_batch=64, nodes=10)
    fixed = CPU_OVERHEAD_S + 10 * CPU_PER_NODE_S
    per_item = 1.2e6 / (4 * CPU_THREAD.rates["fp32"].effective) + CPU_PER_ITEM_S
    assert e.basis == "estimated"
    assert e.flops_per_item == 1.2e6
    assert e.fixed_s == pytest.approx(fixed)
    assert e.per_item_s == pytest.approx(per_item)
    assert e.single_latency_s == pytest.approx(fixed + per_item)
    assert e.max_batch_latency_s == pytest.approx(fixed + 64 * per_item)
    assert e.capacity_rps == pytest.approx(64 / (fixed + 64 * per_item))


def test_the_worked_example_in_the_docs():
    # docs/estimates.md: 20 µs, 8.0 µs, 28 µs, 0.53 ms, ≈ 120k requests/s.
    e = cpu(flops=1.2e6, threads=4, max_batch=64, nodes=10)
    assert e.fixed_s == pytest.approx(20e-6)
    assert e.per_item_s == pytest.approx(8.0e-6, abs=0.05e-6)
    assert e.single_latency_s == pytest.approx(28e-6, abs=0.5e-6)
    assert e.max_batch_latency_s == pytest.approx(0.53e-3, abs=0.005e-3)
    assert e.capacity_rps == pytest.approx(120e3, abs=0.5e3)


def test_the_detail_states_the_basis():
    assert cpu(flops=1.2e6, threads=4, nodes=10).detail == (
        "1.2 MFLOP/item on cpu × 4 threads at 38.4 GFLOP/s each (fp32), "
        "20 µs per batch (10 nodes), 0.2 µs per item floor (estimate table)"
    )


@pytest.mark.parametrize(
    ("hardware", "accelerator", "nodes", "per_batch", "floor"),
    [
        pytest.param("cpu", None, 25, "35 µs", "0.2 µs", id="cpu"),
        pytest.param("gpu", "A100", 25, "500 µs", "0.5 µs", id="gpu"),
        pytest.param("tpu", "v5e", 40, "520 µs", "0.5 µs", id="tpu"),
    ],
)
def test_the_detail_states_the_nodes_and_the_floor(hardware, accelerator, nodes, per_batch, floor):
    detail = on(hardware, accelerator, nodes=nodes).detail
    assert f"{per_batch} per batch ({nodes} nodes)" in detail
    assert f"{floor} per item floor" in detail


@pytest.mark.parametrize(("hardware", "accelerator", "overhead", "per_node", "floor"), KINDS)
def test_node_dispatch_adds_to_the_fixed_cost(hardware, accelerator, overhead, per_node, floor):
    none = on(hardware, accelerator, nodes=0)
    assert none.fixed_s == pytest.approx(overhead)
    for nodes in (1, 10, 250):
        e = on(hardware, accelerator, nodes=nodes)
        assert e.fixed_s == pytest.approx(overhead + nodes * per_node)
        assert e.fixed_s - none.fixed_s == pytest.approx(nodes * per_node)
        assert e.per_item_s == none.per_item_s  # once per batch, not per item
        assert e.max_batch_latency_s == pytest.approx(none.max_batch_latency_s + nodes * per_node)
        assert e.capacity_rps < none.capacity_rps


@pytest.mark.parametrize(("hardware", "accelerator", "overhead", "per_node", "floor"), KINDS)
def test_the_floor_keeps_a_zero_flop_model_finite(hardware, accelerator, overhead, per_node, floor):
    for max_batch in (1, 64, 10**6):
        e = on(hardware, accelerator, flops=0, max_batch=max_batch)
        assert e.per_item_s == pytest.approx(floor)
        assert e.capacity_rps == pytest.approx(max_batch / (overhead + max_batch * floor))
        assert math.isfinite(e.capacity_rps)
        assert e.capacity_rps < 1 / floor


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
    # The compute share is divided; the per-item floor (copies) is not.
    four, one = cpu(threads=4), cpu(threads=1)
    assert four.per_item_s - CPU_PER_ITEM_S == pytest.approx((one.per_item_s - CPU_PER_ITEM_S) / 4)
    one, two = (estimate(1e9, "gpu", "fp16", "A100", n, None, 32) for n in (1, 2))
    assert two.per_item_s - GPU_PER_ITEM_S == pytest.approx((one.per_item_s - GPU_PER_ITEM_S) / 2)
    assert two.fixed_s == one.fixed_s


def test_unset_threads_means_one_and_says_so():
    e = cpu(threads=None)
    assert e.per_item_s == pytest.approx(cpu(threads=1).per_item_s)
    assert "1 thread (threads not set, 1 assumed)" in e.detail


def test_an_unknown_accelerator_gets_the_default_and_says_so():
    e = estimate(1e9, "gpu", "fp16", "B200", 1, None, 32)
    assert e.per_item_s == pytest.approx(1e9 / DEFAULT_GPU.rates["fp16"].effective + GPU_PER_ITEM_S)
    assert e.fixed_s == pytest.approx(GPU_OVERHEAD_S)
    assert 'unknown accelerator "B200"' in e.detail
    assert "default" in e.detail


def test_no_accelerator_gets_the_default_and_says_so():
    e = estimate(1e9, "tpu", "bf16", None, 4, None, 32)
    assert e.per_item_s == pytest.approx(
        1e9 / (4 * DEFAULT_TPU.rates["bf16"].effective) + TPU_PER_ITEM_S
    )
    assert "no accelerator named" in e.detail
    assert "default" in e.detail


def test_a_known_accelerator_is_named_in_the_detail():
    e = estimate(1e9, "gpu", "fp16", "A100", 2, None, 32)
    assert e.per_item_s == pytest.approx(
        1e9 / (2 * GPUS["A100"].rates["fp16"].effective) + GPU_PER_ITEM_S
    )
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


def test_zero_flops_leaves_the_overhead_and_the_floor():
    e = cpu(flops=0, max_batch=10)
    assert e.per_item_s == pytest.approx(CPU_PER_ITEM_S)
    assert e.fixed_s == pytest.approx(CPU_OVERHEAD_S)
    assert e.capacity_rps == pytest.approx(10 / (CPU_OVERHEAD_S + 10 * CPU_PER_ITEM_S))


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


def test_every_unit_carries_its_kinds_constants():
    constants = {
        "cpu": (CPU_OVERHEAD_S, CPU_PER_NODE_S, CPU_PER_ITEM_S),
        "gpu": (GPU_OVERHEAD_S, GPU_PER_NODE_S, GPU_PER_ITEM_S),
        "tpu": (TPU_OVERHEAD_S, TPU_PER_NODE_S, TPU_PER_ITEM_S),
    }
    for hardware, units in TABLE.items():
        for unit in units.values():
            assert (unit.overhead_s, unit.per_node_s, unit.per_item_floor_s) == constants[hardware]
            assert unit.per_node_s > 0
            assert unit.per_item_floor_s > 0


def test_the_docs_show_the_table_as_it_is():
    assert table_markdown() in DOCS.read_text(), "paste table_markdown() into docs/estimates.md"
    header = table_markdown().splitlines()[0]
    assert header.endswith("| per batch | per node | per item floor |")
    for units in TABLE.values():
        for name in units:
            assert f"| {name} |" in table_markdown()
    assert "| cpu | thread | fp32 | 96 GFLOP/s | 40% | 38.4 GFLOP/s | 10 µs | 1 µs | 0.2 µs |" in (
        table_markdown()
    )
