"""The admin service (`inferplane.admin.v1.Admin`): a running gateway's plan, and its swap.

    GetPlan   ──▶ the plan the gateway serves: its exact JSON, hash and source
    ApplyPlan ──▶ the gateway moves onto a new plan without failing a request
                  (gateway/swap.py), or says why it cannot

It is served on the gateway's own port (gateway/server.py registers it beside
the inference service), behind the same TLS and tokens. ApplyPlan changes
what every client gets, so it also needs an admin token
(`infc serve --admin-tokens-env`) or, without admin tokens, a caller on the
gateway's host (security.admin_refusal: a unix socket, and loopback for a
gateway without `auth`). `infc plan SPEC
--against HOST:PORT` and `infc apply` are its clients (cli/gateway_plan.py).
The servicer reads the serving gateway through the swap on each call, so
GetPlan answers the new plan once a swap is done. A server started without a
swap (tests, tools) answers ApplyPlan UNIMPLEMENTED. The messages are a few
strings, so their conversion lives here rather than in gateway/converters.py,
which is the public API's.
"""

from __future__ import annotations

import logging

import grpc

from inferplane.compiler import plan as plan_mod
from inferplane.gateway.app import Gateway
from inferplane.gateway.errors import kind_of, public_message, status_of
from inferplane.gateway.security import Tokens, admin_refusal
from inferplane.gateway.swap import PlanSwap, SwapFailed, SwapRefused
from inferplane.protos import admin_pb2 as pb
from inferplane.protos import admin_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
SERVICE = pb.DESCRIPTOR.services_by_name["Admin"].full_name


def plan_to_proto(plan: plan_mod.Plan) -> pb.GetPlanResponse:
    return pb.GetPlanResponse(
        plan_json=plan.to_json(), content_hash=plan.content_hash, source=plan.source
    )


class AdminServicer(pb_grpc.AdminServicer):
    def __init__(
        self,
        gateway: Gateway,
        swap: PlanSwap | None = None,
        admin_tokens: Tokens | None = None,
        *,
        trust_loopback: bool = True,
    ):
        self._gateway = gateway
        self.swap = swap
        self.admin_tokens = admin_tokens
        self.trust_loopback = trust_loopback  # security.admin_refusal

    @property
    def gateway(self) -> Gateway:
        """The gateway serving now: the swap's, when there is one."""
        return self.swap.gateway if self.swap is not None else self._gateway

    async def GetPlan(self, request, context: grpc.aio.ServicerContext):
        try:
            return plan_to_proto(self.gateway.plan)
        except Exception as error:  # the same rule as server.py's `_edge`
            code, message = self._failure("GetPlan", error)
        await context.abort(code, message)

    async def ApplyPlan(self, request: pb.ApplyPlanRequest, context: grpc.aio.ServicerContext):
        if self.swap is None:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED, "this server cannot swap its plan (not `infc serve`)"
            )
        metadata = dict(context.invocation_metadata() or ())
        refused = admin_refusal(
            self.admin_tokens,
            metadata.get("authorization"),
            context.peer(),
            trust_loopback=self.trust_loopback,
        )
        if refused is not None:
            log.warning("event=apply_refused peer=%s reason=%r", context.peer(), refused)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, refused)
        try:
            plan = plan_mod.load_plan(request.plan_json)
        except ValueError as error:  # pydantic's ValidationError included
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"not a routing plan: {error}")
        if plan.with_hash().content_hash != plan.content_hash:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "the plan's content_hash does not match its content: it was edited after "
                "`infc plan --json` wrote it",
            )
        try:
            new, previous = await self.swap.apply(plan)
            return pb.ApplyPlanResponse(content_hash=new.plan.content_hash, previous_hash=previous)
        except SwapRefused as error:
            code, message = grpc.StatusCode.FAILED_PRECONDITION, str(error)
        except SwapFailed as error:
            code, message = grpc.StatusCode.UNAVAILABLE, str(error)
        except Exception as error:
            code, message = self._failure("ApplyPlan", error)
        await context.abort(code, message)

    @staticmethod
    def _failure(rpc: str, error: Exception) -> tuple[grpc.StatusCode, str]:
        if kind_of(error) is None:
            log.error("rpc=%s failed with a bug", rpc, exc_info=error)
        return status_of(error), public_message(error)
