"""Where the CLI writes: injected, so that tests read the text it printed."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import TextIO


def wants_colour(stream: TextIO, choice: str = "auto") -> bool:
    """`always`, `never`, or `auto`: a terminal, unless NO_COLOR or TERM=dumb."""
    if choice != "auto":
        return choice == "always"
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return hasattr(stream, "isatty") and stream.isatty()


@dataclass
class Console:
    out: TextIO = sys.stdout
    err: TextIO = sys.stderr
    stdin: TextIO = sys.stdin
    colour_choice: str = "auto"

    @property
    def colour(self) -> bool:
        return wants_colour(self.out, self.colour_choice)

    @property
    def err_colour(self) -> bool:
        return wants_colour(self.err, self.colour_choice)

    def print(self, text: str = "", end: str = "\n") -> None:
        self.out.write(text + end)

    def error(self, text: str, end: str = "\n") -> None:
        self.err.write(text + end)


def configure_logging(stream: TextIO) -> None:
    """Log lines (key=value events, never payloads) from the `inferplane` loggers only."""
    logger = logging.getLogger("inferplane")
    if not logger.handlers:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
