"""Negative specs: each offending line carries the codes it must produce.

A spec under tests/data/negative/ marks a line with a trailing comment such as
`# E0301` (several codes separated by spaces). The test demands exactly
those (line, code) pairs: nothing missing, nothing extra, so a cascade of
follow-on errors fails it as surely as a missed error does.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from inferplane.compiler.compilation import Compilation
from inferplane.compiler.diagnostics import CODES
from inferplane.compiler.render import render_human, to_json

NEGATIVE = Path(__file__).resolve().parent.parent / "data" / "negative"
SPECS = sorted(NEGATIVE.glob("*.infer"))
_EXPECTATION = re.compile(r"#\s*((?:[EW]\d{4}\s*)+)$")


def expected_codes(text: str) -> set[tuple[int, str]]:
    found = set()
    for number, line in enumerate(text.splitlines(), start=1):
        match = _EXPECTATION.search(line)
        if match:
            found |= {(number, code) for code in match.group(1).split()}
    return found


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_negative_spec_reports_exactly_the_marked_codes(path: Path, example_models: Path):
    compilation = Compilation.from_path(path)
    actual = {(d.span.line, d.code.code) for d in compilation.diagnostics}
    expected = expected_codes(path.read_text())
    assert expected, f"{path.name} marks no expected diagnostics"
    missing = sorted(expected - actual)
    extra = sorted(actual - expected)
    details = "\n".join(
        f"  {d.span.line}:{d.span.column} {d.code.code} {d.message}"
        for d in compilation.diagnostics
    )
    assert not missing and not extra, f"missing {missing}, extra {extra}\n{details}"


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_every_diagnostic_renders(path: Path, example_models: Path):
    compilation = Compilation.from_path(path)
    human = render_human(compilation.diagnostics, compilation.text)
    assert human.count("-->") >= len(compilation.diagnostics)
    assert to_json(compilation.diagnostics).startswith("[")


def test_every_code_is_exercised_by_a_negative_spec():
    covered = set()
    for path in SPECS:
        covered |= {code for _, code in expected_codes(path.read_text())}
    assert covered == set(CODES), f"not covered: {sorted(set(CODES) - covered)}"
