"""Reading statements into typed values: the helpers every `build_ast` reader shares.

A reader method either returns a typed value or reports an E0201 (wrong kind
or unit) and raises `Skip`, which drops that one field; `read`, `one` and
`many` catch it so that one bad field never hides the others.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from inferplane.compiler import ast, schema, units
from inferplane.compiler import diagnostics as codes
from inferplane.compiler.diagnostics import Diagnostics, Note
from inferplane.compiler.spans import Span
from inferplane.compiler.suggest import did_you_mean, one_of
from inferplane.compiler.syntax import (
    Block,
    ListValue,
    Number,
    Quantity,
    Range,
    Ref,
    Statement,
    String,
    TensorType,
    Value,
    Word,
)

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})\Z")


def is_address(text: str) -> bool:
    """HOST:PORT or unix:PATH: the language's ADDRESS (docs/language.md), which the
    CLI's address options take too."""
    return HOST_PORT.match(text) is not None or (text.startswith("unix:") and len(text) > 5)


def describe(value: Value) -> str:
    kind = {
        Word: "name",
        Ref: "model reference",
        String: "string",
        Number: "number",
        Quantity: "quantity",
        Range: "range",
        ListValue: "list",
        TensorType: "tensor type",
    }[type(value)]
    return f"{kind} `{value.raw}`"


class Skip(Exception):
    """A field that could not be read; its diagnostic is already reported."""


class FieldReader:
    """Typed reads of statement values, reporting E0201, E0204 and E0205."""

    def __init__(self, diagnostics: Diagnostics):
        self.out = diagnostics

    # ---- helpers --------------------------------------------------------------

    def wrong(self, span: Span, message: str, *, label: str = "", help: str = "") -> Skip:
        self.out.add(codes.WRONG_KIND, message, span, label=label, help=help)
        return Skip()

    def fields(
        self, block: Block | None, kind: str, owner: str, header: Span
    ) -> dict[str, list[Statement]]:
        """The block's statements grouped by key; unknown and repeated keys reported."""
        grouped: dict[str, list[Statement]] = {}
        for stmt in block.statements if block else ():
            key = stmt.key
            if isinstance(key, Ref) or key.text not in schema.FIELDS[kind]:
                self.unknown_field(stmt, kind, owner)
                continue
            seen = grouped.setdefault(key.text, [])
            if seen and key.text not in schema.REPEATABLE:
                self.out.add(
                    codes.REPEATED_FIELD,
                    f"`{key.text}` is given more than once in {owner}",
                    key.span,
                    label="given again here",
                    notes=[Note("first given here", seen[0].key.span)],
                    help="keep one of them",
                )
                continue
            seen.append(stmt)
        for required in schema.REQUIRED.get(kind, ()):
            if required not in grouped:
                self.out.add(
                    codes.MISSING_FIELD,
                    f"{owner} has no `{required}`",
                    header,
                    label=f"`{required}` is required",
                    help=REQUIRED_HELP[required],
                )
        return grouped

    def unknown_field(self, stmt: Statement, kind: str, owner: str) -> None:
        key = stmt.key
        help_text = ""
        if isinstance(key, Word):
            help_text = did_you_mean(key.text, schema.FIELDS[kind])
            if key.text in schema.DEFINITIONS and stmt.block is not None:
                help_text = f"is a `}}` missing before this `{key.text}`?"
        if not help_text:
            help_text = f"the fields of a {kind} are {one_of(schema.FIELDS[kind])}"
        self.wrong(key.span, f"unknown field `{key.raw}` in {owner}", help=help_text)

    def values(self, stmt: Statement, count: int, shape: str) -> tuple[Value, ...]:
        """Exactly `count` values and no block, else E0201 with the expected shape."""
        if stmt.block is not None:
            raise self.wrong(
                stmt.block.span, f"`{stmt.key.raw}` takes no block", help=f"write `{shape}`"
            )
        if len(stmt.values) < count:
            raise self.wrong(
                stmt.span, f"`{stmt.key.raw}` needs a value: `{shape}`", label="incomplete"
            )
        if len(stmt.values) > count:
            extra = stmt.values[count]
            raise self.wrong(
                extra.span,
                f"unexpected {describe(extra)} in `{stmt.key.raw}`",
                help=f"write `{shape}`",
            )
        return stmt.values

    def string(self, value: Value, what: str) -> ast.Spanned[str]:
        if not isinstance(value, String):
            raise self.wrong(
                value.span,
                f"{what} must be a string, not {describe(value)}",
                help=f'quote it: "{value.raw}"' if isinstance(value, Word) else "",
            )
        return ast.Spanned(value.value, value.span)

    def integer(self, value: Value, what: str) -> ast.Spanned[int]:
        if isinstance(value, Number) and value.is_integer:
            return ast.Spanned(int(value.value), value.span)
        help_text = "a whole number such as `4`"
        if isinstance(value, Quantity):
            help_text = f"drop the unit: `{value.raw.removesuffix(value.unit)}`"
        raise self.wrong(
            value.span, f"{what} must be a whole number, not {describe(value)}", help=help_text
        )

    def choice(self, value: Value, options: Sequence[str], what: str) -> ast.Spanned[str]:
        if isinstance(value, Word) and value.text in options:
            return ast.Spanned(value.text, value.span)
        word = value.raw
        help_text = did_you_mean(word, options) or f"use {one_of(options)}"
        raise self.wrong(
            value.span,
            f"unknown {what} `{word}`",
            label=f"expected {one_of(options)}",
            help=help_text,
        )

    def quantity(self, value: Value, kind: str, what: str) -> ast.Spanned[float]:
        table = units.KIND_OF_UNITS[kind]
        valid = one_of(table)
        if isinstance(value, Quantity) and value.unit in table:
            return ast.Spanned(value.number * table[value.unit], value.span)
        if isinstance(value, Quantity):
            found = "unknown unit" if value.unit not in units.ALL_UNITS else "unit"
            raise self.wrong(
                value.span,
                f"{what} takes a {kind}, but `{value.raw}` has {found} `{value.unit}`",
                label=f"expected a {kind}",
                help=f"the units of a {kind} are {valid}",
            )
        if isinstance(value, Number):
            example = next(iter(table))
            raise self.wrong(
                value.span,
                f"{what} needs a unit: a {kind} in {valid}",
                help=f"write it glued to its unit: `{value.raw}{example}`",
            )
        raise self.wrong(
            value.span,
            f"{what} takes a {kind}, not {describe(value)}",
            help=f"the units of a {kind} are {valid}",
        )

    def name(self, value: Value, what: str) -> ast.Spanned[str]:
        if not isinstance(value, Word):
            raise self.wrong(value.span, f"{what} must be a name, not {describe(value)}")
        return ast.Spanned(value.text, value.span)

    def address(self, value: Value, what: str) -> ast.Spanned[str]:
        text = self.string(value, what)
        if not is_address(text.value):
            raise self.wrong(
                value.span,
                f"{what} `{text.value}` is not HOST:PORT",
                help='write it as "127.0.0.1:8001" or "unix:/path/to.sock"',
            )
        return text

    def read(self, read: Callable[[], object]) -> object | None:
        try:
            return read()
        except Skip:
            return None

    def one(
        self, grouped: dict[str, list[Statement]], key: str, read: Callable[[Statement], object]
    ) -> object | None:
        stmts = grouped.get(key)
        return self.read(lambda: read(stmts[0])) if stmts else None

    def many(
        self, grouped: dict[str, list[Statement]], key: str, read: Callable[[Statement], object]
    ) -> list:
        found = (self.read(lambda s=s: read(s)) for s in grouped.get(key, ()))
        return [item for item in found if item is not None]

    def header(self, stmt: Statement) -> Span:
        last = stmt.values[-1].span if stmt.values else stmt.key.span
        return stmt.key.span.to(last)


REQUIRED_HELP = {
    "hardware": "add `hardware cpu`, `hardware gpu` or `hardware tpu`",
    "location": 'add `location onprem "SITE"` (or cloud, edge)',
    "source": 'add `source "models/NAME.onnx"` (relative to this file)',
    "input": "add `input NAME DTYPE[DIMS]`, e.g. `input features fp32[batch, 30]`",
    "output": "add `output NAME DTYPE[DIMS]`, e.g. `output score fp32[batch, 2]`",
    "shard": "add `shard TARGET` to say where the model runs",
}
