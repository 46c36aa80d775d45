"""What would change between two plans, terraform style (`infc plan --against`).

Each side is flattened into dotted paths to its leaf values, with list items
addressed by their natural key rather than by position: `shards[gpu-fra]`,
`slos.latency[p99]`, `signature.inputs[features]`, `entries[fraud-scorer@3]`,
`privacy.redactions[text]`. A keyed item with one field besides its key
collapses onto the key (`slos.latency[p99]` is the objective's seconds). Lists
of plain values (`workers`, `shape`, redaction `kinds`) are one leaf each.
`None` counts as absent, so setting an optional field reads as `+`.

The `estimate` of a shard, the `capacity` of a model and the measured
`agreement` of its built artifact are derived: they move when a model file, an
evaluation set or a profile changes, not the spec. They are listed, but apart,
under a `# derived` line. The plan's `content_hash` is never compared. The
`source` and `artifact` files are not derived: a new artifact is what the
workers will load.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from inferplane.compiler.plan import Plan
from inferplane.compiler.review import PLAIN, Style, format_shape, format_size
from inferplane.compiler.units import format_duration, format_rate

Action = Literal["+", "~", "-"]
Kind = Literal["gateway", "target", "model", "route"]

# The field that names an item in a list of objects, by the list's field name.
_ITEM_KEYS = {
    "shards": "target",
    "latency": "percentile",
    "inputs": "name",
    "outputs": "name",
    "redactions": "input",
}
# The value a collapsed item stands for, so that it is formatted by its unit.
_COLLAPSED = {"latency": "seconds", "entries": "percent"}


@dataclass(frozen=True)
class FieldChange:
    """One leaf: `old` is None when it is added, `new` is None when removed."""

    path: str
    old: Any
    new: Any

    @property
    def action(self) -> Action:
        return "+" if self.old is None else "-" if self.new is None else "~"

    @property
    def derived(self) -> bool:
        return ".estimate." in self.path or self.path.startswith(("capacity.", "agreement."))


@dataclass(frozen=True)
class Change:
    action: Action
    kind: Kind
    key: str
    fields: list[FieldChange] = field(default_factory=list)


@dataclass(frozen=True)
class PlanDiff:
    changes: list[Change] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not self.changes

    def _count(self, action: Action) -> int:
        return sum(c.action == action for c in self.changes)

    @property
    def to_add(self) -> int:
        return self._count("+")

    @property
    def to_change(self) -> int:
        return self._count("~")

    @property
    def to_destroy(self) -> int:
        return self._count("-")


def _item_key(list_name: str, item: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The item's key and its other fields."""
    if list_name == "entries":
        rest = {k: v for k, v in item.items() if k not in ("model", "version")}
        return f"{item['model']}@{item['version']}", rest
    name = _ITEM_KEYS.get(list_name, "name")
    return str(item[name]), {k: v for k, v in item.items() if k != name}


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted path → leaf value, in field order, list items by key; None and [] left out."""
    flat: dict[str, Any] = {}
    for name, value in data.items():
        path = f"{prefix}{name}"
        if isinstance(value, Mapping) and set(value) == {"model", "version"}:
            flat[path] = f"{value['model']}@{value['version']}"  # a fallback
        elif isinstance(value, Mapping):
            flat.update(flatten(value, path + "."))
        elif isinstance(value, list) and value and isinstance(value[0], Mapping):
            seen: dict[str, int] = {}
            for item in value:
                key, rest = _item_key(name, item)
                seen[key] = seen.get(key, 0) + 1
                key += f"#{seen[key]}" if seen[key] > 1 else ""
                if len(rest) == 1:
                    flat[f"{path}[{key}]"] = next(iter(rest.values()))
                else:
                    flat.update(flatten(rest, f"{path}[{key}]."))
        elif value is not None and value != []:
            flat[path] = tuple(value) if isinstance(value, list) else value
    return flat


def _merged_order(old: list[str], new: list[str]) -> list[str]:
    """New's paths, each path only in old placed after its predecessor in old."""
    order, present, previous = list(new), set(new), None
    for path in old:
        if path not in present:
            order.insert(order.index(previous) + 1 if previous is not None else 0, path)
            present.add(path)
        previous = path
    return order


def diff_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[FieldChange]:
    a, b = flatten(old), flatten(new)
    return [
        FieldChange(path, a.get(path), b.get(path))
        for path in _merged_order(list(a), list(b))
        if a.get(path) != b.get(path)
    ]


def _compare(
    kind: Kind, old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]
) -> Iterable[Change]:
    for key in _merged_order(list(old), list(new)):
        if key not in old:
            yield Change("+", kind, key)
        elif key not in new:
            yield Change("-", kind, key)
        elif fields := diff_fields(old[key], new[key]):
            yield Change("~", kind, key, fields)


def _dump(plan: Plan, attr: str) -> dict[str, dict[str, Any]]:
    items = (item.model_dump(mode="json") for item in getattr(plan, attr))
    if attr == "models":
        return {f"{m.pop('name')}@{m.pop('version')}": m for m in items}
    return {item.pop("name"): item for item in items}


def diff_plans(old: Plan, new: Plan) -> PlanDiff:
    """The changes that turn `old` into `new`: gateway, targets, models, routes."""
    changes: list[Change] = []
    gateway = diff_fields(old.gateway.model_dump(mode="json"), new.gateway.model_dump(mode="json"))
    if gateway:
        changes.append(Change("~", "gateway", "gateway", gateway))
    for kind, attr in (("target", "targets"), ("model", "models"), ("route", "routes")):
        changes.extend(_compare(kind, _dump(old, attr), _dump(new, attr)))
    return PlanDiff(changes)


def format_value(path: str, value: Any) -> str:
    """A leaf value in the spec's units, chosen by the field the path ends in."""
    last = path.rsplit(".", 1)[-1]
    if last.endswith("]"):
        list_name = last.split("[", 1)[0]
        last = _COLLAPSED.get(list_name, list_name)
    if isinstance(value, bool):
        return "true" if value else "false"
    if last == "shape":
        return format_shape(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    if isinstance(value, int | float):
        if last.endswith("_s") or last == "seconds":
            return format_duration(value)
        if last.endswith("_rps"):
            return format_rate(value)
        if last.endswith("_bytes"):
            return format_size(int(value))
        if last.endswith("percent"):
            return f"{value:g}%"
        if last in ("share", "top1_agreement"):
            return f"{value * 100:.3g}%"
        return f"{value:g}"
    return str(value) if value != "" else '""'


def _field_line(f: FieldChange, style: Style) -> str:
    colour = {"+": style.green, "~": style.yellow, "-": style.red}[f.action]
    if f.action == "+":
        text = format_value(f.path, f.new)
    elif f.action == "-":
        text = format_value(f.path, f.old)
    else:
        text = f"{format_value(f.path, f.old)} → {format_value(f.path, f.new)}"
    return f"      {colour(f.action)} {f.path}: {text}"


def render_diff(diff: PlanDiff, style: Style = PLAIN) -> str:
    """The diff as text ending in a newline; one summary line at the end."""
    if diff.is_empty:
        return style.bold("No changes.") + " The plan matches the spec.\n"
    colour = {"+": style.green, "~": style.yellow, "-": style.red}
    lines = []
    for c in diff.changes:
        name = "" if c.kind == "gateway" else " " + style.bold(c.key)
        lines.append(f"  {colour[c.action](c.action)} {c.kind}{name}")
        lines += [_field_line(f, style) for f in c.fields if not f.derived]
        derived = [f for f in c.fields if f.derived]
        if derived:
            lines.append(
                style.dim("      # derived: from the model file, hardware and replica ranges")
            )
            lines += [style.dim(_field_line(f, PLAIN)) for f in derived]
    summary = (
        f"Plan: {diff.to_add} to add, {diff.to_change} to change, {diff.to_destroy} to destroy."
    )
    return "\n".join([*lines, "", style.bold(summary)]) + "\n"
