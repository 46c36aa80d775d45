"""A running gateway's plan, read over its admin service: `infc plan --against HOST:PORT`.

    fetch_plan_json("127.0.0.1:8001") ──GetPlan, 5 s──▶ the plan's JSON text
                                     └─ failure ──▶ GatewayPlanError("no gateway answers …")

`get_plan` is the only function that touches the network; it is module-level
so that the CLI's unit tests, which open no socket, replace it with a fake
that raises the `grpc.RpcError` a real call would. Every failure becomes one
`GatewayPlanError` whose message is what `infc` prints after "infc: ".
"""

from __future__ import annotations

import grpc

from inferplane.protos import admin_pb2, admin_pb2_grpc

TIMEOUT_S = 5.0  # the whole call: connecting and answering
MAX_MESSAGE_BYTES = 64 << 20  # a plan is far smaller; grpc's default (4 MiB) is not a plan's limit


class GatewayPlanError(Exception):
    """The plan could not be read; the message says why, for a person."""


def get_plan(address: str, timeout_s: float) -> admin_pb2.GetPlanResponse:
    """One GetPlan call to `address` (host:port or unix:PATH); grpc.RpcError on failure."""
    options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
    with grpc.insecure_channel(address, options=options) as channel:
        stub = admin_pb2_grpc.AdminStub(channel)
        return stub.GetPlan(admin_pb2.GetPlanRequest(), timeout=timeout_s)


def describe(address: str, code: grpc.StatusCode, details: str, timeout_s: float) -> str:
    """The message for a failed call, by its status."""
    if code == grpc.StatusCode.UNAVAILABLE:
        reason = "connection refused" if "refused" in details.lower() else details or "unavailable"
        return f"no gateway answers at {address} ({reason}): is `infc serve` running?"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"the gateway at {address} did not answer within {timeout_s:g} s"
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return (
            f"the server at {address} has no admin service: it is not an inferplane "
            "gateway, or one older than `infc plan --against HOST:PORT`"
        )
    return f"the gateway at {address} refused to give its plan: {code.name}: {details}"


def fetch_plan_json(address: str, timeout_s: float = TIMEOUT_S) -> str:
    """The JSON of the plan that the gateway at `address` serves."""
    try:
        return get_plan(address, timeout_s).plan_json
    except grpc.RpcError as error:
        code, details = error.code(), error.details() or ""
        raise GatewayPlanError(describe(address, code, details, timeout_s)) from None
