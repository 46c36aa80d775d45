"""Shared fixtures: the example models, built once per test session."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
MODELS = SPECS / "models"


def _build_models() -> None:
    script = SPECS / "build_models.py"
    stamp = MODELS / ".built"
    if stamp.exists() and stamp.stat().st_mtime >= script.stat().st_mtime:
        return
    spec = importlib.util.spec_from_file_location("build_models", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    module.build_all(MODELS)
    stamp.touch()


@pytest.fixture(scope="session")
def example_models() -> Path:
    """The folder of example ONNX models (built by specs/build_models.py)."""
    _build_models()
    return MODELS


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: a CA, a server certificate for 127.0.0.1 and localhost signed
    by it, a client certificate signed by it, and a CA that signed neither."""

    folder: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    other_server_cert: Path  # for 127.0.0.1 and localhost too, signed by `other_ca`
    other_server_key: Path


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """Certificates made in process (cryptography); valid for a day."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def certificate(subject, key, issuer, issuer_key, *, ca: bool, sans=()):
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), False)
        return builder.sign(issuer_key, hashes.SHA256())

    def write(stem: str, cert, key=None) -> tuple[Path, Path | None]:
        cert_path = folder / f"{stem}.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if key is None:
            return cert_path, None
        key_path = folder / f"{stem}-key.pem"
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path

    ca_key, other_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = certificate("inferplane test CA", ca_key, "inferplane test CA", ca_key, ca=True)
    other = certificate("another CA", other_key, "another CA", other_key, ca=True)
    server_key, client_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    sans = (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    server = certificate("localhost", server_key, "inferplane test CA", ca_key, ca=False, sans=sans)
    client = certificate("a client", client_key, "inferplane test CA", ca_key, ca=False)
    ca_path, _ = write("ca", ca)
    other_path, _ = write("other-ca", other)
    server_cert, server_key_path = write("server", server, server_key)
    client_cert, client_key_path = write("client", client, client_key)
    other_server_key = ec.generate_private_key(ec.SECP256R1())
    other_server = certificate(
        "localhost", other_server_key, "another CA", other_key, ca=False, sans=sans
    )
    other_cert_path, other_key_path = write("other-server", other_server, other_server_key)
    return TlsFiles(
        folder,
        ca_path,
        server_cert,
        server_key_path,
        client_cert,
        client_key_path,
        other_path,
        other_cert_path,
        other_key_path,
    )
