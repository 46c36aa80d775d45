"""TLS credentials from PEM files, checked before gRPC sees them.

    server_credentials(cert, key, client_ca=None)   # the gateway's listener, a worker's
    channel_credentials(ca, cert=None, key=None)    # the gateway dialling remote workers

grpc only finds a bad certificate at the first handshake and then says little,
so the files are loaded with Python's ssl module first: a file that cannot be
read, a key that is not the certificate's, or a file that is not PEM raises
TlsFilesError naming the file and the problem. `what` prefixes each message
with the option or field the path came from (`tls cert`, `--tls-cert`). A
listener's files are read again when they change (`ReloadingCertificates`).
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import grpc

log = logging.getLogger(__name__)


class TlsFilesError(ValueError):
    """A PEM file cannot be used; the message names it and says why. A ValueError,
    like every other bad command-line value the CLI reports as "infc: …"."""


def read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise TlsFilesError(f"{what} {path}: cannot read it ({error.strerror})") from None


def check_pair(cert: Path, key: Path, what_cert: str, what_key: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as error:
        raise TlsFilesError(
            f"{what_cert} {cert} and {what_key} {key}: not a PEM certificate chain "
            f"and its private key ({error.reason or error})"
        ) from None


def check_roots(path: Path, what: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError as error:
        raise TlsFilesError(
            f"{what} {path}: not PEM CA certificates ({error.reason or error})"
        ) from None


def server_credentials(
    cert: Path,
    key: Path,
    client_ca: Path | None = None,
    *,
    what: tuple[str, str, str] = ("tls cert", "tls key", "tls client_ca"),
) -> grpc.ServerCredentials:
    """TLS for a listener; with `client_ca`, clients must show a certificate it
    signed. The files are read again when they change (`ReloadingCertificates`)."""
    return ReloadingCertificates(cert, key, client_ca, what).credentials


class ReloadingCertificates:
    """A listener's certificate, re-read when its files change on disk.

    grpc asks `_fetch` before each new connection's handshake; it compares the
    files' modification times and sizes (a few stat calls) with those of the
    files in use, and only when they differ reads and checks them again. A
    renewed certificate (cert-manager, certbot) is then served to new
    connections without a restart; a broken one is logged once and the one in
    use stays. Connections already open keep theirs.
    """

    def __init__(self, cert: Path, key: Path, client_ca: Path | None, what: tuple[str, str, str]):
        self._files = [(cert, what[0]), (key, what[1])]
        if client_ca is not None:
            self._files.append((client_ca, what[2]))
        self._stamp = self._stamps()
        self.credentials = grpc.dynamic_ssl_server_credentials(
            self._configuration(),  # TlsFilesError at start
            self._fetch,
            require_client_authentication=client_ca is not None,
        )

    def _stamps(self) -> tuple:
        stamps = []
        for path, _ in self._files:
            try:
                status = path.stat()
                stamps.append((status.st_mtime_ns, status.st_size))
            except OSError:
                stamps.append(None)
        return tuple(stamps)

    def _configuration(self):
        (cert, what_cert), (key, what_key) = self._files[:2]
        cert_pem, key_pem = read(cert, what_cert), read(key, what_key)
        check_pair(cert, key, what_cert, what_key)
        roots = None
        if len(self._files) > 2:
            ca, what_ca = self._files[2]
            roots = read(ca, what_ca)
            check_roots(ca, what_ca)
        return grpc.ssl_server_certificate_configuration([(key_pem, cert_pem)], roots)

    def _fetch(self):
        """grpc's callback (from its own thread): a new configuration, or None to keep."""
        try:
            stamp = self._stamps()
            if stamp == self._stamp:
                return None
            self._stamp = stamp
            configuration = self._configuration()
        except TlsFilesError as error:
            log.error(
                "event=tls_reload_failed reason=%r (the certificate in use stays)", str(error)
            )
            return None
        except Exception:  # never raise into grpc's handshake
            log.exception("event=tls_reload_failed")
            return None
        log.info("event=tls_reloaded cert=%s", self._files[0][0])
        return configuration


def channel_credentials(
    ca: Path | None,
    cert: Path | None = None,
    key: Path | None = None,
    *,
    what: tuple[str, str, str] = ("--tls-ca", "--tls-cert", "--tls-key"),
) -> grpc.ChannelCredentials:
    """TLS for a client trusting `ca` (None: the system's roots), with a client
    certificate when `cert` and `key` are given (mutual TLS)."""
    what_ca, what_cert, what_key = what
    roots = None
    if ca is not None:
        roots = read(ca, what_ca)
        check_roots(ca, what_ca)
    chain = private = None
    if cert is not None and key is not None:
        chain, private = read(cert, what_cert), read(key, what_key)
        check_pair(cert, key, what_cert, what_key)
    return grpc.ssl_channel_credentials(
        root_certificates=roots, private_key=private, certificate_chain=chain
    )
