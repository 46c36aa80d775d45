"""`infc apply SPEC --gateway HOST:PORT`: hot-swap a running gateway onto the spec's plan.

    compile (errors: printed like `infc check`, exit 1)
      ─▶ GetPlan: what the gateway serves ─▶ print the diff (as `infc plan --against`)
      ─▶ no change: "No changes." exit 0
      ─▶ ApplyPlan ─▶ "applied: …" exit 0
                   └▶ refused (a change only a restart can make; each named) exit 1

The gateway decides (gateway/plan_swap.py, gateway/swap.py): a new gateway
takes over on the same workers without failing a request, or the old plan
serves on. Reaching a gateway with TLS or tokens: cli/gateway_access.py.
"""

from __future__ import annotations

import argparse
import os

from inferplane.cli import gateway_access
from inferplane.cli.console import Console
from inferplane.cli.spec_input import compile_for_running
from inferplane.compiler.diff import diff_plans, render_diff
from inferplane.compiler.plan import load_plan
from inferplane.compiler.review import ANSI, PLAIN

OK, ERRORS = 0, 1


def add_parser(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]):
    apply = subparsers.add_parser(
        "apply",
        help="hot-swap a running gateway onto the spec's plan (no request fails)",
        parents=parents,
    )
    apply.add_argument("spec", metavar="SPEC")
    apply.add_argument(
        "--gateway", required=True, metavar="HOST:PORT", help="the gateway (or unix:PATH)"
    )
    gateway_access.add_arguments(apply)
    return apply


def run(args: argparse.Namespace, console: Console) -> int:
    wrong = gateway_access.problem(args)
    if wrong is not None:
        console.error(f"infc: {wrong}")
        return ERRORS
    compilation = compile_for_running(args.spec, console)
    if compilation is None:
        return ERRORS
    new = compilation.plan
    # Only here: grpc loads when a gateway is asked, not for every `infc` command.
    import grpc

    from inferplane.cli import gateway_plan

    access = gateway_plan.Access(**gateway_access.settings(args, os.environ))
    try:
        old = load_plan(gateway_plan.fetch_plan_json(args.gateway, access=access))
    except gateway_plan.GatewayPlanError as error:
        console.error(f"infc: {error}")
        return ERRORS
    changes = diff_plans(old, new)
    console.print(render_diff(changes, ANSI if console.colour else PLAIN), end="")
    if changes.is_empty:
        return OK
    try:
        answer = gateway_plan.apply_plan(
            args.gateway, new.to_json(), gateway_plan.APPLY_TIMEOUT_S, access
        )
    except grpc.RpcError as error:
        console.error(f"infc: {_refusal(args.gateway, old.content_hash, error, access.tls)}")
        return ERRORS
    console.print(
        f"applied: the gateway at {args.gateway} serves {answer.content_hash} "
        f"(was {answer.previous_hash})"
    )
    return OK


def _refusal(gateway: str, serving: str, error, tls: bool) -> str:
    """What `infc` says when ApplyPlan fails (after "infc: ")."""
    import grpc

    from inferplane.cli import gateway_plan

    code, details = error.code(), error.details() or ""
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        reasons = "".join(f"\n  - {reason}" for reason in details.split("; "))
        return f"the gateway at {gateway} refused the plan; it serves {serving} on:{reasons}"
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return f"the gateway at {gateway} does not take a plan from here: {details}"
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return f"the gateway at {gateway} rejected the plan: {details}"
    if code == grpc.StatusCode.UNAVAILABLE and "old plan serves" in details:
        return f"the gateway at {gateway} could not take the plan: {details}"
    if code in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNAUTHENTICATED,
    ):
        return gateway_plan.describe(gateway, code, details, gateway_plan.APPLY_TIMEOUT_S, tls)
    return f"the gateway at {gateway} did not apply the plan: {code.name}: {details}"
