"""Pass 1: read the syntax tree into the typed AST, field by field.

Reports fields that are unknown, repeated or missing (E0201, E0205, E0204)
and values of the wrong kind or unit (E0201). Ranges are left to
`check_values`. A field that cannot be read is dropped, so later passes
only see well-typed nodes; a definition that lacks its name is dropped too.
"""

from __future__ import annotations

from inferplane.compiler import ast, schema
from inferplane.compiler import diagnostics as codes
from inferplane.compiler.diagnostics import Diagnostics, Note
from inferplane.compiler.passes.field_reader import describe
from inferplane.compiler.passes.read_model import ModelReader
from inferplane.compiler.passes.read_route import RouteReader
from inferplane.compiler.suggest import did_you_mean, one_of
from inferplane.compiler.syntax import (
    ListValue,
    Range,
    Ref,
    Statement,
    SyntaxFile,
)


def build_ast(tree: SyntaxFile, diagnostics: Diagnostics) -> ast.Spec:
    return _Builder(diagnostics).spec(tree)


class _Builder(ModelReader, RouteReader):
    """The spec, the gateway and targets; models and routes come from the mixins."""

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
                f"unexpected {describe(stmt.values[1])} after the {kind}'s name",
                help=f"write `{kind} NAME {{ … }}`",
            )
        if isinstance(stmt.values[0], Ref):
            raise self.wrong(
                stmt.values[0].span,
                f"a {kind} name takes no `@version`",
                help="set a model's version with the `version` field",
            )
        return self.name(stmt.values[0], f"a {kind}'s name")

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
                f"`workers` takes a list, not {describe(value)}",
                help=f"write `workers [{value.raw}]`",
            )
        found = (self.read(lambda v=v: self.address(v, "a worker address")) for v in value.items)
        return tuple(w for w in found if w is not None)
