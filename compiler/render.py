"""Diagnostics for people (rustc-style, with carets) and for tools (JSON).

The human form quotes the source line under a gutter, underlines the span
with carets and its label, then lists notes and a help line:

    error[E0301]: model `recs` is on-prem-only but is sharded on cloud target `tpu-us`
      --> payments.infer:54:10
       |
    54 |   shard  tpu-us  weight 1
       |          ^^^^^^ located cloud "gcp:us-central1"
       |
    note: on-prem-only is declared here
      --> payments.infer:55:3
       = help: shard it on an `onprem` target, or drop `privacy on-prem-only`
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from inferplane.compiler.diagnostics import Diagnostic, Severity
from inferplane.compiler.spans import Span

_RESET = "\033[0m"
_COLOURS = {
    Severity.ERROR: "\033[1;31m",
    Severity.WARNING: "\033[1;33m",
    "note": "\033[1;32m",
    "help": "\033[1;36m",
    "gutter": "\033[1;34m",
    "bold": "\033[1m",
}


class _Paint:
    def __init__(self, colour: bool):
        self.colour = colour

    def __call__(self, key: object, text: str) -> str:
        return f"{_COLOURS[key]}{text}{_RESET}" if self.colour else text


def render_human(diagnostics: Sequence[Diagnostic], text: str, colour: bool = False) -> str:
    """Every diagnostic, rendered against the spec's `text`."""
    lines = text.splitlines()
    return "".join(_one(d, lines, _Paint(colour)) + "\n\n" for d in diagnostics)


def _where(file: str, span: Span) -> str:
    return f"{file}:{span.line}:{span.column}"


def _one(d: Diagnostic, lines: list[str], paint: _Paint) -> str:
    severity = d.severity
    head = paint(severity, f"{severity.value}[{d.code.code}]") + paint("bold", f": {d.message}")
    width = len(str(d.span.line)) if d.span.line else 1
    pad = " " * width
    out = [head, f"{pad}{paint('gutter', '-->')} {_where(d.file, d.span)}"]
    if 0 < d.span.line <= len(lines) + 1:
        source = lines[d.span.line - 1] if d.span.line <= len(lines) else ""
        start = max(d.span.column, 1)
        end = d.span.end_column if d.span.end_line == d.span.line else len(source) + 1
        carets = "^" * max(end - start, 1)
        underline = " " * (start - 1) + paint(severity, carets)
        if d.label:
            underline += " " + paint(severity, d.label)
        bar = paint("gutter", "|")
        out += [
            f"{pad} {bar}",
            f"{paint('gutter', str(d.span.line).rjust(width))} {bar} {source.expandtabs(1)}",
            f"{pad} {bar} {underline}",
            f"{pad} {bar}",
        ]
    for note in d.notes:
        out.append(f"{paint('note', 'note')}: {note.message}")
        if note.span is not None:
            out.append(f"{pad}{paint('gutter', '-->')} {_where(d.file, note.span)}")
    if d.help:
        out.append(f"{pad} {paint('gutter', '=')} {paint('help', 'help')}: {d.help}")
    return "\n".join(out)


def _span_fields(span: Span) -> dict[str, int]:
    return {
        "line": span.line,
        "column": span.column,
        "end_line": span.end_line,
        "end_column": span.end_column,
    }


def to_json(diagnostics: Sequence[Diagnostic]) -> str:
    """A JSON list of objects with the contract's keys (plus `label` and `help`)."""
    records = []
    for d in diagnostics:
        records.append(
            {
                "severity": d.severity.value,
                "code": d.code.code,
                "message": d.message,
                "file": d.file,
                **_span_fields(d.span),
                "notes": [
                    {
                        "message": n.message,
                        "file": d.file,
                        **(_span_fields(n.span) if n.span else {}),
                    }
                    for n in d.notes
                ],
                "label": d.label,
                "help": d.help,
            }
        )
    return json.dumps(records, indent=2, ensure_ascii=False) + "\n"


def summary(file: str, diagnostics: Sequence[Diagnostic]) -> str:
    """`payments.infer: 2 errors, 1 warning` or `payments.infer: ok`."""
    errors = sum(1 for d in diagnostics if d.is_error)
    warnings = len(diagnostics) - errors
    parts = []
    if errors:
        parts.append(f"{errors} error{'s' if errors != 1 else ''}")
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    return f"{file}: {', '.join(parts) if parts else 'ok'}"
