"""`infc worker SPEC --target NAME --listen ADDR`: run one backend worker until SIGTERM.

Compiles the spec (errors: printed like `infc check`, exit 1), picks the
target (unknown: exit 1 listing the known ones), then hands over to
`inferplane.backends.worker_service.serve`. stdout carries one line, printed
when the models are loaded, `worker NAME ready on ADDR (N models)`, for
supervisors and tests to wait on; diagnostics and logs go to stderr.

A target that lists remote `workers` is served the same way: this command is
what those remote hosts run.

`--location KIND[:SITE]` (else `INFERPLANE_LOCATION`) says where this host
runs; the worker reports it in its Health for the gateway's on-prem check
(backends/host_location.py). Without either it reports the spec's declaration.
A malformed value exits 1 before anything starts.

`--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]` makes it serve TLS only
(mutual with a client CA), for a worker the gateway reaches over a network;
the files are checked before anything starts (backends/tls.py).

`--parent-pid PID` (what `infc serve` passes) makes the worker stop when its
parent dies, even by SIGKILL (backends/parent_watch.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from inferplane.cli.console import Console, configure_logging
from inferplane.cli.spec_input import compile_for_running

OK, ERRORS = 0, 1


def add_parser(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]):
    worker = subparsers.add_parser(
        "worker",
        help="run one backend worker for a target of a spec (until SIGTERM)",
        parents=parents,
    )
    worker.add_argument("spec", metavar="SPEC")
    worker.add_argument("--target", required=True, metavar="NAME", help="the target to serve")
    worker.add_argument(
        "--listen",
        required=True,
        metavar="ADDR",
        help="HOST:PORT (port 0 picks a free one; the ready line shows it) or unix:PATH",
    )
    worker.add_argument(
        "--cpu-fallback",
        action="store_true",
        help="run a gpu or tpu target's models on the CPU when the host lacks the "
        "hardware (development only; logged)",
    )
    worker.add_argument(
        "--location",
        metavar="KIND[:SITE]",
        help="where this host runs (onprem|cloud|edge, e.g. onprem:fra-dc1), reported to the "
        "gateway for its on-prem check (default: $INFERPLANE_LOCATION, else the spec's "
        "declaration, which the gateway cannot verify)",
    )
    worker.add_argument(
        "--grace",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM, how long running batches may take to finish (default 30)",
    )
    worker.add_argument(
        "--tls-cert",
        type=Path,
        metavar="PEM",
        help="serve TLS only, with this certificate (and --tls-key); the gateway then "
        "dials it with `infc serve --worker-tls-ca`",
    )
    worker.add_argument("--tls-key", type=Path, metavar="PEM", help="the certificate's key")
    worker.add_argument(
        "--tls-client-ca",
        type=Path,
        metavar="PEM",
        help="with --tls-cert: accept only clients (gateways) with a certificate this CA "
        "signed (mutual TLS)",
    )
    worker.add_argument(
        "--base-dir",
        type=Path,
        metavar="DIR",
        help="where the spec's relative paths (models, caches) start (default: the spec's "
        "folder); `infc serve` runs its workers on a copy of the spec it compiled",
    )
    worker.add_argument(
        "--health-listen",
        metavar="ADDR",
        help="also serve grpc.health.v1 alone, in plaintext, at HOST:PORT or unix:PATH "
        "(for kubelet's gRPC probe, which cannot speak TLS, beside --tls-cert)",
    )
    worker.add_argument(
        "--parent-pid",
        type=int,
        metavar="PID",
        help="stop (SIGTERM, so a drain) when process PID, this worker's parent, dies; "
        "`infc serve` passes its own (Linux; elsewhere only checked at start)",
    )
    return worker


def run(args: argparse.Namespace, console: Console) -> int:
    if args.parent_pid is not None:
        from inferplane.backends.parent_watch import die_with_parent

        if not die_with_parent(args.parent_pid):
            console.error(
                f"infc: --parent-pid {args.parent_pid}: that process is gone; not starting"
            )
            return ERRORS
    # Imported here: the worker pulls in grpc and NumPy, which other commands do not need.
    from inferplane.backends import host_location
    from inferplane.backends.worker import HardwareMissing, TargetError, WorkerCore
    from inferplane.backends.worker_service import check_listen, serve

    try:
        listen = check_listen(args.listen)
        if args.health_listen is not None:
            check_listen(args.health_listen)
    except ValueError as error:
        console.error(f"infc: {error}")
        return ERRORS
    if args.grace < 0:
        console.error(f"infc: --grace must be 0 or more seconds, not {args.grace}")
        return ERRORS
    try:
        location = host_location.resolve(args.location, os.environ)
    except ValueError as error:
        console.error(f"infc: {error}")
        return ERRORS
    try:
        credentials = _credentials(args)
    except ValueError as error:
        console.error(f"infc: {error}")
        return ERRORS
    base_dir = args.base_dir.resolve() if args.base_dir else Path(args.spec).resolve().parent
    compilation = compile_for_running(args.spec, console, base_dir)
    if compilation is None:
        return ERRORS
    try:
        core = WorkerCore(
            compilation.plan,
            args.target,
            base_dir,
            cpu_fallback=args.cpu_fallback,
            location=location,
        )
    except TargetError as error:
        console.error(f"infc: {error}")
        return ERRORS
    configure_logging(console.err)
    try:
        drained = serve(
            core,
            listen,
            grace_s=args.grace,
            out=console.out,
            credentials=credentials,
            health_listen=args.health_listen,
        )
    except (OSError, HardwareMissing) as error:
        console.error(f"infc: {error}")
        return ERRORS
    if not drained:
        # A batch outlived the grace period and still holds a pool thread, which
        # the interpreter would wait for at exit: leave without waiting.
        logging.shutdown()
        sys.stdout.flush()
        os._exit(OK)
    return OK


def _credentials(args: argparse.Namespace):
    """The TLS the flags ask for (None: plaintext); ValueError saying what is wrong."""
    if args.tls_cert is None and args.tls_key is None:
        if args.tls_client_ca is not None:
            raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise ValueError("--tls-cert and --tls-key go together")
    from inferplane.backends import tls

    return tls.server_credentials(
        args.tls_cert,
        args.tls_key,
        args.tls_client_ca,
        what=("--tls-cert", "--tls-key", "--tls-client-ca"),
    )
