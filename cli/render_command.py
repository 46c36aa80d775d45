"""`infc render k8s SPEC`: the Kubernetes objects for the whole deployment, as YAML on stdout.

Compiles the spec (errors: printed like `infc check`, exit 1), then hands the
plan to `compiler.k8s.render` (what it renders and why: that module and
docs/kubernetes.md). Rendering never reads a secret and never talks to a
cluster: pipe it to `kubectl apply -f -`, or review it first (`kubectl diff`).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
from pathlib import Path

from inferplane.cli.console import Console
from inferplane.cli.spec_input import compile_for_running

OK, ERRORS = 0, 1
HARDWARE = ("cpu", "gpu", "tpu")


def _version() -> str:
    try:
        return importlib.metadata.version("inferplane")
    except importlib.metadata.PackageNotFoundError:
        return "latest"


def add_parser(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]):
    render = subparsers.add_parser(
        "render", help="Kubernetes manifests for the whole deployment", parents=parents
    )
    render.add_argument("what", choices=("k8s",), help="what to render: k8s")
    render.add_argument("spec", metavar="SPEC")
    render.add_argument(
        "--image",
        help="the image every pod runs: inferplane with the spec's folder at /srv/inferplane "
        "(default: inferplane:VERSION; see docs/kubernetes.md)",
    )
    render.add_argument(
        "--image-for",
        action="append",
        default=[],
        metavar="HARDWARE=IMAGE",
        help="the image for one kind of target (cpu, gpu, tpu), e.g. gpu=registry/inf-gpu:1 "
        "(onnxruntime-gpu) or tpu=… (jax[tpu]); the gateway runs the cpu one",
    )
    render.add_argument("--namespace", help="set on every object (default: kubectl's)")
    render.add_argument(
        "--name", help="prefix of every object name (default: the spec's file name)"
    )
    render.add_argument(
        "--gateway-replicas", type=int, default=2, metavar="N", help="gateway pods (default 2)"
    )
    render.add_argument(
        "--worker-tls",
        action="store_true",
        help="mutual TLS between the gateway and the workers, from the Secrets "
        "NAME-worker-tls and NAME-gateway-worker-tls (see docs/kubernetes.md)",
    )
    render.add_argument(
        "--grace",
        type=int,
        default=30,
        metavar="SECONDS",
        help="drain time on SIGTERM for the gateway and the workers (default 30)",
    )
    return render


def default_name(spec: str) -> str:
    """The spec's file name as a Kubernetes name: `Payments_v2.infer` → `payments-v2`."""
    return re.sub(r"[^a-z0-9]+", "-", Path(spec).stem.lower()).strip("-")[:40] or "inferplane"


def run(args: argparse.Namespace, console: Console) -> int:
    from inferplane.compiler import k8s

    images = {}
    for value in args.image_for:
        hardware, sep, image = value.partition("=")
        if not sep or hardware not in HARDWARE or not image:
            console.error(
                f"infc: --image-for {value!r}: give HARDWARE=IMAGE, HARDWARE one of cpu, gpu, tpu"
            )
            return ERRORS
        images[hardware] = image
    if args.gateway_replicas < 1 or args.grace < 0:
        console.error("infc: --gateway-replicas must be at least 1 and --grace at least 0")
        return ERRORS
    compilation = compile_for_running(args.spec, console)
    if compilation is None:
        return ERRORS
    options = k8s.Options(
        name=args.name or default_name(args.spec),
        spec_file=Path(args.spec).name,
        image=args.image or f"inferplane:{_version()}",
        images=images,
        namespace=args.namespace,
        gateway_replicas=args.gateway_replicas,
        grace_s=args.grace,
        worker_tls=args.worker_tls,
    )
    try:
        objects = k8s.render(compilation.plan, options)
    except k8s.K8sError as error:
        console.error(f"infc: {error}")
        return ERRORS
    console.print(f"# infc render k8s {args.spec} ({compilation.plan.content_hash})")
    console.print(k8s.summary(objects), end="")
    console.print(k8s.to_yaml(objects), end="")
    return OK
