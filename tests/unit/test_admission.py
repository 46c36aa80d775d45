"""Admission: admit, fall back or refuse, at the boundaries, with messages that name the numbers.

Times are binary fractions (0.25, 0.125, …) where a test sits exactly on a
boundary, so that float sums are exact.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from inferplane.compiler.plan import LatencyObjective, Slos, load_plan
from inferplane.gateway.admission import (
    Admit,
    DeadlineExceeded,
    Fallback,
    Overloaded,
    Prediction,
    Refuse,
    admit,
    slo_budget_s,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def test_without_deadline_or_slo_everything_is_admitted():
    decision = admit(now=5.0, deadline=None, slo_s=None, predicted_wait_s=60, predicted_service_s=1)
    assert decision == Admit(finish_at=66.0, slack_s=math.inf)


# --- the gRPC deadline


def test_a_finish_exactly_at_the_deadline_is_admitted():
    decision = admit(10.0, 10.5, None, 0.25, 0.25)
    assert decision == Admit(finish_at=10.5, slack_s=0.0)


def test_a_finish_just_past_the_deadline_is_refused():
    decision = admit(10.0, 10.5, None, 0.25, 0.25 + 2**-20)
    assert isinstance(decision, Refuse)
    assert decision.kind == "RESOURCE_EXHAUSTED"


def test_float_rounding_does_not_refuse_an_exact_fit():
    # 100 + 0.01 + 0.01 rounds above 100.02 in binary floating point.
    assert 100.0 + 0.01 + 0.01 > 100.02
    assert isinstance(admit(100.0, 100.02, None, 0.01, 0.01), Admit)


def test_a_refusal_names_the_numbers():
    decision = admit(
        now=0.0, deadline=0.020, slo_s=None, predicted_wait_s=0.042, predicted_service_s=0.003
    )
    assert decision == Refuse("predicted wait 42ms + service 3ms exceeds the 20ms deadline")
    error = decision.error()
    assert isinstance(error, Overloaded) and error.kind == "RESOURCE_EXHAUSTED"
    assert str(error) == decision.reason


def test_a_deadline_already_passed_is_deadline_exceeded():
    decision = admit(now=1.0, deadline=0.997, slo_s=None, predicted_wait_s=0, predicted_service_s=0)
    assert decision == Refuse("the deadline passed 3ms before admission", kind="DEADLINE_EXCEEDED")
    assert isinstance(decision.error(), DeadlineExceeded)
    assert decision.error().kind == "DEADLINE_EXCEEDED"


# --- the SLO, from arrival


def test_the_slo_counts_from_arrival():
    # Arrived at 10, admitted at 10.125 with a 0.5 s SLO: 0.375 s left.
    fits = admit(10.125, None, 0.5, 0.25, 0.125, arrival=10.0)
    assert fits == Admit(finish_at=10.5, slack_s=0.0)
    late = admit(10.125, None, 0.5, 0.25, 0.25, arrival=10.0)
    assert late == Refuse(
        "predicted wait 250ms + service 250ms exceeds the 375ms left of the 500ms SLO"
    )


def test_the_slo_counts_from_now_without_an_arrival():
    assert isinstance(admit(3.0, None, 0.5, 0.25, 0.25), Admit)
    refused = admit(3.0, None, 0.025, 0.02, 0.01)
    assert refused == Refuse("predicted wait 20ms + service 10ms exceeds the 25ms SLO")


def test_a_spent_slo_is_refused():
    decision = admit(11.0, None, 0.5, 0.0, 0.001, arrival=10.0)
    assert decision == Refuse(
        "predicted wait 0ms + service 1ms exceeds the 500ms SLO, already spent"
    )


def test_the_tighter_of_deadline_and_slo_decides_and_is_named():
    # deadline 30ms away, SLO 25ms: the SLO binds.
    slo_binds = admit(0.0, 0.030, 0.025, 0.020, 0.008)
    assert isinstance(slo_binds, Refuse) and "the 25ms SLO" in slo_binds.reason
    # deadline 20ms away, SLO 25ms: the deadline binds.
    deadline_binds = admit(0.0, 0.020, 0.025, 0.015, 0.008)
    assert isinstance(deadline_binds, Refuse) and "the 20ms deadline" in deadline_binds.reason
    assert admit(0.0, 0.030, 0.025, 0.015, 0.008) == Admit(
        finish_at=pytest.approx(0.023), slack_s=pytest.approx(0.002)
    )


# --- the route's fallback


def test_a_fallback_that_fits_is_chosen():
    lite = Prediction(wait_s=0.002, service_s=0.001, label="fraud-lite@1")
    decision = admit(0.0, 0.020, None, 0.042, 0.003, fallback=lite)
    assert decision == Fallback(
        finish_at=pytest.approx(0.003),
        reason="predicted wait 42ms + service 3ms exceeds the 20ms deadline",
    )


def test_a_fallback_exactly_at_the_budget_is_chosen():
    decision = admit(10.0, 10.5, None, 1.0, 0.0, fallback=Prediction(0.25, 0.25))
    assert decision == Fallback(finish_at=10.5, reason=decision.reason)


def test_a_fallback_that_does_not_fit_is_refused_too():
    lite = Prediction(wait_s=0.019, service_s=0.002, label="fraud-lite@1")
    decision = admit(0.0, 0.020, None, 0.042, 0.003, fallback=lite)
    assert decision == Refuse(
        "predicted wait 42ms + service 3ms exceeds the 20ms deadline; so does the "
        "fallback fraud-lite@1's predicted wait 19ms + service 2ms"
    )


def test_the_fallback_is_not_used_when_the_primary_fits():
    decision = admit(0.0, 0.020, None, 0.010, 0.003, fallback=Prediction(0.0, 0.001))
    assert isinstance(decision, Admit)


def test_the_fallback_cannot_rescue_a_passed_deadline():
    decision = admit(1.0, 0.5, None, 0.0, 0.0, fallback=Prediction(0.0, 0.0))
    assert isinstance(decision, Refuse) and decision.kind == "DEADLINE_EXCEEDED"


def test_negative_predictions_are_a_bug():
    with pytest.raises(ValueError):
        admit(0.0, 1.0, None, -0.001, 0.0)


# --- the SLO budget from the plan


def test_the_slo_budget_is_the_loosest_latency_objective():
    plan = load_plan((GOLDEN / "fraud.plan.json").read_text())
    scorer = plan.model("fraud-scorer", 3)
    assert scorer is not None  # p50 5ms, p99 25ms
    assert slo_budget_s(scorer) == 0.025
    only_p50 = scorer.model_copy(
        update={"slos": Slos(latency=[LatencyObjective(percentile="p50", seconds=0.005)])}
    )
    assert slo_budget_s(only_p50) == 0.005
    assert slo_budget_s(scorer.model_copy(update={"slos": Slos()})) is None
