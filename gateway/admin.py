"""The admin service (`inferplane.admin.v1.Admin`): a running gateway's plan.

    GetPlan ──▶ the plan the gateway serves: its exact JSON, hash and source

It is served on the gateway's own port (gateway/server.py registers it beside
the inference service) and only reads: the servicer looks at `gateway.plan`
on each call, so after a later hot swap (`ApplyPlan`, not built yet) it
answers the new plan. `infc plan SPEC --against HOST:PORT` is its client
(cli/gateway_plan.py). The reply is three strings, so its conversion lives
here rather than in gateway/converters.py, which is the public API's.
"""

from __future__ import annotations

import logging

import grpc

from inferplane.compiler import plan as plan_mod
from inferplane.gateway.app import Gateway
from inferplane.gateway.errors import kind_of, public_message, status_of
from inferplane.protos import admin_pb2 as pb
from inferplane.protos import admin_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
SERVICE = pb.DESCRIPTOR.services_by_name["Admin"].full_name


def plan_to_proto(plan: plan_mod.Plan) -> pb.GetPlanResponse:
    return pb.GetPlanResponse(
        plan_json=plan.to_json(), content_hash=plan.content_hash, source=plan.source
    )


class AdminServicer(pb_grpc.AdminServicer):
    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    async def GetPlan(self, request, context: grpc.aio.ServicerContext):
        try:
            return plan_to_proto(self.gateway.plan)
        except Exception as error:  # the same rule as server.py's `_edge`
            if kind_of(error) is None:
                log.error("rpc=GetPlan failed with a bug", exc_info=error)
            code, message = status_of(error), public_message(error)
        await context.abort(code, message)
