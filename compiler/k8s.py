"""`infc render k8s`: the Kubernetes objects that run a plan. Pure: plan in, dicts out.

    objects = render(plan, Options(name="payments", spec_file="payments.infer", image="…"))
    # or K8sError naming what cannot be rendered

For each target without remote `workers`:

- a StatefulSet of `infc worker` pods (stable names, so the gateway can list
  every replica the range allows: `NAME-TARGET-0.NAME-TARGET:9100`, …),
  its `replicas` fixed by a bare count or left to the autoscaler, scheduled
  by node labels onto the
  target's declared location (and accelerator), with the CPU, GPU or TPU
  resources it declares and INFERPLANE_LOCATION set to that location: the
  scheduler, not the pod, makes the location true, so the gateway's on-prem
  check (docs/operations.md) can trust it;
- a headless Service for those names (published before the pods are ready:
  the gateway does its own readiness probing);
- a HorizontalPodAutoscaler over the range when it is a range (CPU
  utilisation; Kubernetes' HPA cannot scale to zero, so a range from 0 runs
  at least 1), and a PodDisruptionBudget of one pod at a time.

Then the gateway: a Deployment of `infc serve` pointed at every worker name
with `--remote`, a Service (gRPC and metrics), its PodDisruptionBudget, and the
plan in a ConfigMap, for review (`kubectl get configmap NAME-plan`). Targets
with `workers` in the spec keep them. TLS files come from a Secret
(`NAME-tls`: `tls.crt`, `tls.key`, `ca.crt`) mounted at the paths the spec
names, and bearer tokens from a Secret (`NAME-tokens`, key `tokens`). With
`worker_tls`, the workers serve mutual TLS from `NAME-worker-tls` and the
gateway dials them with `NAME-gateway-worker-tls` (each `tls.crt`, `tls.key`,
`ca.crt`, at WORKER_TLS_DIR). No Secret is rendered: `infc` never writes one.

Every pod runs the image (`Options.image`, or one per hardware) with the
spec's folder at `/srv/inferplane` (docs/kubernetes.md shows the Dockerfile):
the spec, its models and their built artifacts.

The generic builders are compiler/k8s_objects.py's; where pods go and what
they claim, compiler/k8s_placement.py's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from inferplane.compiler import plan as plan_mod
from inferplane.compiler.k8s_objects import (
    K8sError,
    autoscaler,
    container_security,
    disruption_budget,
    grpc_probe,
    label_value,
    metadata,
    pod_template,
    summary,
    tcp_probe,
    to_yaml,
)
from inferplane.compiler.k8s_objects import (
    service as k8s_service,
)
from inferplane.compiler.k8s_placement import LABEL_PREFIX, placement

WORKDIR = "/srv/inferplane"
WORKER_PORT = 9100
WORKER_HEALTH_PORT = 9101  # plaintext grpc.health.v1 beside a worker that serves TLS
GATEWAY_PORT = 8001
METRICS_PORT = 9464
WORKER_TLS_DIR = "/etc/inferplane/worker-tls"  # the workers' Secret, and the gateway's client one
STARTUP_PROBE_S = 600  # the longest model loading may take before kubelet restarts a worker
# A Service name (RFC 1035): it starts with a letter, which also suits the rest.
_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?\Z")


@dataclass(frozen=True)
class Options:
    name: str  # prefix of every object: a DNS label
    spec_file: str  # the spec's file name inside WORKDIR
    image: str
    images: Mapping[str, str] = field(default_factory=dict)  # hardware → image, overriding
    namespace: str | None = None
    gateway_replicas: int = 2
    grace_s: int = 30
    worker_tls: bool = False  # mutual TLS between the gateway and the workers

    def image_for(self, hardware: str) -> str:
        return self.images.get(hardware, self.image)


def render(plan: plan_mod.Plan, options: Options) -> list[dict]:
    """The objects, in an order `kubectl apply` takes: config, workers, gateway."""
    _check_name(options.name, "--name")
    local = [t for t in plan.targets if not t.workers]
    for target in local:
        if target.name == "gateway":
            raise K8sError(
                "target `gateway` would share its Service and PodDisruptionBudget names with "
                "the gateway's (`NAME-gateway`): rename the target"
            )
        _check_name(f"{options.name}-{target.name}", "a worker StatefulSet name")
        if len(f"{options.name}-{target.name}") > 52:  # + "-" + a 10-character revision hash
            raise K8sError(
                f"`{options.name}-{target.name}` is too long for a StatefulSet name "
                "(at most 52 characters): give a shorter --name"
            )
    objects = [_plan_config(plan, options)]
    for target in local:
        objects += _worker_objects(plan, target, options)
    objects += _gateway_objects(plan, local, options)
    return objects


def worker_endpoints(target: plan_mod.Target, options: Options) -> list[str]:
    """Every stable worker address the target's range allows (the gateway's --remote)."""
    stateful = f"{options.name}-{target.name}"
    domain = f"{stateful}.{options.namespace}.svc" if options.namespace else stateful
    return [f"{stateful}-{i}.{domain}:{WORKER_PORT}" for i in range(max(1, target.replicas.max))]


# -- pieces ---------------------------------------------------------------------------


def _check_name(name: str, what: str) -> None:
    if len(name) > 63 or not _DNS_LABEL.match(name):
        raise K8sError(
            f"{what} `{name}` is not a Kubernetes name: a lowercase letter, then lowercase "
            "letters, digits and `-`, at most 63 characters"
        )


def _labels(options: Options, component: str, target: str | None = None) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": "inferplane",
        "app.kubernetes.io/instance": options.name,
        "app.kubernetes.io/component": component,
    }
    if target is not None:
        labels[f"{LABEL_PREFIX}/target"] = target
    return labels


def _plan_config(plan: plan_mod.Plan, options: Options) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(f"{options.name}-plan", options.namespace, _labels(options, "plan")),
        "data": {"plan.json": plan.to_json()},
    }


def _worker_probe(options: Options, period_s: int, failures: int) -> dict:
    # kubelet's gRPC probe speaks plaintext only: behind TLS, the worker's
    # plaintext health port (`--health-listen`).
    port = WORKER_HEALTH_PORT if options.worker_tls else WORKER_PORT
    return grpc_probe(port, period_s, failures)


def _worker_objects(plan: plan_mod.Plan, target: plan_mod.Target, options: Options) -> list:
    name = f"{options.name}-{target.name}"
    labels = _labels(options, "worker", target.name)
    selector, limits = placement(target)
    cpu = str(target.threads or 1)
    location = f"{target.location.kind}:{target.location.site}"
    args = ["worker", options.spec_file, "--target", target.name]
    args += ["--listen", f"0.0.0.0:{WORKER_PORT}", "--grace", str(options.grace_s)]
    if options.worker_tls:
        args += [
            "--tls-cert",
            f"{WORKER_TLS_DIR}/tls.crt",
            "--tls-key",
            f"{WORKER_TLS_DIR}/tls.key",
            "--tls-client-ca",
            f"{WORKER_TLS_DIR}/ca.crt",
            "--health-listen",
            f"0.0.0.0:{WORKER_HEALTH_PORT}",
        ]
    container = {
        "name": "worker",
        "image": options.image_for(target.hardware),
        "command": ["infc"],
        "args": args,
        "workingDir": WORKDIR,
        # The node selector below puts the pod there: the location is the deployment's word.
        "env": [{"name": "INFERPLANE_LOCATION", "value": location}],
        "ports": [{"name": "grpc", "containerPort": WORKER_PORT}]
        + ([{"name": "health", "containerPort": WORKER_HEALTH_PORT}] if options.worker_tls else []),
        "resources": {"requests": {"cpu": cpu}, "limits": {"cpu": cpu, **limits}},
        # Loading and warming up models takes a while: the startup probe allows it.
        "startupProbe": _worker_probe(options, 5, STARTUP_PROBE_S // 5),
        "readinessProbe": _worker_probe(options, 5, 2),
        # Not grpc: a worker with a model that failed is not ready, but restarting
        # it would not load the model either.
        "livenessProbe": tcp_probe(WORKER_PORT),
        "securityContext": container_security(),
    }
    volumes = []
    if options.worker_tls:
        container["volumeMounts"] = [{"name": "tls", "mountPath": WORKER_TLS_DIR, "readOnly": True}]
        volumes = [{"name": "tls", "secret": {"secretName": f"{options.name}-worker-tls"}}]
    annotations = {f"{LABEL_PREFIX}/plan-hash": plan.content_hash}
    stateful = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(name, options.namespace, labels),
        "spec": {
            "serviceName": name,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "template": pod_template(
                labels,
                annotations,
                container,
                grace_s=options.grace_s + 10,
                volumes=volumes,
                node_selector=selector,
            ),
        },
    }
    grpc_port = {"name": "grpc", "port": WORKER_PORT, "appProtocol": "kubernetes.io/h2c"}
    service = k8s_service(name, options.namespace, labels, [grpc_port], headless=True)
    objects = [service, stateful, disruption_budget(name, options.namespace, labels)]
    if target.replicas.max == target.replicas.min:
        stateful["spec"]["replicas"] = target.replicas.min
    else:
        # The autoscaler owns the count: a `replicas` here would reset it at each
        # `kubectl apply`, and at 0 the HPA would never start (it scales from 1).
        objects.append(
            autoscaler(name, options.namespace, labels, target.replicas.min, target.replicas.max)
        )
    return objects


def _port_of(address: str | None, default: int) -> int:
    if address and not address.startswith("unix:"):
        return int(address.rpartition(":")[2])
    return default


def _secret_mounts(gateway: plan_mod.Gateway, options: Options) -> tuple[list, list]:
    """(volumes, volumeMounts): the TLS Secret's keys at the paths the spec names.

    Files in one folder (`certs/gateway.pem`, `certs/gateway-key.pem`) get the
    Secret mounted as that folder, which Kubernetes updates in place when the
    Secret is renewed, and the gateway re-reads changed files
    (backends/tls.py). Files in several folders need one subPath mount each,
    which Kubernetes never updates: a renewal then needs a restart."""
    if gateway.tls is None:
        return [], []
    files = [("tls.crt", gateway.tls.cert), ("tls.key", gateway.tls.key)]
    if gateway.tls.client_ca:
        files.append(("ca.crt", gateway.tls.client_ca))
    paths = [(key, PurePosixPath(WORKDIR) / path) for key, path in files]  # absolute stays
    folders = {path.parent for _, path in paths}
    names = {path.name for _, path in paths}
    secret = {"secretName": f"{options.name}-tls"}
    if len(folders) == 1 and len(names) == len(paths):
        (folder,) = folders
        secret["items"] = [{"key": key, "path": path.name} for key, path in paths]
        mounts = [{"name": "tls", "mountPath": str(folder), "readOnly": True}]
    else:
        mounts = [
            {"name": "tls", "mountPath": str(path), "subPath": key, "readOnly": True}
            for key, path in paths
        ]
    return [{"name": "tls", "secret": secret}], mounts


def _gateway_objects(plan: plan_mod.Plan, local: list, options: Options) -> list:
    name = f"{options.name}-gateway"
    labels = _labels(options, "gateway")
    gateway = plan.gateway
    port = _port_of(gateway.listen, GATEWAY_PORT)
    metrics = _port_of(gateway.metrics, METRICS_PORT)
    args = ["serve", options.spec_file, "--listen", f"0.0.0.0:{port}"]
    args += ["--metrics", f"0.0.0.0:{metrics}", "--grace", str(options.grace_s)]
    for target in local:
        args += ["--remote", f"{target.name}={','.join(worker_endpoints(target, options))}"]
    if options.worker_tls:
        args += [
            "--worker-tls-ca",
            f"{WORKER_TLS_DIR}/ca.crt",
            "--worker-tls-cert",
            f"{WORKER_TLS_DIR}/tls.crt",
            "--worker-tls-key",
            f"{WORKER_TLS_DIR}/tls.key",
        ]
    env = []
    if gateway.auth_tokens_env:
        secret = {"name": f"{options.name}-tokens", "key": "tokens"}
        env.append({"name": gateway.auth_tokens_env, "valueFrom": {"secretKeyRef": secret}})
    volumes, mounts = _secret_mounts(gateway, options)
    if options.worker_tls:
        client = f"{options.name}-gateway-worker-tls"
        volumes.append({"name": "worker-tls", "secret": {"secretName": client}})
        mounts.append({"name": "worker-tls", "mountPath": WORKER_TLS_DIR, "readOnly": True})
    # kubelet's gRPC probe speaks plaintext only: behind TLS, readiness is the port.
    ready = tcp_probe(port) if gateway.tls else grpc_probe(port, 5, 2)
    container = {
        "name": "gateway",
        "image": options.image_for("cpu"),
        "command": ["infc"],
        "args": args,
        "workingDir": WORKDIR,
        "env": env,
        "ports": [
            {"name": "grpc", "containerPort": port},
            {"name": "metrics", "containerPort": metrics},
        ],
        "resources": {"requests": {"cpu": "1"}},
        "readinessProbe": ready,
        "livenessProbe": tcp_probe(port),
        # Endpoints drop the pod before it stops taking requests (then SIGTERM drains).
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
        "volumeMounts": mounts,
        "securityContext": container_security(),
    }
    annotations = {
        f"{LABEL_PREFIX}/plan-hash": plan.content_hash,
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(metrics),
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, options.namespace, labels),
        "spec": {
            "replicas": options.gateway_replicas,
            "selector": {"matchLabels": labels},
            "template": pod_template(
                labels, annotations, container, grace_s=options.grace_s + 15, volumes=volumes
            ),
        },
    }
    ports = [
        {"name": "grpc", "port": port, "appProtocol": "kubernetes.io/h2c"},
        {"name": "metrics", "port": metrics},
    ]
    service = k8s_service(name, options.namespace, labels, ports)
    return [service, deployment, disruption_budget(name, options.namespace, labels)]


__all__ = ["K8sError", "Options", "label_value", "render", "summary", "to_yaml", "worker_endpoints"]
