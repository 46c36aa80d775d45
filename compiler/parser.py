"""Parse `.infer` text into a `SyntaxFile`, reporting every syntax error.

Lark only parses: the grammar is LALR with positions, loaded once. Errors
never raise; they become E0001 diagnostics, and the parser recovers so that
one run finds them all:

1. Lexing. An unexpected character is reported, the rest of its line blanked,
   and lexing starts again.
2. Parsing. Tokens are fed to Lark's interactive parser one by one, with a
   checkpoint at every end of line (a count of accepted tokens: `_Replay`).
   On an unexpected token the parser goes back to the checkpoint and skips
   the rest of the line (a whole block, when the bad line opened one), so
   each bad line gives one error and the lines after it are still checked.
   A top-level header that lost its `{` skips its indented body instead of
   reporting every line of it.
"""

from __future__ import annotations

import functools
from importlib import resources

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedToken

from inferplane.compiler import diagnostics as codes
from inferplane.compiler.diagnostics import Diagnostic, Diagnostics, Note
from inferplane.compiler.spans import Span
from inferplane.compiler.syntax import (
    Block,
    Comment,
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

_MAX_ERRORS = 50
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}

# How an expected terminal reads in a message.
_TERMINAL_NAMES = {
    "_NL": "end of line",
    "$END": "end of file",
    "NAME": "a name",
    "REF": "a model reference (`name@version`)",
    "STRING": "a string",
    "NUMBER": "a number",
    "QUANTITY": "a quantity (`20ms`)",
    "TYPE_OPEN": "a tensor type (`fp32[…]`)",
}


@functools.cache
def _lark() -> Lark:
    grammar = resources.files("inferplane.compiler").joinpath("grammar.lark")
    return Lark(
        grammar.read_text(encoding="utf-8"),
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=False,
    )


def parse(text: str, diagnostics: Diagnostics) -> SyntaxFile:
    """Parse `text`; syntax errors go to `diagnostics`, never raised."""
    found = Diagnostics(diagnostics.file)
    tokens, comments = _lex(text, found)
    tree = _parse_tokens(tokens, found)
    statements = _Builder(found).file(tree) if tree is not None else ()
    diagnostics.items.extend(_one_per_line(found.items))
    return SyntaxFile(statements, tuple(comments), text)


def _one_per_line(found: list[Diagnostic]) -> list[Diagnostic]:
    """The first syntax error of each line; later ones are usually echoes."""
    first: dict[int, Diagnostic] = {}
    for d in sorted(found, key=lambda d: (d.span.line, d.span.column)):
        first.setdefault(d.span.line, d)
    return list(first.values())


# ---- lexing -----------------------------------------------------------------


def _lex(text: str, diagnostics: Diagnostics) -> tuple[list[Token], list[Comment]]:
    lark = _lark()
    for _ in range(_MAX_ERRORS):
        try:
            tokens = list(lark.lex(text, dont_ignore=True))
        except UnexpectedCharacters as e:
            _report_character(text, e, diagnostics)
            text = _blank_rest_of_line(text, e.pos_in_stream)
            continue
        break
    else:  # pragma: no cover - only a file made of bad characters gets here
        return [], []
    comments = [Comment(str(t), _token_span(t)) for t in tokens if t.type == "COMMENT"]
    ignored = set(lark.ignore_tokens)
    return [t for t in tokens if t.type not in ignored], comments


def _report_character(text: str, e: UnexpectedCharacters, out: Diagnostics) -> None:
    char = text[e.pos_in_stream]
    span = Span(e.line, e.column, e.line, e.column + 1, e.pos_in_stream, e.pos_in_stream + 1)
    if char == '"':
        out.add(
            codes.SYNTAX,
            "unterminated string",
            span,
            label='this string has no closing `"` on its line',
            help='strings end on the line they start; write a newline as "\\n"',
        )
    else:
        out.add(
            codes.SYNTAX,
            f"unexpected character `{char}`",
            span,
            label="not part of the language here",
        )


def _blank_rest_of_line(text: str, pos: int) -> str:
    end = text.find("\n", pos)
    end = len(text) if end == -1 else end
    return text[:pos] + " " * (end - pos) + text[end:]


# ---- parsing with recovery ----------------------------------------------------


class _Replay:
    """The tokens the parser has accepted, and a way back to any line boundary.

    Copying Lark's parser state at every line would deep-copy the whole tree
    built so far, line after line (quadratic: minutes for a 4,000-line spec).
    Instead the accepted tokens are kept, and going back to a checkpoint
    feeds them again to a fresh parser: no cost on a clean file, one pass
    over the file per syntax error.
    """

    def __init__(self) -> None:
        self.accepted: list[Token] = []

    def feed(self, parser, token: Token) -> None:
        parser.feed_token(token)
        self.accepted.append(token)

    def back_to(self, boundary: int):
        del self.accepted[boundary:]
        parser = _lark().parse_interactive("")
        for token in self.accepted:
            parser.feed_token(token)
        return parser


def _parse_tokens(tokens: list[Token], diagnostics: Diagnostics) -> Tree | None:
    replay = _Replay()
    parser = _lark().parse_interactive("")
    boundary, checkpoint_index = 0, 0  # accepted tokens / input index at the checkpoint
    open_braces: list[Token] = []  # unclosed `{`, for the end-of-file message
    open_brackets: list[Token] = []  # unclosed `[`: lists may span lines
    depth_at_checkpoint = 0
    errors, last_error_index = 0, -1
    i = 0
    while i < len(tokens):
        token = tokens[i]
        try:
            replay.feed(parser, token)
        except UnexpectedToken as e:
            errors += 1
            if errors > _MAX_ERRORS:
                return None
            previous = tokens[i - 1] if i else None
            _report_token(e, token, previous, open_brackets, depth_at_checkpoint, diagnostics)
            parser = replay.back_to(boundary)
            del open_braces[depth_at_checkpoint:]
            open_brackets.clear()
            resume = _skip_bad_line(tokens, checkpoint_index, i, depth_at_checkpoint)
            # A `}` dropped with the bad line still closes its block.
            skipped = tokens[checkpoint_index:resume]
            for _ in range(-_balance(skipped)):
                if not open_braces:
                    break
                closing = next(t for t in reversed(skipped) if t.type == "RBRACE")
                replay.feed(parser, closing)
                open_braces.pop()
            boundary = len(replay.accepted)
            depth_at_checkpoint = len(open_braces)
            # Always make progress, even when the end of line itself was bad.
            i = resume if resume > last_error_index else i + 1
            last_error_index = i
            continue
        if token.type == "LBRACE":
            open_braces.append(token)
        elif token.type == "RBRACE" and open_braces:
            open_braces.pop()
        elif token.type in ("LSQB", "TYPE_OPEN"):
            open_brackets.append(token)
        elif token.type == "RSQB" and open_brackets:
            open_brackets.pop()
        i += 1
        if token.type == "_NL" and not open_brackets:
            boundary, checkpoint_index = len(replay.accepted), i
            depth_at_checkpoint = len(open_braces)
    last = tokens[-1] if tokens else None
    try:
        return parser.feed_eof(last)
    except UnexpectedToken as e:
        _report_eof(e, open_braces, diagnostics)
    # Close what is still open so that the rest of the file is still checked.
    parser = replay.back_to(boundary)
    try:
        for brace in reversed(open_braces[:depth_at_checkpoint]):
            parser.feed_token(Token.new_borrow_pos("RBRACE", "}", brace))
        return parser.feed_eof(last)
    except UnexpectedToken:
        return None


def _skip_bad_line(tokens: list[Token], start: int, bad: int, depth: int) -> int:
    """Index of the token to resume at after the line holding `tokens[bad]`.

    The parser is back at `start`, the beginning of that line. The line's
    tokens are dropped up to its end of line; if the line opened a block, the
    block goes too, and so does the indented body of a top-level header whose
    `{` is missing.
    """
    i, balance = start, 0
    while i < len(tokens) and (tokens[i].type != "_NL" or i < bad):
        balance += {"LBRACE": 1, "RBRACE": -1}.get(tokens[i].type, 0)
        i += 1
    if balance <= 0 and depth == 0 and _opens_indented_body(tokens, i):
        balance = 1  # `model x` with its `{` forgotten: skip to its `}`
    while balance > 0 and i < len(tokens):
        balance += {"LBRACE": 1, "RBRACE": -1}.get(tokens[i].type, 0)
        i += 1
    return i


def _balance(tokens: list[Token]) -> int:
    return sum({"LBRACE": 1, "RBRACE": -1}.get(t.type, 0) for t in tokens)


def _opens_indented_body(tokens: list[Token], nl_index: int) -> bool:
    follower = next((t for t in tokens[nl_index:] if t.type != "_NL"), None)
    return follower is not None and follower.column > 1 and follower.type != "RBRACE"


def _describe(token: Token) -> str:
    if token.type in ("_NL", "$END"):
        return _TERMINAL_NAMES[token.type]
    return f"`{token}`"


def _expected(names: set[str]) -> str:
    lark = _lark()
    shown = []
    for name in sorted(names):
        if name in _TERMINAL_NAMES:
            shown.append(_TERMINAL_NAMES[name])
            continue
        pattern = lark.get_terminal(name).pattern
        shown.append(f"`{pattern.value}`" if pattern.type == "str" else name)
    shown = sorted(set(shown))
    if len(shown) == 1:
        return shown[0]
    return ", ".join(shown[:-1]) + " or " + shown[-1]


def _report_token(
    e: UnexpectedToken,
    token: Token,
    previous: Token | None,
    open_brackets: list[Token],
    depth: int,
    out: Diagnostics,
) -> None:
    span = _token_span(token)
    if token.type == "_NL":
        # Point just past the line's last token, not at trailing blanks or comments.
        at = previous if previous is not None and previous.end_line == token.line else token
        line, column, offset = at.end_line, at.end_column, at.end_pos
        if at is token:
            line, column, offset = token.line, token.column, token.start_pos
        span = Span(line, column, line, column + 1, offset, offset + 1)
    expected = set(e.expected or ())
    if depth == 0 and "LBRACE" in expected:
        expected = {"LBRACE"}  # a top-level header needs its block
    message = f"unexpected {_describe(token)}, expected {_expected(expected)}"
    help_text = ""
    if expected == {"LBRACE"}:
        help_text = "a definition's fields go in a `{ … }` block"
    elif token.type == "LBRACE":
        help_text = "a block opens at the end of the line that names it"
    if open_brackets and open_brackets[-1].line < token.line:
        # A bracket left open on an earlier line: that line is the one to fix.
        bracket = open_brackets[-1]
        out.add(
            codes.SYNTAX,
            "this `[` is never closed",
            _token_span(bracket),
            label="unclosed `[`",
            notes=[Note(f"found {_describe(token)} on line {token.line} instead of `]`", span)],
            help="close the list with `]`; lists may span lines",
        )
        return
    notes = [Note("this `[` is not closed", _token_span(b)) for b in open_brackets[-1:]]
    out.add(
        codes.SYNTAX,
        message,
        span,
        label=f"unexpected {_describe(token)}",
        notes=notes,
        help=help_text,
    )


def _report_eof(e: UnexpectedToken, open_braces: list[Token], out: Diagnostics) -> None:
    token = e.token
    line, column = (token.line or 1), (token.column or 1)
    span = Span(line, column, line, column)
    notes = []
    if open_braces:
        brace = open_braces[-1]
        notes.append(Note("this `{` is never closed", _token_span(brace)))
    out.add(
        codes.SYNTAX,
        f"unexpected end of file, expected {_expected(set(e.expected or ()))}",
        span,
        notes=notes,
        help="add the missing `}`" if open_braces else "",
    )


# ---- tree to syntax nodes -----------------------------------------------------


def _token_span(token: Token) -> Span:
    return Span(
        token.line, token.column, token.end_line, token.end_column, token.start_pos, token.end_pos
    )


def _tree_span(tree: Tree) -> Span:
    m = tree.meta
    return Span(m.line, m.column, m.end_line, m.end_column, m.start_pos, m.end_pos)


class _Builder:
    """Turns the Lark tree into frozen syntax nodes; bad escapes are E0001."""

    def __init__(self, diagnostics: Diagnostics):
        self.diagnostics = diagnostics

    def file(self, tree: Tree) -> tuple[Statement, ...]:
        return tuple(self.statement(child) for child in tree.children)

    def statement(self, tree: Tree) -> Statement:
        key_node, *rest = tree.children
        block = None
        if rest and isinstance(rest[-1], Tree) and rest[-1].data == "block":
            block = self.block(rest.pop())
        key = self.value(key_node)
        assert isinstance(key, (Word, Ref))
        return Statement(key, tuple(self.value(v) for v in rest), block, _tree_span(tree))

    def block(self, tree: Tree) -> Block:
        return Block(tuple(self.statement(c) for c in tree.children), _tree_span(tree))

    def value(self, node: Tree | Token) -> Value:
        if isinstance(node, Token):
            return self.token(node)
        span = _tree_span(node)
        if node.data == "word":
            return Word(str(node.children[0]), span)
        if node.data == "range":
            low, high = (self.token(t) for t in node.children)
            assert isinstance(low, Number) and isinstance(high, Number)
            return Range(low, high, span)
        if node.data == "list":
            return ListValue(tuple(self.value(c) for c in node.children), span)
        if node.data == "tensor_type":
            opener, *dims = node.children
            name = str(opener)[:-1]
            start = _token_span(opener)
            dtype = Word(
                name,
                Span(
                    start.line,
                    start.column,
                    start.line,
                    start.column + len(name),
                    start.offset,
                    start.offset + len(name),
                ),
            )
            return TensorType(dtype, tuple(self.value(d) for d in dims), span)  # type: ignore[misc]
        raise AssertionError(f"unexpected tree {node.data}")

    def token(self, token: Token) -> Value:
        span = _token_span(token)
        text = str(token)
        if token.type == "NUMBER":
            return Number(float(text), text, span)
        if token.type == "QUANTITY":
            digits = len(text.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ%"))
            return Quantity(float(text[:digits]), text[digits:], text, span)
        if token.type == "STRING":
            return String(self.unescape(text, span), text, span)
        if token.type == "REF":
            name, _, version = text.partition("@")
            return Ref(name, int(version), span)
        if token.type == "NAME":
            return Word(text, span)
        raise AssertionError(f"unexpected token {token.type}")

    def unescape(self, raw: str, span: Span) -> str:
        out, i, body = [], 0, raw[1:-1]
        while i < len(body):
            ch = body[i]
            if ch == "\\":
                nxt = body[i + 1]
                if nxt not in _ESCAPES:
                    column = span.column + 1 + i
                    self.diagnostics.add(
                        codes.SYNTAX,
                        f"unknown escape `\\{nxt}` in a string",
                        Span(span.line, column, span.line, column + 2),
                        help='the escapes are \\" \\\\ \\n \\t; write a backslash as \\\\',
                    )
                    out.append(nxt)
                else:
                    out.append(_ESCAPES[nxt])
                i += 2
                continue
            out.append(ch)
            i += 1
        return "".join(out)
