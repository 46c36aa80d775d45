"""The gateway block's `tls` and `auth tokens_env`: who may talk to the gateway.

    credentials = server_credentials(plan.gateway.tls, spec_dir)   # or SecurityError
    auth = BearerAuth(load_tokens("INFERPLANE_TOKENS", os.environ))  # or SecurityError
    server = grpc.aio.server(interceptors=[auth]); server.add_secure_port(listen, credentials)

Both are checked when `infc serve` starts, before any worker: a certificate
that cannot be read, a key that does not match it, or a token variable that is
unset or empty is one clear error and the gateway does not serve. It never
falls back to plaintext or to no auth (fail closed).

Tokens: the variable holds one or more tokens separated by commas or
whitespace. A client sends one as gRPC metadata `authorization: Bearer TOKEN`
on every call. Only SHA-256 digests of the tokens are kept, and a presented
token is hashed and looked up, so the comparison does not depend on how much
of a token matched. Every service needs a token except `grpc.health.v1`:
kubelet's gRPC probes and load balancers send no metadata, and health says
only whether the gateway serves. A refused call is answered UNAUTHENTICATED
before its request is even parsed; the log says so at most once per
`LOG_EVERY_S`, with the count, and never with the token.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import grpc

from inferplane.backends import tls as tls_files
from inferplane.compiler import plan

log = logging.getLogger(__name__)

OPEN_PREFIXES = ("/grpc.health.v1.Health/",)  # served without a token (module docstring)
LOG_EVERY_S = 10.0
_SEPARATORS = re.compile(r"[\s,]+")


class SecurityError(Exception):
    """The gateway block's tls or auth cannot be put in force; the message says why."""


class Tokens:
    """The accepted bearer tokens, kept as SHA-256 digests."""

    def __init__(self, tokens: list[str], source: str):
        self.source = source  # e.g. "$INFERPLANE_TOKENS", for messages
        self._digests = frozenset(_digest(token) for token in tokens)

    def __len__(self) -> int:
        return len(self._digests)

    def __or__(self, other: Tokens) -> Tokens:
        both = Tokens([], f"{self.source} and {other.source}")
        both._digests = self._digests | other._digests
        return both

    def refusal(self, authorization: str | None) -> str | None:
        """None when the `authorization` metadata value carries an accepted token,
        otherwise why the call is refused (for the client: names no token)."""
        if authorization is None:
            return "this gateway requires a bearer token: send `authorization: Bearer TOKEN`"
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "the `authorization` metadata is not of the form `Bearer TOKEN`"
        if _digest(token.strip()) not in self._digests:
            return "the bearer token is not accepted"
        return None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def load_tokens(variable: str, environ: Mapping[str, str], what: str = "") -> Tokens:
    """The tokens in environment variable `variable`; SecurityError when there are none.
    `what` names where the variable was given (the spec's `auth` by default)."""
    what = what or f'`auth tokens_env "{variable}"`'
    value = environ.get(variable)
    if value is None:
        raise SecurityError(
            f"{what}: the variable is not set, so no client could call; set it to one or "
            "more tokens separated by commas or spaces"
        )
    tokens = [token for token in _SEPARATORS.split(value) if token]
    if not tokens:
        raise SecurityError(f"{what}: the variable is empty, so no client could call")
    return Tokens(tokens, f"${variable}")


_LOOPBACK_PEERS = ("ipv4:127.", "ipv6:[::1]", "ipv6:%5B::1%5D")


def admin_refusal(
    admin: Tokens | None, authorization: str | None, peer: str, *, trust_loopback: bool
) -> str | None:
    """Why a call that changes the gateway (ApplyPlan) is refused, or None.

    With admin tokens (`infc serve --admin-tokens-env`) it needs one of them.
    Without, it is served to callers on the gateway's host only, whatever
    inference tokens they hold (an inference client must not re-route traffic
    or drop a redaction rule): a unix socket, and loopback when
    `trust_loopback`. `infc serve` trusts loopback only for a gateway without
    `auth`: behind a service mesh's sidecar every remote caller arrives from
    loopback, and a gateway with tokens is one that expects remote callers."""
    if admin is not None:
        why = admin.refusal(authorization)
        return None if why is None else f"this call needs an admin token: {why}"
    if peer.startswith("unix:") or (trust_loopback and peer.startswith(_LOOPBACK_PEERS)):
        return None
    return (
        "this call is served to callers on the gateway's host only; start the gateway "
        "with --admin-tokens-env VARIABLE to allow others with an admin token"
    )


def server_credentials(tls: plan.Tls, base_dir: Path) -> grpc.ServerCredentials:
    """Credentials for `tls` (paths relative to `base_dir`, the spec's folder);
    the files are checked first (backends/tls.py)."""
    client_ca = base_dir / tls.client_ca if tls.client_ca is not None else None
    try:
        return tls_files.server_credentials(base_dir / tls.cert, base_dir / tls.key, client_ca)
    except tls_files.TlsFilesError as error:
        raise SecurityError(str(error)) from None


class BearerAuth(grpc.aio.ServerInterceptor):
    """Refuses calls without an accepted bearer token (services in OPEN_PREFIXES excepted)."""

    def __init__(self, tokens: Tokens, clock: Callable[[], float] = time.monotonic):
        self.tokens = tokens
        self.refused = 0  # calls refused since the start
        self._clock = clock
        self._logged_at: float | None = None
        self._unlogged = 0

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        if method.startswith(OPEN_PREFIXES):
            return await continuation(handler_call_details)
        authorization = None
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                authorization = value
                break
        reason = self.tokens.refusal(authorization)
        if reason is None:
            return await continuation(handler_call_details)
        handler = await continuation(handler_call_details)
        if handler is None:  # an unknown method: grpc answers UNIMPLEMENTED
            return None
        self._note_refusal(method, reason)
        return _denial(handler, reason)

    def _note_refusal(self, method: str, reason: str) -> None:
        self.refused += 1
        self._unlogged += 1
        now = self._clock()
        if self._logged_at is None or now - self._logged_at >= LOG_EVERY_S:
            log.warning(
                "event=unauthenticated method=%s refused=%d reason=%r",
                method,
                self._unlogged,
                reason,
            )
            self._logged_at, self._unlogged = now, 0


def _denial(handler: grpc.RpcMethodHandler, reason: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that answers UNAUTHENTICATED.
    Its request stays bytes: nothing a refused caller sent is parsed."""

    async def deny(request_or_requests, context: grpc.aio.ServicerContext):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny)
    return grpc.unary_unary_rpc_method_handler(deny)


def gateway_security(
    gateway: plan.Gateway,
    base_dir: Path,
    environ: Mapping[str, str],
    admin: Tokens | None = None,
) -> tuple[grpc.ServerCredentials | None, BearerAuth | None]:
    """The server credentials and the auth interceptor the gateway block asks
    for (None where it asks for none); SecurityError when one cannot be had.
    Admin tokens, when given, pass the interceptor too."""
    credentials = server_credentials(gateway.tls, base_dir) if gateway.tls else None
    auth = None
    if gateway.auth_tokens_env:
        tokens = load_tokens(gateway.auth_tokens_env, environ)
        auth = BearerAuth(tokens | admin if admin is not None else tokens)
    return credentials, auth


def describe(gateway: plan.Gateway) -> str:
    """How clients reach the gateway, for the serving line: "tls, mutual; bearer tokens"."""
    parts = []
    if gateway.tls:
        parts.append("tls, mutual" if gateway.tls.client_ca else "tls")
    else:
        parts.append("plaintext")
    if gateway.auth_tokens_env:
        parts.append("bearer tokens")
    return "; ".join(parts)
