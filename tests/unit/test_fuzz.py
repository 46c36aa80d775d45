"""Property-based robustness: whatever the text, the compiler only ever reports.

Random edits of the example specs (deleted, inserted, duplicated and swapped
characters and lines) and random sentences of the grammar must give
diagnostics — located inside the file, with registered codes — and never an
exception. The formatter, given the same inputs, either refuses (syntax
errors) or returns text that is a fixed point and keeps the plan identical.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark

from inferplane.compiler.compilation import Compilation
from inferplane.compiler.diagnostics import CODES
from inferplane.compiler.fmt import format_text
from inferplane.compiler.parser import _lark

SPECS = Path(__file__).resolve().parents[2] / "specs"
EXAMPLES = {p.name: p.read_text() for p in sorted(SPECS.glob("*.infer"))}
FRAGMENTS = [
    "{",
    "}",
    "[",
    "]",
    ",",
    "..",
    '"',
    "#",
    "@",
    "%",
    "\n",
    " ",
    "\\",
    "$",
    "model",
    "target",
    "route",
    "gateway",
    "shard",
    "batch",
    "max",
    "window",
    "slo",
    "p99",
    "privacy",
    "redact",
    "in",
    "on-prem-only",
    "fp32[batch, 30]",
    "bytes[",
    "20ms",
    "5rps",
    "99.9%",
    "2..8",
    "-1",
    "0",
    "1e9",
    "cpu-fra",
    "fraud-scorer@3",
    "64MiB",
    '"models/fraud.onnx"',
    "hardware",
    "location",
    "onprem",
    "cloud",
]

settings.register_profile(
    "ci", deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci")


@st.composite
def edited_spec(draw) -> str:
    text = EXAMPLES[draw(st.sampled_from(sorted(EXAMPLES)))]
    for _ in range(draw(st.integers(1, 6))):
        lines = text.split("\n")
        action = draw(st.sampled_from(["delete", "insert", "dup_line", "swap", "drop_line"]))
        if action == "delete" and text:
            start = draw(st.integers(0, len(text) - 1))
            text = text[:start] + text[start + draw(st.integers(1, 12)) :]
        elif action == "insert":
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(st.sampled_from(FRAGMENTS)) + text[at:]
        elif action == "dup_line":
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            text = "\n".join(lines)
        elif action == "swap":
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
        elif action == "drop_line":
            del lines[draw(st.integers(0, len(lines) - 1))]
            text = "\n".join(lines)
    return text


def assert_only_reports(text: str) -> Compilation:
    compilation = Compilation(text, "fuzz.infer", SPECS)
    line_count = text.count("\n") + 1
    for d in compilation.diagnostics:
        assert d.code.code in CODES
        assert 1 <= d.span.line <= line_count + 1, d
        assert d.message
    if compilation.plan is None:
        assert compilation.has_errors
    return compilation


@pytest.mark.slow
@given(edited_spec())
def test_random_edits_only_ever_produce_diagnostics(example_models, text):
    assert_only_reports(text)


@pytest.mark.slow
@given(edited_spec())
def test_random_edits_format_to_a_fixed_point_or_are_refused(example_models, text):
    result = format_text(text)
    if result.text is None:
        assert any(d.code.code == "E0001" for d in result.diagnostics)
        return
    assert format_text(result.text).text == result.text
    before = Compilation(text, "fuzz.infer", SPECS)
    after = Compilation(result.text, "fuzz.infer", SPECS)
    if before.plan is not None:
        assert after.plan is not None and after.plan.to_json() == before.plan.to_json()


@pytest.mark.slow
@given(from_lark(_lark(), start="start"))
def test_sentences_of_the_grammar_never_crash_the_checker(text):
    assert_only_reports(text)
