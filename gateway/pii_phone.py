"""The phone-number detector: libphonenumber's matcher, on digit runs only.

`PhoneFinder(regions)` is a callable `(text) -> iterable of (start, end)` spans,
as in gateway/pii_text.py. It finds phone-like runs (digits with spaces, dots,
dashes, slashes and parentheses, an optional leading `+`) with at least
`MIN_DIGITS` digits, cuts it around any dates in it, and hands each piece to
`phonenumbers.PhoneNumberMatcher` at leniency VALID once per region: a match
must be a valid number in the numbering plan of its country (right length,
assigned prefix). A number written with `+CC` or an international prefix is
judged by its own country whatever the regions; a national number (`030
901820`, `(415) 555-2671`) only when it is valid in one of `regions`
(`DEFAULT_REGIONS`: US, GB, DE, FR). Running the matcher on runs rather than
on the whole text is what keeps a 10 KB text cheap: its own candidate search
is a large regular expression in pure Python.

The matcher already refuses dates written with slashes and times. On top of
it a match is dropped when it is

- next to a currency sign before it or `%` after it (an amount, a share);
- glued to an identifier: directly after (or before) a letter or digit, or
  after `-`, `_`, `/` or `#` that follows one (`ORD-0301234567`,
  `INV/4155552671`), or inside a run without spaces that is so glued
  (`ORD-1234.0301234567`);
- an ISBN: hyphenated exactly as the ISBN ranges place the hyphens, or
  preceded by the word ISBN (`0-306-40615-2` is a valid French number);
- a standalone date: `2024-05-17`, `17.05.2024`, `05/17/24`. Dates cut a run
  into pieces that the matcher sees apart: given `030 901820 17.05.2024` whole
  it reads `030 901820 17` and misses the number, given `17.05.2024 030
  901820` it finds nothing.

A run of fewer than seven digits is never a phone number here.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence

import phonenumbers
from phonenumbers import Leniency, PhoneMetadata, PhoneNumberMatcher
from stdnum import isbn

from inferplane.gateway.pii_numbers import ascii_digits

DEFAULT_REGIONS = ("US", "GB", "DE", "FR")
MIN_DIGITS = 7

# A run starts at `+`, `(` or a digit; a single space may join groups.
_RUN = re.compile(r"[+(]{0,2}\d(?:[\d().\-/]|[ \t\u00a0](?=[+(\d]))*")
_DIGITS = re.compile(r"\d")
_GROUPS = re.compile(r"\d+")
_SPACE = re.compile(r"[ \t\u00a0]")
_JOINERS = "-_/#"
_TRIM = " \t\u00a0.-/"
_ISBN_WORD = re.compile(r"isbn(?:-1[03])?\W{0,3}$", re.IGNORECASE)
# A standalone date: year first (2024-05-17) or last (17.05.2024, 05/17/24).
_DATE = re.compile(
    r"(?<![\d.\-/])"
    r"(?:(?:19|20)\d\d([-./])(\d\d?)\1(\d\d?)|(\d\d?)([-./])(\d\d?)\5(?:(?:19|20)?\d\d))"
    r"(?![.\-/]?\d)"
)


class PhoneFinder:
    def __init__(self, regions: tuple[str, ...] = DEFAULT_REGIONS, *, prefilter: bool = True):
        unknown = [r for r in regions if r not in phonenumbers.SUPPORTED_REGIONS]
        if unknown or not regions:
            raise ValueError(f"unknown phone regions: {unknown or 'none given'}")
        self.regions = tuple(regions)
        # `prefilter=False` runs the matcher on every run: the tests compare the two.
        self._plans = [_NumberingPlan(r, exact=prefilter) for r in self.regions]

    def __call__(
        self, text: str, claimed: Sequence[tuple[int, int]] = ()
    ) -> Iterator[tuple[int, int]]:
        """Phone spans; runs inside a `claimed` span (a card, an IBAN) are skipped."""
        found: set[tuple[int, int]] = set()
        dates = None
        for run in _RUN.finditer(text):
            if len(_DIGITS.findall(run.group())) < MIN_DIGITS:
                continue
            if dates is None:
                dates = _dates(text)
            for start, end in _pieces(text, *run.span(), dates):
                piece = text[start:end]
                if len(_DIGITS.findall(piece)) < MIN_DIGITS or _inside(start, end, claimed):
                    continue
                # A piece without spaces that is glued to an identifier is part
                # of it (`ORD-20240517-0042`, `ORD-1234.0301234567`).
                if not _SPACE.search(piece) and _glued(text, start, end):
                    continue
                found.update(self._numbers(text, start, end))
        return iter(sorted(found))

    def _numbers(self, text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
        """What the matcher finds in the piece text[start:end]."""
        # The matcher sees the piece alone: with context it reads digits across
        # a date ("… 17.05.2024 030 901820") and finds nothing. An extension
        # after a number (`ext. 12`) is left in the text.
        piece = text[start:end]
        for region in self._regions_for(piece):
            if region is None:
                continue
            for m in PhoneNumberMatcher(piece, region, leniency=Leniency.VALID):
                span = _unwrap(text, start + m.start, start + m.end)
                if not (_glued(text, *span) or _isbn(text, *span)):
                    yield span

    def _regions_for(self, run: str) -> Iterator[str | None]:
        # A lone `+CC…` number parses the same in every region.
        if run.startswith("+") and run.count("+") == 1:
            yield self.regions[0]
            return
        stretches = _stretches(run)
        for plan in self._plans:
            yield plan.region if plan.may_hold_number(stretches) else None

    def __repr__(self) -> str:
        return f"PhoneFinder({self.regions!r})"


class _NumberingPlan:
    """A cheap necessary test for a region's national numbers, before the matcher.

    The matcher is costly on runs that hold no number (hundreds of µs a region:
    it tries every split of the run). A valid national number, once its
    national prefix is stripped, matches the general pattern of its country's
    plan, and the matcher only splits runs where they have separators; so when
    no stretch of whole digit groups matches, the matcher cannot find one
    either. Regions whose prefix rules rewrite the digits (Argentina, Brazil,
    Japan…) are never skipped.
    """

    def __init__(self, region: str, *, exact: bool = True) -> None:
        meta = PhoneMetadata.metadata_for_region(region)
        self.region = region
        self.exact = exact and meta.national_prefix_transform_rule is None
        shared = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[meta.country_code]
        patterns = [
            m.general_desc.national_number_pattern
            for m in map(PhoneMetadata.metadata_for_region, shared)
            if m is not None and m.general_desc and m.general_desc.national_number_pattern
        ]
        self.national = re.compile("|".join(f"(?:{p})" for p in patterns))
        self.prefix = _maybe(meta.national_prefix_for_parsing)
        self.international = _maybe(meta.international_prefix)

    def may_hold_number(self, stretches: list[str]) -> bool:
        if not self.exact:
            return True
        for digits in stretches:
            if self.international and self.international.match(digits):
                return True
            if self.national.fullmatch(digits):
                return True
            m = self.prefix.match(digits) if self.prefix else None
            if m and self.national.fullmatch(digits, m.end()):
                return True
        return False


def _maybe(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(pattern) if pattern else None


def _stretches(run: str) -> list[str]:
    """The digits of every stretch of whole groups, up to 17 digits."""
    groups = [ascii_digits(g) for g in _GROUPS.findall(run)]
    out = []
    for i in range(len(groups)):
        digits = ""
        for group in groups[i:]:
            digits += group
            if len(digits) > 17:
                break
            out.append(digits)
    return out


def _unwrap(text: str, start: int, end: int) -> tuple[int, int]:
    # The matcher keeps an opening parenthesis whose partner lies outside the
    # number: "(+1 415 555 0132)" matches from the "(".
    raw = text[start:end]
    if raw.startswith("(") and raw.count("(") > raw.count(")"):
        start += 1
    return start, end


def _pieces(
    text: str, start: int, end: int, dates: list[tuple[int, int]]
) -> Iterator[tuple[int, int]]:
    """The run `start:end` cut around the dates in it, separators trimmed."""
    at = start
    for s, e in [*((s, e) for s, e in dates if start < e and s < end), (end, end)]:
        if s > at:
            piece = text[at:s]
            left = len(piece) - len(piece.lstrip(_TRIM))
            right = len(piece.rstrip(_TRIM))
            if right > left:
                yield at + left, at + right
        at = max(at, e)


def _inside(start: int, end: int, spans: Iterable[tuple[int, int]]) -> bool:
    return any(s <= start and end <= e for s, e in spans)


def _dates(text: str) -> list[tuple[int, int]]:
    spans = []
    for m in _DATE.finditer(text):
        a, b = (m.group(2), m.group(3)) if m.group(1) else (m.group(4), m.group(6))
        a, b = int(a), int(b)
        # month and day in either order (17.05.2024 and 05/17/2024)
        if 1 <= a <= 31 and 1 <= b <= 31 and min(a, b) <= 12:
            spans.append(m.span())
    return spans


def _glued(text: str, start: int, end: int) -> bool:
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    if before.isalnum() or after.isalnum():
        return True
    # An amount or a share: "$4155552671", "4155552671%".
    if unicodedata.category(before) == "Sc" or after == "%":
        return True
    if before in _JOINERS and start > 1 and _attached(text[start - 2]):
        return True
    return after in _JOINERS and end + 1 < len(text) and _attached(text[end + 1])


def _attached(c: str) -> bool:
    # `]` too: a placeholder left by an earlier redaction is still an identifier
    # neighbour, so that redacting again finds nothing new.
    return c.isalnum() or c == "]"


def _isbn(text: str, start: int, end: int) -> bool:
    if _ISBN_WORD.search(text, max(0, start - 12), start):
        return True
    raw = text[start:end]
    if "-" not in raw or not isbn.is_valid(raw):
        return False
    return isbn.format(raw) == raw
