"""A running gateway's plan, read over its admin service: `infc plan --against HOST:PORT`.

    fetch_plan_json("127.0.0.1:8001") ──GetPlan, 5 s──▶ the plan's JSON text
                                     └─ failure ──▶ GatewayPlanError("no gateway answers …")

`get_plan` is the only function that touches the network; it is module-level
so that the CLI's unit tests, which open no socket, replace it with a fake
that raises the `grpc.RpcError` a real call would. Every failure becomes one
`GatewayPlanError` whose message is what `infc` prints after "infc: ".

A gateway whose spec has `tls` or `auth` is reached with an `Access`: TLS
trusting `--tls-ca` (or the system's roots with `--tls`), a client certificate
for mutual TLS, and the bearer token from $INFERPLANE_TOKEN
(cli/gateway_access.py). `apply_plan` is `infc apply`'s call (cli/apply_command.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from inferplane.backends import tls
from inferplane.cli.gateway_access import TOKEN_VARIABLE
from inferplane.protos import admin_pb2, admin_pb2_grpc

TIMEOUT_S = 5.0  # the whole call: connecting and answering
MAX_MESSAGE_BYTES = 64 << 20  # a plan is far smaller; grpc's default (4 MiB) is not a plan's limit


APPLY_TIMEOUT_S = 60.0  # a swap waits for the new gateway's first probes (10 s at most)


class GatewayPlanError(Exception):
    """The plan could not be read; the message says why, for a person."""


@dataclass(frozen=True)
class Access:
    """How to reach a gateway: plaintext and no token unless told otherwise."""

    tls: bool = False
    ca: Path | None = None  # trusted roots (PEM); None: the system's
    cert: Path | None = None  # client certificate and key, for mutual TLS
    key: Path | None = None
    token: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        try:
            return tls.channel_credentials(self.ca, self.cert, self.key)
        except tls.TlsFilesError as error:
            raise GatewayPlanError(str(error)) from None


def _call(address: str, access: Access, call):
    """`call(stub, metadata)` on a channel to `address` as `access` says."""
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    if access.tls:
        channel = grpc.secure_channel(address, access.credentials(), options=options)
    else:
        channel = grpc.insecure_channel(address, options=options)
    metadata = [("authorization", f"Bearer {access.token}")] if access.token else None
    with channel:
        return call(admin_pb2_grpc.AdminStub(channel), metadata)


def get_plan(
    address: str, timeout_s: float, access: Access = Access()
) -> admin_pb2.GetPlanResponse:
    """One GetPlan call to `address` (host:port or unix:PATH); grpc.RpcError on failure."""
    request = admin_pb2.GetPlanRequest()
    return _call(
        address, access, lambda stub, md: stub.GetPlan(request, timeout=timeout_s, metadata=md)
    )


def apply_plan(
    address: str, plan_json: str, timeout_s: float, access: Access = Access()
) -> admin_pb2.ApplyPlanResponse:
    """One ApplyPlan call; grpc.RpcError on failure (FAILED_PRECONDITION: refused)."""
    request = admin_pb2.ApplyPlanRequest(plan_json=plan_json)
    return _call(
        address, access, lambda stub, md: stub.ApplyPlan(request, timeout=timeout_s, metadata=md)
    )


def describe(
    address: str, code: grpc.StatusCode, details: str, timeout_s: float, tls: bool = False
) -> str:
    """The message for a failed call, by its status."""
    if code == grpc.StatusCode.UNAVAILABLE:
        lowered = details.lower()
        if "handshake" in lowered and tls:
            return (
                f"the TLS handshake with {address} failed ({details}): check --tls-ca, and "
                "--tls-cert/--tls-key when the gateway has `client_ca`"
            )
        reason = "connection refused" if "refused" in lowered else details or "unavailable"
        hint = "is `infc serve` running?"
        if "socket closed" in lowered and not tls:
            # What a plaintext call to a TLS listener sees.
            hint = "if its spec has `tls`, add --tls-ca PEM (or --tls)"
        return f"no gateway answers at {address} ({reason}): {hint}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"the gateway at {address} did not answer within {timeout_s:g} s"
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return (
            f"the gateway at {address} wants a bearer token ({details}): "
            f"set ${TOKEN_VARIABLE} to one of its tokens"
        )
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return (
            f"the server at {address} has no admin service: it is not an inferplane "
            "gateway, or one older than `infc plan --against HOST:PORT`"
        )
    return f"the gateway at {address} refused to give its plan: {code.name}: {details}"


def fetch_plan_json(address: str, timeout_s: float = TIMEOUT_S, access: Access = Access()) -> str:
    """The JSON of the plan that the gateway at `address` serves."""
    try:
        return get_plan(address, timeout_s, access).plan_json
    except grpc.RpcError as error:
        code, details = error.code(), error.details() or ""
        raise GatewayPlanError(describe(address, code, details, timeout_s, access.tls)) from None
