"""`infc render k8s`: the Kubernetes objects that run a plan. Pure: plan in, dicts out.

    objects = render(plan, Options(name="payments", spec_file="payments.infer", image="…"))
    # or K8sError naming what cannot be rendered

For each target without remote `workers`:

- a StatefulSet of `infc worker` pods (stable names, so the gateway can list
  every replica the range allows: `NAME-TARGET-0.NAME-TARGET:9100`, …),
  `replicas` at the range's minimum, scheduled by node labels onto the
  target's declared location (and accelerator), with the CPU, GPU or TPU
  resources it declares and INFERPLANE_LOCATION set to that location: the
  scheduler, not the pod, makes the location true, so the gateway's on-prem
  check (docs/operations.md) can trust it;
- a headless Service for those names (published before the pods are ready:
  the gateway does its own readiness probing);
- a HorizontalPodAutoscaler over the range when it is a range (CPU
  utilisation; Kubernetes' HPA cannot scale to zero, so a range from 0 is
  scaled from 1), and a PodDisruptionBudget of one pod at a time.

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
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from inferplane.compiler import plan as plan_mod
from inferplane.compiler.estimate import lookup_accelerator

WORKDIR = "/srv/inferplane"
WORKER_PORT = 9100
GATEWAY_PORT = 8001
METRICS_PORT = 9464
LABEL_PREFIX = "inferplane.io"
# GKE's node label for a TPU generation (cloud.google.com/gke-tpu-accelerator).
GKE_TPU = {
    "v4": "tpu-v4-podslice",
    "v5e": "tpu-v5-lite-podslice",
    "v5p": "tpu-v5p-slice",
    "v6e": "tpu-v6e-slice",
}
MAX_TPU_CHIPS_PER_HOST = 8  # larger topologies span hosts: one pod cannot hold them
HPA_CPU_UTILISATION = 70
WORKER_TLS_DIR = "/etc/inferplane/worker-tls"  # the workers' Secret, and the gateway's client one
STARTUP_PROBE_S = 600  # the longest model loading may take before kubelet restarts a worker
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_LABEL_VALUE_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


class K8sError(Exception):
    """The plan cannot be rendered as asked; the message says why."""


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


def label_value(text: str) -> str:
    """`text` as a Kubernetes label value: other characters become `.`, at most 63."""
    value = _LABEL_VALUE_BAD.sub(".", text).strip("._-")[:63].strip("._-")
    if not value:
        raise K8sError(f"`{text}` has nothing a Kubernetes label value can keep")
    return value


def worker_endpoints(target: plan_mod.Target, options: Options) -> list[str]:
    """Every stable worker address the target's range allows (the gateway's --remote)."""
    stateful = f"{options.name}-{target.name}"
    domain = f"{stateful}.{options.namespace}.svc" if options.namespace else stateful
    return [f"{stateful}-{i}.{domain}:{WORKER_PORT}" for i in range(max(1, target.replicas.max))]


# -- pieces ---------------------------------------------------------------------------


def _check_name(name: str, what: str) -> None:
    if len(name) > 63 or not _DNS_LABEL.match(name):
        raise K8sError(
            f"{what} `{name}` is not a Kubernetes name: lowercase letters, digits and "
            "`-`, at most 63 characters"
        )


def _metadata(name: str, options: Options, labels: Mapping[str, str], **extra) -> dict:
    metadata: dict = {"name": name}
    if options.namespace:
        metadata["namespace"] = options.namespace
    metadata["labels"] = dict(labels)
    metadata.update(extra)
    return metadata


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
        "metadata": _metadata(f"{options.name}-plan", options, _labels(options, "plan")),
        "data": {"plan.json": plan.to_json()},
    }


def _grpc_probe(port: int, period_s: int, failures: int) -> dict:
    return {"grpc": {"port": port}, "periodSeconds": period_s, "failureThreshold": failures}


def _tcp_probe(port: int, period_s: int = 10, failures: int = 3) -> dict:
    return {"tcpSocket": {"port": port}, "periodSeconds": period_s, "failureThreshold": failures}


def _worker_probe(options: Options, period_s: int, failures: int) -> dict:
    # kubelet's gRPC probe speaks plaintext only: behind TLS, the port.
    if options.worker_tls:
        return _tcp_probe(WORKER_PORT, period_s, failures)
    return _grpc_probe(WORKER_PORT, period_s, failures)


def _pod_security() -> dict:
    return {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}}


def _container_security() -> dict:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _tpu_chips(target: plan_mod.Target) -> int:
    if target.topology:
        chips = math.prod(int(side) for side in target.topology.split("x"))
    else:
        chips = target.devices
    if chips > MAX_TPU_CHIPS_PER_HOST:
        raise K8sError(
            f"target `{target.name}`: topology {target.topology} is {chips} TPU chips, more "
            f"than one host has ({MAX_TPU_CHIPS_PER_HOST}); multi-host slices are not rendered"
        )
    return chips


def _placement(target: plan_mod.Target) -> tuple[dict[str, str], dict[str, str]]:
    """(nodeSelector, resource limits) for the target's location and hardware."""
    selector = {
        f"{LABEL_PREFIX}/location": target.location.kind,
        f"{LABEL_PREFIX}/site": label_value(target.location.site),
    }
    limits: dict[str, str] = {}
    unit = lookup_accelerator(target.hardware, target.accelerator) if target.accelerator else None
    if target.hardware == "gpu":
        limits["nvidia.com/gpu"] = str(target.devices)
        if target.accelerator:
            name = unit.name if unit is not None else target.accelerator
            selector[f"{LABEL_PREFIX}/accelerator"] = label_value(name.lower())
    elif target.hardware == "tpu":
        limits["google.com/tpu"] = str(_tpu_chips(target))
        if unit is not None and unit.name in GKE_TPU:
            selector["cloud.google.com/gke-tpu-accelerator"] = GKE_TPU[unit.name]
        elif target.accelerator:
            selector[f"{LABEL_PREFIX}/accelerator"] = label_value(target.accelerator.lower())
        if target.topology:
            selector["cloud.google.com/gke-tpu-topology"] = target.topology
    return selector, limits


def _worker_objects(plan: plan_mod.Plan, target: plan_mod.Target, options: Options) -> list:
    name = f"{options.name}-{target.name}"
    labels = _labels(options, "worker", target.name)
    selector, limits = _placement(target)
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
        ]
    container = {
        "name": "worker",
        "image": options.image_for(target.hardware),
        "command": ["infc"],
        "args": args,
        "workingDir": WORKDIR,
        # The node selector below puts the pod there: the location is the deployment's word.
        "env": [{"name": "INFERPLANE_LOCATION", "value": location}],
        "ports": [{"name": "grpc", "containerPort": WORKER_PORT}],
        "resources": {"requests": {"cpu": cpu}, "limits": {"cpu": cpu, **limits}},
        # Loading and warming up models takes a while: the startup probe allows it.
        "startupProbe": _worker_probe(options, 5, STARTUP_PROBE_S // 5),
        "readinessProbe": _worker_probe(options, 5, 2),
        # Not grpc: a worker with a model that failed is not ready, but restarting
        # it would not load the model either.
        "livenessProbe": _tcp_probe(WORKER_PORT),
        "securityContext": _container_security(),
    }
    volumes = []
    if options.worker_tls:
        container["volumeMounts"] = [{"name": "tls", "mountPath": WORKER_TLS_DIR, "readOnly": True}]
        volumes = [{"name": "tls", "secret": {"secretName": f"{options.name}-worker-tls"}}]
    pod_labels = dict(labels)
    stateful = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(name, options, labels),
        "spec": {
            "serviceName": name,
            "replicas": target.replicas.min,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {f"{LABEL_PREFIX}/plan-hash": plan.content_hash},
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": options.grace_s + 10,
                    "nodeSelector": selector,
                    "securityContext": _pod_security(),
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, options, labels),
        "spec": {
            "clusterIP": "None",
            # The gateway probes workers itself, loading ones included.
            "publishNotReadyAddresses": True,
            "selector": labels,
            "ports": [{"name": "grpc", "port": WORKER_PORT, "appProtocol": "kubernetes.io/h2c"}],
        },
    }
    objects = [service, stateful, _disruption_budget(name, options, labels)]
    if target.replicas.max > target.replicas.min:
        objects.append(_autoscaler(name, target, options, labels))
    return objects


def _disruption_budget(name: str, options: Options, labels: Mapping[str, str]) -> dict:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(name, options, labels),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": dict(labels)}},
    }


def _autoscaler(name: str, target: plan_mod.Target, options: Options, labels) -> dict:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(name, options, labels),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name},
            "minReplicas": max(1, target.replicas.min),
            "maxReplicas": target.replicas.max,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": HPA_CPU_UTILISATION,
                        },
                    },
                }
            ],
        },
    }


def _port_of(address: str | None, default: int) -> int:
    if address and not address.startswith("unix:"):
        return int(address.rpartition(":")[2])
    return default


def _secret_mounts(gateway: plan_mod.Gateway, options: Options) -> tuple[list, list]:
    """(volumes, volumeMounts): the TLS Secret's keys at the paths the spec names."""
    if gateway.tls is None:
        return [], []
    files = [("tls.crt", gateway.tls.cert), ("tls.key", gateway.tls.key)]
    if gateway.tls.client_ca:
        files.append(("ca.crt", gateway.tls.client_ca))
    mounts = [
        {
            "name": "tls",
            "mountPath": str(PurePosixPath(WORKDIR) / path),  # an absolute path stays itself
            "subPath": key,
            "readOnly": True,
        }
        for key, path in files
    ]
    volumes = [{"name": "tls", "secret": {"secretName": f"{options.name}-tls"}}]
    return volumes, mounts


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
    ready = _tcp_probe(port) if gateway.tls else _grpc_probe(port, 5, 2)
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
        "livenessProbe": _tcp_probe(port),
        # Endpoints drop the pod before it stops taking requests (then SIGTERM drains).
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
        "volumeMounts": mounts,
        "securityContext": _container_security(),
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(name, options, labels),
        "spec": {
            "replicas": options.gateway_replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {
                    "labels": dict(labels),
                    "annotations": {
                        f"{LABEL_PREFIX}/plan-hash": plan.content_hash,
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(metrics),
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": options.grace_s + 15,
                    "securityContext": _pod_security(),
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, options, labels),
        "spec": {
            "selector": labels,
            "ports": [
                {"name": "grpc", "port": port, "appProtocol": "kubernetes.io/h2c"},
                {"name": "metrics", "port": metrics},
            ],
        },
    }
    return [service, deployment, _disruption_budget(name, options, labels)]


def to_yaml(objects: list[dict]) -> str:
    """The objects as one YAML stream (`kubectl apply -f -`)."""
    import yaml  # here: only this command needs it

    class _Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data) -> bool:
            return True  # no &id001 anchors: a shared labels dict is written out each time

    def literal(dumper, text: str):  # the plan's JSON stays readable
        style = "|" if "\n" in text else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)

    _Dumper.add_representer(str, literal)
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, width=100)


def summary(objects: list[dict]) -> str:
    """One comment line per object, for the head of the stream."""
    return "".join(f"# {o['kind']} {o['metadata']['name']}\n" for o in objects)
