"""The gateway block's `tls` and `auth` over real sockets: an in-process gateway
(echo fake workers) and server on 127.0.0.1:0, reached with grpc channels, the
unmodified tritonclient (in a subprocess) and `infc plan --against`.

The certificates come from the `tls_files` fixture (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from inferplane.cli.console import Console
from inferplane.cli.main import ExitCode, run
from inferplane.compiler import plan as plan_module
from inferplane.compiler.plan import load_plan
from inferplane.gateway import security
from inferplane.gateway.app import Gateway
from inferplane.gateway.server import start_server
from inferplane.gateway.worker_client import WorkerHealth
from inferplane.protos import admin_pb2, admin_pb2_grpc
from inferplane.protos import grpc_service_pb2 as pb
from inferplane.protos import grpc_service_pb2_grpc as pb_grpc

HERE = Path(__file__).resolve().parent
GOLDEN = HERE.parent / "golden"
TIMEOUT_S = 10.0
TOKEN = "tok-0123456789abcdef"


class EchoWorker:
    """fraud-scorer answers `score = features[:, :2]`; placed where demo's `laptop` is."""

    async def infer(self, model, version, arrays, *, timeout=None, request_id=""):
        return {"score": np.asarray(arrays["features"])[:, :2].copy()}, 1000

    async def health(self, *, timeout=None):
        return WorkerHealth(
            ready=True, location_kind="onprem", location_site="localhost", location_source="host"
        )

    async def close(self):
        pass


def features() -> np.ndarray:
    return np.arange(30, dtype=np.float32).reshape(1, 30)


def infer_request() -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="fraud-scorer")
    request.inputs.add(name="features", datatype="FP32", shape=[1, 30])
    request.raw_input_contents.append(features().tobytes())
    return request


async def serving(tls: plan_module.Tls | None, tokens: str | None, folder: Path):
    block = plan_module.Gateway(tls=tls, auth_tokens_env="TOKENS" if tokens else None)
    credentials, auth = security.gateway_security(block, folder, {"TOKENS": tokens or ""})
    plan = load_plan((GOLDEN / "demo.plan.json").read_text())
    gateway = Gateway(plan, client_factory=lambda endpoint: EchoWorker())
    await gateway.start()
    gateway.set_replicas("laptop", ["w0"])
    assert await gateway.placement_checked(TIMEOUT_S)
    server, address = await start_server(
        gateway, "127.0.0.1:0", max_message_bytes=1 << 26, credentials=credentials, auth=auth
    )
    return gateway, server, address, auth


async def stop(gateway, server):
    await gateway.drain(1.0)
    await server.stop(grace=0.5)


def channel_credentials(files, *, ca: Path | None = None, client: bool = False):
    return grpc.ssl_channel_credentials(
        root_certificates=(ca or files.ca).read_bytes(),
        private_key=files.client_key.read_bytes() if client else None,
        certificate_chain=files.client_cert.read_bytes() if client else None,
    )


async def status_of(call) -> tuple[grpc.StatusCode, str]:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


async def stream_status(stub, metadata) -> tuple[grpc.StatusCode, str, list]:
    """ModelStreamInfer with one request: (status, details, answers)."""
    answers = []
    try:
        async for answer in stub.ModelStreamInfer(
            iter([infer_request()]), metadata=metadata, timeout=TIMEOUT_S
        ):
            answers.append(answer)
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or "", answers
    return grpc.StatusCode.OK, "", answers


def infc(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), Console(out=out, err=err, stdin=io.StringIO()))
    return code, out.getvalue(), err.getvalue()


def test_tls_and_tokens_guard_every_service_but_health(tls_files, tmp_path, monkeypatch):
    tls = plan_module.Tls(cert=tls_files.server_cert.name, key=tls_files.server_key.name)
    bearer = (("authorization", f"Bearer {TOKEN}"),)
    wrong = (("authorization", "Bearer not-it"),)

    async def scenario():
        gateway, server, address, auth = await serving(
            tls, f"other-token,{TOKEN}", tls_files.folder
        )
        try:
            secure = grpc.aio.secure_channel(address, channel_credentials(tls_files))
            async with secure:
                stub = pb_grpc.GRPCInferenceServiceStub(secure)
                live = await stub.ServerLive(
                    pb.ServerLiveRequest(), metadata=bearer, timeout=TIMEOUT_S
                )
                assert live.live
                answer = await stub.ModelInfer(infer_request(), metadata=bearer, timeout=TIMEOUT_S)
                score = np.frombuffer(answer.raw_output_contents[0], np.float32)
                np.testing.assert_array_equal(score, features()[0, :2])
                code, _, streamed = await stream_status(stub, bearer)
                assert code == grpc.StatusCode.OK and len(streamed) == 1
                assert not streamed[0].error_message
                assert auth.refused == 0

                refused = {
                    "ServerLive": await status_of(
                        stub.ServerLive(pb.ServerLiveRequest(), timeout=TIMEOUT_S)
                    ),
                    "ModelInfer": await status_of(
                        stub.ModelInfer(infer_request(), timeout=TIMEOUT_S)
                    ),
                    "wrong token": await status_of(
                        stub.ModelInfer(infer_request(), metadata=wrong, timeout=TIMEOUT_S)
                    ),
                    "GetPlan": await status_of(
                        admin_pb2_grpc.AdminStub(secure).GetPlan(
                            admin_pb2.GetPlanRequest(), timeout=TIMEOUT_S
                        )
                    ),
                }
                code, details, streamed = await stream_status(stub, None)
                refused["ModelStreamInfer"] = (code, details)
                assert streamed == []
                reflection = reflection_pb2_grpc.ServerReflectionStub(secure)
                listing = reflection_pb2.ServerReflectionRequest(list_services="")
                try:
                    async for _ in reflection.ServerReflectionInfo(
                        iter([listing]), timeout=TIMEOUT_S
                    ):
                        pass
                    refused["reflection"] = (grpc.StatusCode.OK, "")
                except grpc.aio.AioRpcError as error:
                    refused["reflection"] = (error.code(), error.details())
                for rpc, (code, details) in refused.items():
                    assert code == grpc.StatusCode.UNAUTHENTICATED, (rpc, code, details)
                    expected = "not accepted" if rpc == "wrong token" else "requires a bearer token"
                    assert expected in details, (rpc, details)
                assert auth.refused == len(refused)

                # Health needs no token: kubelet's gRPC probe sends no metadata.
                health = health_pb2_grpc.HealthStub(secure)
                checked = await health.Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S)
                assert checked.status == health_pb2.HealthCheckResponse.SERVING

            # No plaintext, and no TLS that does not trust the gateway's issuer.
            async with grpc.aio.insecure_channel(address) as plain:
                code, _ = await status_of(
                    pb_grpc.GRPCInferenceServiceStub(plain).ServerLive(
                        pb.ServerLiveRequest(), metadata=bearer, timeout=TIMEOUT_S
                    )
                )
                assert code == grpc.StatusCode.UNAVAILABLE
            untrusted = channel_credentials(tls_files, ca=tls_files.other_ca)
            async with grpc.aio.secure_channel(address, untrusted) as other:
                code, _ = await status_of(
                    pb_grpc.GRPCInferenceServiceStub(other).ServerLive(
                        pb.ServerLiveRequest(), metadata=bearer, timeout=TIMEOUT_S
                    )
                )
                assert code == grpc.StatusCode.UNAVAILABLE

            # tritonclient, unmodified, over TLS with the token in its headers.
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(HERE / "triton_tls_calls.py"),
                address,
                str(tls_files.ca),
                TOKEN,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            try:
                output, _ = await asyncio.wait_for(process.communicate(), 120)
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            assert process.returncode == 0, output.decode(errors="replace")
            triton = json.loads(output.decode().strip().splitlines()[-1])
            assert triton["live"] and triton["ready"]
            assert triton["score"] == features()[:, :2].tolist()
            assert triton["without_token"].startswith("StatusCode.UNAUTHENTICATED")

            # `infc plan --against` reaches it with --tls-ca and $INFERPLANE_TOKEN.
            spec = tmp_path / "demo.infer"
            spec.write_text((HERE.parents[1] / "specs" / "demo.infer").read_text())
            (tmp_path / "models").symlink_to(HERE.parents[1] / "specs" / "models")
            argv = ("plan", str(spec), "--against", address, "--tls-ca", str(tls_files.ca))
            monkeypatch.delenv("INFERPLANE_TOKEN", raising=False)
            code, _, err = await asyncio.to_thread(infc, *argv)
            assert code == ExitCode.ERRORS
            assert "wants a bearer token" in err and "set $INFERPLANE_TOKEN" in err, err
            monkeypatch.setenv("INFERPLANE_TOKEN", TOKEN)
            code, out, err = await asyncio.to_thread(infc, *argv)
            assert code == ExitCode.OK, err
            assert out.strip(), out
            code, _, err = await asyncio.to_thread(infc, *argv[:4])  # plaintext to a TLS gateway
            assert code == ExitCode.ERRORS and "add --tls-ca PEM" in err, err
            untrusting = (*argv[:4], "--tls-ca", str(tls_files.other_ca))
            code, _, err = await asyncio.to_thread(infc, *untrusting)
            assert code == ExitCode.ERRORS and "the TLS handshake with" in err, err
        finally:
            await stop(gateway, server)

    asyncio.run(asyncio.wait_for(scenario(), 180))


def test_mutual_tls_wants_a_client_certificate_from_the_client_ca(tls_files):
    tls = plan_module.Tls(
        cert=tls_files.server_cert.name, key=tls_files.server_key.name, client_ca=tls_files.ca.name
    )

    async def live(address, credentials) -> grpc.StatusCode:
        async with grpc.aio.secure_channel(address, credentials) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            code, _ = await status_of(stub.ServerLive(pb.ServerLiveRequest(), timeout=TIMEOUT_S))
            return code

    async def scenario():
        gateway, server, address, auth = await serving(tls, None, tls_files.folder)
        assert auth is None
        try:
            assert (
                await live(address, channel_credentials(tls_files, client=True))
                == grpc.StatusCode.OK
            )
            assert (
                await live(address, channel_credentials(tls_files)) == grpc.StatusCode.UNAVAILABLE
            )
        finally:
            await stop(gateway, server)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_renewed_certificate_is_served_to_new_connections_without_a_restart(
    tls_files, tmp_path, caplog
):
    """The files are replaced on disk (as cert-manager or certbot do): new connections
    get the new certificate; a broken replacement is logged and the one in use stays."""
    import shutil

    folder = tmp_path / "certs"
    folder.mkdir()
    shutil.copy(tls_files.server_cert, folder / "gateway.pem")
    shutil.copy(tls_files.server_key, folder / "gateway-key.pem")
    tls = plan_module.Tls(cert="gateway.pem", key="gateway-key.pem")

    async def live(address, ca: Path) -> grpc.StatusCode:
        credentials = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
        async with grpc.aio.secure_channel(address, credentials) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            code, _ = await status_of(stub.ServerLive(pb.ServerLiveRequest(), timeout=TIMEOUT_S))
            return code

    async def scenario():
        gateway, server, address, _ = await serving(tls, None, folder)
        try:
            before = (await live(address, tls_files.ca), await live(address, tls_files.other_ca))
            # Renewed: another certificate and key (here from another CA, to tell them apart).
            shutil.copy(tls_files.other_server_key, folder / "gateway-key.pem")
            shutil.copy(tls_files.other_server_cert, folder / "gateway.pem")
            after = (await live(address, tls_files.ca), await live(address, tls_files.other_ca))
            (folder / "gateway.pem").write_text("not a certificate\n")
            broken = await live(address, tls_files.other_ca)
            return before, after, broken
        finally:
            await stop(gateway, server)

    with caplog.at_level("INFO", logger="inferplane.backends.tls"):
        before, after, broken = asyncio.run(asyncio.wait_for(scenario(), 60))
    ok, unavailable = grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE
    assert before == (ok, unavailable)
    assert after == (unavailable, ok)
    assert broken == ok  # the renewed certificate stays in use
    messages = [r.getMessage() for r in caplog.records]
    assert any("event=tls_reloaded" in m for m in messages), messages
    assert any("event=tls_reload_failed" in m and "not a PEM" in m for m in messages), messages
