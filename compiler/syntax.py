"""The concrete syntax tree: what the parser hands to the checker and formatter.

It mirrors `grammar.lark` one to one and knows nothing about the meaning of
fields. Every node carries its span; values keep their source text (`raw`)
so that the formatter can print them as written.
"""

from __future__ import annotations

from dataclasses import dataclass

from inferplane.compiler.spans import Span


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    span: Span

    @property
    def raw(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Ref:
    """`name@version`, a versioned model reference."""

    name: str
    version: int
    span: Span

    @property
    def raw(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True, slots=True)
class String:
    value: str  # unescaped
    raw: str  # as written, quotes included
    span: Span


@dataclass(frozen=True, slots=True)
class Number:
    value: float
    raw: str
    span: Span

    @property
    def is_integer(self) -> bool:
        return "." not in self.raw


@dataclass(frozen=True, slots=True)
class Quantity:
    """A number glued to its unit: `20ms`, `5000rps`, `99.9%`, `64MiB`."""

    number: float
    unit: str
    raw: str
    span: Span


@dataclass(frozen=True, slots=True)
class Range:
    low: Number
    high: Number
    span: Span

    @property
    def raw(self) -> str:
        return f"{self.low.raw}..{self.high.raw}"


@dataclass(frozen=True, slots=True)
class ListValue:
    items: tuple[Value, ...]
    span: Span

    @property
    def raw(self) -> str:
        return "[" + ", ".join(item.raw for item in self.items) + "]"


@dataclass(frozen=True, slots=True)
class TensorType:
    """`fp32[batch, 30]`: a dtype name and its dimensions."""

    dtype: Word
    dims: tuple[Word | Number, ...]
    span: Span

    @property
    def raw(self) -> str:
        return f"{self.dtype.text}[" + ", ".join(d.raw for d in self.dims) + "]"


Value = Word | Ref | String | Number | Quantity | Range | ListValue | TensorType


@dataclass(frozen=True, slots=True)
class Block:
    statements: tuple[Statement, ...]
    span: Span  # from `{` to `}`


@dataclass(frozen=True, slots=True)
class Statement:
    """`key value… [{ … }]`. Top-level definitions are statements too."""

    key: Word | Ref
    values: tuple[Value, ...]
    block: Block | None
    span: Span


@dataclass(frozen=True, slots=True)
class Comment:
    text: str  # including the leading `#`
    span: Span


@dataclass(frozen=True, slots=True)
class SyntaxFile:
    statements: tuple[Statement, ...]
    comments: tuple[Comment, ...]
    text: str
