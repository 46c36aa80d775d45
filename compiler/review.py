"""The human review of a plan: what `infc plan SPEC` prints.

A pure function of the plan and the compiler's warnings, so that the same spec
gives the same text (no timestamps, no terminal queries). Colour is a `Style`
passed in by the CLI; tests use `PLAIN` and compare text. Sections, in order:
header and gateway, targets, one block per model version (source, precision,
the artifact workers load and its agreement with fp32, signature, shards,
estimates, SLO verdicts, privacy), routes, warnings, and a one-line summary.

Verdict marks: `✓` the estimate meets the SLO; `✗` it misses it (a W0501 or
W0502 case); `!` batch-1 meets a latency SLO but the batch window on top of it
does not (the W0503 case). An agreement gets `✓` at or above 99% and `✗` below
(the W0504 case).
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from inferplane.compiler.diagnostics import Diagnostic
from inferplane.compiler.plan import (
    MIN_TOP1_AGREEMENT,
    Agreement,
    Gateway,
    Model,
    Plan,
    Route,
    Shard,
    Target,
    TensorSpec,
)
from inferplane.compiler.units import format_duration, format_rate

WIDTH = 80


def _identity(text: str) -> str:
    return text


def _sgr(code: str) -> Callable[[str], str]:
    return lambda text: f"\x1b[{code}m{text}\x1b[0m"


@dataclass(frozen=True)
class Style:
    """How to colour text; every field maps a string to its styled form."""

    bold: Callable[[str], str] = _identity
    dim: Callable[[str], str] = _identity
    green: Callable[[str], str] = _identity
    yellow: Callable[[str], str] = _identity
    red: Callable[[str], str] = _identity
    cyan: Callable[[str], str] = _identity


PLAIN = Style()
ANSI = Style(_sgr("1"), _sgr("2"), _sgr("32"), _sgr("33"), _sgr("31"), _sgr("36"))

_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def visible_len(text: str) -> int:
    """The width of `text` on screen, escape codes left out."""
    return len(_ESCAPE.sub("", text))


def table(rows: Sequence[Sequence[str]], indent: int = 2) -> list[str]:
    """Left-aligned columns two spaces apart; styled cells are measured unstyled."""
    widths: list[int] = []
    for row in rows:
        for i, cell in enumerate(row):
            if i == len(widths):
                widths.append(0)
            widths[i] = max(widths[i], visible_len(cell))
    lines = []
    for row in rows:
        cells = [cell + " " * (widths[i] - visible_len(cell)) for i, cell in enumerate(row)]
        lines.append((" " * indent + "  ".join(cells)).rstrip())
    return lines


def format_size(n: int) -> str:
    """A byte count in the spec's units: 64MiB, 512KiB, 100 bytes."""
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.4g}{unit}"
    return f"{n} bytes"


def format_shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join("batch" if d == -1 else str(d) for d in shape) + "]"


def _short_hash(digest: str) -> str:
    return digest.split(":", 1)[-1][:12] or "unhashed"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _percent(value: float) -> str:
    return f"{value:.3g}%"


def _wrapped(text: str, indent: int, hang: int = 2) -> list[str]:
    return textwrap.wrap(
        text, WIDTH, initial_indent=" " * indent, subsequent_indent=" " * (indent + hang)
    )


def _gateway(gw: Gateway) -> list[str]:
    if gw.tls is None:
        tls = "off"
    elif gw.tls.client_ca:
        tls = f"on, mutual (cert {gw.tls.cert}, client CA {gw.tls.client_ca})"
    else:
        tls = f"on (cert {gw.tls.cert})"
    auth = f"bearer tokens from ${gw.auth_tokens_env}" if gw.auth_tokens_env else "off"
    rows = [
        ["listen", gw.listen],
        ["metrics", gw.metrics or "off"],
        ["tls", tls],
        ["auth", auth],
        ["max message", format_size(gw.max_message_bytes)],
    ]
    return table(rows)


def _hardware(t: Target) -> str:
    text = t.hardware + (f" {t.accelerator}" if t.accelerator else "")
    text += f" ×{t.devices}" if t.devices > 1 else ""
    text += f" {t.topology}" if t.topology else ""
    if not t.threads:
        return text
    return text + f", {t.threads} thread{'s' if t.threads != 1 else ''}"


def _targets(targets: Sequence[Target], style: Style) -> list[str]:
    header = ["name", "hardware", "location", "replicas", "workers"]
    rows = [[style.dim(h) for h in header]]
    for t in targets:
        workers = t.workers or ["local"]
        where = f'{t.location.kind} "{t.location.site}"'
        replicas = f"{t.replicas.min}..{t.replicas.max}"
        rows.append([t.name, _hardware(t), where, replicas, workers[0]])
        rows.extend(["", "", "", "", w] for w in workers[1:])
    return table(rows)


def _tensor(t: TensorSpec) -> str:
    return f"{t.name} {t.datatype}{format_shape(t.shape)}"


def _batching(s: Shard) -> str:
    b = s.batching
    if b.max_batch_size == 1:
        return "none (max 1)"
    mode = "adaptive" if b.adaptive else "fixed"
    return f"max {b.max_batch_size}, window {format_duration(b.window_s)}, {mode}"


def _shards(m: Model, style: Style) -> list[str]:
    placement = [[style.dim(h) for h in ("target", "weight", "share", "replicas", "batching")]]
    speed = [[style.dim(h) for h in ("target", "batch-1", "max batch", "per replica", "at max")]]
    if not m.shards:
        return ["  shards: none"]
    for s in m.shards:
        e = s.estimate
        placement.append(
            [
                s.target,
                str(s.weight),
                _percent(s.share * 100),
                f"{s.replicas.min}..{s.replicas.max}",
                _batching(s),
            ]
        )
        speed.append(
            [
                s.target,
                format_duration(e.single_latency_s),
                format_duration(e.max_batch_latency_s),
                format_rate(e.capacity_rps),
                format_rate(e.capacity_rps * s.replicas.max),
            ]
        )
    basis = {"estimated": "estimated from the FLOPs table", "measured": "measured by infc profile"}
    first = m.shards[0]
    figures = f"{basis[m.capacity.basis]} — {first.target}: {first.estimate.detail}"
    return [
        "  shards",
        *table(placement, indent=4),
        *_wrapped(figures, indent=2, hang=4),
        *table(speed, indent=4),
    ]


def _mark(verdict: str, style: Style) -> str:
    colour = {"✓": style.green, "✗": style.red, "!": style.yellow}[verdict]
    return colour(verdict)


def _slos(m: Model, style: Style) -> list[str]:
    rows: list[list[str]] = []
    single = m.capacity.single_latency_s
    # batch-1 plus the longest wait for a batch, on the slowest shard
    waited = max((s.batching.window_s + s.estimate.single_latency_s for s in m.shards), default=0)
    for obj in m.slos.latency:
        objective = f"{obj.percentile} {format_duration(obj.seconds)}"
        prefix = "measured" if m.capacity.basis == "measured" else "est."
        estimate = f"{prefix} batch-1 {format_duration(single)}"
        if single > obj.seconds:
            verdict = "✗"
        elif waited > obj.seconds:
            verdict, estimate = "!", f"{estimate} + window = {format_duration(waited)}"
        else:
            verdict = "✓"
        rows.append([objective, estimate, _mark(verdict, style)])
    if m.slos.throughput_rps is not None:
        objective = f"throughput {format_rate(m.slos.throughput_rps)}"
        capacity = m.capacity.capacity_rps
        verdict = "✓" if capacity >= m.slos.throughput_rps else "✗"
        estimate = f"capacity {format_rate(capacity)} at max replicas"
        rows.append([objective, estimate, _mark(verdict, style)])
    if m.slos.availability_percent is not None:
        rows.append([f"availability {m.slos.availability_percent:g}%", style.dim("not estimated")])
    if not rows:
        return ["  slos: none"]
    return ["  slos", *table(rows, indent=4)]


def _privacy(m: Model) -> list[str]:
    p = m.privacy
    rules = []
    if p.on_prem_only:
        rules.append(
            "on-prem-only — enforced by the compiler (shard locations) "
            "and the gateway (worker-reported location)"
        )
    for r in p.redactions:
        kinds = ", ".join([*r.kinds, *(f'pattern "{x}"' for x in r.patterns)])
        rules.append(f"{kinds} in {r.input} — redacted by the gateway before the request leaves it")
    if not rules:
        return ["  privacy: none"]
    return ["  privacy", *(line for rule in rules for line in _wrapped(rule, indent=4))]


# What each precision makes of the fp32 source.
_PRECISION = {
    "fp32": "fp32",
    "int8": "int8, dynamic quantization of the fp32 source",
    "fp16": "fp16, converted from the fp32 source; fp32 inputs and outputs",
    "bf16": "bf16, cast from the fp32 source by the tpu runtime when it loads it",
}
_LABEL = len("precision") + 2  # the label column of a model's first rows


_KEEP = "\xa0"  # a space that wrapping does not break at


def _hanging(label: str, text: str) -> list[list[str]]:
    """Rows of a two-column table: `text` wrapped under its label to fit the width."""
    lines = textwrap.wrap(text, WIDTH - 2 - _LABEL, break_on_hyphens=False) or [""]
    return [[label if i == 0 else "", line.replace(_KEEP, " ")] for i, line in enumerate(lines)]


def _file(path: str, sha256: str) -> str:
    return f"{path}  sha256{_KEEP}{_short_hash(sha256)}"


def _agreement(a: Agreement, style: Style) -> list[list[str]]:
    share = math.floor(a.top1_agreement * 1000 + 1e-9) / 10  # never rounded up to 99%
    verdict = "✓" if a.top1_agreement >= MIN_TOP1_AGREEMENT else "✗"
    text = (
        f"top-1 as fp32 on {share:g}% of {a.samples} samples (batches{_KEEP}of{_KEEP}"
        f"{a.batch_size}), max{_KEEP}|Δ|{_KEEP}{a.max_abs_diff:.2g}, eval {a.eval} {verdict}"
    )
    rows = _hanging("agreement", text)
    rows[-1][1] = rows[-1][1][:-1] + _mark(verdict, style)  # coloured after wrapping
    return rows


def _artifact_rows(m: Model, style: Style) -> list[list[str]]:
    rows = [
        *_hanging("source", _file(m.source.path, m.source.sha256)),
        *_hanging("precision", _PRECISION[m.precision]),
    ]
    if m.artifact == m.source:
        rows.append(["artifact", "the source, as written"])
        return rows
    rows += _hanging("artifact", _file(m.artifact.path, m.artifact.sha256))
    if m.agreement is None:
        rows.append(["agreement", style.dim("not measured: no eval set")])
    else:
        rows += _agreement(m.agreement, style)
    return rows


def _model(m: Model, style: Style) -> list[str]:
    rows = _artifact_rows(m, style)
    for label, tensors in (("inputs", m.signature.inputs), ("outputs", m.signature.outputs)):
        rows += [[label if i == 0 else "", _tensor(t)] for i, t in enumerate(tensors)]
    title = style.bold("Model " + style.cyan(f"{m.name}@{m.version}"))
    return [title, *table(rows), *_shards(m, style), *_slos(m, style), *_privacy(m)]


def _route(r: Route, style: Style) -> list[str]:
    rows = [[f"{e.model}@{e.version}", _percent(e.percent)] for e in r.entries]
    fallback = f"{r.fallback.model}@{r.fallback.version}" if r.fallback else "none"
    rows.append([style.dim("fallback"), fallback])
    return [style.bold("Route " + style.cyan(r.name)), *table(rows)]


def format_diagnostic(d: Diagnostic, source: str = "") -> str:
    where = f"{d.file or source}:{d.span.line}:{d.span.column}"
    return f"{d.severity.value}[{d.code.code}]: {d.message} ({where})"


def summary(plan: Plan, warnings: Sequence[Diagnostic] = ()) -> str:
    names = len({m.name for m in plan.models})
    return (
        f"Plan: {_plural(len(plan.targets), 'target')}, {_plural(names, 'model')} "
        f"({_plural(len(plan.models), 'version')}), {_plural(len(plan.routes), 'route')}, "
        f"{_plural(len(warnings), 'warning')}."
    )


def render_plan(plan: Plan, warnings: Sequence[Diagnostic] = (), style: Style = PLAIN) -> str:
    """The review text of `plan`, ending in a newline."""
    version = f"plan v{plan.plan_version}, {_short_hash(plan.content_hash)}"
    blocks = [
        [style.bold(f"Plan for {plan.source}") + f" ({version})"],
        [style.bold("Gateway"), *_gateway(plan.gateway)],
        [style.bold(f"Targets ({len(plan.targets)})"), *_targets(plan.targets, style)],
        *(_model(m, style) for m in plan.models),
        *(_route(r, style) for r in plan.routes),
    ]
    if warnings:
        colour = {"warning": style.yellow, "error": style.red}
        lines = []
        for d in warnings:
            text = format_diagnostic(d, plan.source)
            head, rest = text.split("[", 1)
            lines.append(colour[head](head) + "[" + rest)
        blocks.append(lines)
    blocks.append([style.bold(summary(plan, warnings))])
    return "\n\n".join("\n".join(block) for block in blocks) + "\n"
