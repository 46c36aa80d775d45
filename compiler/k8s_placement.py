"""Where a target's worker pods may run, and what they claim (pure).

    node_selector, limits = placement(target)

Pods go only onto nodes labelled with the target's location (and accelerator):
`inferplane.io/location`, `inferplane.io/site`, `inferplane.io/accelerator`
(docs/kubernetes.md), and for TPUs GKE's own labels. GPUs are claimed as
`nvidia.com/gpu` (the NVIDIA device plugin), TPUs as `google.com/tpu` chips.
"""

from __future__ import annotations

import math

from inferplane.compiler import plan as plan_mod
from inferplane.compiler.estimate import lookup_accelerator
from inferplane.compiler.k8s_objects import K8sError, label_value

LABEL_PREFIX = "inferplane.io"
# GKE's node label for a TPU generation (cloud.google.com/gke-tpu-accelerator).
GKE_TPU = {
    "v4": "tpu-v4-podslice",
    "v5e": "tpu-v5-lite-podslice",
    "v5p": "tpu-v5p-slice",
    "v6e": "tpu-v6e-slice",
}
MAX_TPU_CHIPS_PER_HOST = 8  # larger topologies span hosts: one pod cannot hold them


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


def placement(target: plan_mod.Target) -> tuple[dict[str, str], dict[str, str]]:
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
