"""Every example spec compiles clean, and its plan JSON matches a golden file.

Model bytes (and so the artifacts' sha256 and the plan's content hash) may
differ in their last bits between machines, since the example models are
trained with the local BLAS; the golden comparison masks those two fields and
separate tests check them against the files. Regenerate the golden files
after an intended change with `UPDATE_GOLDEN=1 make test`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from inferplane.compiler.compilation import Compilation
from inferplane.compiler.plan import load_plan

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "specs").glob("*.infer"))
GOLDEN = ROOT / "tests" / "golden"
_HASHES = re.compile(r'"(sha256|content_hash)": "(sha256:)?[0-9a-f]{64}"')


def masked(plan_json: str) -> str:
    return _HASHES.sub(lambda m: f'"{m.group(1)}": "<masked>"', plan_json)


def test_there_are_examples_for_every_use_case():
    names = {p.stem for p in EXAMPLES}
    assert {"demo", "payments", "retail", "imaging", "fraud", "support", "edge"} <= names


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda p: p.stem)
def test_example_compiles_without_errors(spec: Path, example_models: Path):
    compilation = Compilation.from_path(spec)
    errors = [d for d in compilation.diagnostics if d.is_error]
    assert not errors, "\n".join(f"{d.span.line}: {d.code.code} {d.message}" for d in errors)
    assert compilation.plan is not None


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda p: p.stem)
def test_example_plan_matches_golden(spec: Path, example_models: Path):
    plan_json = Compilation.from_path(spec).plan.to_json()
    golden = GOLDEN / f"{spec.stem}.plan.json"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(plan_json)
    assert golden.exists(), f"no golden plan for {spec.name}: run UPDATE_GOLDEN=1 make test"
    assert masked(plan_json) == masked(golden.read_text())


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda p: p.stem)
def test_plan_json_is_deterministic_and_round_trips(spec: Path, example_models: Path):
    first = Compilation.from_path(spec).plan.to_json()
    second = Compilation.from_path(spec).plan.to_json()
    assert first == second
    assert load_plan(first).to_json() == first


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda p: p.stem)
def test_artifact_hashes_and_content_hash_are_real(spec: Path, example_models: Path):
    plan = Compilation.from_path(spec).plan
    for model in plan.models:
        data = (spec.parent / model.artifact.path).read_bytes()
        assert model.artifact.sha256 == hashlib.sha256(data).hexdigest()
    assert plan.with_hash().content_hash == plan.content_hash
    body = json.loads(plan.to_json())
    body["content_hash"] = ""
    digest = hashlib.sha256((json.dumps(body, indent=2) + "\n").encode()).hexdigest()
    assert plan.content_hash == f"sha256:{digest}"


def test_content_hash_changes_with_meaning_not_comments(example_models: Path, tmp_path: Path):
    source = (ROOT / "specs" / "demo.infer").read_text()
    base = Compilation(source, "demo.infer", ROOT / "specs").plan
    commented = Compilation("# a new comment\n" + source, "demo.infer", ROOT / "specs").plan
    assert commented.content_hash == base.content_hash
    changed_text = source.replace("window 2ms", "window 3ms")
    assert changed_text != source, "demo.infer no longer has `window 2ms`; update this test"
    changed = Compilation(changed_text, "demo.infer", ROOT / "specs").plan
    assert changed.content_hash != base.content_hash
