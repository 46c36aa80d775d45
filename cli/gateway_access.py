"""The options that reach a running gateway (`infc plan --against`, `infc apply`).

    --tls              TLS, trusting the system's roots
    --tls-ca PEM       TLS, trusting these roots
    --tls-cert PEM --tls-key PEM
                       a client certificate, for a gateway with `client_ca`
    $INFERPLANE_TOKEN  the bearer token, for a gateway with `auth` (a variable,
                       not a flag: command lines are visible to every user of the host)

No grpc here: `infc`'s parser imports this module for every command.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

TOKEN_VARIABLE = "INFERPLANE_TOKEN"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tls",
        action="store_true",
        help="reach the gateway over TLS (trusting the system's roots unless --tls-ca); "
        f"its bearer token, if it wants one, is read from ${TOKEN_VARIABLE}",
    )
    parser.add_argument(
        "--tls-ca", metavar="PEM", type=Path, help="trust these roots (implies --tls)"
    )
    parser.add_argument(
        "--tls-cert",
        metavar="PEM",
        type=Path,
        help="client certificate, for a gateway with `client_ca` (mutual TLS; implies --tls)",
    )
    parser.add_argument("--tls-key", metavar="PEM", type=Path, help="the client certificate's key")


def problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the options, for "infc: …"; None when nothing is."""
    if (args.tls_cert is None) != (args.tls_key is None):
        return "--tls-cert and --tls-key go together (mutual TLS)"
    return None


def settings(args: argparse.Namespace, environ: Mapping[str, str]) -> dict:
    """The keyword arguments of `gateway_plan.Access` the options ask for."""
    return {
        "tls": bool(args.tls or args.tls_ca or args.tls_cert),
        "ca": args.tls_ca,
        "cert": args.tls_cert,
        "key": args.tls_key,
        "token": environ.get(TOKEN_VARIABLE) or None,
    }
