"""Route resolution: model versions by name, route splits by percentage, fallbacks."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from pathlib import Path

import pytest

from inferplane.compiler.plan import ModelRef, Plan, Route, RouteEntry, load_plan
from inferplane.gateway.routing import (
    InvalidArgument,
    ModelKey,
    NotFound,
    Resolved,
    RouteTable,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
SCORER_3 = ModelKey("fraud-scorer", 3)
SCORER_4 = ModelKey("fraud-scorer", 4)
LITE = ModelKey("fraud-lite", 1)


@pytest.fixture
def fraud() -> Plan:
    # fraud-lite@1, fraud-scorer@3 and @4; route `authorize`: @3 95%, @4 5%, fallback fraud-lite.
    return load_plan((GOLDEN / "fraud.plan.json").read_text())


def with_routes(plan: Plan, *routes: Route) -> Plan:
    return plan.model_copy(update={"routes": list(routes)})


def three_way(plan: Plan) -> Plan:
    return with_routes(
        plan,
        Route(
            name="split",
            entries=[
                RouteEntry(model="fraud-scorer", version=3, percent=50),
                RouteEntry(model="fraud-scorer", version=4, percent=30),
                RouteEntry(model="fraud-lite", version=1, percent=20),
            ],
        ),
    )


def chi_square(counts: Counter, expected: dict) -> float:
    return sum((counts[k] - e) ** 2 / e for k, e in expected.items())


# --- models by name and version


def test_a_model_name_alone_is_its_highest_version(fraud):
    table = RouteTable.from_plan(fraud)
    assert table.resolve("fraud-scorer") == Resolved(model=SCORER_4)
    assert table.resolve("fraud-scorer", None).model == SCORER_4
    assert table.resolve("fraud-lite", "").model == LITE


def test_a_model_version_names_exactly_that_version(fraud):
    table = RouteTable.from_plan(fraud)
    assert table.resolve("fraud-scorer", "3") == Resolved(model=SCORER_3)
    assert table.resolve("fraud-scorer", 4).model == SCORER_4


@pytest.mark.parametrize("version", ["5", "0", "three", "-3", "3.0"])
def test_an_unknown_version_is_not_found_naming_the_known_ones(fraud, version):
    table = RouteTable.from_plan(fraud)
    with pytest.raises(NotFound) as raised:
        table.resolve("fraud-scorer", version)
    assert raised.value.kind == "NOT_FOUND"
    assert str(raised.value) == (
        f"model `fraud-scorer` has no version `{version}`; its versions are 3, 4"
    )


def test_a_single_version_is_named_in_the_singular(fraud):
    with pytest.raises(NotFound, match=r"its version is 1$"):
        RouteTable.from_plan(fraud).resolve("fraud-lite", "2")


def test_an_unknown_name_is_not_found_naming_what_is_known(fraud):
    with pytest.raises(NotFound) as raised:
        RouteTable.from_plan(fraud).resolve("fraud-scorr")
    assert str(raised.value) == (
        "unknown model or route `fraud-scorr`; known: `authorize`, `fraud-lite`, `fraud-scorer`"
    )


def test_a_route_takes_no_version(fraud):
    with pytest.raises(InvalidArgument) as raised:
        RouteTable.from_plan(fraud).resolve("authorize", "3")
    assert raised.value.kind == "INVALID_ARGUMENT"
    assert "`authorize` is a route" in str(raised.value)


def test_the_table_lists_models_routes_and_versions(fraud):
    table = RouteTable.from_plan(fraud)
    assert table.models == [LITE, SCORER_3, SCORER_4]
    assert table.routes == ["authorize"]
    assert table.versions("fraud-scorer") == [3, 4]
    assert table.versions("authorize") == []
    assert table.is_route("authorize") and not table.is_route("fraud-lite")
    assert str(SCORER_3) == "fraud-scorer@3"


# --- routes by percentage


def test_a_route_resolves_to_an_entry_with_the_route_and_its_fallback(fraud):
    resolved = RouteTable.from_plan(fraud, rng=random.Random(1)).resolve("authorize")
    assert resolved.model in (SCORER_3, SCORER_4)
    assert resolved.route == "authorize"
    assert resolved.fallback == LITE


def test_random_spread_converges_to_the_percentages(fraud):
    table = RouteTable.from_plan(three_way(fraud), rng=random.Random(20240601))
    n = 20_000
    counts = Counter(table.resolve("split").model for _ in range(n))
    expected = {SCORER_3: 0.5 * n, SCORER_4: 0.3 * n, LITE: 0.2 * n}
    # 2 degrees of freedom: 13.8 is the 0.1% critical value.
    assert chi_square(counts, expected) < 13.8


def test_random_spread_sends_a_canary_its_small_share(fraud):
    table = RouteTable.from_plan(fraud, rng=random.Random(7))
    n = 20_000
    counts = Counter(table.resolve("authorize").model for _ in range(n))
    # 1 degree of freedom: 10.83 is the 0.1% critical value.
    assert chi_square(counts, {SCORER_3: 0.95 * n, SCORER_4: 0.05 * n}) < 10.83


def test_the_same_seed_gives_the_same_picks(fraud):
    def picks(seed: int) -> list[ModelKey]:
        table = RouteTable.from_plan(fraud, rng=random.Random(seed))
        return [table.resolve("authorize").model for _ in range(200)]

    assert picks(3) == picks(3)


def test_smooth_spread_matches_integer_percentages_in_every_hundred(fraud):
    table = RouteTable.from_plan(three_way(fraud), spread="smooth")
    for _ in range(3):
        counts = Counter(table.resolve("split").model for _ in range(100))
        assert counts == {SCORER_3: 50, SCORER_4: 30, LITE: 20}


def test_smooth_spread_interleaves_a_canary_evenly(fraud):
    table = RouteTable.from_plan(fraud, spread="smooth")
    picks = [table.resolve("authorize").model for _ in range(200)]
    canary = [i for i, m in enumerate(picks) if m == SCORER_4]
    assert len(canary) == 10
    assert {b - a for a, b in itertools.pairwise(canary)} == {20}


def test_smooth_spread_never_strays_more_than_one_request_from_the_shares(fraud):
    table = RouteTable.from_plan(three_way(fraud), spread="smooth")
    counts: Counter = Counter()
    for n in range(1, 1001):
        counts[table.resolve("split").model] += 1
        for model, share in ((SCORER_3, 0.5), (SCORER_4, 0.3), (LITE, 0.2)):
            assert abs(counts[model] - n * share) < 1 + 1e-9


def test_an_unknown_spread_is_refused(fraud):
    with pytest.raises(ValueError, match="unknown spread"):
        RouteTable.from_plan(fraud, spread="round-robin")  # type: ignore[arg-type]


# --- fallbacks


def test_the_fallback_is_the_routes_for_a_route_request(fraud):
    table = RouteTable.from_plan(fraud, rng=random.Random(0))
    assert table.fallback_for(table.resolve("authorize")) == LITE


def test_a_model_named_directly_has_no_fallback(fraud):
    table = RouteTable.from_plan(fraud)
    assert table.fallback_for(table.resolve("fraud-scorer", "3")) is None


def test_a_route_without_fallback_has_none(fraud):
    table = RouteTable.from_plan(three_way(fraud), rng=random.Random(0))
    assert table.fallback_for(table.resolve("split")) is None


def test_a_fallback_that_is_the_failed_model_is_no_fallback(fraud):
    plan = with_routes(
        fraud,
        Route(
            name="lite-first",
            entries=[RouteEntry(model="fraud-lite", version=1, percent=100)],
            fallback=ModelRef(model="fraud-lite", version=1),
        ),
    )
    table = RouteTable.from_plan(plan)
    assert table.fallback_for(table.resolve("lite-first")) is None


# --- plans the compiler would have refused


def test_a_route_to_an_unserved_version_is_refused_at_load(fraud):
    plan = with_routes(
        fraud,
        Route(name="bad", entries=[RouteEntry(model="fraud-scorer", version=9, percent=100)]),
    )
    with pytest.raises(ValueError, match="`fraud-scorer@9`, which the plan does not serve"):
        RouteTable.from_plan(plan)


def test_a_route_named_like_a_model_is_refused_at_load(fraud):
    plan = with_routes(
        fraud,
        Route(name="fraud-lite", entries=[RouteEntry(model="fraud-lite", version=1, percent=100)]),
    )
    with pytest.raises(ValueError, match="has the name of a model"):
        RouteTable.from_plan(plan)
