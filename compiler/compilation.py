"""The compiler's front door: one spec through parse → build → passes → plan.

`PASSES` is the explicit, ordered tuple of checks; each is a pure function
`(unit, diagnostics) -> unit`. `Compilation` runs them once, on first use,
and keeps the results for the CLI. Diagnostics are collected, never raised.
"""

from __future__ import annotations

import functools
from pathlib import Path

from inferplane.compiler import diagnostics as codes
from inferplane.compiler.diagnostics import Diagnostic, Diagnostics
from inferplane.compiler.parser import parse
from inferplane.compiler.passes.build_ast import build_ast
from inferplane.compiler.passes.check_hardware import check_hardware
from inferplane.compiler.passes.check_models import check_models
from inferplane.compiler.passes.check_privacy import check_privacy
from inferplane.compiler.passes.check_slos import check_slos
from inferplane.compiler.passes.check_values import check_values
from inferplane.compiler.passes.lower import lower
from inferplane.compiler.passes.prepare_artifacts import prepare_artifacts
from inferplane.compiler.passes.resolve_names import resolve_names
from inferplane.compiler.plan import Plan
from inferplane.compiler.syntax import SyntaxFile
from inferplane.compiler.unit import Unit

PASSES = (
    resolve_names,
    check_values,
    check_privacy,
    check_hardware,
    check_models,
    prepare_artifacts,
    check_slos,
    lower,
)


# Checks whose findings a syntax error inside the same definition explains:
# the missing field or tensor is most likely on the line that did not parse.
_ECHO_CODES = frozenset({codes.MISSING_FIELD.code, codes.SIGNATURE.code})


def _without_echoes(found: list[Diagnostic], syntax: SyntaxFile) -> list[Diagnostic]:
    """Drop what only repeats a syntax error.

    A line with a syntax error gets that error alone, and a definition that
    holds one gets no missing-field (E0204) or signature (E0403) findings.
    """
    broken = [d.span for d in found if d.code is codes.SYNTAX]
    if not broken:
        return found
    lines = {span.line for span in broken}
    broken_definitions = [
        stmt.span
        for stmt in syntax.statements
        if any(stmt.span.line <= s.line <= stmt.span.end_line for s in broken)
    ]

    def is_echo(d: Diagnostic) -> bool:
        if d.code is codes.SYNTAX:
            return False
        if d.span.line in lines:
            return True
        return d.code.code in _ECHO_CODES and any(
            span.line <= d.span.line <= span.end_line for span in broken_definitions
        )

    return [d for d in found if not is_echo(d)]


class Compilation:
    """Compiles one spec's text; `file` names it in messages, `base_dir` anchors sources."""

    def __init__(
        self,
        text: str,
        file: str = "<spec>",
        base_dir: Path | None = None,
        *,
        use_profiles: bool = True,
    ):
        self.text = text
        self.file = file
        self.base_dir = base_dir if base_dir is not None else Path.cwd()
        self.use_profiles = use_profiles

    @classmethod
    def from_path(cls, path: Path | str, *, use_profiles: bool = True) -> Compilation:
        path = Path(path)
        return cls(
            path.read_text(encoding="utf-8"),
            str(path),
            path.resolve().parent,
            use_profiles=use_profiles,
        )

    @functools.cached_property
    def _result(self) -> tuple[Unit, Diagnostics]:
        out = Diagnostics(self.file)
        syntax = parse(self.text, out)
        unit = Unit(self.file, self.base_dir, syntax, build_ast(syntax, out), self.use_profiles)
        for compiler_pass in PASSES:
            unit = compiler_pass(unit, out)
        out.items = _without_echoes(out.items, syntax)
        return unit, out

    @property
    def unit(self) -> Unit:
        return self._result[0]

    @property
    def diagnostics(self) -> list[Diagnostic]:
        return self._result[1].sorted()

    @property
    def has_errors(self) -> bool:
        return self._result[1].has_errors

    @property
    def plan(self) -> Plan | None:
        """The routing plan, or None when the spec has errors."""
        return self.unit.plan
