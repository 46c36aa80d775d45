"""Units of the quantities a spec may write, converted to base units."""

from __future__ import annotations

DURATION = {"us": 1e-6, "ms": 1e-3, "s": 1.0}  # to seconds
RATE = {"rps": 1.0}  # to requests per second
PERCENT = {"%": 1.0}
SIZE = {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}  # to bytes

ALL_UNITS = {**DURATION, **RATE, **PERCENT, **SIZE}

KIND_OF_UNITS = {
    "duration": DURATION,
    "rate": RATE,
    "percentage": PERCENT,
    "size": SIZE,
}


def format_duration(seconds: float) -> str:
    """A readable duration: 2ms, 0.5ms, 150us, 1.2s (and 0ms); rounding never spills a unit."""
    if seconds == 0:
        return "0ms"
    if round(seconds, 3) >= 1:
        return f"{seconds:.3g}s"
    if round(seconds * 1e3, 1) >= 1:
        return f"{seconds * 1e3:.3g}ms"
    return f"{seconds * 1e6:.3g}us"


def format_rate(rps: float) -> str:
    """A readable rate: 500 rps, 12.3k rps, 1.5M rps (rounding never spills a unit)."""
    if round(rps / 1e6, 2) >= 1:
        return f"{rps / 1e6:.3g}M rps"
    if round(rps / 1e3, 1) >= 10:
        return f"{rps / 1e3:.3g}k rps"
    return f"{rps:.4g} rps"
