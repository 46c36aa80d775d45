"""One request's tries over replicas, and its one answer.

The asyncio driver (gateway/lanes.py) keeps an `Attempts` per request: each try
goes to a replica not tried yet (`ShardPicker.pick(exclude=attempts.exclude)`),
a failure is retried only if its kind is in RETRIABLE and tries remain, and
`answer()` lets exactly one answer out. Pure: no clock, no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

# Failures that say nothing against the request: it was never served, so another
# replica may serve it. A lost connection or a crashed worker surfaces as
# UNAVAILABLE, as does a draining worker's refusal; CANCELLED is retriable only
# when the worker cancelled (shutdown) — a client's own cancellation is no
# failure to report at all.
RETRIABLE = frozenset({"UNAVAILABLE", "CANCELLED", "ABORTED"})


class Next(enum.StrEnum):
    RETRY = "retry"  # pick another replica with exclude=attempts.exclude, and try again
    GIVE_UP = "give_up"  # answer with this failure (claim the answer with `answer()`)
    DONE = "done"  # the request is answered already: drop this failure


@dataclass
class Attempts:
    """One request's tries over replicas, and its one answer.

    - Each try is on a replica not tried before (`exclude` for `pick`), and
      there are at most `1 + max_retries` of them.
    - A failure is retried only if its kind is in RETRIABLE (the request was
      not served: connection lost, worker crashed or draining, cancelled by a
      worker's shutdown) and tries remain; anything else (INVALID_ARGUMENT,
      INTERNAL, …) is given up at once, since another replica would answer the
      same.
    - `answer()` returns True exactly once per request: the caller sends the
      response (or the error) only then, so a late reply from an abandoned try
      is dropped and no request is answered twice. A request is never lost:
      every failure is either retried or given up, and a give-up is answered.

    The driver keys these by a gateway-assigned id (clients' ids may repeat).
    """

    request_id: str
    max_retries: int = 2
    tried: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (replica id, kind)
    answered: bool = False

    @property
    def exclude(self) -> frozenset[str]:
        return frozenset(self.tried)

    @property
    def tries_left(self) -> int:
        return 1 + self.max_retries - len(self.tried)

    def start(self, replica_id: str) -> int:
        """Record a try on `replica_id`; returns its number (1 for the first)."""
        if self.answered:
            raise RuntimeError(f"request {self.request_id} is answered; no more tries")
        if replica_id in self.tried:
            raise RuntimeError(f"request {self.request_id} already tried {replica_id}")
        if self.tries_left <= 0:
            raise RuntimeError(f"request {self.request_id} has no tries left")
        self.tried.append(replica_id)
        return len(self.tried)

    def fail(self, replica_id: str, kind: str) -> Next:
        """A try failed with `kind` (a status name such as "UNAVAILABLE"): what next."""
        if self.answered:
            return Next.DONE
        if replica_id not in self.tried:
            raise RuntimeError(f"request {self.request_id} never tried {replica_id}")
        self.failures.append((replica_id, kind))
        if kind in RETRIABLE and self.tries_left > 0:
            return Next.RETRY
        return Next.GIVE_UP

    def answer(self) -> bool:
        """Claim the request's one answer: True the first time, False ever after."""
        if self.answered:
            return False
        self.answered = True
        return True
