"""The on-prem rule at run time (gateway/placement.py): which targets it binds, and verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferplane.compiler import plan as plan_mod
from inferplane.compiler.plan import Plan, load_plan
from inferplane.gateway.placement import Refused, Report, Rule, Unverifiable, Verified, rules

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def golden(name: str) -> Plan:
    return load_plan((GOLDEN / f"{name}.plan.json").read_text())


def with_cloud_fallback(plan: Plan) -> Plan:
    """demo's plan with fraud-lite@1 (the `payments` route's fallback) no longer
    on-prem-only and moved to a cloud target of its own: only the route binds it."""
    cloud = plan_mod.Target(
        name="cloud-box",
        hardware="cpu",
        location=plan_mod.Location(kind="cloud", site="gcp:x"),
        replicas=plan_mod.ReplicaRange(min=1, max=1),
    )
    models = []
    for m in plan.models:
        if m.name == "fraud-lite":
            shards = [s.model_copy(update={"target": "cloud-box"}) for s in m.shards]
            privacy = m.privacy.model_copy(update={"on_prem_only": False})
            m = m.model_copy(update={"shards": shards, "privacy": privacy})
        models.append(m)
    return plan.model_copy(update={"targets": [*plan.targets, cloud], "models": models})


# --- which targets the rule binds


def test_a_target_serving_on_prem_only_models_is_bound_by_all_of_them():
    (rule,) = rules(golden("demo")).values()
    assert rule.target == "laptop" and rule.site == "localhost"
    # support-intent@1 is not on-prem-only: it neither binds nor is named.
    assert rule.models == ("fraud-lite@1", "fraud-scorer@1", "fraud-scorer@2")
    assert rule.reasons == ("it serves on-prem-only fraud-lite@1, fraud-scorer@1, fraud-scorer@2",)


def test_targets_without_on_prem_only_models_have_no_rule():
    # payments.infer's tpu-us (cloud) serves only recs; retail has no on-prem-only model.
    assert sorted(rules(golden("payments"))) == ["cpu-fra", "gpu-fra"]
    assert rules(golden("retail")) == {}
    assert rules(golden("support")) == {}


def test_a_route_binds_the_targets_of_its_members_that_are_not_on_prem_only():
    found = rules(with_cloud_fallback(golden("demo")))
    assert found["cloud-box"].models == ("fraud-scorer@1", "fraud-scorer@2")
    assert found["cloud-box"].reasons == (
        "route `payments` can send on-prem-only fraud-scorer@1's traffic to fraud-lite@1, "
        "served here",
        "route `payments` can send on-prem-only fraud-scorer@2's traffic to fraud-lite@1, "
        "served here",
    )
    assert found["laptop"].models == ("fraud-scorer@1", "fraud-scorer@2")


# --- verdicts

RULE = Rule("cpu-fra", "fra-dc1", ("fraud-scorer@3",), ("it serves on-prem-only fraud-scorer@3",))


@pytest.mark.parametrize(
    "report",
    [
        Report("onprem", "fra-dc1", "host"),
        Report("onprem", "", "host"),  # the host gave no site: nothing to compare
    ],
)
def test_an_on_prem_host_at_the_declared_site_is_verified(report):
    assert RULE.check("10.0.0.7:9100", report) == Verified()
    assert Verified.allowed


def test_without_a_declared_site_any_on_prem_site_is_verified():
    rule = Rule("box", "", ("m@1",), ("it serves on-prem-only m@1",))
    assert rule.check("w0", Report("onprem", "anywhere", "host")) == Verified()


@pytest.mark.parametrize(
    ("report", "described"),
    [
        (Report("cloud", "gcp:europe-west1", "host"), 'cloud "gcp:europe-west1" (from its host)'),
        (Report("edge", "", "host"), "edge (from its host)"),
        (Report("onprem", "ams-dc2", "host"), 'onprem "ams-dc2" (from its host)'),
        (Report("", "", ""), "no location (declared by the spec)"),
        # A worker whose own plan puts the target off-prem is refused, not merely unverified.
        (Report("cloud", "x", "declared"), 'cloud "x" (declared by the spec)'),
    ],
)
def test_off_prem_or_another_site_is_refused_naming_everything(report, described):
    verdict = RULE.check("10.0.0.7:9100", report)
    assert isinstance(verdict, Refused) and not verdict.allowed
    assert verdict.models == ("fraud-scorer@3",)
    assert verdict.message == (
        f"target `cpu-fra` replica 10.0.0.7:9100 reports {described}, but it serves "
        'on-prem-only fraud-scorer@3: it takes no request until it reports onprem "fra-dc1"'
    )


@pytest.mark.parametrize("source", ["declared", "", "something-newer"])
def test_a_location_not_from_the_host_is_used_but_unverifiable(source):
    verdict = RULE.check("unix:/run/w0.sock", Report("onprem", "fra-dc1", source))
    assert isinstance(verdict, Unverifiable) and verdict.allowed
    assert verdict.message.startswith(
        'target `cpu-fra` replica unix:/run/w0.sock reports onprem "fra-dc1" (declared by the '
        "spec): the on-prem rule of fraud-scorer@3 cannot be checked there"
    )
    assert "`--location` or INFERPLANE_LOCATION (onprem:fra-dc1 if it runs there)" in (
        verdict.message
    )


def test_the_hint_without_a_declared_site_gives_the_kind_alone():
    rule = Rule("box", "", ("m@1",), ("it serves on-prem-only m@1",))
    verdict = rule.check("w0", Report("onprem", "", "declared"))
    assert isinstance(verdict, Unverifiable)
    assert "(onprem if it runs there)" in verdict.message
    refused = rule.check("w0", Report("cloud", "", "host"))
    assert isinstance(refused, Refused)
    assert refused.message.endswith("until it reports onprem")
