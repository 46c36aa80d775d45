"""Structured log lines: `event=model_ready model=fraud@1 device=cpu`.

One event name, then key=value pairs; a value with spaces, quotes or `=` is
quoted JSON-style so that a log shipper can split the line. Callers never pass
payloads (tensor data, request text): ids, names, counts and timings only.
"""

from __future__ import annotations

import json

_NEEDS_QUOTES = frozenset(' "=\n\t')


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def kv(event: str, **fields: object) -> str:
    parts = [f"event={event}"]
    for key, value in fields.items():
        if value is None:
            continue  # not known here: left out rather than logged empty
        text = _text(value)
        if not text or _NEEDS_QUOTES.intersection(text):
            text = json.dumps(text)
        parts.append(f"{key}={text}")
    return " ".join(parts)
