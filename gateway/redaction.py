"""PII redaction of `bytes` inputs, as a model's `privacy redact KIND… in INPUT` asks.

The gateway builds one `Redactor` per redacted input when it loads a plan
(`redactors_for(model.privacy)`), and runs it on every request before the
request leaves the gateway:

    redactors = redactors_for(model.privacy)             # {"text": Redactor(...)}
    result = redactors["text"].redact_array(batch, tensor="text")
    result.array, result.counts                          # new BYTES array, {"email": 2}

A redaction is pure: no I/O, no logging, and nothing of the payload kept; the
counts per kind are all that is meant to leave it (for metrics).

How a text is redacted (the detectors live in gateway/pii_*.py):

1. Fast path: without a digit or an `@` no built-in kind can match (each needs
   one of them; see gateway/pii_text.py for IPv6), so only the spec's
   patterns run. A 10 KB text without digits costs a few µs.
2. Every requested detector reports candidate spans it has validated.
3. Overlaps are resolved longest span first, then by `PRIORITY`; a
   placeholder already in the text (`[EMAIL]` …) is never overlapped nor
   touched, so that redacting twice changes nothing more.
4. The kept spans are replaced by `REPLACEMENTS`.
5. When something was replaced, the new text is scanned again (back to 2),
   until a pass finds nothing (at most `_MAX_PASSES`). The placeholders are
   fenced off by 3, so a replacement is never itself redacted; what a second
   pass can find is a number that a detector read differently next to the
   PII it replaced (the phone matcher splits a long run of digits by where it
   starts). So the result is a fixed point: redacting it again changes
   nothing (checked by property tests).

BYTES elements must be UTF-8. Any other byte string is refused with
`RedactionInputError` (kind INVALID_ARGUMENT, naming the tensor and element)
rather than decoded with replacement characters: that would alter the text
the model sees, and a client could otherwise slip PII past the detectors in
another encoding (UTF-16 digits are not digits to a UTF-8 reader).
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inferplane.compiler import plan
from inferplane.compiler.schema import REDACT_KINDS
from inferplane.gateway.pii_numbers import find_cards, find_ibans, find_ssns
from inferplane.gateway.pii_phone import DEFAULT_REGIONS, PhoneFinder
from inferplane.gateway.pii_text import PatternFinder, find_emails, find_ips

REPLACEMENTS: Mapping[str, str] = {
    "email": "[EMAIL]",
    "phone": "[PHONE]",
    "credit-card": "[CREDIT_CARD]",
    "iban": "[IBAN]",
    "ssn": "[SSN]",
    "ip": "[IP]",
    "pattern": "[REDACTED]",
}
# Between two candidates of the same length, the better-validated kind wins
# (a checksum beats a numbering plan beats a site's regex).
PRIORITY = ("credit-card", "iban", "ssn", "email", "ip", "phone", "pattern")
_RANK = {kind: i for i, kind in enumerate(PRIORITY)}

# A pass that replaced something is followed by another over the new text (step
# 5 above); in practice the second finds nothing.
_MAX_PASSES = 4
_DIGIT = re.compile(r"\d")
_PLACEHOLDER = re.compile("|".join(re.escape(r) for r in REPLACEMENTS.values()))

Finder = Callable[[str], Iterable[tuple[int, int]]]
_DIGIT_FINDERS: Mapping[str, Finder] = {
    "credit-card": find_cards,
    "iban": find_ibans,
    "ssn": find_ssns,
    "ip": find_ips,
}
_CLAIMING: Mapping[str, Finder] = {"credit-card": find_cards, "iban": find_ibans}


class RedactionInputError(ValueError):
    """A BYTES element that is not UTF-8 text (or not bytes at all)."""

    kind = "INVALID_ARGUMENT"

    def __init__(self, message: str, *, tensor: str = "", index: int | None = None) -> None:
        where = f"input `{tensor}`" if tensor else "input"
        if index is not None:
            where += f" element {index}"
        super().__init__(f"{where}: {message}")
        self.tensor = tensor
        self.index = index


@dataclass(frozen=True)
class RedactionResult:
    text: str
    counts: Mapping[str, int] = field(default_factory=dict)
    """Replacements made, by kind (`pattern` for all of a rule's patterns); no zeros."""


@dataclass(frozen=True)
class RedactedTensor:
    array: np.ndarray
    """An object array of the input's shape; the input itself when nothing changed."""
    counts: Mapping[str, int] = field(default_factory=dict)


class Redactor:
    """The detectors for one input, compiled once from its rules."""

    def __init__(
        self,
        kinds: Iterable[str] = (),
        patterns: Iterable[str] = (),
        *,
        phone_regions: tuple[str, ...] = DEFAULT_REGIONS,
    ) -> None:
        self.kinds = tuple(dict.fromkeys(kinds))
        self.patterns = tuple(dict.fromkeys(patterns))
        unknown = [k for k in self.kinds if k not in REDACT_KINDS]
        if unknown:
            raise ValueError(f"unknown redaction kinds {unknown}; the kinds are {REDACT_KINDS}")
        self._email = find_emails if "email" in self.kinds else None
        # The kinds that need a digit, in `PRIORITY` order; phone runs after
        # them, skipping the runs they have claimed (the matcher is the costly
        # detector).
        self._digit_finders = [
            (kind, _DIGIT_FINDERS[kind])
            for kind in PRIORITY
            if kind in self.kinds and kind in _DIGIT_FINDERS
        ]
        self._phone = PhoneFinder(phone_regions) if "phone" in self.kinds else None
        self._pattern_finders = [PatternFinder(p) for p in self.patterns]

    @classmethod
    def from_rules(
        cls, rules: Iterable[plan.Redaction], *, phone_regions: tuple[str, ...] = DEFAULT_REGIONS
    ) -> Redactor:
        """One redactor for all the rules (of one input)."""
        rules = list(rules)
        kinds = [k for r in rules for k in r.kinds]
        patterns = [p for r in rules for p in r.patterns]
        return cls(kinds, patterns, phone_regions=phone_regions)

    def __repr__(self) -> str:
        return f"Redactor(kinds={self.kinds!r}, patterns={self.patterns!r})"

    def redact(self, text: str) -> RedactionResult:
        counts: Counter[str] = Counter()
        for _ in range(_MAX_PASSES):
            kept = self._scan(text)
            if not kept:
                break
            pieces, at = [], 0
            for start, end, kind in kept:
                pieces += (text[at:start], REPLACEMENTS[kind])
                at = end
            pieces.append(text[at:])
            text = "".join(pieces)
            counts.update(kind for _, _, kind in kept)
        return RedactionResult(text, dict(counts))

    def _scan(self, text: str) -> list[tuple[int, int, str]]:
        """The spans to replace in one pass, in text order."""
        spans: list[tuple[int, int, str]] = []
        if self._email is not None and "@" in text:
            spans.extend((s, e, "email") for s, e in self._email(text))
        if (self._digit_finders or self._phone) and _has_digit(text):
            for kind, find in self._digit_finders:
                spans.extend((s, e, kind) for s, e in find(text))
            if self._phone is not None:
                claimed = [(s, e) for s, e, _ in spans]
                # A card number or an IBAN is never a phone number, even when
                # the rule does not redact it: its runs skip the matcher too.
                for kind, find in _CLAIMING.items():
                    if kind not in self.kinds:
                        claimed.extend(find(text))
                spans.extend((s, e, "phone") for s, e in self._phone(text, claimed))
        for find in self._pattern_finders:
            spans.extend((s, e, "pattern") for s, e in find(text))
        if not spans:
            return []
        return _resolve(spans, _PLACEHOLDER.finditer(text) if "[" in text else ())

    def redact_bytes(self, value: bytes) -> bytes:
        """One BYTES element; `value` itself when nothing was redacted."""
        return self._redact_element(value, "", None)[0]

    def redact_array(self, array: Any, *, tensor: str = "") -> RedactedTensor:
        """A BYTES tensor: an object (or fixed-width bytes) array of byte strings."""
        values = np.asarray(array)
        if values.dtype.kind not in "OSU":
            raise RedactionInputError(
                f"redaction reads BYTES, not {values.dtype}", tensor=tensor, index=None
            )
        out = None
        counts: Counter[str] = Counter()
        for i, value in enumerate(values.flat):
            new, found = self._redact_element(value, tensor, i)
            if found:
                if out is None:
                    out = values.astype(object)
                out.flat[i] = new
                counts.update(found)
        return RedactedTensor(values if out is None else out, dict(counts))

    def _redact_element(
        self, value: Any, tensor: str, index: int | None
    ) -> tuple[Any, Mapping[str, int]]:
        if isinstance(value, str):
            result = self.redact(value)
            return (result.text if result.counts else value), result.counts
        if not isinstance(value, bytes | bytearray | memoryview):
            raise RedactionInputError(
                f"expected bytes, got {type(value).__name__}", tensor=tensor, index=index
            )
        raw = bytes(value)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise RedactionInputError(
                f"not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                "redacted inputs must be UTF-8",
                tensor=tensor,
                index=index,
            ) from None
        result = self.redact(text)
        if not result.counts:
            return value, result.counts
        return result.text.encode("utf-8"), result.counts


def redactors_for(
    privacy: plan.Privacy, *, phone_regions: tuple[str, ...] = DEFAULT_REGIONS
) -> dict[str, Redactor]:
    """One `Redactor` per redacted input of a model, its rules merged."""
    by_input: dict[str, list[plan.Redaction]] = {}
    for rule in privacy.redactions:
        by_input.setdefault(rule.input, []).append(rule)
    return {
        name: Redactor.from_rules(rules, phone_regions=phone_regions)
        for name, rules in by_input.items()
    }


def _has_digit(text: str) -> bool:
    # `str.__contains__` is a memchr-speed scan, several times faster than a
    # regex over 10 KB; only non-ASCII text needs `\d` for the other scripts.
    if any(d in text for d in "0123456789"):
        return True
    return not text.isascii() and _DIGIT.search(text) is not None


def _resolve(
    spans: list[tuple[int, int, str]], placeholders: Iterable[re.Match[str]]
) -> list[tuple[int, int, str]]:
    """The spans to replace, in text order: longest first, then by `PRIORITY`.

    A span that overlaps or touches a placeholder already in the text is
    dropped. In a second pass the placeholder stands where the first pass saw
    the neighbouring PII, and a candidate that was glued to that PII (and so
    refused) must stay refused.
    """
    fences = [m.span() for m in placeholders]
    starts: list[int] = []
    ends: list[int] = []
    kinds: list[str] = []
    for start, end, kind in sorted(spans, key=lambda s: (s[0] - s[1], _RANK[s[2]], s[0])):
        if any(fs <= end and start <= fe for fs, fe in fences):
            continue
        i = bisect.bisect_right(starts, start)
        if (i > 0 and ends[i - 1] > start) or (i < len(starts) and starts[i] < end):
            continue
        starts.insert(i, start)
        ends.insert(i, end)
        kinds.insert(i, kind)
    return list(zip(starts, ends, kinds, strict=True))
