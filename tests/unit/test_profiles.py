"""Measured profiles: the fit, the file, matching and staleness, and the compiler using them.

The compiler tests work on tmp copies of specs/demo.infer and its models, with
hand-made profiles: a profile must never land in specs/, where the golden plans
would pick it up.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from inferplane.backends import profiling
from inferplane.backends.runtime import RuntimeInfo
from inferplane.compiler import plan, profiles
from inferplane.compiler.compilation import Compilation

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "specs" / "demo.infer"

HOST = profiles.Host(cpu="Test CPU 3000", cores=2, os="Linux", python="3.11.7")
RUNTIME = profiles.Runtime(
    runtime="onnxruntime 1.32.0 (package onnxruntime)",
    device="cpu",
    providers=["CPUExecutionProvider"],
)


def rows_on_line(fixed_s: float, per_item_s: float, sizes=(1, 2, 4, 8, 16, 32)) -> list:
    return [
        profiles.Row(
            batch_size=b,
            iterations=10,
            p50_s=fixed_s + b * per_item_s,
            p99_s=2 * (fixed_s + b * per_item_s),
            throughput_items_per_s=b / (fixed_s + b * per_item_s),
        )
        for b in sizes
    ]


def entry(**changes) -> profiles.Entry:
    fields = {
        "model": "fraud-scorer",
        "version": 1,
        "target": "laptop",
        "source_sha256": "a" * 64,
        "artifact_sha256": "a" * 64,
        "precision": "fp32",
        "hardware": "cpu",
        "threads": 1,
        "runtime": RUNTIME,
        "host": HOST,
        "measured_at": "2026-11-28T09:30:00Z",
        "rows": rows_on_line(100e-6, 10e-6),
        "fit": profiles.Fit(fixed_s=100e-6, per_item_s=10e-6),
    }
    return profiles.Entry(**{**fields, **changes})


def wanted(**changes) -> profiles.Wanted:
    fields = {
        "model": "fraud-scorer",
        "version": 1,
        "target": "laptop",
        "source_sha256": "a" * 64,
        "precision": "fp32",
        "hardware": "cpu",
        "accelerator": None,
        "threads": 1,
        "devices": 1,
        "max_batch_size": 32,
        "source": "models/fraud.onnx",
    }
    return profiles.Wanted(**{**fields, **changes})


# -- batch sizes, inputs, timing, the fit -----------------------------------------


@pytest.mark.parametrize(
    ("max_batch", "sizes"),
    [(1, [1]), (2, [1, 2]), (32, [1, 2, 4, 8, 16, 32]), (24, [1, 2, 4, 8, 16, 24])],
)
def test_batch_sizes_double_up_to_max_included(max_batch, sizes):
    assert profiling.batch_sizes(max_batch) == sizes


def test_fit_recovers_an_exact_line():
    fit = profiling.fit_line(rows_on_line(50e-6, 3e-6))
    assert fit.fixed_s == pytest.approx(50e-6)
    assert fit.per_item_s == pytest.approx(3e-6)


def test_fit_least_squares_on_noisy_rows():
    rows = rows_on_line(100e-6, 10e-6)
    noisy = [
        r.model_copy(update={"p50_s": r.p50_s * (1.05 if i % 2 else 0.95)})
        for i, r in enumerate(rows)
    ]
    fit = profiling.fit_line(noisy)
    b = np.array([r.batch_size for r in noisy], dtype=float)
    slope, intercept = np.polyfit(b, [r.p50_s for r in noisy], 1)
    assert (fit.fixed_s, fit.per_item_s) == pytest.approx((intercept, slope))


def test_fit_clamps_a_negative_slope_to_a_flat_line():
    rows = rows_on_line(200e-6, -1e-6, sizes=(1, 2, 4, 8))
    fit = profiling.fit_line(rows)
    assert fit.per_item_s == 0
    assert fit.fixed_s == pytest.approx(np.mean([r.p50_s for r in rows]))


def test_fit_clamps_a_negative_intercept_to_a_line_through_the_origin():
    rows = rows_on_line(-5e-6, 10e-6, sizes=(2, 4, 8, 16))
    fit = profiling.fit_line(rows)
    assert fit.fixed_s == 0
    assert fit.per_item_s == pytest.approx(
        sum(r.batch_size * r.p50_s for r in rows) / sum(r.batch_size**2 for r in rows)
    )


def test_fit_of_one_row_puts_it_all_in_fixed():
    fit = profiling.fit_line(rows_on_line(70e-6, 5e-6, sizes=(1,)))
    assert (fit.fixed_s, fit.per_item_s) == (pytest.approx(75e-6), 0)


SIGNATURE = plan.Signature(
    inputs=[
        plan.TensorSpec(name="features", datatype="FP32", shape=[-1, 30]),
        plan.TensorSpec(name="text", datatype="BYTES", shape=[-1]),
        plan.TensorSpec(name="ids", datatype="INT64", shape=[-1, 4]),
    ],
    outputs=[plan.TensorSpec(name="score", datatype="FP32", shape=[-1, 2])],
)


def test_inputs_follow_the_signature():
    batch = profiling.make_inputs(SIGNATURE, 5, np.random.default_rng(0))
    assert batch["features"].shape == (5, 30) and batch["features"].dtype == np.float32
    assert batch["features"].std() > 0.5  # random normal, not zeros
    assert batch["text"].shape == (5,) and batch["text"].dtype == object
    assert all(isinstance(t, bytes) and len(t) > 20 for t in batch["text"])
    assert batch["ids"].shape == (5, 4) and batch["ids"].dtype == np.int64


class FakeBackend:
    """Takes `fixed + b · per_item` seconds of a fake clock per batch."""

    def __init__(self, fixed_ns: int, per_item_ns: int) -> None:
        self.now = 0
        self.fixed_ns, self.per_item_ns = fixed_ns, per_item_ns
        self.calls: list[int] = []

    def clock(self) -> int:
        return self.now

    def infer(self, inputs):
        b = len(inputs["features"])
        self.calls.append(b)
        self.now += self.fixed_ns + b * self.per_item_ns
        return {"score": np.zeros((b, 2), np.float32)}

    def describe(self) -> RuntimeInfo:
        return RuntimeInfo("fake 1.0", "cpu", ("FakeProvider",))


def test_measure_times_each_size_and_fits_the_line():
    backend = FakeBackend(fixed_ns=100_000, per_item_ns=10_000)
    rows = profiling.measure(
        backend, SIGNATURE, [1, 2, 4], iterations=7, warmup=2, clock=backend.clock
    )
    assert [r.batch_size for r in rows] == [1, 2, 4]
    assert [r.iterations for r in rows] == [7, 7, 7]
    assert backend.calls == [1] * 9 + [2] * 9 + [4] * 9  # warm-up runs are not timed
    assert rows[2].p50_s == pytest.approx(140e-6)
    assert rows[2].p99_s == pytest.approx(140e-6)
    assert rows[2].throughput_items_per_s == pytest.approx(4 / 140e-6)
    fit = profiling.fit_line(rows)
    assert (fit.fixed_s, fit.per_item_s) == (pytest.approx(100e-6), pytest.approx(10e-6))


def test_measure_stops_a_batch_size_at_its_time_budget():
    backend = FakeBackend(fixed_ns=400_000_000, per_item_ns=0)  # 0.4 s a batch
    rows = profiling.measure(
        backend, SIGNATURE, [1, 2], iterations=100, warmup=0, max_seconds=1.0, clock=backend.clock
    )
    assert [r.iterations for r in rows] == [3, 3]  # 1.2 s > 1 s, and never below 3 runs


def test_entry_for_records_model_target_host_and_runtime():
    backend = FakeBackend(fixed_ns=100_000, per_item_ns=10_000)
    model = plan.Model.model_construct(
        name="m",
        version=2,
        precision="int8",
        artifact=plan.Artifact(path=".inferplane/cache/x.onnx", sha256="b" * 64),
        signature=SIGNATURE,
    )
    target = plan.Target(
        name="gpu-a",
        hardware="gpu",
        accelerator="A100",
        devices=2,
        location=plan.Location(kind="onprem", site="x"),
        replicas=plan.ReplicaRange(min=1, max=1),
    )
    rows = profiling.measure(backend, SIGNATURE, [1, 2], iterations=3, clock=backend.clock)
    measured = profiling.Measured(rows, profiling.fit_line(rows), backend.describe())
    e = profiling.entry_for(model, target, measured, HOST, source_sha256="c" * 64)
    assert (e.model, e.version, e.target, e.precision) == ("m", 2, "gpu-a", "int8")
    assert (e.hardware, e.accelerator, e.devices, e.threads) == ("gpu", "A100", 2, None)
    assert (e.source_sha256, e.artifact_sha256) == ("c" * 64, "b" * 64)
    assert e.runtime.providers == ["FakeProvider"]
    assert e.measured_at.endswith("Z")


def test_host_facts_read_the_cpu_model(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: avx2\n")
    host = profiling.host_facts(cpuinfo)
    assert host.cpu == "AMD EPYC 7B13"
    assert host.cores >= 1
    assert "numpy" in host.packages


# -- the file ---------------------------------------------------------------------


def test_profile_file_round_trips(tmp_path):
    profile = profiles.Profile(entries=[entry(), entry(model="fraud-lite")])
    path = tmp_path / "demo.profile.json"
    path.write_text(profile.to_json())
    again = profiles.read_profile(path)
    assert again.to_json() == profile.to_json()
    assert json.loads(path.read_text())["profile_version"] == 1


def test_merging_replaces_the_same_model_and_target_only():
    old = profiles.Profile(entries=[entry(), entry(model="fraud-lite")])
    new = entry(measured_at="2026-12-01T00:00:00Z")
    merged = old.merged([new])
    assert len(merged.entries) == 2
    assert {e.measured_at for e in merged.entries if e.model == "fraud-scorer"} == {
        "2026-12-01T00:00:00Z"
    }
    # A cpu-fallback measurement does not replace one taken on the real hardware.
    fallback = entry(hardware="gpu", cpu_fallback=True)
    assert len(merged.merged([fallback]).entries) == 3


def test_profile_path_sits_beside_the_spec():
    assert profiles.profile_path("specs/demo.infer", Path("/x")) == Path("/x/demo.profile.json")
    assert profiles.profile_path("<spec>", Path("/x")) is None
    assert profiles.profile_path("<stdin>", Path("/x")) is None


def test_missing_profile_is_none(tmp_path):
    assert profiles.read_profile(tmp_path / "none.profile.json") is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{not json", "is not a profile"),
        ('{"profile_version": 9, "entries": []}', "profile_version"),
        ('{"profile_version": 1, "entries": [{"model": "m"}]}', "entries.0"),
        ("\xff\xfe", "cannot read demo.profile.json: 'utf-8' codec"),
    ],
)
def test_a_bad_profile_is_a_clear_error(tmp_path, text, says):
    path = tmp_path / "demo.profile.json"
    path.write_text(text, encoding="latin-1")
    with pytest.raises(profiles.ProfileError, match=says):
        profiles.read_profile(path)


# -- matching and staleness -------------------------------------------------------


def test_lookup_matches_an_unchanged_shard():
    profile = profiles.Profile(entries=[entry()])
    assert profiles.lookup(profile, wanted()) == entry()
    assert profiles.stale_reason(profile, wanted()) is None
    assert profiles.lookup(profile, wanted(max_batch_size=16)) is not None  # measured row


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"source_sha256": "f" * 64}, "models/fraud.onnx changed since it was profiled"),
        ({"precision": "int8"}, "precision was fp32 when profiled, now int8"),
        ({"threads": 2}, "target `laptop` had threads 1 when profiled, now 2"),
        ({"threads": None}, "had threads 1 when profiled, now not set"),
        ({"devices": 2}, "had devices 1 when profiled, now 2"),
        ({"max_batch_size": 64}, "batch max 64 is above the largest batch measured (32)"),
    ],
)
def test_a_changed_shard_makes_the_entry_stale(change, says):
    profile = profiles.Profile(entries=[entry()])
    assert profiles.lookup(profile, wanted(**change)) is None
    assert says in profiles.stale_reason(profile, wanted(**change))


def test_a_changed_accelerator_makes_the_entry_stale():
    profile = profiles.Profile(entries=[entry(hardware="gpu", accelerator="A100", threads=None)])
    now = wanted(hardware="gpu", accelerator="H100", threads=None)
    assert profiles.lookup(profile, now) is None
    assert 'accelerator "A100" when profiled, now "H100"' in profiles.stale_reason(profile, now)


def test_other_models_and_targets_are_neither_used_nor_stale():
    profile = profiles.Profile(entries=[entry(model="fraud-lite"), entry(target="other")])
    assert profiles.lookup(profile, wanted()) is None
    assert profiles.stale_reason(profile, wanted()) is None
    assert profiles.lookup(None, wanted()) is None


def test_a_cpu_fallback_entry_never_stands_for_a_gpu_target():
    gpu = {"hardware": "gpu", "accelerator": "A100", "threads": None}
    fallback = entry(cpu_fallback=True, **gpu)
    profile = profiles.Profile(entries=[fallback])
    assert profiles.lookup(profile, wanted(**gpu)) is None
    assert "--cpu-fallback, not on gpu" in profiles.stale_reason(profile, wanted(**gpu))
    # Next to a real measurement, the real one is used.
    real = entry(**gpu)
    assert profiles.lookup(profiles.Profile(entries=[fallback, real]), wanted(**gpu)) == real


def test_measured_estimate_takes_rows_at_1_and_max():
    e = entry()
    est = profiles.measured_estimate(e, 32, flops_per_item=1000.0)
    assert est.basis == "measured"
    assert est.single_latency_s == e.row(1).p50_s
    assert est.max_batch_latency_s == e.row(32).p50_s
    assert est.capacity_rps == e.row(32).throughput_items_per_s
    assert (est.fixed_s, est.per_item_s) == (e.fit.fixed_s, e.fit.per_item_s)
    assert est.detail.startswith(
        "profiled on Test CPU 3000 (2 cores), "
        "onnxruntime 1.32.0 CPUExecutionProvider, 2026-11-28; batch-1 latency is the measured p50"
    )
    assert "09:30" not in est.detail  # the day, not the moment


def test_measured_estimate_between_measured_sizes_uses_the_fit():
    est = profiles.measured_estimate(entry(), 24, flops_per_item=0.0)
    assert est.max_batch_latency_s == pytest.approx(100e-6 + 24 * 10e-6)
    assert est.capacity_rps == pytest.approx(24 / (100e-6 + 24 * 10e-6))
    assert "batch 24 (not measured)" in est.detail


# -- the compiler with a profile --------------------------------------------------


@pytest.fixture
def demo(tmp_path, example_models) -> Path:
    """A tmp copy of specs/demo.infer and the models it names."""
    shutil.copy(DEMO, tmp_path / "demo.infer")
    (tmp_path / "models").mkdir()
    for name in ("fraud.onnx", "fraud-v4.onnx", "fraud-lite.onnx", "intent.onnx"):
        shutil.copy(example_models / name, tmp_path / "models" / name)
    return tmp_path / "demo.infer"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def slow_fraud_entry(spec: Path, **changes) -> profiles.Entry:
    """fraud-scorer@1 at 10 ms a lone request and 100 items/s at batch 32."""
    rows = [
        profiles.Row(
            batch_size=b,
            iterations=20,
            p50_s=0.010 + b * 0.0094,
            p99_s=0.012 + b * 0.0094,
            throughput_items_per_s=100.0 if b == 32 else b / (0.010 + b * 0.0094),
        )
        for b in profiling.batch_sizes(32)
    ]
    fields = {
        "source_sha256": sha(spec.parent / "models" / "fraud.onnx"),
        "rows": rows,
        "fit": profiling.fit_line(rows),
    }
    return entry(**{**fields, **changes})


def write_profile(spec: Path, *entries: profiles.Entry) -> None:
    profile = profiles.Profile(entries=list(entries))
    spec.with_name("demo.profile.json").write_text(profile.to_json())


def shard(compilation: Compilation, name: str, version: int = 1) -> plan.Shard:
    return compilation.plan.model(name, version).shards[0]


def test_check_slos_uses_a_matching_profile(demo):
    write_profile(demo, slow_fraud_entry(demo))
    compilation = Compilation.from_path(demo)
    est = shard(compilation, "fraud-scorer").estimate
    assert est.basis == "measured"
    assert est.single_latency_s == pytest.approx(0.010 + 0.0094)
    assert est.capacity_rps == pytest.approx(100.0)
    assert compilation.plan.model("fraud-scorer", 1).capacity.basis == "measured"
    # The other models have no entry: estimated, and no word about staleness.
    other = shard(compilation, "fraud-lite").estimate
    assert other.basis == "estimated" and "profile" not in other.detail

    by_code = {d.code.code: d for d in compilation.diagnostics}
    # 100 items/s × 2 replicas = 200 rps, under the 500 rps SLO.
    assert "measured capacity of 200 rps" in by_code["W0501"].message
    # 19.4 ms a lone request, above the p50 5ms SLO.
    assert "measured single-request latency 19.4ms" in by_code["W0502"].message


def test_the_plan_stays_deterministic_with_a_profile(demo):
    write_profile(demo, slow_fraud_entry(demo))
    first = Compilation.from_path(demo).plan.to_json()
    assert first == Compilation.from_path(demo).plan.to_json()
    assert "09:30" not in first  # the measuring time stays in the profile file


def test_a_stale_profile_is_not_used_silently(demo):
    write_profile(demo, slow_fraud_entry(demo, source_sha256="0" * 64))
    compilation = Compilation.from_path(demo)
    est = shard(compilation, "fraud-scorer").estimate
    assert est.basis == "estimated"
    assert est.detail.startswith(
        "profile stale: models/fraud.onnx changed since it was profiled (sha256 000000000000 then, "
    )
    assert ", using the estimate; " in est.detail
    assert compilation.plan.model("fraud-scorer", 1).capacity.basis == "estimated"


def test_a_stale_profile_is_a_note_on_the_warnings_it_affects(demo):
    # Threads changed: a target-wide reason, on a model whose p50 SLO the
    # estimate misses too once the SLO is tightened.
    text = demo.read_text().replace("slo    p50 5ms", "slo    p50 1us")
    demo.write_text(text)
    write_profile(demo, slow_fraud_entry(demo, threads=2))
    found = [d for d in Compilation.from_path(demo).diagnostics if d.code.code == "W0502"]
    assert "estimated single-request latency" in found[0].message
    assert any("profile stale: target `laptop` had threads 2" in n.message for n in found[0].notes)


def test_a_bad_profile_file_falls_back_to_estimates(demo):
    demo.with_name("demo.profile.json").write_text("{ half a file")
    compilation = Compilation.from_path(demo)
    assert not compilation.has_errors
    est = shard(compilation, "fraud-scorer").estimate
    assert est.basis == "estimated"
    assert est.detail.startswith("profile not used: demo.profile.json is not a profile: ")


def test_text_from_no_file_has_no_profile(demo):
    write_profile(demo, slow_fraud_entry(demo))
    compilation = Compilation(demo.read_text(), "<stdin>", demo.parent)
    assert shard(compilation, "fraud-scorer").estimate.basis == "estimated"


# -- the command line -------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", [["--iterations", "0"], ["--max-seconds", "-1"], ["--iterations", "x"]]
)
def test_profile_refuses_non_positive_budgets(capsys, bad):
    from inferplane.cli.main import run

    with pytest.raises(SystemExit) as exit_:
        run(["profile", "spec.infer", *bad])
    assert exit_.value.code == 1
    assert "infc: error: argument --" in capsys.readouterr().err


def test_profile_of_a_spec_with_errors_measures_nothing(tmp_path):
    import io

    from inferplane.cli.console import Console
    from inferplane.cli.main import run

    spec = tmp_path / "broken.infer"
    spec.write_text("target t {\n  hardware cpu\n}\n")
    console = Console(out=io.StringIO(), err=io.StringIO())
    assert run(["profile", str(spec)], console) == 1
    assert "E0204" in console.err.getvalue()
    assert not (tmp_path / "broken.profile.json").exists()


@pytest.mark.parametrize(
    ("rate", "text"),
    [
        (0.5, "0.5"),
        (950, "950"),
        (999.6, "1k"),
        (12_345, "12.3k"),
        (999_600, "1M"),
        (3.3e6, "3.3M"),
    ],
)
def test_counts_in_tables_round_across_prefixes(rate, text):
    assert profiling.format_count(rate) == text
