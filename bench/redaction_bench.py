"""Redaction benchmark: µs per `Redactor.redact` call on tickets and prose.

`make bench` runs this file after the runtime benchmark. It times, in this
process, the gateway's redactor (gateway/redaction.py) with a `TCK-[0-9]{7}`
pattern on every row, on four texts: a 200-byte support ticket with an order
number, a date, a card, an IBAN, an email and a +44 phone; 200 bytes of prose
without digits; a 10 KB thread of that ticket and prose, 15 times; 10 KB of
prose. Each for two rule sets (all six kinds; email phone credit-card iban),
then the ticket with one kind at a time. Best of five timings: other work on
the host only ever adds time. It checks that each text is redacted as
expected before timing it, prints a Markdown table and asserts nothing about
the times (docs/redaction.md records a run).

    .venv/bin/python bench/redaction_bench.py
"""

from __future__ import annotations

import platform
import sys
import time

import phonenumbers
import stdnum

from inferplane.compiler.schema import REDACT_KINDS
from inferplane.gateway.redaction import Redactor

PATTERN = "TCK-[0-9]{7}"
TICKET = (
    "Hi, order ORD-20240517-0042 from 2024-05-17 never arrived. Please refund card "
    "4111 1111 1111 1111 or IBAN DE89 3704 0044 0532 0130 00; reach me at jane.doe@example.com "
    "or +44 20 7946 0958. Thanks!"
)[:200]
PROSE = (
    "Thanks for getting back to me so quickly. I have checked the parcel again and "
    "the box was damaged on one side, the manual is missing and the charger does not fit. "
)
THREAD = ((TICKET + " " + PROSE * 3) * 20)[:10240]
PLAIN = (PROSE * 60)[:10240]
TEXTS = [
    ("200-byte support ticket", TICKET, 50),
    ("200 bytes of prose, no digits", PLAIN[:200], 500),
    ("10 KB thread, 15 tickets", THREAD, 2),
    ("10 KB of prose, no digits", PLAIN, 50),
]
RULE_SETS = [
    ("all six kinds", list(REDACT_KINDS)),
    ("email phone credit-card iban", ["email", "phone", "credit-card", "iban"]),
]


def per_call_us(redactor: Redactor, text: str, calls: int) -> float:
    redactor.redact(text)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            redactor.redact(text)
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def check(redactor: Redactor) -> None:
    """The texts are redacted as the table says, before any timing."""
    ticket = redactor.redact(TICKET)
    for kind in ("credit-card", "iban", "email", "phone"):
        if kind in redactor.kinds and ticket.counts.get(kind) != 1:
            raise SystemExit(f"redaction_bench: the ticket's {kind} was not redacted once")
    if redactor.redact(THREAD).counts.get("credit-card") != THREAD.count("4111 1111 1111 1111"):
        raise SystemExit("redaction_bench: the thread's cards were not all redacted")
    if any(redactor.redact(PLAIN).counts.values()):
        raise SystemExit("redaction_bench: prose without PII was changed")


def main() -> int:
    print(
        f"# Redaction: µs per call (Python {platform.python_version()}, "
        f"phonenumbers {phonenumbers.__version__}, python-stdnum {stdnum.__version__})\n"
    )
    redactors = [Redactor(kinds, [PATTERN]) for _, kinds in RULE_SETS]
    for redactor in redactors:
        check(redactor)
    print("| text | " + " | ".join(name for name, _ in RULE_SETS) + " |")
    print("|---|" + "---|" * len(RULE_SETS))
    for name, text, calls in TEXTS:
        cells = [f"{per_call_us(r, text, calls):,.0f}" for r in redactors]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nThe ticket with one kind at a time:\n")
    print("| kind | µs per call |")
    print("|---|---|")
    for kind in REDACT_KINDS:
        print(f"| {kind} | {per_call_us(Redactor([kind], []), TICKET, 50):,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
