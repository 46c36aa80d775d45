"""The parser: spans, values, comments, and recovery from syntax errors."""

from __future__ import annotations

from inferplane.compiler.diagnostics import Diagnostics
from inferplane.compiler.parser import parse
from inferplane.compiler.syntax import (
    ListValue,
    Number,
    Quantity,
    Range,
    Ref,
    String,
    TensorType,
    Word,
)


def parsed(text: str):
    out = Diagnostics("t.infer")
    tree = parse(text, out)
    return tree, out.sorted()


def test_values_of_every_kind_with_their_spans():
    tree, errors = parsed(
        'model m {\n  x a "s\\"q" 12 0.5 20ms 99.9% 2..8 ["a", b] fp32[batch, 3] m@3\n}\n'
    )
    assert errors == []
    (stmt,) = tree.statements[0].block.statements
    kinds = [type(v) for v in stmt.values]
    assert kinds == [
        Word,
        String,
        Number,
        Number,
        Quantity,
        Quantity,
        Range,
        ListValue,
        TensorType,
        Ref,
    ]
    string = stmt.values[1]
    assert string.value == 's"q' and string.raw == '"s\\"q"'
    assert (string.span.line, string.span.column, string.span.end_column) == (2, 7, 13)
    quantity = stmt.values[4]
    assert (quantity.number, quantity.unit) == (20.0, "ms")
    assert stmt.values[5].unit == "%"
    tensor = stmt.values[8]
    assert tensor.dtype.text == "fp32" and [d.raw for d in tensor.dims] == ["batch", "3"]
    assert tensor.dtype.span.end_column - tensor.dtype.span.column == 4
    ref = stmt.values[9]
    assert (ref.name, ref.version) == ("m", 3)


def test_comments_are_collected_with_positions_and_hashes_in_strings_are_not():
    tree, errors = parsed('# top\ntarget t {  # after brace\n  site "a#b"\n}\n')
    assert errors == []
    assert [(c.text, c.span.line, c.span.column) for c in tree.comments] == [
        ("# top", 1, 1),
        ("# after brace", 2, 13),
    ]
    assert tree.statements[0].block.statements[0].values[0].value == "a#b"


def test_each_bad_line_gives_one_error_and_later_lines_still_parse():
    tree, errors = parsed(
        "target a {\n  x [1, 2\n  y ]\n  z @\n  ok 1\n}\nmodel b {\n  fine 2\n}\n"
    )
    assert [(e.code.code, e.span.line) for e in errors] == [("E0001", 2), ("E0001", 4)]
    assert [s.key.raw for s in tree.statements] == ["target", "model"]
    # A bad line is dropped by the parser; a bad character blanks only the rest
    # of its line (the checker then ignores that line: it has its error).
    assert [s.key.raw for s in tree.statements[0].block.statements] == ["z", "ok"]


def test_unclosed_block_at_end_of_file_points_at_its_brace():
    tree, errors = parsed("target a {\n  hardware cpu\n")
    (error,) = errors
    assert "end of file" in error.message and "`}`" in error.message
    assert error.notes[0].span.line == 1 and error.notes[0].span.column == 10
    # The block is closed for the checker, so its fields are still read.
    assert tree.statements[0].block.statements[0].key.raw == "hardware"


def test_missing_brace_after_a_header_skips_its_body_without_cascade():
    tree, errors = parsed('model a\n  source "x"\n  shard t\n}\ntarget t {\n  hardware cpu\n}\n')
    assert [(e.span.line, e.span.column) for e in errors] == [(1, 8)]
    assert errors[0].message == "unexpected end of line, expected `{`"
    assert [s.key.raw for s in tree.statements] == ["target"]


def test_lexer_errors_unterminated_strings_and_unknown_escapes():
    _, errors = parsed('target a {\n  s "abc\n  t $x\n  u "a\\qb"\n}\n')
    assert [(e.span.line, e.message) for e in errors] == [
        (2, "unterminated string"),
        (3, "unexpected character `$`"),
        (4, "unknown escape `\\q` in a string"),
    ]


def test_lists_may_span_lines_and_hold_comments():
    tree, errors = parsed('target a {\n  workers [\n    # first\n    "a",\n\n    "b",\n  ]\n}\n')
    assert errors == []
    (stmt,) = tree.statements[0].block.statements
    assert [v.value for v in stmt.values[0].items] == ["a", "b"]


def test_an_empty_file_and_a_comment_only_file_parse_to_nothing():
    for text in ("", "\n\n", "# nothing here\n"):
        tree, errors = parsed(text)
        assert tree.statements == () and errors == []
