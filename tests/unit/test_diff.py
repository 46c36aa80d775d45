"""Plan diffs (`infc plan --against`): keys, field paths, derived estimates, text."""

from __future__ import annotations

from typing import Any

from test_review import estimate, sample_plan, shard

from inferplane.compiler.diff import FieldChange, diff_plans, format_value, render_diff
from inferplane.compiler.plan import (
    LatencyObjective,
    Location,
    Model,
    ModelRef,
    Plan,
    Redaction,
    ReplicaRange,
    Route,
    RouteEntry,
    Target,
    Tls,
)
from inferplane.compiler.review import ANSI

NO_CHANGES = "No changes. The plan matches the spec.\n"


def with_model(plan: Plan, name: str, version: int, **update: Any) -> Plan:
    old = plan.model(name, version)
    assert old is not None
    new = old.model_copy(update=update)
    return plan.model_copy(update={"models": [new if m is old else m for m in plan.models]})


def model(plan: Plan, name: str, version: int) -> Model:
    found = plan.model(name, version)
    assert found is not None
    return found


def fields(plan_a: Plan, plan_b: Plan, kind: str, key: str) -> dict[str, tuple[Any, Any]]:
    change = next(c for c in diff_plans(plan_a, plan_b).changes if (c.kind, c.key) == (kind, key))
    assert change.action == "~"
    return {f.path: (f.old, f.new) for f in change.fields}


def test_identical_plans_have_no_changes():
    diff = diff_plans(sample_plan(), sample_plan())
    assert diff.is_empty
    assert (diff.to_add, diff.to_change, diff.to_destroy) == (0, 0, 0)
    assert render_diff(diff) == NO_CHANGES


def test_content_hash_is_ignored():
    plan = sample_plan()
    other = plan.model_copy(update={"content_hash": "sha256:" + "0" * 64})
    assert diff_plans(plan, other).is_empty


def test_targets_added_removed_and_changed():
    old = sample_plan()
    cpu, _gpu = old.targets
    tpu = Target(
        name="tpu-us",
        hardware="tpu",
        accelerator="v5e",
        location=Location(kind="cloud", site="gcp:us-central1"),
        replicas=ReplicaRange(min=0, max=4),
    )
    cpu2 = cpu.model_copy(
        update={
            "replicas": ReplicaRange(min=2, max=12),
            "threads": 8,
            "workers": ["cpu-0.fra.internal:9100"],
        }
    )
    new = old.model_copy(update={"targets": [cpu2, tpu]})
    diff = diff_plans(old, new)
    assert [(c.action, c.kind, c.key) for c in diff.changes] == [
        ("~", "target", "cpu-fra"),
        ("-", "target", "gpu-fra"),
        ("+", "target", "tpu-us"),
    ]
    assert fields(old, new, "target", "cpu-fra") == {
        "replicas.max": (8, 12),
        "threads": (4, 8),
        "workers": (None, ("cpu-0.fra.internal:9100",)),
    }
    assert "      + workers: [cpu-0.fra.internal:9100]" in render_diff(diff).splitlines()


def test_models_added_and_removed_by_name_and_version():
    old = sample_plan()
    v5 = model(old, "fraud-scorer", 4).model_copy(update={"version": 5})
    models = [m for m in old.models if m.name != "fraud-lite"] + [v5]
    new = old.model_copy(update={"models": models})
    changes = [(c.action, c.key) for c in diff_plans(old, new).changes]
    assert changes == [("-", "fraud-lite@1"), ("+", "fraud-scorer@5")]


def test_model_field_paths_use_natural_keys():
    old = sample_plan()
    m = model(old, "fraud-scorer", 3)
    cpu, gpu = m.shards
    cpu2 = cpu.model_copy(
        update={"batching": cpu.batching.model_copy(update={"max_batch_size": 32})}
    )
    gpu2 = gpu.model_copy(update={"weight": 2, "share": 2 / 3})
    latency = [
        LatencyObjective(percentile="p90", seconds=0.010),
        LatencyObjective(percentile="p99", seconds=0.015),
    ]
    inputs = [m.signature.inputs[0].model_copy(update={"shape": [-1, 31]})]
    new = with_model(
        old,
        "fraud-scorer",
        3,
        shards=[cpu2, gpu2],
        slos=m.slos.model_copy(update={"latency": latency}),
        signature=m.signature.model_copy(update={"inputs": inputs}),
        precision="fp32",
    )
    assert fields(old, new, "model", "fraud-scorer@3") == {
        "precision": ("int8", "fp32"),
        "signature.inputs[features].shape": ((-1, 30), (-1, 31)),
        "shards[cpu-fra].batching.max_batch_size": (64, 32),
        "shards[gpu-fra].weight": (3, 2),
        "shards[gpu-fra].share": (0.75, 2 / 3),
        "slos.latency[p50]": (0.005, None),
        "slos.latency[p90]": (None, 0.010),
        "slos.latency[p99]": (0.020, 0.015),
    }
    text = render_diff(diff_plans(old, new))
    for line in [
        "  ~ model fraud-scorer@3",
        "      ~ precision: int8 → fp32",
        "      ~ signature.inputs[features].shape: [batch, 30] → [batch, 31]",
        "      ~ shards[cpu-fra].batching.max_batch_size: 64 → 32",
        "      ~ shards[gpu-fra].weight: 3 → 2",
        "      ~ shards[gpu-fra].share: 75% → 66.7%",
        "      - slos.latency[p50]: 5ms",
        "      + slos.latency[p90]: 10ms",
        "      ~ slos.latency[p99]: 20ms → 15ms",
    ]:
        assert line in text.splitlines()
    # a removed field stays next to its old neighbours
    lines = text.splitlines()
    assert lines.index("      - slos.latency[p50]: 5ms") < lines.index(
        "      + slos.latency[p90]: 10ms"
    )


def test_redaction_kinds_and_privacy():
    old = sample_plan()
    intent = model(old, "support-intent", 1)
    redact = Redaction(input="text", kinds=["email", "phone", "iban"])
    privacy = intent.privacy.model_copy(update={"redactions": [redact], "on_prem_only": True})
    new = with_model(old, "support-intent", 1, privacy=privacy)
    assert fields(old, new, "model", "support-intent@1") == {
        "privacy.on_prem_only": (False, True),
        "privacy.redactions[text].kinds": (("email", "phone"), ("email", "phone", "iban")),
    }
    assert (
        "      ~ privacy.redactions[text].kinds: [email, phone] → [email, phone, iban]"
        in render_diff(diff_plans(old, new)).splitlines()
    )


def test_routes_entries_fallback_added_and_removed():
    old = sample_plan()
    payments = old.routes[0].model_copy(
        update={
            "entries": [
                RouteEntry(model="fraud-scorer", version=3, percent=80.0),
                RouteEntry(model="fraud-scorer", version=4, percent=20.0),
            ],
            "fallback": ModelRef(model="fraud-scorer", version=4),
        }
    )
    triage = Route(
        name="triage", entries=[RouteEntry(model="support-intent", version=1, percent=100.0)]
    )
    new = old.model_copy(update={"routes": [payments, triage]})
    assert fields(old, new, "route", "payments") == {
        "entries[fraud-scorer@3]": (90.0, 80.0),
        "entries[fraud-scorer@4]": (10.0, 20.0),
        "fallback": ("fraud-lite@1", "fraud-scorer@4"),
    }
    text = render_diff(diff_plans(old, new))
    assert "      ~ entries[fraud-scorer@3]: 90% → 80%" in text
    assert "      ~ fallback: fraud-lite@1 → fraud-scorer@4" in text
    assert "  + route triage" in text
    assert render_diff(diff_plans(new, old)).splitlines()[-3] == "  - route triage"


def test_gateway_changes():
    old = sample_plan()
    gateway = old.gateway.model_copy(
        update={"tls": Tls(cert="c.pem", key="k.pem"), "metrics": None, "listen": "0.0.0.0:8001"}
    )
    new = old.model_copy(update={"gateway": gateway})
    diff = diff_plans(old, new)
    assert [(c.action, c.kind) for c in diff.changes] == [("~", "gateway")]
    assert fields(old, new, "gateway", "gateway") == {
        "listen": ("127.0.0.1:8001", "0.0.0.0:8001"),
        "metrics": ("127.0.0.1:9464", None),
        "tls.cert": ("certs/gateway.pem", "c.pem"),
        "tls.key": ("certs/gateway-key.pem", "k.pem"),
        "tls.client_ca": ("certs/ca.pem", None),
    }
    lines = render_diff(diff).splitlines()
    assert lines[0] == "  ~ gateway"
    assert "      - metrics: 127.0.0.1:9464" in lines


def test_reordered_lists_are_not_changes():
    old = sample_plan()
    m = model(old, "fraud-scorer", 3)
    new = with_model(
        old,
        "fraud-scorer",
        3,
        shards=list(reversed(m.shards)),
        slos=m.slos.model_copy(update={"latency": list(reversed(m.slos.latency))}),
    )
    route = old.routes[0].model_copy(update={"entries": list(reversed(old.routes[0].entries))})
    new = new.model_copy(
        update={"routes": [route], "targets": list(reversed(old.targets))}
    ).with_hash()
    assert diff_plans(old, new).is_empty


def test_inserted_shard_does_not_shift_the_others():
    old = sample_plan()
    m = model(old, "fraud-scorer", 4)
    edge = shard("edge-fra", 1, 0.5, (1, 2), 1, 0.0, estimate(1e-4, 1e-5, 1))
    new = with_model(old, "fraud-scorer", 4, shards=[edge, m.shards[0]])
    changed = fields(old, new, "model", "fraud-scorer@4")
    assert all(path.startswith("shards[edge-fra].") for path in changed)
    assert changed["shards[edge-fra].weight"] == (None, 1)


def test_estimates_are_derived_and_listed_apart():
    old = sample_plan()
    m = model(old, "fraud-scorer", 3)
    gpu = m.shards[1].model_copy(update={"estimate": estimate(5e-4, 1e-6, 64)})
    capacity = m.capacity.model_copy(update={"capacity_rps": 11_000.0})
    new = with_model(old, "fraud-scorer", 3, shards=[m.shards[0], gpu], capacity=capacity)
    diff = diff_plans(old, new)
    (change,) = diff.changes
    assert change.action == "~"
    assert all(f.derived for f in change.fields)
    assert {f.path for f in change.fields} == {
        "shards[gpu-fra].estimate.fixed_s",
        "shards[gpu-fra].estimate.single_latency_s",
        "shards[gpu-fra].estimate.max_batch_latency_s",
        "shards[gpu-fra].estimate.capacity_rps",
        "capacity.capacity_rps",
    }
    assert render_diff(diff) == (
        "  ~ model fraud-scorer@3\n"
        "      # derived: from the model file, hardware and replica ranges\n"
        "      ~ shards[gpu-fra].estimate.fixed_s: 400us → 500us\n"
        "      ~ shards[gpu-fra].estimate.single_latency_s: 401us → 501us\n"
        "      ~ shards[gpu-fra].estimate.max_batch_latency_s: 464us → 564us\n"
        "      ~ shards[gpu-fra].estimate.capacity_rps: 138k rps → 113k rps\n"
        "      ~ capacity.capacity_rps: 12.3k rps → 11k rps\n"
        "\n"
        "Plan: 0 to add, 1 to change, 0 to destroy.\n"
    )


def test_a_rebuilt_artifact_changes_and_its_agreement_is_derived():
    old = sample_plan()
    m = model(old, "fraud-scorer", 3)
    rebuilt = m.artifact.model_copy(
        update={
            "path": ".inferplane/cache/ab12ab12ab12ab12-int8-pc7-ort1.33.0.onnx",
            "sha256": "77" * 32,
        }
    )
    agreement = m.agreement.model_copy(update={"top1_agreement": 1.0, "max_abs_diff": 0.03})
    new = with_model(old, "fraud-scorer", 3, artifact=rebuilt, agreement=agreement)
    assert fields(old, new, "model", "fraud-scorer@3") == {
        "artifact.path": (m.artifact.path, rebuilt.path),
        "artifact.sha256": ("9f8e" * 16, "77" * 32),
        "agreement.top1_agreement": (142 / 143, 1.0),
        "agreement.max_abs_diff": (0.0213, 0.03),
    }
    body = render_diff(diff_plans(old, new)).splitlines()
    marker = body.index("      # derived: from the model file, hardware and replica ranges")
    assert body[1:marker] == [
        f"      ~ artifact.path: {m.artifact.path} → {rebuilt.path}",
        f"      ~ artifact.sha256: {'9f8e' * 16} → {'77' * 32}",
    ]
    assert body[marker + 1 : marker + 3] == [
        "      ~ agreement.top1_agreement: 99.3% → 100%",
        "      ~ agreement.max_abs_diff: 0.0213 → 0.03",
    ]


def test_quantizing_a_model_shows_the_new_artifact_and_its_agreement():
    old = sample_plan()
    m = model(old, "fraud-scorer", 4)
    built = m.artifact.model_copy(update={"path": ".inferplane/cache/x-int8.onnx"})
    agreement = model(old, "fraud-scorer", 3).agreement
    new = with_model(old, "fraud-scorer", 4, precision="int8", artifact=built, agreement=agreement)
    changed = fields(old, new, "model", "fraud-scorer@4")
    assert changed["precision"] == ("fp32", "int8")
    assert changed["artifact.path"] == ("models/fraud-v4.onnx", ".inferplane/cache/x-int8.onnx")
    assert changed["agreement.samples"] == (None, 143)
    assert not any(path.startswith("source.") for path in changed)


def test_derived_fields_follow_the_spec_fields():
    old = sample_plan()
    m = model(old, "fraud-scorer", 4)
    s = m.shards[0]
    new_shard = s.model_copy(
        update={"replicas": ReplicaRange(min=2, max=6), "estimate": estimate(3e-4, 2e-5, 1)}
    )
    lines = render_diff(diff_plans(old, with_model(old, "fraud-scorer", 4, shards=[new_shard])))
    body = lines.splitlines()
    marker = body.index("      # derived: from the model file, hardware and replica ranges")
    assert body[1] == "      ~ shards[cpu-fra].replicas.max: 8 → 6"
    assert marker == 2
    assert all(".estimate." in line for line in body[marker + 1 : -2])


def test_summary_and_counts():
    old = sample_plan()
    v5 = model(old, "fraud-scorer", 4).model_copy(update={"version": 5})
    m = model(old, "fraud-scorer", 3)
    gpu = m.shards[1].model_copy(update={"weight": 2})
    new = old.model_copy(
        update={
            "models": [*old.models, v5],
            "routes": [],
        }
    )
    new = with_model(new, "fraud-scorer", 3, shards=[m.shards[0], gpu])
    diff = diff_plans(old, new)
    assert (diff.to_add, diff.to_change, diff.to_destroy) == (1, 1, 1)
    assert render_diff(diff) == (
        "  ~ model fraud-scorer@3\n"
        "      ~ shards[gpu-fra].weight: 3 → 2\n"
        "  + model fraud-scorer@5\n"
        "  - route payments\n"
        "\n"
        "Plan: 1 to add, 1 to change, 1 to destroy.\n"
    )


def test_ansi_style_colours_the_marks():
    old = sample_plan()
    new = old.model_copy(update={"routes": []})
    coloured = render_diff(diff_plans(old, new), ANSI)
    assert "\x1b[31m-\x1b[0m route" in coloured
    assert "\x1b[" not in render_diff(diff_plans(old, new))


def test_values_are_formatted_by_unit():
    assert format_value("shards[cpu-fra].batching.window_s", 0.002) == "2ms"
    assert format_value("max_message_bytes", 64 * 1024 * 1024) == "64MiB"
    assert format_value("slos.availability_percent", 99.9) == "99.9%"
    assert format_value("slos.throughput_rps", 20_000.0) == "20k rps"
    assert format_value("slos.latency[p99]", 0.02) == "20ms"
    assert format_value("entries[recs@1]", 100.0) == "100%"
    assert format_value("shards[gpu-fra].batching.adaptive", False) == "false"
    assert format_value("location.site", "") == '""'


def test_field_change_action():
    assert FieldChange("a", None, 1).action == "+"
    assert FieldChange("a", 1, None).action == "-"
    assert FieldChange("a", 1, 2).action == "~"
    assert FieldChange("capacity.basis", "estimated", "measured").derived
    assert not FieldChange("shards[x].weight", 1, 2).derived
