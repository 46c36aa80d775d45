"""Reading a `model` block.

Its fields: source, version, precision, eval, tensors, shards, batching, SLOs, privacy.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from inferplane.compiler import ast, schema
from inferplane.compiler import diagnostics as codes
from inferplane.compiler.diagnostics import Note
from inferplane.compiler.passes.field_reader import IDENTIFIER, FieldReader, Skip, describe
from inferplane.compiler.spans import Span
from inferplane.compiler.suggest import one_of
from inferplane.compiler.syntax import (
    Number,
    Statement,
    String,
    TensorType,
    Word,
)


class ModelReader(FieldReader):
    """Reads `model` blocks for `build_ast`."""

    def model(self, stmt: Statement, name: ast.Spanned[str]) -> ast.Model:
        owner = f"model `{name.value}`"
        g = self.fields(stmt.block, "model", owner, self.header(stmt))
        latency, throughput, availability, redactions = [], [], [], []
        on_prem = []
        for slo in self.many(g, "slo", self.slo):
            {
                ast.LatencySlo: latency,
                ast.ThroughputSlo: throughput,
                ast.AvailabilitySlo: availability,
            }[type(slo)].append(slo)
        for rule in self.many(g, "privacy", self.privacy):
            (redactions if isinstance(rule, ast.Redaction) else on_prem).append(rule)
        self.no_repeats(latency, lambda s: s.percentile.value, "slo")
        self.no_repeats(throughput, lambda s: "throughput", "slo")
        self.no_repeats(availability, lambda s: "availability", "slo")
        self.no_repeats(on_prem, lambda s: "on-prem-only", "privacy")
        inputs = tuple(self.many(g, "input", self.tensor))
        outputs = tuple(self.many(g, "output", self.tensor))
        default_version = ast.Spanned(1, name.span)
        default_precision = ast.Spanned("fp32", name.span)
        return ast.Model(
            name=name,
            version=self.one(
                g, "version", lambda s: self.integer(self.values(s, 1, "version N")[0], "`version`")
            )
            or default_version,
            source=self.one(
                g,
                "source",
                lambda s: self.string(self.values(s, 1, 'source "PATH.onnx"')[0], "`source`"),
            ),
            precision=self.one(
                g,
                "precision",
                lambda s: self.choice(
                    self.values(s, 1, "precision fp32|fp16|bf16|int8")[0],
                    schema.PRECISIONS,
                    "precision",
                ),
            )
            or default_precision,
            eval=self.one(
                g,
                "eval",
                lambda s: self.string(self.values(s, 1, 'eval "PATH.npz"')[0], "`eval`"),
            ),
            inputs=inputs,
            outputs=outputs,
            signature_complete=len(inputs) + len(outputs)
            == len(g.get("input", ())) + len(g.get("output", ())),
            shards=tuple(self.many(g, "shard", self.shard)),
            batch=self.one(g, "batch", self.batch),
            latency_slos=tuple(latency),
            throughput_slo=throughput[0] if throughput else None,
            availability_slo=availability[0] if availability else None,
            on_prem_only=on_prem[0] if on_prem else None,
            redactions=tuple(redactions),
            span=stmt.span,
        )

    def no_repeats(self, items: list, key: Callable, field: str) -> None:
        first: dict[str, object] = {}
        for item in list(items):
            k = key(item)
            span = item if isinstance(item, Span) else item.span
            if k in first:
                earlier = first[k]
                self.out.add(
                    codes.REPEATED_FIELD,
                    f"`{field} {k}` is given more than once",
                    span,
                    label="given again here",
                    notes=[
                        Note(
                            "first given here",
                            earlier if isinstance(earlier, Span) else earlier.span,
                        )
                    ],
                    help="keep one of them",
                )
                items.remove(item)
            else:
                first[k] = item

    def tensor(self, stmt: Statement) -> ast.Tensor:
        kind = stmt.key.raw
        shape = f"{kind} NAME DTYPE[DIMS]"
        name_value, type_value = self.values(stmt, 2, shape)
        if isinstance(name_value, String):
            name = ast.Spanned(name_value.value, name_value.span)
        elif isinstance(name_value, Word) and IDENTIFIER.match(name_value.text):
            name = ast.Spanned(name_value.text, name_value.span)
        elif isinstance(name_value, Word):
            raise self.wrong(
                name_value.span,
                f"tensor name `{name_value.text}` must be quoted",
                help=f'bare tensor names are identifiers; write "{name_value.text}"',
            )
        else:
            raise self.wrong(
                name_value.span,
                f"expected a tensor name, not {describe(name_value)}",
                help=f"write `{shape}`",
            )
        if not isinstance(type_value, TensorType):
            raise self.wrong(
                type_value.span,
                f"expected a tensor type such as `fp32[batch, 30]`, not {describe(type_value)}",
                help="write the dtype glued to its dimensions: `fp32[batch, 30]`",
            )
        dtype = self.choice(type_value.dtype, tuple(schema.DTYPES), "dtype")
        dims: list[ast.Spanned[int | str]] = []
        for i, dim in enumerate(type_value.dims):
            if isinstance(dim, Word) and dim.text == ast.BATCH:
                if i != 0:
                    raise self.wrong(
                        dim.span,
                        "`batch` must be the first dimension",
                        help="the dynamic batch axis comes first",
                    )
                dims.append(ast.Spanned(ast.BATCH, dim.span))
            elif isinstance(dim, Number) and dim.is_integer:
                dims.append(ast.Spanned(int(dim.value), dim.span))
            else:
                raise self.wrong(
                    dim.span,
                    f"unknown dimension `{dim.raw}`",
                    help="a dimension is a whole number or `batch`",
                )
        return ast.Tensor(name, dtype, tuple(dims), stmt.span)

    def shard(self, stmt: Statement) -> ast.Shard:
        shape = "shard TARGET [weight N]"
        if len(stmt.values) in (0, 2) or len(stmt.values) > 3:
            self.values(stmt, 3 if len(stmt.values) == 2 else 1, shape)
        target = self.name(stmt.values[0], "a shard's target")
        weight = ast.Spanned(1, target.span)
        if len(stmt.values) == 3:
            _, key, value = self.values(stmt, 3, shape)
            self.choice(key, ("weight",), "shard option")
            weight = self.integer(value, "`weight`")
        elif stmt.block is not None:
            self.values(stmt, 1, shape)
        return ast.Shard(target, weight, stmt.span)

    def batch(self, stmt: Statement) -> ast.Batch:
        shape = "batch max N window DURATION [fixed]"
        if stmt.block is not None:
            self.values(stmt, 0, shape)
        options: dict[str, ast.Spanned] = {}
        fixed = False
        values = list(stmt.values)
        while values:
            word = values.pop(0)
            key = self.choice(word, ("max", "window", "fixed"), "batch option").value
            if key in options or (key == "fixed" and fixed):
                raise self.wrong(word.span, f"`{key}` is given twice in `batch`")
            if key == "fixed":
                fixed = True
                continue
            if not values:
                raise self.wrong(word.span, f"`{key}` needs a value", help=f"write `{shape}`")
            value = values.pop(0)
            options[key] = (
                self.integer(value, "`batch max`")
                if key == "max"
                else self.quantity(value, "duration", "`window`")
            )
        for needed in ("max", "window"):
            if needed not in options:
                self.out.add(
                    codes.MISSING_FIELD,
                    f"`batch` has no `{needed}`",
                    stmt.key.span,
                    help=f"write `{shape}`",
                )
                raise Skip()
        return ast.Batch(options["max"], options["window"], fixed, stmt.span)

    def slo(self, stmt: Statement) -> object:
        shape = "slo p99 20ms | slo throughput 5000rps | slo availability 99.9%"
        kind_value, value = self.values(stmt, 2, shape)
        kinds = (*schema.PERCENTILES, "throughput", "availability")
        kind = self.choice(kind_value, kinds, "SLO")
        if kind.value == "throughput":
            return ast.ThroughputSlo(self.quantity(value, "rate", "`slo throughput`"), stmt.span)
        if kind.value == "availability":
            return ast.AvailabilitySlo(
                self.quantity(value, "percentage", "`slo availability`"), stmt.span
            )
        seconds = self.quantity(value, "duration", f"`slo {kind.value}`")
        return ast.LatencySlo(kind, seconds, stmt.span)

    def privacy(self, stmt: Statement) -> ast.Redaction | Span:
        if not stmt.values:
            self.values(stmt, 1, "privacy on-prem-only | privacy redact KIND… in INPUT")
        rule = self.choice(stmt.values[0], ("on-prem-only", "redact"), "privacy rule")
        if rule.value == "on-prem-only":
            self.values(stmt, 1, "privacy on-prem-only")
            return stmt.span
        return self.redaction(stmt)

    def redaction(self, stmt: Statement) -> ast.Redaction:
        shape = "privacy redact KIND… in INPUT"
        if stmt.block is not None:
            self.values(stmt, 0, shape)
        values = list(stmt.values[1:])
        kinds, patterns = [], []
        while values and not (isinstance(values[0], Word) and values[0].text == "in"):
            value = values.pop(0)
            if isinstance(value, Word) and value.text == "pattern":
                if not values or not isinstance(values[0], String):
                    raise self.wrong(
                        value.span,
                        "`pattern` needs a quoted regular expression",
                        help='write `pattern "ORD-[0-9]{8}"`',
                    )
                regex = values.pop(0)
                try:
                    re.compile(regex.value)
                except re.error as e:
                    raise self.wrong(regex.span, f"invalid regular expression: {e}") from None
                patterns.append(ast.Spanned(regex.value, regex.span))
                continue
            kinds.append(self.choice(value, (*schema.REDACT_KINDS, "pattern"), "redaction kind"))
        if not kinds and not patterns:
            raise self.wrong(
                stmt.values[0].span,
                "`redact` needs at least one kind",
                help=f'the kinds are {one_of(schema.REDACT_KINDS)} and `pattern "REGEX"`',
            )
        if not values:
            raise self.wrong(
                stmt.span,
                "`redact` needs `in INPUT`",
                label="no input named",
                help=f"write `{shape}`",
            )
        in_word = values.pop(0)
        if not values:
            raise self.wrong(
                in_word.span, "`in` needs the input to redact", help=f"write `{shape}`"
            )
        target = values.pop(0)
        if isinstance(target, String):
            input_name = ast.Spanned(target.value, target.span)
        else:
            input_name = self.name(target, "the redacted input")
        if values:
            raise self.wrong(
                values[0].span,
                f"unexpected {describe(values[0])} in `redact`",
                help=f"write one rule per input: `{shape}`",
            )
        return ast.Redaction(tuple(kinds), tuple(patterns), input_name, stmt.span)
