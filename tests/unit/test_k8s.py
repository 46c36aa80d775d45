"""`infc render k8s` (compiler/k8s.py, cli/render_command.py).

Every object of every example spec is checked against the Kubernetes API
schemas (kubernetes-validate, offline, strict: unknown fields fail), and the
command lines in the pods are parsed by `infc`'s own parser, so that a
manifest cannot ask for a flag or a target `infc` does not have.
"""

from __future__ import annotations

import io
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from inferplane.cli.console import Console
from inferplane.cli.main import ExitCode, build_parser, run
from inferplane.cli.serve_command import parse_remote
from inferplane.compiler import k8s
from inferplane.compiler.compilation import Compilation

SPECS = Path(__file__).resolve().parents[2] / "specs"
EXAMPLES = sorted(p.name for p in SPECS.glob("*.infer"))
# The oldest release whose API has everything rendered (preStop `sleep`), and the newest known.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


def plan_of(name: str):
    compilation = Compilation.from_path(SPECS / name)
    assert compilation.plan is not None, compilation.diagnostics
    return compilation.plan


def options(name: str = "demo", **kw) -> k8s.Options:
    return k8s.Options(name=name, spec_file=f"{name}.infer", image="reg/inferplane:1", **kw)


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def container_of(obj: dict) -> dict:
    (container,) = obj["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_example_renders_objects_the_api_accepts(example_models, example):
    plan = plan_of(example)
    name = k8s_name = example.removesuffix(".infer")
    objects = k8s.render(plan, options(k8s_name, namespace="serving"))
    for obj in objects:
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
        assert obj["metadata"]["namespace"] == "serving"
        assert obj["metadata"]["name"].startswith(f"{name}-")
    local = [t for t in plan.targets if not t.workers]
    assert len(by_kind(objects, "StatefulSet")) == len(local)
    ranged = [t for t in local if t.replicas.max > t.replicas.min]
    assert len(by_kind(objects, "HorizontalPodAutoscaler")) == len(ranged)
    (config,) = by_kind(objects, "ConfigMap")
    assert config["data"]["plan.json"] == plan.to_json()
    # The stream round-trips through YAML unchanged.
    assert list(yaml.safe_load_all(k8s.to_yaml(objects))) == objects


@pytest.mark.parametrize("example", EXAMPLES)
def test_pod_command_lines_are_ones_infc_accepts(example_models, example):
    plan = plan_of(example)
    objects = k8s.render(plan, options(example.removesuffix(".infer")))
    parser = build_parser()
    targets = [t.name for t in plan.targets]
    (gateway,) = by_kind(objects, "Deployment")
    args = parser.parse_args(container_of(gateway)["args"])
    assert args.command == "serve" and args.listen.startswith("0.0.0.0:")
    remote = parse_remote(args.remote, targets)
    local = {t.name: t for t in plan.targets if not t.workers}
    assert set(remote) == set(local)
    for name, endpoints in remote.items():
        assert len(endpoints) == local[name].replicas.max
    for stateful in by_kind(objects, "StatefulSet"):
        worker = parser.parse_args(container_of(stateful)["args"])
        assert worker.command == "worker" and worker.target in local
        assert worker.listen == f"0.0.0.0:{k8s.WORKER_PORT}"
        replicas = local[worker.target].replicas
        if replicas.min == replicas.max:
            assert stateful["spec"]["replicas"] == replicas.min
        else:  # the autoscaler's to set
            assert "replicas" not in stateful["spec"]


def test_payments_gpu_resources_secrets_and_location(example_models):
    plan = plan_of("payments.infer")
    objects = k8s.render(plan, options("payments", namespace="pay"))
    sets = {o["metadata"]["name"]: o for o in by_kind(objects, "StatefulSet")}
    assert set(sets) == {"payments-cpu-fra", "payments-gpu-fra"}  # tpu-us has `workers`
    gpu = sets["payments-gpu-fra"]["spec"]["template"]["spec"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert gpu["nodeSelector"] == {
        "inferplane.io/location": "onprem",
        "inferplane.io/site": "fra-dc1",
        "inferplane.io/accelerator": "a100",
    }
    cpu = container_of(sets["payments-cpu-fra"])
    assert cpu["resources"] == {"requests": {"cpu": "4"}, "limits": {"cpu": "4"}}
    assert cpu["env"] == [{"name": "INFERPLANE_LOCATION", "value": "onprem:fra-dc1"}]
    (gateway,) = by_kind(objects, "Deployment")
    container = container_of(gateway)
    (tokens,) = container["env"]
    assert tokens == {
        "name": "INFERPLANE_TOKENS",
        "valueFrom": {"secretKeyRef": {"name": "payments-tokens", "key": "tokens"}},
    }
    # All in certs/: the Secret is that folder, which Kubernetes updates in place
    # when it is renewed (no subPath), and the gateway re-reads changed files.
    assert container["volumeMounts"] == [
        {"name": "tls", "mountPath": "/srv/inferplane/certs", "readOnly": True}
    ]
    assert gateway["spec"]["template"]["spec"]["volumes"] == [
        {
            "name": "tls",
            "secret": {
                "secretName": "payments-tls",
                "items": [
                    {"key": "tls.crt", "path": "gateway.pem"},
                    {"key": "tls.key", "path": "gateway-key.pem"},
                    {"key": "ca.crt", "path": "ca.pem"},
                ],
            },
        }
    ]
    # Files in several folders: one subPath mount each.
    scattered = plan.gateway.model_copy(
        update={"tls": plan.gateway.tls.model_copy(update={"key": "keys/gateway-key.pem"})}
    )
    spread = k8s.render(plan.model_copy(update={"gateway": scattered}), options("payments"))
    (spread_gateway,) = by_kind(spread, "Deployment")
    mounts = {m["mountPath"]: m["subPath"] for m in container_of(spread_gateway)["volumeMounts"]}
    assert mounts == {
        "/srv/inferplane/certs/gateway.pem": "tls.crt",
        "/srv/inferplane/keys/gateway-key.pem": "tls.key",
        "/srv/inferplane/certs/ca.pem": "ca.crt",
    }
    # Behind TLS kubelet cannot speak gRPC to it: readiness is the port.
    assert "tcpSocket" in container["readinessProbe"]
    remote = container["args"][container["args"].index("--remote") + 1]
    assert remote.startswith("cpu-fra=payments-cpu-fra-0.payments-cpu-fra.pay.svc:9100,")
    assert not [o for o in objects if o["kind"] == "Secret"]  # never rendered


def test_a_local_tpu_target_gets_chips_and_gke_node_labels(example_models):
    plan = plan_of("payments.infer")
    targets = [t.model_copy(update={"workers": []}) for t in plan.targets]
    objects = k8s.render(plan.model_copy(update={"targets": targets}), options("payments"))
    (tpu,) = [
        o for o in by_kind(objects, "StatefulSet") if o["metadata"]["name"].endswith("tpu-us")
    ]
    pod = tpu["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["google.com/tpu"] == "4"  # 2x2
    assert pod["nodeSelector"] == {
        "inferplane.io/location": "cloud",
        "inferplane.io/site": "gcp.us-central1",  # `:` is not allowed in a label value
        "cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice",
        "cloud.google.com/gke-tpu-topology": "2x2",
    }
    # replicas 0..4: the HPA (which cannot scale to zero) keeps 1 to 4; the
    # StatefulSet leaves the count to it (at 0 the HPA would never start).
    assert "replicas" not in tpu["spec"]
    (hpa,) = [
        o
        for o in by_kind(objects, "HorizontalPodAutoscaler")
        if o["metadata"]["name"].endswith("tpu-us")
    ]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)


def test_images_per_hardware(example_models):
    plan = plan_of("payments.infer")
    objects = k8s.render(plan, options("payments", images={"gpu": "reg/inferplane-gpu:1"}))
    images = {
        o["metadata"]["name"]: container_of(o)["image"] for o in by_kind(objects, "StatefulSet")
    }
    assert images == {
        "payments-cpu-fra": "reg/inferplane:1",
        "payments-gpu-fra": "reg/inferplane-gpu:1",
    }


def test_what_cannot_be_rendered_is_an_error(example_models):
    plan = plan_of("payments.infer")
    with pytest.raises(k8s.K8sError, match="`Payments` is not a Kubernetes name"):
        k8s.render(plan, options("Payments"))
    with pytest.raises(k8s.K8sError, match="too long for a StatefulSet name"):
        k8s.render(plan, options("p" * 45))
    with pytest.raises(k8s.K8sError, match="`2024-pay` is not a Kubernetes name: a lowercase"):
        k8s.render(plan, options("2024-pay"))  # a Service name starts with a letter
    renamed = [
        t.model_copy(update={"name": "gateway"}) if t.name == "cpu-fra" else t for t in plan.targets
    ]
    with pytest.raises(k8s.K8sError, match="target `gateway` would share its Service"):
        k8s.render(plan.model_copy(update={"targets": renamed}), options("payments"))
    targets = [
        t.model_copy(update={"workers": [], "topology": "4x4"} if t.hardware == "tpu" else {})
        for t in plan.targets
    ]
    with pytest.raises(k8s.K8sError, match="16 TPU chips, more than one host has"):
        k8s.render(plan.model_copy(update={"targets": targets}), options("payments"))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("fra-dc1", "fra-dc1"),
        ("gcp:us-central1", "gcp.us-central1"),
        ("Jetson Orin NX", "Jetson.Orin.NX"),
    ],
)
def test_label_values(text, value):
    assert k8s.label_value(text) == value


def infc(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), Console(out=out, err=err, stdin=io.StringIO()))
    return code, out.getvalue(), err.getvalue()


def test_the_command_prints_a_stream_for_kubectl(example_models):
    code, out, err = infc("render", "k8s", str(SPECS / "demo.infer"), "--image", "reg/i:2")
    assert code == ExitCode.OK, err
    assert out.startswith("# infc render k8s ") and "# StatefulSet demo-laptop\n" in out
    objects = list(yaml.safe_load_all(out))
    assert [o["kind"] for o in objects] == [
        "ConfigMap",
        "Service",
        "StatefulSet",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
    ]
    assert {
        container_of(o)["image"] for o in objects if o["kind"] in ("Deployment", "StatefulSet")
    } == {"reg/i:2"}


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--image-for", "fpga=x"], "infc: --image-for 'fpga=x': give HARDWARE=IMAGE"),
        (["--gateway-replicas", "0"], "infc: --gateway-replicas must be at least 1"),
        (["--name", "Bad_Name"], "infc: --name `Bad_Name` is not a Kubernetes name"),
    ],
)
def test_bad_options_are_one_line_and_exit_1(example_models, argv, says):
    code, out, err = infc("render", "k8s", str(SPECS / "demo.infer"), *argv)
    assert code == ExitCode.ERRORS and out == ""
    assert err.startswith(says), err


def test_a_spec_with_errors_renders_nothing(tmp_path):
    spec = tmp_path / "broken.infer"
    spec.write_text("target t {\n  hardware cpu\n}\n")
    code, out, err = infc("render", "k8s", str(spec))
    assert code == ExitCode.ERRORS and out == ""
    assert "E0204" in err


def test_default_name_is_the_spec_file_as_a_kubernetes_name():
    from inferplane.cli.render_command import default_name

    assert default_name("specs/Payments_v2.infer") == "payments-v2"
    assert default_name("/x/__.infer") == "inferplane"


def test_worker_tls_mounts_the_secrets_and_passes_the_flags(example_models):
    plan = plan_of("payments.infer")
    objects = k8s.render(plan, options("payments", worker_tls=True))
    parser = build_parser()
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSIONS[0], strict=True)
    for stateful in by_kind(objects, "StatefulSet"):
        container = container_of(stateful)
        args = parser.parse_args(container["args"])
        assert args.tls_cert == Path(k8s.WORKER_TLS_DIR) / "tls.crt"
        assert args.tls_client_ca == Path(k8s.WORKER_TLS_DIR) / "ca.crt"
        assert stateful["spec"]["template"]["spec"]["volumes"] == [
            {"name": "tls", "secret": {"secretName": "payments-worker-tls"}}
        ]
        # kubelet cannot probe gRPC over TLS: the worker's plaintext health port.
        assert args.health_listen == f"0.0.0.0:{k8s.WORKER_HEALTH_PORT}"
        for probe in ("startupProbe", "readinessProbe"):
            assert container[probe]["grpc"] == {"port": k8s.WORKER_HEALTH_PORT}
    (gateway,) = by_kind(objects, "Deployment")
    args = parser.parse_args(container_of(gateway)["args"])
    assert args.worker_tls_ca == Path(k8s.WORKER_TLS_DIR) / "ca.crt"
    assert args.worker_tls_key == Path(k8s.WORKER_TLS_DIR) / "tls.key"
    volumes = gateway["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": "worker-tls",
        "secret": {"secretName": "payments-gateway-worker-tls"},
    } in volumes
