"""The gateway block's tls and auth, checked and built (gateway/security.py).

The calls themselves (a refused call, a TLS handshake) are end to end in
tests/integration/test_gateway_security.py.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import grpc
import pytest

from inferplane.compiler import plan
from inferplane.gateway import security
from inferplane.gateway.security import BearerAuth, SecurityError, Tokens, load_tokens


def test_tokens_are_read_from_the_variable_split_on_commas_and_whitespace():
    tokens = load_tokens("TOKENS", {"TOKENS": " alpha,beta \n gamma,, "})
    assert len(tokens) == 3
    for token in ("alpha", "beta", "gamma"):
        assert tokens.refusal(f"Bearer {token}") is None
    assert tokens.refusal("Bearer alpha,beta") == "the bearer token is not accepted"


@pytest.mark.parametrize(
    ("environ", "says"),
    [({}, "the variable is not set"), ({"TOKENS": " ,\n "}, "the variable is empty")],
)
def test_no_tokens_is_an_error_not_an_open_gateway(environ, says):
    with pytest.raises(SecurityError, match=says) as raised:
        load_tokens("TOKENS", environ)
    assert '`auth tokens_env "TOKENS"`' in str(raised.value)


@pytest.mark.parametrize(
    ("authorization", "refusal"),
    [
        ("Bearer s3cret-token", None),
        ("bearer s3cret-token", None),  # the scheme is case-insensitive (RFC 7235)
        ("  Bearer   s3cret-token  ", None),
        (None, "this gateway requires a bearer token: send `authorization: Bearer TOKEN`"),
        ("s3cret-token", "the `authorization` metadata is not of the form `Bearer TOKEN`"),
        ("Basic czNjcmV0", "the `authorization` metadata is not of the form `Bearer TOKEN`"),
        ("Bearer ", "the `authorization` metadata is not of the form `Bearer TOKEN`"),
        ("Bearer s3cret-toke", "the bearer token is not accepted"),
        ("Bearer S3CRET-TOKEN", "the bearer token is not accepted"),
    ],
)
def test_refusal_says_why_without_echoing_the_token(authorization, refusal):
    tokens = Tokens(["s3cret-token"], "$T")
    assert tokens.refusal(authorization) == refusal
    if refusal is not None:
        assert "s3cret" not in refusal.lower()


def _tls(files, *, client_ca: bool = False) -> plan.Tls:
    return plan.Tls(
        cert=files.server_cert.name,
        key=files.server_key.name,
        client_ca=files.ca.name if client_ca else None,
    )


def test_credentials_from_the_spec_folder(tls_files):
    credentials = security.server_credentials(_tls(tls_files, client_ca=True), tls_files.folder)
    assert isinstance(credentials, grpc.ServerCredentials)


def test_a_missing_file_is_named(tls_files, tmp_path):
    with pytest.raises(SecurityError) as raised:
        security.server_credentials(_tls(tls_files), tmp_path)
    assert str(raised.value) == (
        f"tls cert {tmp_path / 'server.pem'}: cannot read it (No such file or directory)"
    )


def test_a_key_that_is_not_the_certificates_is_refused(tls_files, tmp_path):
    shutil.copy(tls_files.server_cert, tmp_path / "server.pem")
    shutil.copy(tls_files.client_key, tmp_path / "server-key.pem")  # another key
    with pytest.raises(SecurityError, match="not a PEM certificate chain and its private key"):
        security.server_credentials(_tls(tls_files), tmp_path)


def test_a_file_that_is_not_pem_is_refused(tls_files, tmp_path):
    for name in ("server.pem", "server-key.pem", "ca.pem"):
        shutil.copy(tls_files.folder / name, tmp_path / name)
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    with pytest.raises(SecurityError, match=r"tls client_ca .*ca\.pem: not PEM CA certificates"):
        security.server_credentials(_tls(tls_files, client_ca=True), tmp_path)
    (tmp_path / "server.pem").write_text("-----BEGIN CERTIFICATE-----\ngarbage\n")
    with pytest.raises(SecurityError, match="not a PEM certificate chain"):
        security.server_credentials(_tls(tls_files), tmp_path)


def test_gateway_security_builds_what_the_block_asks_for(tls_files):
    assert security.gateway_security(plan.Gateway(), tls_files.folder, {}) == (None, None)
    block = plan.Gateway(tls=_tls(tls_files), auth_tokens_env="TOKENS")
    credentials, auth = security.gateway_security(block, tls_files.folder, {"TOKENS": "a b"})
    assert isinstance(credentials, grpc.ServerCredentials)
    assert isinstance(auth, BearerAuth) and len(auth.tokens) == 2
    with pytest.raises(SecurityError, match="not set"):
        security.gateway_security(block, tls_files.folder, {})


@pytest.mark.parametrize(
    ("block", "described"),
    [
        (plan.Gateway(), "plaintext"),
        (plan.Gateway(tls=plan.Tls(cert="c", key="k")), "tls"),
        (plan.Gateway(tls=plan.Tls(cert="c", key="k", client_ca="ca")), "tls, mutual"),
        (plan.Gateway(auth_tokens_env="T"), "plaintext; bearer tokens"),
    ],
)
def test_describe(block, described):
    assert security.describe(block) == described


class _Details:
    def __init__(self, method: str, metadata=()):
        self.method, self.invocation_metadata = method, tuple(metadata)


def test_refusals_are_counted_and_logged_at_most_once_per_interval(caplog):
    clock = [100.0]
    auth = BearerAuth(Tokens(["t"], "$T"), clock=lambda: clock[0])

    async def handler(details):
        return grpc.unary_unary_rpc_method_handler(lambda request, context: None)

    async def call(metadata=()):
        details = _Details("/inference.GRPCInferenceService/ServerLive", metadata)
        return await auth.intercept_service(handler, details)

    async def scenario():
        allowed = await call([("authorization", "Bearer t")])
        assert allowed.unary_unary is not None and auth.refused == 0
        denied = [await call() for _ in range(3)]
        clock[0] += security.LOG_EVERY_S
        denied.append(await call([("authorization", "Bearer nope")]))
        return denied

    with caplog.at_level(logging.WARNING, logger="inferplane.gateway.security"):
        denied = asyncio.run(scenario())
    assert auth.refused == 4
    # A denial does not parse the request: no deserializer.
    assert all(d.request_deserializer is None and d.unary_unary for d in denied)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "refused=1" in lines[0] and "requires a bearer token" in lines[0]
    assert "refused=3" in lines[1] and "not accepted" in lines[1]
    assert all("nope" not in line for line in lines)


def test_health_is_open_and_unknown_methods_stay_unimplemented():
    auth = BearerAuth(Tokens(["t"], "$T"))
    seen = []

    async def continuation(details):
        seen.append(details.method)
        if details.method.endswith("/Nope"):
            return None
        return grpc.unary_unary_rpc_method_handler(lambda request, context: "real")

    async def scenario():
        health = await auth.intercept_service(
            continuation, _Details("/grpc.health.v1.Health/Check")
        )
        unknown = await auth.intercept_service(continuation, _Details("/x.Y/Nope"))
        return health, unknown

    health, unknown = asyncio.run(scenario())
    assert health.unary_unary(None, None) == "real"
    assert unknown is None and auth.refused == 0
    assert seen == ["/grpc.health.v1.Health/Check", "/x.Y/Nope"]


def test_the_example_spec_folder_resolves_relative_paths(tls_files, tmp_path):
    nested = tmp_path / "certs"
    nested.mkdir()
    for name in ("server.pem", "server-key.pem"):
        shutil.copy(tls_files.folder / name, nested / name)
    tls = plan.Tls(cert="certs/server.pem", key="certs/server-key.pem")
    assert isinstance(security.server_credentials(tls, tmp_path), grpc.ServerCredentials)
    with pytest.raises(SecurityError, match="cannot read"):
        security.server_credentials(tls, Path(tmp_path / "elsewhere"))


@pytest.mark.parametrize(
    ("peer", "local"),
    [
        ("unix:/run/gw.sock", True),
        ("ipv4:127.0.0.1:50312", True),
        ("ipv6:[::1]:50312", True),
        ("ipv6:%5B::1%5D:50312", True),
        ("ipv4:10.0.0.5:50312", False),
        ("ipv6:[fe80::1]:50312", False),
    ],
)
def test_without_admin_tokens_only_local_callers_may_apply(peer, local):
    refusal = security.admin_refusal(None, "Bearer any", peer, trust_loopback=True)
    assert (refusal is None) == local
    if not local:
        assert "callers on the gateway's host only" in refusal and "--admin-tokens-env" in refusal
    # A gateway with `auth` expects remote callers, and a mesh sidecar makes them
    # loopback ones: only its unix socket is trusted then.
    strict = security.admin_refusal(None, "Bearer any", peer, trust_loopback=False)
    assert (strict is None) == peer.startswith("unix:")


def test_with_admin_tokens_every_caller_needs_one():
    admin = Tokens(["adm-1"], "$ADMIN")
    assert (
        security.admin_refusal(admin, "Bearer adm-1", "ipv4:10.0.0.5:1", trust_loopback=False)
        is None
    )
    assert security.admin_refusal(
        admin, "Bearer inference-token", "unix:/x", trust_loopback=True
    ) == ("this call needs an admin token: the bearer token is not accepted")
    both = Tokens(["inference-token"], "$T") | admin
    assert both.refusal("Bearer adm-1") is None and both.refusal("Bearer inference-token") is None
    assert len(both) == 2
