"""`infc serve SPEC`: the gateway plus local workers, on one host, until SIGTERM.

    compile (errors: printed like `infc check`, exit 1)
      ─▶ the gateway block's tls and auth (unreadable certificate, unset token
         variable: one error, exit 1; gateway/security.py)
      ─▶ Gateway(plan, metrics).start() ─▶ start_server (listen)
      ─▶ metrics endpoint (`--metrics` or the spec's `gateway metrics`), if any
      ─▶ Supervisor.start
      ─▶ wait (bounded) until every local worker is ready, or a target has none (exit 1)
      ─▶ wait (bounded) for the gateway's first placement probes (on-prem targets)
      ─▶ stdout: `serving SPEC on ADDR: N models, M workers (SECURITY)`, SECURITY
               being plaintext | tls | tls, mutual, then `; bearer tokens` with auth,
               and `metrics on http://HOST:PORT/metrics` when it serves them
      ─▶ meanwhile `infc apply` may swap the gateway onto a new plan (gateway/swap.py)
      ─▶ SIGTERM / SIGINT ─▶ gateway.drain (refuse new, finish in-flight)
      ─▶ server stops ─▶ workers get SIGTERM (they drain), stragglers SIGKILL ─▶ exit 0

The workers listen on unix sockets in a private temporary folder, removed at
the end. `--remote TARGET=ADDR,…` hands a target to workers someone else runs
(no local worker for it), as the spec's `workers` does. Every path out of
`run` stops the workers (try/finally), and each worker also dies with this
process on Linux (`infc worker --parent-pid`, backends/parent_watch.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from inferplane.backends import event_loop, host_location
from inferplane.cli.console import Console, configure_logging
from inferplane.cli.spec_input import compile_for_running
from inferplane.compiler.passes.field_reader import is_address

OK, ERRORS = 0, 1
READY_TIMEOUT_S = 120.0  # the longest the workers may take to load their models
STOP_MARGIN_S = 10.0  # beyond the grace periods, before a stop gives up waiting
PLACEMENT_WAIT_S = 10.0  # the longest the serving line waits for the first placement probes

log = logging.getLogger("inferplane.cli.serve")


def add_parser(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]):
    serve = subparsers.add_parser(
        "serve",
        help="run the gateway and a local worker per replica of each local target (until SIGTERM)",
        parents=parents,
    )
    serve.add_argument("spec", metavar="SPEC")
    serve.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="where the gateway listens (default: the spec's `gateway listen`; port 0 picks "
        "a free one, which the `serving` line shows)",
    )
    serve.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (default: the spec's "
        "`gateway metrics`; port 0 picks a free one; `off`: none)",
    )
    serve.add_argument(
        "--cpu-fallback",
        action="store_true",
        help="let local workers of gpu or tpu targets run on the CPU when the host lacks "
        "the hardware (development only; logged)",
    )
    serve.add_argument(
        "--location",
        metavar="KIND[:SITE]",
        help="where this host runs (onprem|cloud|edge, e.g. onprem:fra-dc1), passed to the "
        "local workers, which report it for the gateway's on-prem check (default: "
        "$INFERPLANE_LOCATION, else the spec's declaration, which cannot be verified)",
    )
    serve.add_argument(
        "--remote",
        action="append",
        default=[],
        metavar="TARGET=ADDR[,ADDR…]",
        help="serve TARGET with the workers at these addresses (HOST:PORT or unix:PATH) "
        "instead of local ones or the spec's `workers`; repeat for more targets (how "
        "`infc render k8s` points the gateway at its worker StatefulSets)",
    )
    serve.add_argument(
        "--admin-tokens-env",
        metavar="VARIABLE",
        help="`infc apply` from other hosts needs one of the tokens in this environment "
        "variable (without it, only callers on this host may apply a plan)",
    )
    serve.add_argument(
        "--worker-tls-ca",
        type=Path,
        metavar="PEM",
        help="dial workers over the network (the spec's `workers`, --remote) with TLS, "
        "trusting this CA; local workers stay on unix sockets",
    )
    serve.add_argument(
        "--worker-tls-cert",
        type=Path,
        metavar="PEM",
        help="with --worker-tls-ca: the gateway's client certificate, for workers started "
        "with --tls-client-ca (mutual TLS)",
    )
    serve.add_argument("--worker-tls-key", type=Path, metavar="PEM", help="its key")
    serve.add_argument(
        "--grace",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM, how long in-flight requests may take to finish (default 30)",
    )
    return serve


def run(args: argparse.Namespace, console: Console) -> int:
    if args.grace < 0:
        console.error(f"infc: --grace must be 0 or more seconds, not {args.grace}")
        return ERRORS
    try:
        # Checked here, though the workers read it: a bad value is one clear error
        # rather than every worker failing to start.
        host_location.resolve(args.location, os.environ)
    except ValueError as error:
        console.error(f"infc: {error}")
        return ERRORS
    compilation = compile_for_running(args.spec, console)
    if compilation is None:
        return ERRORS
    try:
        args.remote = parse_remote(args.remote, [t.name for t in compilation.plan.targets])
    except ValueError as error:
        console.error(f"infc: --remote: {error}")
        return ERRORS
    try:
        # Imported here: grpc and the gateway are not needed by the other commands.
        from inferplane.gateway import security
        from inferplane.gateway.app import Gateway
        from inferplane.gateway.server import start_server
    except ImportError as error:
        console.error(f"infc: the gateway is not available in this build ({error})")
        return ERRORS
    try:
        # Before anything starts: the gateway never serves without what its
        # block asks for (tls, auth).
        admin = None
        if args.admin_tokens_env:
            what = f"--admin-tokens-env {args.admin_tokens_env}"
            admin = security.load_tokens(args.admin_tokens_env, os.environ, what)
        credentials, auth = security.gateway_security(
            compilation.plan.gateway, Path(args.spec).resolve().parent, os.environ, admin
        )
    except security.SecurityError as error:
        console.error(f"infc: {error}")
        return ERRORS
    start_server = functools.partial(
        start_server, credentials=credentials, auth=auth, admin_tokens=admin
    )
    try:
        args.worker_credentials = _worker_credentials(args)
    except ValueError as error:
        console.error(f"infc: {error}")
        return ERRORS
    configure_logging(console.err)
    run_dir = tempfile.mkdtemp(prefix="infc-serve-")  # short: unix socket paths are limited
    try:
        return event_loop.run(
            _serve(
                args, console, compilation.plan, compilation.text, Gateway, start_server, run_dir
            )
        )
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


async def _serve(
    args, console: Console, plan, spec_text: str, gateway_class, start_server, run_dir: str
) -> int:
    from inferplane.gateway.security import describe as describe_security
    from inferplane.gateway.supervisor import Supervisor, WorkersFailed

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    metrics_at = args.metrics or plan.gateway.metrics
    if metrics_at == "off":
        metrics_at = None
    metrics = metrics_server = None
    if metrics_at:
        from inferplane.gateway.metrics import Metrics

        metrics = Metrics()
    from inferplane.gateway.saturation import LoadGauge
    from inferplane.gateway.swap import PlanSwap

    load = LoadGauge()

    def make_gateway(plan, probe_first=frozenset()):
        probe_first = frozenset(probe_first) | set(args.remote)
        return gateway_class(
            plan,
            metrics=metrics,
            load=load,
            probe_first=probe_first,
            worker_credentials=args.worker_credentials,
        )

    gateway = make_gateway(plan)
    # `infc apply` replaces the gateway; whoever holds it follows the swap.
    swap = PlanSwap(gateway, make_gateway=make_gateway, grace_s=args.grace)
    # The workers compile the spec as the gateway did, even if the file is edited
    # later (a worker restarted after a crash compiles it again): a copy in the
    # run folder, its relative paths still starting at the spec's own folder.
    snapshot = Path(run_dir) / Path(args.spec).name
    snapshot.write_text(spec_text, encoding="utf-8")
    supervisor = Supervisor(
        plan,
        snapshot,
        base_dir=Path(args.spec).resolve().parent,
        cpu_fallback=args.cpu_fallback,
        location=args.location,
        run_dir=run_dir,
        on_change=lambda target, endpoints: swap.gateway.set_replicas(target, endpoints),
        worker_grace_s=args.grace,
        remote=args.remote,
    )
    server = None
    try:
        await gateway.start()
        for target, endpoints in args.remote.items():
            gateway.set_replicas(target, endpoints)
        try:
            server, address = await start_server(
                gateway,
                args.listen or plan.gateway.listen,
                max_message_bytes=plan.gateway.max_message_bytes,
                swap=swap,
            )
        except (OSError, RuntimeError) as error:
            console.error(f"infc: cannot listen on {args.listen or plan.gateway.listen}: {error}")
            return ERRORS
        if metrics is not None:
            try:
                metrics_server, metrics_address = metrics.start_http(metrics_at)
            except (OSError, ValueError) as error:
                console.error(f"infc: cannot serve metrics on {metrics_at}: {error}")
                return ERRORS
        await supervisor.start()
        ready = asyncio.ensure_future(supervisor.wait_ready(READY_TIMEOUT_S))
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait((ready, stopped), return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not ready.done():  # a signal during the start: stop without serving
            ready.cancel()
            return OK
        try:
            ready.result()
        except WorkersFailed as error:
            console.error(f"infc: {error}")
            return ERRORS
        # Replicas of on-prem-only targets take requests once a probe has placed
        # them: milliseconds, so that the serving line means "ready" when it can.
        # One refused stays out (logged), and the gateway serves on without it.
        await swap.gateway.placement_checked(PLACEMENT_WAIT_S)
        models = len(plan.models)
        console.print(
            f"serving {args.spec} on {address}: {models} model{'s' if models != 1 else ''}, "
            f"{supervisor.worker_count} worker{'s' if supervisor.worker_count != 1 else ''}"
            f" ({describe_security(plan.gateway)})"
        )
        if metrics_server is not None:
            console.print(f"metrics on http://{metrics_address}/metrics")
        console.out.flush()
        await stop.wait()
        log.info("event=draining grace_s=%s", args.grace)
        await _bounded(swap.drain(args.grace), args.grace + STOP_MARGIN_S, "gateway drain")
        await _bounded(server.stop(1.0), STOP_MARGIN_S, "server stop")
        server = None
        return OK
    finally:
        # Every way out, errors included, stops the workers: no orphans.
        if server is not None:
            with contextlib.suppress(Exception):
                await _bounded(server.stop(0), STOP_MARGIN_S, "server stop")
        await supervisor.stop(args.grace)
        if metrics_server is not None:
            metrics.stop_http(metrics_server)  # last: a scrape may watch the drain
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        log.info("event=stopped")
        sys.stdout.flush()


def _worker_credentials(args: argparse.Namespace):
    """TLS to network workers as the --worker-tls-* flags ask (None: plaintext)."""
    if args.worker_tls_ca is None:
        if args.worker_tls_cert is not None or args.worker_tls_key is not None:
            raise ValueError("--worker-tls-cert and --worker-tls-key need --worker-tls-ca")
        return None
    if (args.worker_tls_cert is None) != (args.worker_tls_key is None):
        raise ValueError("--worker-tls-cert and --worker-tls-key go together")
    from inferplane.backends import tls

    return tls.channel_credentials(
        args.worker_tls_ca,
        args.worker_tls_cert,
        args.worker_tls_key,
        what=("--worker-tls-ca", "--worker-tls-cert", "--worker-tls-key"),
    )


def parse_remote(values: list[str], targets: list[str]) -> dict[str, list[str]]:
    """`--remote` values (TARGET=ADDR[,ADDR…]) by target; ValueError naming what is wrong."""
    remote: dict[str, list[str]] = {}
    for value in values:
        target, sep, addresses = value.partition("=")
        if not sep or not target or not addresses:
            raise ValueError(f"{value!r} is not TARGET=ADDR[,ADDR…]")
        if target not in targets:
            raise ValueError(
                f"the spec has no target `{target}`; its targets: {', '.join(targets)}"
            )
        if target in remote:
            raise ValueError(f"target `{target}` is given twice; list its addresses once")
        endpoints = [a.strip() for a in addresses.split(",") if a.strip()]
        for endpoint in endpoints:
            if not is_address(endpoint):
                raise ValueError(f"`{endpoint}` is not HOST:PORT or unix:PATH (target `{target}`)")
        remote[target] = list(dict.fromkeys(endpoints))
    return remote


async def _bounded(awaitable, timeout_s: float, what: str) -> None:
    try:
        await asyncio.wait_for(awaitable, timeout_s)
    except TimeoutError:
        log.warning("event=stop_timeout what=%r timeout_s=%s", what, timeout_s)
