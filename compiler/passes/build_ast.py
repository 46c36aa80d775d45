"""Pass 1: read the syntax tree into the typed AST, field by field.

Reports fields that are unknown, repeated or missing (E0201, E0205, E0204)
and values of the wrong kind or unit (E0201). Ranges are left to
`check_values`. A field that cannot be read is dropped, so later passes
only see well-typed nodes; a definition that lacks its name is dropped too.
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
    SyntaxFile,
    TensorType,
    Value,
    Word,
)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})\Z")


def build_ast(tree: SyntaxFile, diagnostics: Diagnostics) -> ast.Spec:
    return _Builder(diagnostics).spec(tree)


def _describe(value: Value) -> str:
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


class _Skip(Exception):
    """A field that could not be read; its diagnostic is already reported."""


class _Builder:
    def __init__(self, diagnostics: Diagnostics):
        self.out = diagnostics

    # ---- helpers --------------------------------------------------------------

    def wrong(self, span: Span, message: str, *, label: str = "", help: str = "") -> _Skip:
        self.out.add(codes.WRONG_KIND, message, span, label=label, help=help)
        return _Skip()

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
                    help=_REQUIRED_HELP[required],
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
                f"unexpected {_describe(extra)} in `{stmt.key.raw}`",
                help=f"write `{shape}`",
            )
        return stmt.values

    def string(self, value: Value, what: str) -> ast.Spanned[str]:
        if not isinstance(value, String):
            raise self.wrong(
                value.span,
                f"{what} must be a string, not {_describe(value)}",
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
            value.span, f"{what} must be a whole number, not {_describe(value)}", help=help_text
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
            f"{what} takes a {kind}, not {_describe(value)}",
            help=f"the units of a {kind} are {valid}",
        )

    def name(self, value: Value, what: str) -> ast.Spanned[str]:
        if not isinstance(value, Word):
            raise self.wrong(value.span, f"{what} must be a name, not {_describe(value)}")
        return ast.Spanned(value.text, value.span)

    def address(self, value: Value, what: str) -> ast.Spanned[str]:
        text = self.string(value, what)
        if not _HOST_PORT.match(text.value) and not text.value.startswith("unix:"):
            raise self.wrong(
                value.span,
                f"{what} `{text.value}` is not HOST:PORT",
                help='write it as "127.0.0.1:8001" or "unix:/path/to.sock"',
            )
        return text

    def read(self, read: Callable[[], object]) -> object | None:
        try:
            return read()
        except _Skip:
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

    # ---- the spec ---------------------------------------------------------------

    def spec(self, tree: SyntaxFile) -> ast.Spec:
        gateway, targets, models, routes = None, [], [], []
        for stmt in tree.statements:
            key = stmt.key
            if isinstance(key, Ref) or key.text not in schema.DEFINITIONS:
                help_text = did_you_mean(key.raw, schema.DEFINITIONS) or (
                    f"a spec defines {one_of(schema.DEFINITIONS)} blocks"
                )
                self.wrong(key.span, f"unknown definition `{key.raw}`", help=help_text)
                continue
            if key.text == "gateway":
                if gateway is not None:
                    self.out.add(
                        codes.DUPLICATE,
                        "a spec has at most one `gateway` block",
                        key.span,
                        label="second gateway",
                        notes=[Note("the first is here", gateway.span)],
                        help="merge the two blocks",
                    )
                    continue
                gateway = self.read(lambda s=stmt: self.gateway(s))
                continue
            name = self.read(lambda s=stmt: self.definition_name(s))
            if name is None:
                continue
            build = {"target": self.target, "model": self.model, "route": self.route}[key.text]
            node = self.read(lambda s=stmt, n=name, b=build: b(s, n))
            if node is not None:
                {"target": targets, "model": models, "route": routes}[key.text].append(node)
        return ast.Spec(gateway, tuple(targets), tuple(models), tuple(routes))

    def definition_name(self, stmt: Statement) -> ast.Spanned[str]:
        kind = stmt.key.raw
        if not stmt.values:
            raise self.wrong(
                stmt.key.span,
                f"`{kind}` needs a name",
                label="no name",
                help=f"write `{kind} NAME {{ … }}`",
            )
        if len(stmt.values) > 1:
            raise self.wrong(
                stmt.values[1].span,
                f"unexpected {_describe(stmt.values[1])} after the {kind}'s name",
                help=f"write `{kind} NAME {{ … }}`",
            )
        if isinstance(stmt.values[0], Ref):
            raise self.wrong(
                stmt.values[0].span,
                f"a {kind} name takes no `@version`",
                help="set a model's version with the `version` field",
            )
        return self.name(stmt.values[0], f"a {kind}'s name")

    def header(self, stmt: Statement) -> Span:
        last = stmt.values[-1].span if stmt.values else stmt.key.span
        return stmt.key.span.to(last)

    # ---- gateway ----------------------------------------------------------------

    def gateway(self, stmt: Statement) -> ast.Gateway:
        if stmt.values:
            raise self.wrong(
                stmt.values[0].span, "`gateway` takes no name", help="write `gateway { … }`"
            )
        g = self.fields(stmt.block, "gateway", "the gateway", stmt.key.span)
        return ast.Gateway(
            listen=self.one(
                g,
                "listen",
                lambda s: self.address(self.values(s, 1, 'listen "HOST:PORT"')[0], "`listen`"),
            ),
            metrics=self.one(
                g,
                "metrics",
                lambda s: self.address(self.values(s, 1, 'metrics "HOST:PORT"')[0], "`metrics`"),
            ),
            tls=self.one(g, "tls", self.tls),
            auth_tokens_env=self.one(g, "auth", self.auth),
            max_message=self.one(g, "max_message", lambda s: self.size(s)),
            span=stmt.span,
        )

    def tls(self, stmt: Statement) -> ast.Tls:
        if stmt.values or stmt.block is None:
            raise self.wrong(stmt.span, "`tls` takes a block: `tls { cert … key … }`")
        t = self.fields(stmt.block, "tls", "`tls`", stmt.key.span)
        read = {
            key: self.one(
                t, key, lambda s, k=key: self.string(self.values(s, 1, f'{k} "PATH"')[0], f"`{k}`")
            )
            for key in schema.FIELDS["tls"]
        }
        for needed in ("cert", "key"):
            if needed not in t:
                self.out.add(
                    codes.MISSING_FIELD,
                    f"`tls` has no `{needed}`",
                    stmt.key.span,
                    help=f'add `{needed} "PATH"`: TLS needs a certificate and its key',
                )
        return ast.Tls(read["cert"], read["key"], read["client_ca"], stmt.span)

    def auth(self, stmt: Statement) -> ast.Spanned[str]:
        mode, env = self.values(stmt, 2, 'auth tokens_env "VARIABLE"')
        self.choice(mode, ("tokens_env",), "auth mode")
        return self.string(env, "the token variable")

    def size(self, stmt: Statement) -> ast.Spanned[int]:
        (value,) = self.values(stmt, 1, "max_message 64MiB")
        size = self.quantity(value, "size", "`max_message`")
        return ast.Spanned(int(size.value), size.span)

    # ---- target -----------------------------------------------------------------

    def target(self, stmt: Statement, name: ast.Spanned[str]) -> ast.Target:
        owner = f"target `{name.value}`"
        g = self.fields(stmt.block, "target", owner, self.header(stmt))
        return ast.Target(
            name=name,
            hardware=self.one(
                g,
                "hardware",
                lambda s: self.choice(
                    self.values(s, 1, "hardware cpu|gpu|tpu")[0], schema.HARDWARE, "hardware"
                ),
            ),
            location=self.one(g, "location", self.location),
            replicas=self.one(g, "replicas", self.replicas),
            threads=self.one(
                g, "threads", lambda s: self.integer(self.values(s, 1, "threads N")[0], "`threads`")
            ),
            accelerator=self.one(
                g,
                "accelerator",
                lambda s: self.string(self.values(s, 1, 'accelerator "A100"')[0], "`accelerator`"),
            ),
            devices=self.one(
                g, "devices", lambda s: self.integer(self.values(s, 1, "devices N")[0], "`devices`")
            ),
            topology=self.one(
                g,
                "topology",
                lambda s: self.string(self.values(s, 1, 'topology "2x2"')[0], "`topology`"),
            ),
            workers=self.one(g, "workers", self.workers) or (),
            span=stmt.span,
        )

    def location(self, stmt: Statement) -> ast.Location:
        kind, site = self.values(stmt, 2, 'location onprem|cloud|edge "SITE"')
        return ast.Location(
            self.choice(kind, schema.LOCATIONS, "location"),
            self.string(site, "the location's site"),
            stmt.span,
        )

    def replicas(self, stmt: Statement) -> ast.Replicas:
        (value,) = self.values(stmt, 1, "replicas N or replicas MIN..MAX")
        if isinstance(value, Range):
            low = self.integer(value.low, "`replicas`")
            high = self.integer(value.high, "`replicas`")
            return ast.Replicas(low.value, high.value, value.span)
        count = self.integer(value, "`replicas`")
        return ast.Replicas(count.value, count.value, value.span)

    def workers(self, stmt: Statement) -> tuple[ast.Spanned[str], ...]:
        (value,) = self.values(stmt, 1, 'workers ["HOST:PORT", …]')
        if not isinstance(value, ListValue):
            raise self.wrong(
                value.span,
                f"`workers` takes a list, not {_describe(value)}",
                help=f"write `workers [{value.raw}]`",
            )
        found = (self.read(lambda v=v: self.address(v, "a worker address")) for v in value.items)
        return tuple(w for w in found if w is not None)

    # ---- model ------------------------------------------------------------------

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
            inputs=tuple(self.many(g, "input", self.tensor)),
            outputs=tuple(self.many(g, "output", self.tensor)),
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
        elif isinstance(name_value, Word) and _IDENTIFIER.match(name_value.text):
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
                f"expected a tensor name, not {_describe(name_value)}",
                help=f"write `{shape}`",
            )
        if not isinstance(type_value, TensorType):
            raise self.wrong(
                type_value.span,
                f"expected a tensor type such as `fp32[batch, 30]`, not {_describe(type_value)}",
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
                raise _Skip()
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
                f"unexpected {_describe(values[0])} in `redact`",
                help=f"write one rule per input: `{shape}`",
            )
        return ast.Redaction(tuple(kinds), tuple(patterns), input_name, stmt.span)

    # ---- route ------------------------------------------------------------------

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
            value.span, f"expected a model (`name` or `name@version`), not {_describe(value)}"
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


_REQUIRED_HELP = {
    "hardware": "add `hardware cpu`, `hardware gpu` or `hardware tpu`",
    "location": 'add `location onprem "SITE"` (or cloud, edge)',
    "source": 'add `source "models/NAME.onnx"` (relative to this file)',
    "input": "add `input NAME DTYPE[DIMS]`, e.g. `input features fp32[batch, 30]`",
    "output": "add `output NAME DTYPE[DIMS]`, e.g. `output score fp32[batch, 2]`",
    "shard": "add `shard TARGET` to say where the model runs",
}
