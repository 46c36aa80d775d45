"""The canonical formatter behind `infc fmt`: one layout for every spec.

`format_text` parses the spec (a file with syntax errors is never formatted;
its E0001 diagnostics come back instead) and prints the syntax tree again.
The layout is the one of the contract's example (`specs/payments.infer`),
which formats to itself:

Lines and blocks
  - Two spaces of indentation per block level. `key values… {` keeps its `{`
    on the header line; `}` stands alone at the block's indentation. A block
    written on one line (`tls { cert "a" }`) gets one statement per line.
  - Values are printed from their source text (strings keep their escapes,
    numbers stay as written) with one space between them; a list spread over
    several lines is joined onto one: `[a, b]`, `fp32[batch, 30]`, `2..8`.

Blank lines
  - Exactly one blank line between top-level definitions (it goes above the
    comments that sit right on top of a definition). Elsewhere a run of blank
    lines becomes one; none right after `{` or right before `}`; none at the
    start of the file; the file ends with exactly one newline; no line ends in
    whitespace.

Alignment
  - A *group* is a run of consecutive one-line statements of a block; a blank
    line or a nested block ends it, a comment on its own line does not.
  - Inside a group, adjacent statements of the same *section* pad their keys
    to the longest key plus one space. Sections are the contract example's
    grouping (`_SECTIONS`): `source version precision eval` align together,
    `input output shard batch slo` together, `privacy` alone, and so on. Keys
    that the table does not know (route entries such as `fraud-scorer@3`)
    share one section, so a route's percentages line up.
  - Within such a run, adjacent statements of the same *shape* (the same
    number of values of the same kinds, a quantity's kind being its unit) are
    laid out as a table: every value column but the last is padded to its
    widest cell. That lines up `input  features fp32[…]` / `output score
    fp32[…]` and `shard gpu-fra weight 2` / `shard tpu-us  weight 1`, but not
    `slo p99 20ms` / `slo throughput 5000rps`.

Comments (every one is kept, its text right-trimmed)
  - A comment on its own line stays on its own line, at the indentation of
    the statement that follows it; at the end of a block it stays inside the
    block, before `}`; at the end of the file it stays there.
  - A trailing comment stays at the end of the line it followed: its
    statement's, or the `{` / `}` line. It starts at column 35 when that
    leaves at least two spaces after the code, otherwise three spaces after
    the code (as in the contract example); the trailing comments of a group
    share one column, the rightmost that any of them needs.
  - A comment inside a statement that spans lines (a multi-line list) moves
    onto its own line above the statement, since the statement becomes one
    line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from inferplane.compiler.diagnostics import Diagnostic, Diagnostics
from inferplane.compiler.parser import parse
from inferplane.compiler.syntax import Comment, Quantity, Statement, SyntaxFile, Value

INDENT = "  "
COMMENT_COLUMN = 34  # 0-based: trailing comments start at column 35 ...
COMMENT_GAP = 2  # ... when the code leaves at least this many spaces,
OVERFLOW_GAP = 3  # ... else this many after the code

# Keys that align with each other when adjacent. The grouping follows the
# contract example, the house style; the index only tells sections apart.
_SECTIONS = {
    key: index
    for index, keys in enumerate(
        (
            ("listen", "metrics"),
            ("auth",),
            ("max_message",),
            ("cert", "key", "client_ca"),
            ("hardware", "threads", "devices", "topology", "location", "replicas"),
            ("accelerator",),
            ("workers",),
            ("source", "version", "precision", "eval"),
            ("input", "output", "shard", "batch", "slo"),
            ("privacy",),
            ("fallback",),
        )
    )
    for key in keys
}
_OTHER_SECTION = -1  # route entries and keys the table does not know

_BLANK_LINE = re.compile(r"\n[ \t\f\r]*\n")


@dataclass(frozen=True, slots=True)
class FormatResult:
    text: str | None  # None when the spec has syntax errors
    diagnostics: list[Diagnostic]


def format_text(text: str, file: str = "<spec>") -> FormatResult:
    """The canonical layout of `text`, or None and the syntax errors."""
    diagnostics = Diagnostics(file)
    tree = parse(text, diagnostics)
    if diagnostics.has_errors:
        return FormatResult(None, diagnostics.items)
    lines = _Printer(tree).print_file()
    _fix_blank_lines(lines)
    for group in _groups(lines):
        _align(group)
    out = "".join(("\n" if line.blank else "") + _render(line) + "\n" for line in lines)
    return FormatResult(out, diagnostics.items)


@dataclass(slots=True)
class _Line:
    """One output line: a statement, a `{` header, a `}`, or a comment."""

    kind: str  # "statement" | "open" | "close" | "comment"
    depth: int
    cells: list[str]  # key then values for a statement; the whole text otherwise
    blank: bool = False  # a blank line above it
    comment: str = ""  # the trailing comment
    section: int = _OTHER_SECTION
    shape: tuple[str, ...] = ()
    widths: list[int] = field(default_factory=list)  # padded cell widths
    comment_column: int = 0


class _Printer:
    """Walks the tree in source order, weaving the comments in by offset."""

    def __init__(self, tree: SyntaxFile):
        self.tree = tree
        self.text = tree.text
        self.comments = list(tree.comments)
        self.taken = 0
        self.last_end = 0  # end offset of the last thing printed
        self.lines: list[_Line] = []

    def print_file(self) -> list[_Line]:
        for statement in self.tree.statements:
            self.statement(statement, 0)
        self.comments_before(len(self.text) + 1, 0)
        return self.lines

    def statement(self, s: Statement, depth: int) -> None:
        self.comments_before(s.span.offset, depth)
        header_end = s.block.span.offset + 1 if s.block else s.span.end_offset
        blank = self.blank_before(s.span.offset)
        # Comments inside a multi-line header would end up mid-line: lift them.
        for comment in self.take(header_end):
            self.add(_Line("comment", depth, [_text(comment)], blank))
            blank = False
        cells = [s.key.raw, *(v.raw for v in s.values)]
        self.last_end = header_end
        if s.block is None:
            section = _SECTIONS.get(s.key.raw, _OTHER_SECTION)
            self.add(
                _Line(
                    "statement",
                    depth,
                    cells,
                    blank,
                    section=section,
                    shape=tuple(_kind(v) for v in s.values),
                )
            )
            return
        self.add(_Line("open", depth, [" ".join([*cells, "{"])], blank))
        for inner in s.block.statements:
            self.statement(inner, depth + 1)
        close = s.block.span.end_offset - 1
        self.comments_before(close, depth + 1)  # they stay inside the block
        self.add(_Line("close", depth, ["}"]))
        self.last_end = close + 1

    def comments_before(self, offset: int, depth: int) -> None:
        for comment in self.take(offset):
            if self.on_own_line(comment):
                blank = self.blank_before(comment.span.offset)
                self.add(_Line("comment", depth, [_text(comment)], blank))
            else:  # it followed code on its line: it trails the last line printed
                self.lines[-1].comment = _text(comment)
            self.last_end = comment.span.end_offset

    def take(self, offset: int) -> list[Comment]:
        start = self.taken
        while self.taken < len(self.comments) and self.comments[self.taken].span.offset < offset:
            self.taken += 1
        return self.comments[start : self.taken]

    def on_own_line(self, comment: Comment) -> bool:
        line_start = self.text.rfind("\n", 0, comment.span.offset) + 1
        return not self.text[line_start : comment.span.offset].strip()

    def blank_before(self, offset: int) -> bool:
        return _BLANK_LINE.search(self.text, self.last_end, offset) is not None

    def add(self, line: _Line) -> None:
        self.lines.append(line)


def _text(comment: Comment) -> str:
    return comment.text.rstrip()


def _kind(value: Value) -> str:
    return value.unit if isinstance(value, Quantity) else type(value).__name__


def _fix_blank_lines(lines: list[_Line]) -> None:
    for i, line in enumerate(lines):
        if i == 0 or line.kind == "close" or lines[i - 1].kind == "open":
            line.blank = False
        elif line.kind == "open" and line.depth == 0:
            # One blank line above a definition and the comments right on top of it.
            first = i
            while not lines[first].blank and lines[first - 1].kind == "comment":
                first -= 1
                if first == 0:
                    break
            lines[first].blank = first > 0


def _groups(lines: list[_Line]) -> list[list[_Line]]:
    """Runs of statement and comment lines, cut by blank lines and blocks."""
    groups: list[list[_Line]] = []
    current: list[_Line] = []
    for line in lines:
        if line.blank or line.kind in ("open", "close"):
            groups.append(current)
            current = []
        if line.kind in ("open", "close"):
            groups.append([line])
        else:
            current.append(line)
    groups.append(current)
    return [g for g in groups if g]


def _align(group: list[_Line]) -> None:
    statements = [line for line in group if line.kind == "statement"]
    for run in _runs(statements, lambda line: line.section):
        key_width = max(len(line.cells[0]) for line in run)
        for same_shape in _runs(run, lambda line: line.shape):
            columns = len(same_shape[0].shape)
            widths = [max(len(line.cells[i]) for line in same_shape) for i in range(1, columns)]
            for line in same_shape:
                line.widths = [key_width, *widths]
    column = max((_comment_column(line) for line in group if line.comment), default=0)
    for line in group:
        line.comment_column = column


def _comment_column(line: _Line) -> int:
    length = len(_code(line))
    return COMMENT_COLUMN if length + COMMENT_GAP <= COMMENT_COLUMN else length + OVERFLOW_GAP


def _runs(lines: list[_Line], key) -> list[list[_Line]]:
    """Maximal runs of adjacent lines with the same `key(line)`."""
    runs: list[list[_Line]] = []
    for line in lines:
        if runs and key(runs[-1][-1]) == key(line):
            runs[-1].append(line)
        else:
            runs.append([line])
    return runs


def _code(line: _Line) -> str:
    cells = [cell.ljust(width) for cell, width in zip(line.cells, line.widths, strict=False)]
    cells += line.cells[len(cells) :]
    return INDENT * line.depth + " ".join(cells).rstrip()


def _render(line: _Line) -> str:
    code = _code(line)
    if not line.comment:
        return code
    return code.ljust(line.comment_column) + line.comment
