"""The admin service end to end: `infc plan SPEC --against HOST:PORT` against an
in-process gateway and server on 127.0.0.1:0.

GetPlan only reads the plan, so no worker is started: the gateway need not be
ready. The CLI's call blocks, so it runs in a thread while the server answers
on the event loop.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import socket
from pathlib import Path

import grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from inferplane.cli.console import Console
from inferplane.cli.main import ExitCode, run
from inferplane.compiler.compilation import Compilation
from inferplane.gateway.app import Gateway
from inferplane.gateway.server import start_server
from inferplane.protos import admin_pb2, admin_pb2_grpc

SPECS = Path(__file__).resolve().parents[2] / "specs"
CALL_TIMEOUT_S = 10.0


def infc(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), Console(out=out, err=err, stdin=io.StringIO()))
    return code, out.getvalue(), err.getvalue()


def test_plan_against_a_running_gateway(tmp_path: Path, example_models: Path):
    shutil.copytree(example_models, tmp_path / "models")
    spec = tmp_path / "demo.infer"
    shutil.copy(SPECS / "demo.infer", spec)
    plan = Compilation.from_path(spec).plan
    assert plan is not None

    async def scenario():
        gateway = Gateway(plan)
        server, address = await start_server(gateway, "127.0.0.1:0", max_message_bytes=1 << 26)
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                answer = await admin_pb2_grpc.AdminStub(channel).GetPlan(
                    admin_pb2.GetPlanRequest(), timeout=CALL_TIMEOUT_S
                )
                reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
                request = reflection_pb2.ServerReflectionRequest(list_services="")
                async for reply in reflection.ServerReflectionInfo(iter([request])):
                    services = {s.name for s in reply.list_services_response.service}
            same = await asyncio.to_thread(
                infc, "plan", str(spec), "--against", address, "--detailed-exitcode"
            )
            spec.write_text(spec.read_text().replace("window 2ms", "window 4ms", 1))
            edited = await asyncio.to_thread(
                infc, "plan", str(spec), "--against", address, "--detailed-exitcode"
            )
            return answer, services, same, edited
        finally:
            await server.stop(grace=1.0)

    answer, services, same, edited = asyncio.run(scenario())
    assert answer.plan_json == plan.to_json()
    assert answer.content_hash == plan.content_hash and answer.content_hash.startswith("sha256:")
    assert answer.source == plan.source
    assert "inferplane.admin.v1.Admin" in services

    code, out, err = same
    assert code == ExitCode.OK, err
    assert "No changes" in out
    code, out, err = edited
    assert code == ExitCode.CHANGES, err
    assert "~ model" in out and "window_s" in out


def test_plan_against_an_address_where_nothing_listens(example_models: Path):
    with socket.socket() as probe:  # a port the kernel just handed out, then closed
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    code, out, err = infc("plan", str(SPECS / "demo.infer"), "--against", address)
    assert code == ExitCode.ERRORS and out == ""
    assert err.strip() == (
        f"infc: no gateway answers at {address} (connection refused): is `infc serve` running?"
    )


def test_apply_plan_refuses_what_is_not_a_plan_or_was_edited(example_models: Path):
    from inferplane.gateway.swap import PlanSwap

    plan = Compilation.from_path(SPECS / "demo.infer").plan
    assert plan is not None
    tampered = plan.to_json().replace('"window_s": 0.002', '"window_s": 0.004', 1)
    assert tampered != plan.to_json()

    async def call(stub, text: str) -> tuple[grpc.StatusCode, str]:
        try:
            await stub.ApplyPlan(admin_pb2.ApplyPlanRequest(plan_json=text), timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            return error.code(), error.details()
        return grpc.StatusCode.OK, ""

    async def scenario():
        gateway = Gateway(plan)
        without, address_without = await start_server(
            gateway, "127.0.0.1:0", max_message_bytes=1 << 26
        )
        swap = PlanSwap(Gateway(plan), make_gateway=lambda p, probe_first: Gateway(p))
        with_swap, address = await start_server(
            swap.gateway, "127.0.0.1:0", max_message_bytes=1 << 26, swap=swap
        )
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                stub = admin_pb2_grpc.AdminStub(channel)
                garbage = await call(stub, "{not json")
                edited = await call(stub, tampered)
                same = await call(stub, plan.to_json())  # nothing to change: a no-op swap
            async with grpc.aio.insecure_channel(address_without) as channel:
                unimplemented = await call(admin_pb2_grpc.AdminStub(channel), plan.to_json())
            return garbage, edited, same, unimplemented, swap.swaps
        finally:
            await without.stop(grace=0.5)
            await with_swap.stop(grace=0.5)

    garbage, edited, same, unimplemented, swaps = asyncio.run(scenario())
    assert garbage[0] == grpc.StatusCode.INVALID_ARGUMENT and "not a routing plan" in garbage[1]
    assert edited == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "the plan's content_hash does not match its content: it was edited after "
        "`infc plan --json` wrote it",
    )
    assert unimplemented[0] == grpc.StatusCode.UNIMPLEMENTED
    # The gateway has no worker, so it is not ready: nor need the new one be.
    assert same == (grpc.StatusCode.OK, "") and swaps == 1


def test_apply_plan_with_admin_tokens_wants_one_even_from_this_host(example_models: Path):
    from inferplane.gateway.security import Tokens
    from inferplane.gateway.swap import PlanSwap

    plan = Compilation.from_path(SPECS / "demo.infer").plan

    async def scenario():
        swap = PlanSwap(Gateway(plan), make_gateway=lambda p, probe_first: Gateway(p))
        server, address = await start_server(
            swap.gateway,
            "127.0.0.1:0",
            max_message_bytes=1 << 26,
            swap=swap,
            admin_tokens=Tokens(["adm-secret"], "$ADMIN"),
        )
        request = admin_pb2.ApplyPlanRequest(plan_json=plan.to_json())
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                stub = admin_pb2_grpc.AdminStub(channel)
                try:
                    await stub.ApplyPlan(request, timeout=CALL_TIMEOUT_S)
                    denied = (grpc.StatusCode.OK, "")
                except grpc.aio.AioRpcError as error:
                    denied = (error.code(), error.details())
                admin = (("authorization", "Bearer adm-secret"),)
                answer = await stub.ApplyPlan(request, metadata=admin, timeout=CALL_TIMEOUT_S)
            return denied, answer
        finally:
            await server.stop(grace=0.5)

    denied, answer = asyncio.run(scenario())
    assert denied == (
        grpc.StatusCode.PERMISSION_DENIED,
        "this call needs an admin token: this gateway requires a bearer token: send "
        "`authorization: Bearer TOKEN`",
    )
    assert answer.content_hash == plan.content_hash
