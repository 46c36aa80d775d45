"""`infc fmt`: the canonical layout, comments kept in place, meaning unchanged.

Besides examples with exact expected output, three properties are checked on
the example specs (every `specs/*.infer`, so new ones are covered), on tricky
inputs and on random documents: formatting is idempotent, the statements are
the same before and after (keys, raw values, nesting), and every comment
keeps its text, its order and the place it is attached to.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferplane.compiler.diagnostics import Diagnostics
from inferplane.compiler.fmt import format_text
from inferplane.compiler.parser import parse
from inferplane.compiler.syntax import Statement, SyntaxFile

SPECS_DIR = Path(__file__).resolve().parents[2] / "specs"
SPECS = sorted(SPECS_DIR.glob("*.infer"))
PAYMENTS = SPECS_DIR / "payments.infer"


def fmt(text: str) -> str:
    result = format_text(text)
    assert result.text is not None, [d.message for d in result.diagnostics]
    assert result.diagnostics == []
    return result.text


def parsed(text: str) -> SyntaxFile:
    diagnostics = Diagnostics("test.infer")
    tree = parse(text, diagnostics)
    assert not diagnostics.has_errors, [d.message for d in diagnostics.items]
    return tree


def statements(text: str) -> tuple:
    """The tree without positions: key, raw values and nested blocks."""

    def node(s: Statement) -> tuple:
        block = None if s.block is None else tuple(node(t) for t in s.block.statements)
        return (s.key.raw, tuple(v.raw for v in s.values), block)

    return tuple(node(s) for s in parsed(text).statements)


def comment_places(text: str) -> list[tuple[str, tuple]]:
    """Each comment, in order, with where it sits.

    `("before", path)` on its own line above a statement (or inside a
    multi-line statement, which the formatter lifts above it); `("after",
    path)`, `("open", path)`, `("close", path)` trailing a statement, its `{`
    or its `}`; `("end", path)` on its own line at the end of a block;
    `("eof",)` at the end of the file. A path indexes statements down blocks.
    """
    tree = parsed(text)
    starts, ends, headers = [], [], []

    def walk(items: tuple[Statement, ...], path: tuple[int, ...]) -> None:
        for i, s in enumerate(items):
            here = (*path, i)
            starts.append((s.span.offset, ("before", here)))
            if s.block is None:
                header_end = s.span.end_offset
                ends.append((header_end, ("after", here)))
            else:
                header_end = s.block.span.offset + 1
                ends.append((header_end, ("open", here)))
                walk(s.block.statements, here)
                starts.append((s.block.span.end_offset - 1, ("end", here)))
                ends.append((s.block.span.end_offset, ("close", here)))
            headers.append((s.span.offset, header_end, here))

    walk(tree.statements, ())
    places = []
    for comment in tree.comments:
        at = comment.span.offset
        inside = [path for start, end, path in headers if start < at < end]
        line_start = text.rfind("\n", 0, at) + 1
        if inside:
            place = ("before", inside[-1])
        elif text[line_start:at].strip():
            place = max((e for e in ends if e[0] <= at), key=lambda e: e[0])[1]
        else:
            place = min((s for s in starts if s[0] > at), default=(0, ("eof",)))[1]
        places.append((comment.text.rstrip(), place))
    return places


def assert_canonical(text: str) -> str:
    """Format `text` and check every property; returns the output."""
    out = fmt(text)
    assert fmt(out) == out, "not idempotent"
    assert statements(out) == statements(text)
    assert comment_places(out) == comment_places(text)
    if out:  # an empty spec stays empty
        assert out.endswith("\n") and not out.endswith("\n\n") and not out.startswith("\n")
    assert "\n\n\n" not in out
    for line in out.split("\n"):
        assert line == line.rstrip(), f"trailing whitespace: {line!r}"
        indent = len(line) - len(line.lstrip(" "))
        assert indent % 2 == 0 and not line[indent:].startswith("\t"), line
    return out


# ---- the example specs --------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_example_specs_format_stably(spec: Path) -> None:
    assert_canonical(spec.read_text(encoding="utf-8"))


def test_the_contract_example_is_canonical() -> None:
    text = PAYMENTS.read_text(encoding="utf-8")
    assert fmt(text) == text


# ---- layout ---------------------------------------------------------------------


def test_one_line_blocks_are_expanded() -> None:
    text = 'gateway { tls { cert "a" } }\nroute r { fallback m }\n'
    assert assert_canonical(text) == (
        'gateway {\n  tls {\n    cert "a"\n  }\n}\n\nroute r {\n  fallback m\n}\n'
    )


def test_statements_sharing_a_line_with_braces_get_their_own() -> None:
    text = 'model m { source "a"\n  version 2 }\n'
    assert assert_canonical(text) == 'model m {\n  source  "a"\n  version 2\n}\n'


def test_values_are_printed_as_written() -> None:
    text = (
        'model m {\n  source "a \\"b\\" \\\\ \\n"\n  version 007\n  x 0.50 -3 2..8 99.9%\n'
        '  workers [\n    "a",\n    b,\n  ]\n  input t fp32[ batch,3 ]\n}\n'
    )
    assert assert_canonical(text) == (
        'model m {\n  source  "a \\"b\\" \\\\ \\n"\n  version 007\n  x 0.50 -3 2..8 99.9%\n'
        '  workers ["a", b]\n  input t fp32[batch, 3]\n}\n'
    )


def test_indentation_and_spacing_are_normalised() -> None:
    text = 'target   t{\n\t\thardware\tcpu   \n      location onprem  "x y"\n }'
    assert assert_canonical(text) == ('target t {\n  hardware cpu\n  location onprem "x y"\n}\n')


def test_blank_lines_are_normalised() -> None:
    text = (
        "\n\n\nmodel a {\n\n\n  source s\n\n\n\n  version 1\n\n}\nmodel b {\n  source s\n"
        "  \n}\n\n\n\nroute r {\n  a 100%\n}\n\n\n"
    )
    assert assert_canonical(text) == (
        "model a {\n  source s\n\n  version 1\n}\n\nmodel b {\n  source s\n}\n\n"
        "route r {\n  a 100%\n}\n"
    )


def test_the_blank_line_between_definitions_goes_above_their_comments() -> None:
    text = "model a {\n}\n# about b\n# more\nmodel b {\n}\n# end of b\n\n# about c\nmodel c {\n}\n"
    assert assert_canonical(text) == (
        "model a {\n}\n\n# about b\n# more\nmodel b {\n}\n# end of b\n\n# about c\nmodel c {\n}\n"
    )


def test_keys_align_by_section_and_values_by_shape() -> None:
    text = """model m {
  source "m.onnx"
  version 3
  precision int8
  input features fp32[batch, 30]
  output score fp32[batch, 2]
  shard cpu-fra weight 1
  shard tpu weight 3
  slo p99 20ms
  slo p999 5ms
  slo throughput 5000rps
  privacy on-prem-only

  threads 4
  replicas 2..8
}
route r {
  fraud-scorer@3 90%
  lite 10%
  fallback lite
}
"""
    assert (
        assert_canonical(text)
        == """model m {
  source    "m.onnx"
  version   3
  precision int8
  input  features fp32[batch, 30]
  output score    fp32[batch, 2]
  shard  cpu-fra weight 1
  shard  tpu     weight 3
  slo    p99  20ms
  slo    p999 5ms
  slo    throughput 5000rps
  privacy on-prem-only

  threads  4
  replicas 2..8
}

route r {
  fraud-scorer@3 90%
  lite           10%
  fallback lite
}
"""
    )


def test_gateway_and_target_keys_align_like_the_example_specs() -> None:
    text = (
        'gateway {\n  listen "a"\n  metrics "b"\n  auth tokens_env "T"\n  max_message 4MiB\n}\n'
        'target t {\n  hardware tpu\n  accelerator "v5e"\n  topology "2x2"\n  threads 2\n'
        '  workers ["w:1"]\n}\n'
    )
    assert assert_canonical(text) == (
        'gateway {\n  listen  "a"\n  metrics "b"\n  auth tokens_env "T"\n  max_message 4MiB\n}\n\n'
        'target t {\n  hardware tpu\n  accelerator "v5e"\n  topology "2x2"\n  threads  2\n'
        '  workers ["w:1"]\n}\n'
    )


def test_comments_on_their_own_line_do_not_break_alignment() -> None:
    text = "target t {\n  threads 4\n  # why\n  replicas 2\n}\n"
    assert assert_canonical(text) == "target t {\n  threads  4\n  # why\n  replicas 2\n}\n"


# ---- comments ---------------------------------------------------------------------


def test_comments_stay_where_they_were() -> None:
    text = """# file header

# about m
model m {   # on the header
  # before source
  source "a" # trailing
  tls { # on tls
    cert "c"
    # end of tls
  } # after tls
  # end of m
}
# end of file
"""
    assert (
        assert_canonical(text)
        == """# file header

# about m
model m {                         # on the header
  # before source
  source "a"                      # trailing
  tls {                           # on tls
    cert "c"
    # end of tls
  }                               # after tls
  # end of m
}
# end of file
"""
    )


def test_trailing_comments_of_a_group_share_a_column() -> None:
    long = '  metrics "a-rather-long-host.example.internal:9464"'
    text = (
        'gateway {\n  listen "127.0.0.1:8001" # a\n'
        f'{long.replace("  metrics", "metrics")} # b\n\n  auth tokens_env "T" # c\n}}\n'
    )
    column = len(long) + 3  # pushed right by the long line, for the whole group
    assert assert_canonical(text) == (
        "gateway {\n"
        + '  listen  "127.0.0.1:8001"'.ljust(column) + "# a\n"
        + long.ljust(column) + "# b\n\n"
        + '  auth tokens_env "T"'.ljust(34) + "# c\n}\n"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("code", "column"),
    [
        ("  x 123456789012345678901234567", 34),  # 31 characters: three spaces
        ("  x 1234567890123456789012345678", 34),  # 32: two spaces still reach column 35
        ("  x 12345678901234567890123456789", 36),  # 33: three spaces after the code
    ],
)
def test_trailing_comments_start_at_column_35_if_they_can(code: str, column: int) -> None:
    out = assert_canonical(f"model m {{\n{code} # c\n}}\n")
    assert out.split("\n")[1] == code.ljust(column) + "# c"


def test_comments_inside_a_multi_line_list_move_above_it() -> None:
    text = 'target t {\n  workers [ # first\n    "a", # second\n    "b"\n  ] # last\n}\n'
    assert assert_canonical(text) == (
        'target t {\n  # first\n  # second\n  workers ["a", "b"]              # last\n}\n'
    )


def test_hashes_inside_strings_are_not_comments() -> None:
    text = 'model m {\n  source "a#b" # real\n}\n'
    assert assert_canonical(text) == 'model m {\n  source "a#b"                    # real\n}\n'


def test_comment_lines_inside_a_multi_line_list() -> None:
    assert_canonical('target t {\n  workers [\n    # note\n    "a",\n  ]\n}\n')


TRICKY = [
    "",
    "\n\n",
    "# only a comment",
    "# one\n\n\n# two\n",
    "model m {}\n",
    "model m {\n}",
    "model m { }  # empty\n",
    "model m {\n  # nothing but a comment\n}\n",
    "model m { a { b { c 1 } } }\n",
    "model m {\n  a {\n  }\n  b 1\n\n  c {\n    d\n  }\n}\n",
    "model m {\n  key_only\n  another\n}\n",
    "model m {\n  fixed\n  x 1 2 3 4 5\n  y 1 2 3 4 5\n}\n",
    "route r {\n  a@1 50% # x\n  a@2 50%\n  fallback a@1 # y\n} # z\n",
    'model m {\n  input "serving_default_x:0" fp32[batch, 4]\n  output y int64[]\n}\n',
    "target t {\r\n  hardware cpu  # crlf\r\n}\r\n",
    "model m {\n  workers [\n  ]\n  w [a,\n\n  b]\n}\n",
    "model m {\n  source s\n}\n# trailing comment with spaces   \n\n\n",
]


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_inputs(text: str) -> None:
    assert_canonical(text)


# ---- broken input ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        'model m {\n  source "a\n}\n',
        "model m {\n  source a\n",
        "model m\n  source a\n}\n",
        "model m {\n  source $\n}\n",
        'model m {\n  source "\\q"\n}\n',
        "}\n",
    ],
)
def test_broken_input_is_not_formatted(text: str) -> None:
    result = format_text(text, "broken.infer")
    assert result.text is None
    assert result.diagnostics
    assert {d.code.code for d in result.diagnostics} == {"E0001"}
    assert {d.file for d in result.diagnostics} == {"broken.infer"}


# ---- properties ----------------------------------------------------------------------

_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|[^\s"]+')
SPACE = st.sampled_from([" ", "  ", "\t", " \t "])
INDENT = st.sampled_from(["", " ", "  ", "   ", "\t", "        "])
BLANKS = st.sampled_from(["", "\n", "\n\n", " \n\t\n"])


def _perturb(canonical: str, draw) -> str:
    """The canonical text with whitespace and blank lines changed in ways
    that must format back to it."""
    lines = canonical.rstrip("\n").split("\n")
    comment_at = {c.span.line - 1: c.span.column - 1 for c in parsed(canonical).comments}
    out = [draw(BLANKS)]
    for i, line in enumerate(lines):
        stripped = line.strip()
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if not stripped:
            # A blank line: more may follow; one between definitions may go.
            defn = i > 0 and lines[i - 1] == "}" and nxt.endswith("{") and line == ""
            if not (defn and not lines[i + 1].startswith(" ") and draw(st.booleans())):
                out.append("\n" + draw(BLANKS))
            continue
        cut = comment_at.get(i, len(line))
        code, comment = line[:cut].strip(), line[cut:]
        text = draw(INDENT) + "".join(w + draw(SPACE) for w in _TOKEN.findall(code))
        text = (text + comment).rstrip(" \t") + draw(st.sampled_from(["", " ", "\t"]))
        # A statement may share its line with the `}` after it.
        joinable = code and not comment and code != "}" and not code.endswith("{")
        if joinable and nxt == "}" and draw(st.booleans()):
            out.append(text + draw(SPACE))
            continue
        out.append(text + "\n")
        if code.endswith("{") or nxt == "}":
            out.append(draw(BLANKS))  # blank lines after `{` and before `}` go
    out.append(draw(BLANKS))
    text = "".join(out)
    return text.replace("\n", "\r\n") if draw(st.booleans()) else text


@pytest.mark.slow
@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_perturbed_specs_format_to_the_same_text(spec: Path, data: st.DataObject) -> None:
    canonical = fmt(spec.read_text(encoding="utf-8"))
    perturbed = _perturb(canonical, data.draw)
    assert fmt(perturbed) == canonical


KEYS = st.sampled_from(
    ["source", "version", "input", "output", "shard", "slo", "privacy", "accelerator",
     "workers", "fallback", "cert", "client_ca", "a-rather-long-field", "m@3", "lite"]
)  # fmt: skip
TOP_KEYS = st.sampled_from(["model", "target", "gateway", "route"])
ATOMS = st.sampled_from(
    ["cpu", "on-prem-only", "m@2", '"a b"', '"has # hash"', r'"esc \" \\ \n \t"', '""',
     "12", "0.50", "-3", "20ms", "5000rps", "99.9%", "64MiB", "2..8", "fp32[batch, 30]",
     "bytes[]", "INPUT0"]
)  # fmt: skip
COMMENTS = st.sampled_from(["# note", "#", '# "quoted" # and } {', "#trailing space   "])


@st.composite
def documents(draw) -> str:
    """Random specs: nested blocks, lists over several lines, braces sharing
    lines with statements, comments and blank lines everywhere they may go."""

    def trailing() -> str:
        return draw(SPACE) + draw(COMMENTS) if draw(st.booleans()) else ""

    def preamble(indent: str) -> str:
        choices = st.one_of(BLANKS, st.just(indent + draw(COMMENTS) + "\n"))
        return "".join(draw(st.lists(choices, max_size=2)))

    def value() -> str:
        if draw(st.integers(0, 4)):
            return draw(ATOMS)
        items = draw(st.lists(ATOMS.filter(lambda a: "[" not in a), max_size=3))
        if not draw(st.booleans()):
            return "[" + ", ".join(items) + "]"
        seps = [draw(SPACE.map(lambda s: "," + s)) for _ in items[1:]]
        seps = [s + (trailing() + "\n" + draw(INDENT) if draw(st.booleans()) else "") for s in seps]
        body = (
            items[0] + "".join(s + item for s, item in zip(seps, items[1:], strict=True))
            if items
            else ""
        )
        return "[" + trailing() + "\n" + draw(INDENT) + body + "\n" + draw(INDENT) + "]"

    def statement(depth: int, inline: bool = False) -> str:
        indent = draw(INDENT)
        head = draw(TOP_KEYS if depth == 0 else KEYS)
        head += "".join(draw(SPACE) + value() for _ in range(draw(st.integers(0, 3))))
        lead = "" if inline else preamble(indent) + indent
        end = "" if inline else trailing() + "\n"
        if depth == 0 or (depth < 3 and not draw(st.integers(0, 3))):
            return lead + head + draw(SPACE) + block(depth + 1) + end
        return lead + head + end

    def block(depth: int) -> str:
        count = draw(st.integers(0, 3))
        if count == 1 and draw(st.booleans()):
            return "{" + draw(SPACE) + statement(depth, inline=True) + draw(SPACE) + "}"
        first = count > 0 and draw(st.booleans())
        last = count > first and draw(st.booleans())
        out = "{" + (draw(SPACE) + statement(depth, inline=True) if first else trailing()) + "\n"
        out += "".join(statement(depth) for _ in range(count - first - last))
        if last:
            return out + draw(INDENT) + statement(depth, inline=True) + draw(SPACE) + "}"
        return out + preamble(draw(INDENT)) + draw(INDENT) + "}"

    top = draw(st.lists(st.builds(lambda: None), min_size=0, max_size=3))
    return draw(BLANKS) + "".join(statement(0) for _ in top) + preamble("")


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=documents())
def test_random_documents_format_canonically(text: str) -> None:
    assert_canonical(text)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_every_example_spec_is_canonical(path: Path) -> None:
    # The examples are what users copy: they must already be in house style.
    text = path.read_text()
    assert format_text(text).text == text
