"""PII detectors for checksummed numbers: payment cards, IBANs, US SSNs.

Each detector is a callable `(text) -> iterable of (start, end)` spans, as in
gateway/pii_text.py. Candidates are found liberally and kept only when
python-stdnum (and the issuer table below) validates them:

- credit-card: a run of digit groups separated by single spaces or dashes
  (`4111 1111 1111 1111`, `5555-5555-5555-4444`, `378282246310005`). Within a
  run, any stretch of whole groups with 13–19 digits is a card when it passes
  Luhn (`stdnum.luhn`) and its prefix and length belong to an issuer in
  `ISSUERS`. An ISBN-13 (978/979) has no issuer prefix and so is never one. A
  single group longer than 19 digits is an identifier, not a card.
- iban: two letters, two check digits and the BBAN, either compact or in
  space-separated groups, in either case; the longest prefix of whole groups
  that `stdnum.iban` accepts (ISO 7064 mod 97-10 checksum, the country's length
  and BBAN structure, and the country's own check where stdnum has one).
- ssn: `AAA-GG-SSSS` or `AAA GG SSSS` (one separator, used twice) accepted by
  `stdnum.us.ssn`: no area 000, 666 or 9xx, no group 00, no serial 0000, and
  not one of the numbers published in advertising. A bare nine-digit run is not
  an SSN here: it is as likely an account, order or routing number.

Digits may be any Unicode decimal digits (fullwidth `４１１１…` too); they are
read as 0–9 before validation. Every candidate stands alone: a digit or letter
directly before or after it (`x4111111111111111`, `123-45-67890`) makes it
part of something else.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

from stdnum import iban as stdnum_iban
from stdnum import luhn
from stdnum.us import ssn as stdnum_ssn

# (issuer, first digits from–to inclusive, allowed lengths). Ranges are
# compared on the number's leading digits of the same width as the bounds. The
# ranges are the ones the card networks publish (Wikipedia's "Payment card
# number" collects them); Maestro lengths start at 13 here, as shorter runs are
# too ambiguous to redact. A network missing here (RuPay, Verve, …) is not
# redacted: add it with its published range and lengths.
ISSUERS: tuple[tuple[str, str, str, frozenset[int]], ...] = (
    ("visa", "4", "4", frozenset({13, 16, 19})),
    ("mastercard", "51", "55", frozenset({16})),
    ("mastercard", "2221", "2720", frozenset({16})),
    ("amex", "34", "34", frozenset({15})),
    ("amex", "37", "37", frozenset({15})),
    ("discover", "6011", "6011", frozenset(range(16, 20))),
    ("discover", "644", "649", frozenset(range(16, 20))),
    ("discover", "65", "65", frozenset(range(16, 20))),
    ("jcb", "3528", "3589", frozenset(range(16, 20))),
    ("diners", "300", "305", frozenset(range(14, 20))),
    ("diners", "3095", "3095", frozenset(range(14, 20))),
    ("diners", "36", "36", frozenset(range(14, 20))),
    ("diners", "38", "39", frozenset(range(16, 20))),
    ("unionpay", "62", "62", frozenset(range(16, 20))),
    ("maestro", "5018", "5018", frozenset(range(13, 20))),
    ("maestro", "5020", "5020", frozenset(range(13, 20))),
    ("maestro", "5038", "5038", frozenset(range(13, 20))),
    ("maestro", "5893", "5893", frozenset(range(13, 20))),
    ("maestro", "6304", "6304", frozenset(range(13, 20))),
    ("maestro", "6759", "6763", frozenset(range(13, 20))),
    ("mir", "2200", "2204", frozenset(range(16, 20))),
)

_ISSUERS_BY_FIRST: dict[str, list[tuple[str, str, str, frozenset[int]]]] = {}
for _issuer in ISSUERS:
    _ISSUERS_BY_FIRST.setdefault(_issuer[1][0], []).append(_issuer)

# Digit groups joined by single spaces or dashes, not starting inside a word.
# Possessive: a run is split into cards by whole groups below, never by
# backtracking into one.
_DIGIT_RUN = re.compile(r"(?<!\w)\d++(?:[ -]\d++)*+")
_GROUP = re.compile(r"\d+")
_WORD = re.compile(r"\w")

_IBAN_RUN = re.compile(r"(?<!\w)[A-Za-z]{2}[0-9]{2}[A-Za-z0-9]*+(?: [A-Za-z0-9]++)*+")
_IBAN_TOKEN = re.compile(r"[A-Za-z0-9]+")
_IBAN_HEAD = re.compile(r"[A-Za-z]{2}[0-9]{2}")
_IBAN_MAX = 34

_SSN = re.compile(r"(?<![\w-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\w-])")
_SPACED_BEFORE = re.compile(r"\d ")
_SPACED_AFTER = re.compile(r" \d")


def ascii_digits(s: str) -> str:
    """`s` with any Unicode decimal digits (fullwidth, Arabic-Indic…) as 0–9."""
    if s.isascii():
        return s
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in s)


def card_issuer(digits: str) -> str | None:
    """The issuer whose prefix and length `digits` has, or None."""
    for name, low, high, lengths in _ISSUERS_BY_FIRST.get(digits[:1], ()):
        if len(digits) in lengths and low <= digits[: len(low)] <= high:
            return name
    return None


def is_card_number(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and card_issuer(digits) is not None and luhn.is_valid(digits)


def find_cards(text: str) -> Iterator[tuple[int, int]]:
    for run in _DIGIT_RUN.finditer(text):
        groups = [(g.start(), g.end()) for g in _GROUP.finditer(text, run.start(), run.end())]
        if _WORD.match(text, run.end()):
            groups.pop()  # the last group runs into a word ("1st"): no card ends there
        if sum(e - s for s, e in groups) < 13:
            continue
        yield from _cards_in_groups(text, groups)


def _cards_in_groups(text: str, groups: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    # Leftmost first, and from each start the longest stretch of whole groups;
    # a stretch is at most 19 digits, so this is linear in the run.
    i = 0
    while i < len(groups):
        found = None
        digits = ""
        for j in range(i, len(groups)):
            digits += ascii_digits(text[groups[j][0] : groups[j][1]])
            if len(digits) > 19:
                break
            if len(digits) >= 13 and is_card_number(digits):
                found = j
        if found is None:
            i += 1
            continue
        yield groups[i][0], groups[found][1]
        i = found + 1


def find_ibans(text: str) -> Iterator[tuple[int, int]]:
    for run in _IBAN_RUN.finditer(text):
        tokens = [(t.start(), t.end()) for t in _IBAN_TOKEN.finditer(text, run.start(), run.end())]
        i = 0
        while i < len(tokens):
            found = _iban_at(text, tokens, i) if _IBAN_HEAD.match(text, tokens[i][0]) else None
            if found is None:
                i += 1
                continue
            yield tokens[i][0], tokens[found][1]
            i = found + 1


def _iban_at(text: str, tokens: list[tuple[int, int]], i: int) -> int | None:
    """The last token of the longest IBAN starting at token `i`, or None."""
    ends, length = [], 0
    for j in range(i, len(tokens)):
        length += tokens[j][1] - tokens[j][0]
        if length > _IBAN_MAX:
            break
        ends.append(j)
    for j in reversed(ends):
        number = text[tokens[i][0] : tokens[j][1]].replace(" ", "")
        if _mod97(number) and stdnum_iban.is_valid(number):
            return j
    return None


def _mod97(number: str) -> bool:
    """The ISO 7064 check alone: a cheap test before stdnum's full one."""
    moved = number[4:] + number[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def find_ssns(text: str) -> Iterator[tuple[int, int]]:
    for m in _SSN.finditer(text):
        area, sep, group, serial = m.groups()
        # The spaced form must not be three groups out of a longer spaced run.
        if sep == " " and (
            _SPACED_BEFORE.match(text, max(0, m.start() - 2), m.start())
            or _SPACED_AFTER.match(text, m.end())
        ):
            continue
        number = ascii_digits(f"{area}-{group}-{serial}")
        if stdnum_ssn.is_valid(number):
            yield m.span()
