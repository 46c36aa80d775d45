"""`did you mean …?` for near-miss names."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """A help line naming the closest candidate, or "" when none is close."""
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"did you mean `{match[0]}`?" if match else ""


def one_of(options: Iterable[str]) -> str:
    """`a`, `b` or `c`."""
    quoted = [f"`{o}`" for o in options]
    if len(quoted) <= 1:
        return "".join(quoted)
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]
