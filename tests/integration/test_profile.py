"""`infc profile` end to end: measure a tmp copy of specs/demo.infer, then plan with it.

Runs the installed `infc` as a subprocess, as a user would, with few
iterations so that each run takes a few seconds at most.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INFC = Path(sys.executable).with_name("infc")
QUICK = ["--iterations", "20", "--max-seconds", "0.1"]
DEMO_MODELS = ("fraud.onnx", "fraud-v4.onnx", "fraud-lite.onnx", "intent.onnx")
GPU_TARGET = """
target gpu-box {
  hardware    gpu
  accelerator "T4"
  location    onprem "localhost"
}
"""


def infc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(INFC), "--color", "never", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


@pytest.fixture
def demo(tmp_path, example_models) -> Path:
    """A tmp copy of specs/demo.infer and its models: no profile ever lands in specs/."""
    shutil.copy(ROOT / "specs" / "demo.infer", tmp_path / "demo.infer")
    (tmp_path / "models").mkdir()
    for name in DEMO_MODELS:
        shutil.copy(example_models / name, tmp_path / "models" / name)
    return tmp_path / "demo.infer"


def shards(plan_json: str) -> dict[tuple[str, int, str], dict]:
    plan = json.loads(plan_json)
    return {
        (m["name"], m["version"], s["target"]): s["estimate"]
        for m in plan["models"]
        for s in m["shards"]
    }


def test_profile_then_plan_shows_measured_figures(demo):
    before = infc("plan", str(demo), "--json")
    assert before.returncode == 0, before.stderr
    assert {e["basis"] for e in shards(before.stdout).values()} == {"estimated"}

    done = infc("profile", str(demo), *QUICK)
    assert done.returncode == 0, done.stderr
    profile = demo.with_name("demo.profile.json")
    assert f"wrote {profile}" in done.stdout
    header = done.stdout.splitlines()[0].split()
    assert header == ["model", "target", "batch", "p50", "p99", "throughput"]
    assert "support-intent@1" in done.stdout

    written = json.loads(profile.read_text())
    entries = {(e["model"], e["version"]): e for e in written["entries"]}
    assert set(entries) == {("fraud-scorer", 1), ("fraud-scorer", 2), ("fraud-lite", 1),
                            ("support-intent", 1)}  # fmt: skip
    assert [r["batch_size"] for r in entries[("fraud-lite", 1)]["rows"]] == [1, 2, 4, 8, 16, 32, 64]
    assert [r["batch_size"] for r in entries[("support-intent", 1)]["rows"]] == [1, 2, 4, 8, 16]

    after = infc("plan", str(demo), "--json")
    assert after.returncode == 0, after.stderr
    measured = shards(after.stdout)
    assert {e["basis"] for e in measured.values()} == {"measured"}
    fraud = measured[("fraud-scorer", 1, "laptop")]
    row = entries[("fraud-scorer", 1)]["rows"]
    assert fraud["single_latency_s"] == row[0]["p50_s"]
    assert fraud["capacity_rps"] == row[-1]["throughput_items_per_s"]
    assert fraud["detail"].startswith("profiled on ")
    assert written["entries"][0]["measured_at"] not in after.stdout

    review = infc("plan", str(demo))
    assert "measured by infc profile — laptop: profiled on" in review.stdout


def test_profiling_again_merges_and_a_changed_model_goes_stale(demo):
    assert infc("profile", str(demo), "--target", "laptop", *QUICK).returncode == 0
    profile = demo.with_name("demo.profile.json")
    body = json.loads(profile.read_text())
    # An entry from another spec version or host: profiling again keeps it.
    body["entries"].append({**body["entries"][0], "model": "retired-model"})
    profile.write_text(json.dumps(body))
    assert infc("profile", str(demo), *QUICK).returncode == 0
    again = json.loads(profile.read_text())["entries"]
    assert sorted(e["model"] for e in again) == [
        "fraud-lite", "fraud-scorer", "fraud-scorer", "retired-model", "support-intent"
    ]  # fmt: skip

    # A new model file under the same name: its entry is stale, not used.
    shutil.copy(demo.parent / "models" / "fraud-v4.onnx", demo.parent / "models" / "fraud.onnx")
    planned = shards(infc("plan", str(demo), "--json").stdout)
    assert planned[("fraud-scorer", 1, "laptop")]["basis"] == "estimated"
    assert planned[("fraud-scorer", 1, "laptop")]["detail"].startswith(
        "profile stale: models/fraud.onnx changed since it was profiled"
    )
    assert planned[("fraud-scorer", 2, "laptop")]["basis"] == "measured"


def test_unknown_target_and_bad_profile_are_refused(demo):
    wrong = infc("profile", str(demo), "--target", "nowhere", *QUICK)
    assert wrong.returncode == 1
    assert "no target `nowhere` in demo.infer (it has `laptop`)" in wrong.stderr

    demo.with_name("demo.profile.json").write_text("{ not a profile")
    bad = infc("profile", str(demo), *QUICK)
    assert bad.returncode == 1
    assert "demo.profile.json is not a profile" in bad.stderr


def test_gpu_target_without_a_gpu_is_skipped_or_measured_on_the_cpu_only_by_opt_in(demo):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this host has a GPU build of onnxruntime")
    text = demo.read_text().replace("model fraud-lite {", GPU_TARGET + "\nmodel fraud-lite {")
    text = text.replace(
        "  shard  laptop\n  batch  max 64 window 1ms", "  shard  gpu-box\n  batch  max 4 window 1ms"
    )
    demo.write_text(text)

    skipped = infc("profile", str(demo), "--target", "gpu-box", *QUICK)
    assert skipped.returncode == 1
    assert "skipped target `gpu-box`" in skipped.stderr
    assert "--cpu-fallback" in skipped.stderr

    fallback = infc("profile", str(demo), "--target", "gpu-box", "--cpu-fallback", *QUICK)
    assert fallback.returncode == 0, fallback.stderr
    assert "gpu-box (cpu fallback)" in fallback.stdout
    entry = json.loads(demo.with_name("demo.profile.json").read_text())["entries"][0]
    assert entry["cpu_fallback"] is True

    planned = shards(infc("plan", str(demo), "--json").stdout)[("fraud-lite", 1, "gpu-box")]
    assert planned["basis"] == "estimated"
    assert planned["detail"].startswith(
        "profile stale: measured on the CPU with --cpu-fallback, not on gpu, using the estimate"
    )
