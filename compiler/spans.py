"""Source positions.

A `Span` is a region of one spec file: 1-based lines and columns, with the end
column exclusive (it points just past the last character), plus the matching
character offsets so that tools such as the formatter can slice the text.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Span:
    line: int
    column: int
    end_line: int
    end_column: int
    offset: int = 0
    end_offset: int = 0

    def to(self, other: Span) -> Span:
        """The span from the start of `self` to the end of `other`."""
        return Span(
            self.line,
            self.column,
            other.end_line,
            other.end_column,
            self.offset,
            other.end_offset,
        )


# Used for synthetic nodes (defaults) that have no text of their own.
NO_SPAN = Span(0, 0, 0, 0)
