"""PII detectors that need only the standard library: email, IP addresses, patterns.

Each detector is a callable `(text) -> iterable of (start, end)` spans over a
`str`; gateway/redaction.py runs the ones a rule asks for and resolves their
overlaps. A detector first finds candidates with a liberal regular expression,
then keeps only the ones that validate:

- email: `local@domain.tld`. The local part takes the RFC 5322 atom characters
  and dots; the domain is dotted labels (letters, digits, inner hyphens; Unicode
  letters for internationalized names) ending in an alphabetic or punycode TLD.
  A candidate glued to a longer word (`a@b.com123`, `a@b.com-x`) is not one.
- ip: IPv4 dotted quads checked by `ipaddress` (each octet 0–255; leading zeros
  are read as decimal), never part of a longer dotted run, so `1.2.3`,
  `17.05.2024` and `1.2.3.4.5` are left alone; IPv6 runs of hex groups with at
  least two colons checked by `ipaddress.IPv6Address` (`::`, embedded IPv4 and
  `%zone` included). An IPv6 candidate must contain a decimal digit: `abc::def`
  is a valid address but far more often a C++ or Rust path, and the digit rule
  lets text without digits skip every detector but `@` and patterns.
- pattern: the spec's own regular expression, as written; empty matches are
  ignored.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

# The RFC 5322 atext characters, plus the dot (liberal: `..` and a leading dot
# are kept inside the span rather than leaking half an address). The lookbehind
# only lets a match start at the beginning of such a run, which also keeps the
# scan linear on long runs of word characters.
_LOCAL = r"[\w.!#$%&'*+/=?^`{|}~-]"
_LABEL = r"[^\W_](?:[\w-]{0,61}[^\W_])?"
_TLD = r"(?:[^\W\d_]{2,63}|xn--[A-Za-z0-9-]{1,59})"
_EMAIL = re.compile(rf"(?<!{_LOCAL}){_LOCAL}+@(?:{_LABEL}\.)+{_TLD}(?![\w-])")

_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\.?\w)")
# A run of hex digits, dots and colons that contains a colon (the lookahead),
# with an optional zone; validated and trimmed below.
_IPV6 = re.compile(r"(?<![\w:.])(?=[0-9A-Fa-f.]*:)[0-9A-Fa-f.:]{2,64}+(?:%[\w.]+)?(?!\w)")
_DIGIT = re.compile(r"\d")


def find_emails(text: str) -> Iterator[tuple[int, int]]:
    if "@" not in text:
        return
    for m in _EMAIL.finditer(text):
        yield m.span()


def find_ips(text: str) -> Iterator[tuple[int, int]]:
    yield from _find_ipv4(text)
    if ":" in text:
        yield from _find_ipv6(text)


def _find_ipv4(text: str) -> Iterator[tuple[int, int]]:
    for m in _IPV4.finditer(text):
        octets = m.group().split(".")
        try:
            ipaddress.IPv4Address(".".join(str(int(o)) for o in octets))
        except ValueError:
            continue
        yield m.span()


def _find_ipv6(text: str) -> Iterator[tuple[int, int]]:
    for m in _IPV6.finditer(text):
        start, end = m.span()
        # A sentence may end right after the address ("reach fe80::1.").
        while end > start and text[end - 1] == ".":
            end -= 1
        candidate = text[start:end]
        if candidate.count(":") < 2 or not _DIGIT.search(candidate):
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        yield start, end


class PatternFinder:
    """A spec's `pattern "REGEX"`, compiled once."""

    def __init__(self, regex: str) -> None:
        self.regex = re.compile(regex)

    def __call__(self, text: str) -> Iterator[tuple[int, int]]:
        for m in self.regex.finditer(text):
            if m.end() > m.start():
                yield m.span()

    def __repr__(self) -> str:
        return f"PatternFinder({self.regex.pattern!r})"
