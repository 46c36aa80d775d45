"""Every example spec compiles clean, and its plan JSON matches a golden file.

Model bytes (and so the artifacts' sha256 and the plan's content hash) may
differ in their last bits between machines, since the example models are
trained with the local BLAS; the golden comparison masks those two fields and
separate tests check them against the files. For the same reason, and because
the converter's version is part of its name, a built artifact's file name keeps
only its folder and precision (`.inferplane/cache/<masked>-int8-<masked>.onnx`),
and a measured agreement only its evaluation set, sample count and batch size:
the figures are checked apart, against the model files and the threshold.
Regenerate the golden files after an intended change with `UPDATE_GOLDEN=1 make test`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from inferplane.compiler.compilation import Compilation
from inferplane.compiler.diff import diff_plans
from inferplane.compiler.plan import load_plan
from inferplane.compiler.plan_schema import plan_schema_json

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "specs").glob("*.infer"))
GOLDEN = ROOT / "tests" / "golden"
_HASHES = re.compile(r'"(sha256|content_hash)": "(sha256:)?[0-9a-f]{64}"')
_BUILT = re.compile(r'"\.inferplane/cache/[0-9a-f]{16}-(int8|fp16)-[^"/]+\.onnx"')
_MEASURED = re.compile(r'"(top1_agreement|max_abs_diff)": [0-9.e+-]+')


def masked(plan_json: str) -> str:
    plan_json = _HASHES.sub(lambda m: f'"{m.group(1)}": "<masked>"', plan_json)
    plan_json = _BUILT.sub(
        lambda m: f'".inferplane/cache/<masked>-{m.group(1)}-<masked>.onnx"', plan_json
    )
    return _MEASURED.sub(lambda m: f'"{m.group(1)}": "<masked>"', plan_json)


def test_there_are_examples_for_every_use_case():
    names = {p.stem for p in EXAMPLES}
    assert {"demo", "payments", "retail", "imaging", "fraud", "support", "edge"} <= names


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda p: p.stem)
def test_example_compiles_without_errors(spec: Path, example_models: Path):
    compilation = Compilation.from_path(spec, use_profiles=False)
    errors = [d for d in compilation.diagnostics if d.is_error]
    assert not errors, "\n".join(f"{d.span.line}: {d.code.code} {d.message}" for d in errors)
    assert compilation.plan is not None


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda p: p.stem)
def test_example_plan_matches_golden(spec: Path, example_models: Path):
    plan_json = Compilation.from_path(spec, use_profiles=False).plan.to_json()
    golden = GOLDEN / f"{spec.stem}.plan.json"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(plan_json)
    assert golden.exists(), f"no golden plan for {spec.name}: run UPDATE_GOLDEN=1 make test"
    assert masked(plan_json) == masked(golden.read_text())


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda p: p.stem)
def test_plan_json_is_deterministic_and_round_trips(spec: Path, example_models: Path):
    first = Compilation.from_path(spec, use_profiles=False).plan.to_json()
    second = Compilation.from_path(spec, use_profiles=False).plan.to_json()
    assert first == second
    assert load_plan(first).to_json() == first


def test_masking_keeps_what_does_not_vary():
    text = (
        '"path": ".inferplane/cache/0123456789abcdef-int8-pc7-ort1.32.0.onnx",\n'
        '"top1_agreement": 0.976667, "max_abs_diff": 7.8e-05, "samples": 1500'
    )
    assert masked(text) == (
        '"path": ".inferplane/cache/<masked>-int8-<masked>.onnx",\n'
        '"top1_agreement": "<masked>", "max_abs_diff": "<masked>", "samples": 1500'
    )


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda p: p.stem)
def test_artifact_hashes_and_content_hash_are_real(spec: Path, example_models: Path):
    plan = Compilation.from_path(spec, use_profiles=False).plan
    for model in plan.models:
        for file in (model.source, model.artifact):
            data = (spec.parent / file.path).read_bytes()
            assert file.sha256 == hashlib.sha256(data).hexdigest()
        if model.precision in ("fp32", "bf16"):
            assert model.artifact == model.source
        else:
            assert model.artifact.path.startswith(".inferplane/cache/")
            assert model.artifact.path.split("/")[-1].startswith(model.source.sha256[:16])
    assert plan.with_hash().content_hash == plan.content_hash
    body = json.loads(plan.to_json())
    body["content_hash"] = ""
    digest = hashlib.sha256((json.dumps(body, indent=2) + "\n").encode()).hexdigest()
    assert plan.content_hash == f"sha256:{digest}"


def test_measured_agreements_are_real(example_models: Path):
    """fraud's int8 agrees on every held-out sample; recs's is below 99% (the spec says why)."""
    plans = {
        name: Compilation.from_path(ROOT / "specs" / f"{name}.infer")
        for name in ("fraud", "retail")
    }
    fraud = plans["fraud"].plan.model("fraud-scorer", 3).agreement
    assert (fraud.eval, fraud.samples, fraud.batch_size) == ("models/fraud-eval.npz", 143, 64)
    assert fraud.top1_agreement >= 0.99 and 0 < fraud.max_abs_diff < 0.1
    warned = {
        d.message.split("`")[1] for d in plans["retail"].diagnostics if d.code.code == "W0504"
    }
    for name, version in (("recs", 7), ("recs-lite", 1)):
        agreement = plans["retail"].plan.model(name, version).agreement
        assert agreement.samples == 1500 and agreement.batch_size == 256
        assert 0.9 < agreement.top1_agreement < 0.99
        assert f"{name}@{version}" in warned


def test_published_schema_matches_the_plan_models():
    published = (ROOT / "docs" / "plan.schema.json").read_text()
    assert published == plan_schema_json(), "docs/plan.schema.json is stale: run `make schema`"


def test_plans_from_before_built_artifacts_still_load(example_models: Path):
    """Such a plan has no `source` (its artifact was the source) and no `agreement`."""
    body = json.loads((GOLDEN / "fraud.plan.json").read_text())
    for model in body["models"]:
        model["artifact"] = model.pop("source")
        del model["agreement"]
    old = load_plan(json.dumps(body))
    assert all(m.source == m.artifact and m.agreement is None for m in old.models)
    new = Compilation.from_path(ROOT / "specs" / "fraud.infer").plan
    (change,) = diff_plans(old, new).changes
    assert (change.key, {f.path.split(".")[0] for f in change.fields}) == (
        "fraud-scorer@3",
        {"artifact", "agreement"},
    )


def test_content_hash_changes_with_meaning_not_comments(example_models: Path, tmp_path: Path):
    source = (ROOT / "specs" / "demo.infer").read_text()
    base = Compilation(source, "demo.infer", ROOT / "specs").plan
    commented = Compilation("# a new comment\n" + source, "demo.infer", ROOT / "specs").plan
    assert commented.content_hash == base.content_hash
    changed_text = source.replace("window 2ms", "window 3ms")
    assert changed_text != source, "demo.infer no longer has `window 2ms`; update this test"
    changed = Compilation(changed_text, "demo.infer", ROOT / "specs").plan
    assert changed.content_hash != base.content_hash
