"""Kubernetes object builders that know nothing of inferplane's plan (pure).

    metadata(name, namespace, labels)   probes   security contexts
    disruption_budget(…)   autoscaler(…)   label_value(text)   to_yaml(objects)

compiler/k8s.py composes them into a deployment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

HPA_CPU_UTILISATION = 70
_LABEL_VALUE_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


class K8sError(Exception):
    """The plan cannot be rendered as asked; the message says why."""


def metadata(name: str, namespace: str | None, labels: Mapping[str, str]) -> dict:
    meta: dict = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = dict(labels)
    return meta


def label_value(text: str) -> str:
    """`text` as a Kubernetes label value: other characters become `.`, at most 63."""
    value = _LABEL_VALUE_BAD.sub(".", text).strip("._-")[:63].strip("._-")
    if not value:
        raise K8sError(f"`{text}` has nothing a Kubernetes label value can keep")
    return value


def grpc_probe(port: int, period_s: int, failures: int) -> dict:
    return {"grpc": {"port": port}, "periodSeconds": period_s, "failureThreshold": failures}


def tcp_probe(port: int, period_s: int = 10, failures: int = 3) -> dict:
    return {"tcpSocket": {"port": port}, "periodSeconds": period_s, "failureThreshold": failures}


def pod_security() -> dict:
    return {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}}


def container_security() -> dict:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def pod_template(
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    container: dict,
    *,
    grace_s: int,
    volumes: list,
    node_selector: Mapping[str, str] | None = None,
) -> dict:
    """One container's pod: no service account token, non-root, RuntimeDefault seccomp."""
    spec: dict = {
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": grace_s,
    }
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    spec["securityContext"] = pod_security()
    spec["containers"] = [container]
    spec["volumes"] = volumes
    return {"metadata": {"labels": dict(labels), "annotations": dict(annotations)}, "spec": spec}


def service(
    name: str,
    namespace: str | None,
    labels: Mapping[str, str],
    ports: list[dict],
    *,
    headless: bool = False,
) -> dict:
    spec: dict = {}
    if headless:
        # Pods are named in DNS before they are ready: their client probes them itself.
        spec = {"clusterIP": "None", "publishNotReadyAddresses": True}
    spec["selector"] = dict(labels)
    spec["ports"] = ports
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, namespace, labels),
        "spec": spec,
    }


def disruption_budget(name: str, namespace: str | None, labels: Mapping[str, str]) -> dict:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(name, namespace, labels),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": dict(labels)}},
    }


def autoscaler(
    name: str, namespace: str | None, labels: Mapping[str, str], low: int, high: int
) -> dict:
    """A StatefulSet's HPA on CPU utilisation; it cannot scale to zero, so from 1."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(name, namespace, labels),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name},
            "minReplicas": max(1, low),
            "maxReplicas": high,
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
