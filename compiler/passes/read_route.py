"""Reading a `route` block: `MODEL[@VERSION] PERCENT` lines and one `fallback`."""

from __future__ import annotations

from inferplane.compiler import ast
from inferplane.compiler import diagnostics as codes
from inferplane.compiler.diagnostics import Note
from inferplane.compiler.passes.field_reader import FieldReader, describe
from inferplane.compiler.spans import Span
from inferplane.compiler.syntax import (
    Ref,
    Statement,
    Value,
    Word,
)


class RouteReader(FieldReader):
    """Reads `route` blocks for `build_ast`."""

    def route(self, stmt: Statement, name: ast.Spanned[str]) -> ast.Route:
        owner = f"route `{name.value}`"
        entries, fallbacks = [], []
        for line in stmt.block.statements if stmt.block else ():
            if isinstance(line.key, Word) and line.key.text == "fallback":
                found = self.read(lambda s=line: self.fallback(s))
                if found is not None:
                    fallbacks.append(found)
                continue
            entry = self.read(lambda s=line: self.route_entry(s, owner))
            if entry is not None:
                entries.append(entry)
        for extra in fallbacks[1:]:
            self.out.add(
                codes.REPEATED_FIELD,
                f"{owner} has more than one `fallback`",
                extra.span,
                notes=[Note("first given here", fallbacks[0].span)],
                help="a route falls back to one model",
            )
        if not entries:
            self.out.add(
                codes.MISSING_FIELD,
                f"{owner} sends traffic to no model",
                self.header(stmt),
                help="add lines such as `fraud-scorer@3 100%`",
            )
        return ast.Route(name, tuple(entries), fallbacks[0] if fallbacks else None, stmt.span)

    def model_ref(self, value: Value | Word | Ref) -> ast.ModelRef:
        if isinstance(value, Ref):
            at = value.span.column + len(value.name)
            name_span = Span(
                value.span.line,
                value.span.column,
                value.span.line,
                at,
                value.span.offset,
                value.span.offset + len(value.name),
            )
            version_span = Span(
                value.span.line,
                at + 1,
                value.span.end_line,
                value.span.end_column,
                name_span.end_offset + 1,
                value.span.end_offset,
            )
            return ast.ModelRef(
                ast.Spanned(value.name, name_span),
                ast.Spanned(value.version, version_span),
                value.span,
            )
        if isinstance(value, Word):
            return ast.ModelRef(ast.Spanned(value.text, value.span), None, value.span)
        raise self.wrong(
            value.span, f"expected a model (`name` or `name@version`), not {describe(value)}"
        )

    def route_entry(self, stmt: Statement, owner: str) -> ast.RouteEntry:
        shape = "MODEL[@VERSION] PERCENT"
        if not stmt.values and isinstance(stmt.key, Word):
            raise self.wrong(
                stmt.span,
                f"`{stmt.key.text}` in {owner} has no percentage",
                help=f"each line of a route is `{shape}`, e.g. "
                f"`{stmt.key.text} 100%`, or `fallback MODEL`",
            )
        (percent,) = self.values(stmt, 1, shape)
        model = self.model_ref(stmt.key)
        share = self.quantity(percent, "percentage", f"the share of `{model.text}`")
        return ast.RouteEntry(model, share, stmt.span)

    def fallback(self, stmt: Statement) -> ast.ModelRef:
        (value,) = self.values(stmt, 1, "fallback MODEL[@VERSION]")
        ref = self.model_ref(value)
        return ast.ModelRef(ref.name, ref.version, stmt.span)
