"""The gateway's errors: one taxonomy, one table to gRPC status codes.

Domain code raises errors that say *what kind* of failure happened, never
which transport status it becomes. Every error carries a `kind`, one of the
eight words of `ErrorKind`; the edge (the servicer's decorator) turns the kind
into a status with `status_of` and the message with `public_message`:

    GatewayError                kind                  gRPC status
     ├── NotFound               NOT_FOUND             NOT_FOUND
     ├── InvalidArgument        INVALID_ARGUMENT      INVALID_ARGUMENT
     ├── Unavailable            UNAVAILABLE           UNAVAILABLE
     ├── Overloaded             RESOURCE_EXHAUSTED    RESOURCE_EXHAUSTED
     ├── DeadlineExceeded       DEADLINE_EXCEEDED     DEADLINE_EXCEEDED
     ├── Internal               INTERNAL              INTERNAL
     ├── Unauthenticated        UNAUTHENTICATED       UNAUTHENTICATED
     └── PermissionDenied       PERMISSION_DENIED     PERMISSION_DENIED

The kinds are a `StrEnum`, so other modules may declare `kind = "NOT_FOUND"`
on their own exception classes (gateway/routing.py does) without importing
this one. An exception with no kind, or a kind not in the table, is a bug: it
becomes INTERNAL, and its text is not sent to the client (the edge logs it).

What each kind tells a client:

- INVALID_ARGUMENT: the request itself is wrong; fix it, do not retry.
- NOT_FOUND: no such model, route or version in the plan.
- UNAVAILABLE: nothing can serve it right now (no live replica, draining);
  retrying later or elsewhere may work.
- RESOURCE_EXHAUSTED: overload; admission refused the request because its
  deadline or SLO cannot be met. Back off.
- DEADLINE_EXCEEDED: the client's deadline passed while it was being served.

This is the only gateway module that imports grpc outside the gRPC edge.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

import grpc


class ErrorKind(StrEnum):
    NOT_FOUND = "NOT_FOUND"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    UNAVAILABLE = "UNAVAILABLE"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    INTERNAL = "INTERNAL"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"


# The one table from kinds to gRPC codes. The kinds are named after the codes
# on purpose: nothing is lost or merged on the way out.
STATUS: dict[ErrorKind, grpc.StatusCode] = {
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorKind.INTERNAL: grpc.StatusCode.INTERNAL,
    ErrorKind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorKind.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
}

# What a client is told when the gateway hit a bug; the details go to the log.
INTERNAL_MESSAGE = "internal error in the gateway (logged there)"


class GatewayError(Exception):
    """Base of the gateway's domain errors; `str(error)` is shown to clients."""

    kind: ClassVar[ErrorKind] = ErrorKind.INTERNAL


class NotFound(GatewayError):
    kind = ErrorKind.NOT_FOUND


class InvalidArgument(GatewayError):
    kind = ErrorKind.INVALID_ARGUMENT


class Unavailable(GatewayError):
    kind = ErrorKind.UNAVAILABLE


class Overloaded(GatewayError):
    """Admission refused the request: its deadline or SLO cannot be met."""

    kind = ErrorKind.RESOURCE_EXHAUSTED


class DeadlineExceeded(GatewayError):
    kind = ErrorKind.DEADLINE_EXCEEDED


class Internal(GatewayError):
    """A failure the gateway detected in itself or a worker; its message is shown."""

    kind = ErrorKind.INTERNAL


class Unauthenticated(GatewayError):
    kind = ErrorKind.UNAUTHENTICATED


class PermissionDenied(GatewayError):
    kind = ErrorKind.PERMISSION_DENIED


_BY_KIND: dict[ErrorKind, type[GatewayError]] = {
    cls.kind: cls
    for cls in (
        NotFound,
        InvalidArgument,
        Unavailable,
        Overloaded,
        DeadlineExceeded,
        Internal,
        Unauthenticated,
        PermissionDenied,
    )
}


def kind_of(error: BaseException) -> ErrorKind | None:
    """The error's kind, or None when it has none we know (a bug)."""
    kind = getattr(error, "kind", None)
    try:
        return ErrorKind(kind) if kind is not None else None
    except ValueError:
        return None


def status_of(error: BaseException) -> grpc.StatusCode:
    """The gRPC code for `error`: its kind's row in STATUS, else INTERNAL."""
    kind = kind_of(error)
    return STATUS[kind] if kind is not None else grpc.StatusCode.INTERNAL


def public_message(error: BaseException) -> str:
    """What the client may read: the message of a known kind, never a bug's text."""
    return str(error) if kind_of(error) is not None else INTERNAL_MESSAGE


def error_from_status(code: grpc.StatusCode, message: str) -> GatewayError:
    """The domain error for a status a peer (a worker) answered, by the same table.

    A code outside the table (CANCELLED, UNKNOWN, …) becomes Internal.
    """
    for kind, status in STATUS.items():
        if status == code:
            return _BY_KIND[kind](message)
    return Internal(f"{code.name}: {message}")
