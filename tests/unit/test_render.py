"""Rendering diagnostics: the contract's human layout, colour, and JSON."""

from __future__ import annotations

import json

from inferplane.compiler import diagnostics as codes
from inferplane.compiler.diagnostics import Diagnostic, Note
from inferplane.compiler.render import render_human, summary, to_json
from inferplane.compiler.spans import Span

SOURCE = "\n" * 53 + "  shard  tpu-us  weight 1\n  privacy on-prem-only\n"


def example() -> Diagnostic:
    return Diagnostic(
        codes.OFF_PREM_SHARD,
        "model `recs` is on-prem-only but is sharded on cloud target `tpu-us`",
        Span(54, 10, 54, 16),
        "payments.infer",
        label='located cloud "gcp:us-central1"',
        notes=(Note("on-prem-only is declared here", Span(55, 3, 55, 23)),),
        help="shard it on an `onprem` target",
    )


def test_human_layout_matches_the_contract():
    assert render_human([example()], SOURCE) == (
        "error[E0301]: model `recs` is on-prem-only but is sharded on cloud target `tpu-us`\n"
        "  --> payments.infer:54:10\n"
        "   |\n"
        "54 |   shard  tpu-us  weight 1\n"
        '   |          ^^^^^^ located cloud "gcp:us-central1"\n'
        "   |\n"
        "note: on-prem-only is declared here\n"
        "  --> payments.infer:55:3\n"
        "   = help: shard it on an `onprem` target\n"
        "\n"
    )


def test_colour_only_when_asked():
    plain = render_human([example()], SOURCE, colour=False)
    painted = render_human([example()], SOURCE, colour=True)
    assert "\033[" not in plain
    assert painted.startswith("\033[1;31merror[E0301]")
    assert "\033[1;31m^^^^^^" in painted


def test_a_span_past_the_last_line_still_renders():
    d = Diagnostic(codes.SYNTAX, "unexpected end of file", Span(3, 1, 3, 1), "x.infer")
    text = render_human([d], "a {\n  b\n")
    assert "--> x.infer:3:1" in text and "^" in text


def test_json_has_the_contract_keys_and_notes_locations():
    (record,) = json.loads(to_json([example()]))
    assert record["severity"] == "error" and record["code"] == "E0301"
    assert (record["line"], record["column"], record["end_line"], record["end_column"]) == (
        54,
        10,
        54,
        16,
    )
    assert record["notes"] == [
        {
            "message": "on-prem-only is declared here",
            "file": "payments.infer",
            "line": 55,
            "column": 3,
            "end_line": 55,
            "end_column": 23,
        }
    ]
    assert record["label"].startswith("located cloud")


def test_summary_counts_errors_and_warnings():
    warning = Diagnostic(codes.OVER_CAPACITY, "w", Span(1, 1, 1, 2), "a.infer")
    assert summary("a.infer", []) == "a.infer: ok"
    assert summary("a.infer", [example(), warning, warning]) == "a.infer: 1 error, 2 warnings"


def test_rates_and_durations_read_well_at_unit_edges():
    from inferplane.compiler.units import format_duration, format_rate

    assert [format_rate(v) for v in (500, 12_345, 99_960, 999_600, 1_234_567)] == [
        "500 rps",
        "12.3k rps",
        "100k rps",
        "1M rps",
        "1.23M rps",
    ]
    assert [format_duration(v) for v in (0, 150e-6, 999.96e-6, 2e-3, 0.9996, 1.5)] == [
        "0ms",
        "150us",
        "1ms",
        "2ms",
        "1s",
        "1.5s",
    ]
