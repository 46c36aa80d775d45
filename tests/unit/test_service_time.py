"""The online service-time model: start from the plan, learn the workers' line.

Observations are drawn from a CPU-like true line, 1 ms + 0.1 ms per row, with
5% log-normal noise (the simulation parameters of test_batching.py), at batch
sizes 1 to 32, from a seeded generator.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from inferplane.compiler.plan import Estimate
from inferplane.gateway.service_time import MIN_PREDICTION_S, ServiceTimeModel

TRUE_FIXED_S = 1e-3
TRUE_PER_ITEM_S = 1e-4


def true_time(batch: int) -> float:
    return TRUE_FIXED_S + batch * TRUE_PER_ITEM_S


def feed(
    model: ServiceTimeModel,
    count: int,
    *,
    seed: int = 0,
    noise: float = 0.05,
    outlier_rate: float = 0.0,
    scale: float = 1.0,
    sizes: tuple[int, int] = (1, 32),
) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(count):
        batch = int(rng.integers(sizes[0], sizes[1] + 1))
        seconds = scale * true_time(batch) * math.exp(rng.normal(-(noise**2) / 2, noise))
        if outlier_rate and rng.random() < outlier_rate:
            seconds *= 20
        model.observe(batch, seconds)


def test_it_starts_from_the_plans_line() -> None:
    model = ServiceTimeModel(0.002, 0.0003)
    assert model.observations == 0
    assert model.predict(1) == pytest.approx(0.0023)
    assert model.predict(32) == pytest.approx(0.002 + 32 * 0.0003)
    assert model.upper(8) >= model.predict(8)


def test_from_a_plan_estimate() -> None:
    estimate = Estimate(
        basis="measured",
        detail="infc profile",
        flops_per_item=1e6,
        fixed_s=0.0015,
        per_item_s=0.00002,
        single_latency_s=0.00152,
        max_batch_latency_s=0.00278,
        capacity_rps=23000.0,
    )
    model = ServiceTimeModel.from_estimate(estimate)
    assert (model.fixed_s, model.per_item_s) == (0.0015, 0.00002)


@pytest.mark.parametrize(
    "start",
    [(0.005, 0.0005), (0.0001, 0.00001), (0.002, 0.0003)],
    ids=["5x-too-slow", "10x-too-fast", "plan-guess"],
)
def test_it_converges_to_the_true_line_from_a_wrong_start(start: tuple[float, float]) -> None:
    model = ServiceTimeModel(*start)
    feed(model, 400, seed=1, outlier_rate=0.02)
    for batch in (1, 8, 32):
        assert model.predict(batch) == pytest.approx(true_time(batch), rel=0.05)
    assert model.fixed_s == pytest.approx(TRUE_FIXED_S, rel=0.10)
    assert model.per_item_s == pytest.approx(TRUE_PER_ITEM_S, rel=0.05)


def test_it_follows_a_worker_that_slows_down() -> None:
    model = ServiceTimeModel(TRUE_FIXED_S, TRUE_PER_ITEM_S)
    feed(model, 200, seed=2)
    feed(model, 300, seed=3, scale=2.0)  # e.g. a noisy neighbour on the host
    for batch in (1, 32):
        assert model.predict(batch) == pytest.approx(2 * true_time(batch), rel=0.05)


def test_one_outlier_moves_the_line_little() -> None:
    model = ServiceTimeModel(TRUE_FIXED_S, TRUE_PER_ITEM_S)
    feed(model, 300, seed=4)
    before = model.predict(16)
    model.observe(16, 100 * true_time(16))  # a 100x pause
    assert model.predict(16) == pytest.approx(before, rel=0.02)


def test_with_one_batch_size_only_the_slope_stays_put() -> None:
    # At low load every batch has one row: the intercept moves, the slope cannot
    # be measured and keeps its prior.
    model = ServiceTimeModel(0.002, 0.0003)
    feed(model, 200, seed=5, sizes=(1, 1))
    assert model.predict(1) == pytest.approx(true_time(1), rel=0.05)
    assert model.per_item_s == pytest.approx(0.0003)


def test_upper_covers_about_the_chosen_percentile() -> None:
    model = ServiceTimeModel(TRUE_FIXED_S, TRUE_PER_ITEM_S, quantile=0.99)
    feed(model, 300, seed=6, noise=0.10)
    rng = np.random.default_rng(7)
    over = 0
    trials = 2000
    for _ in range(trials):
        batch = int(rng.integers(1, 33))
        seconds = true_time(batch) * math.exp(rng.normal(-0.005, 0.10))
        over += seconds > model.upper(batch)
    assert over / trials < 0.03
    assert 0.1 < model.margin < 0.5


def test_floors() -> None:
    model = ServiceTimeModel(0.001, 0.0001)
    # Times that fall with batch size would give a negative slope; those that
    # suggest a negative intercept are refitted through the origin.
    for _ in range(200):
        model.observe(1, 0.0020)
        model.observe(32, 0.0010)
    assert model.per_item_s >= 0 and model.fixed_s >= 0
    for _ in range(200):
        model.observe(1, 0.00001)
        model.observe(32, 0.0032)
    assert model.per_item_s >= 0 and model.fixed_s >= 0
    assert model.predict(1) >= MIN_PREDICTION_S


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((-0.001, 0.0001), {}),
        ((0.001, math.nan), {}),
        ((0.0, 0.0), {}),
        ((0.001, 0.0001), {"half_life": 0}),
        ((0.001, 0.0001), {"quantile": 1.0}),
    ],
)
def test_bad_settings_are_refused(args: tuple, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ServiceTimeModel(*args, **kwargs)


@pytest.mark.parametrize(("batch", "seconds"), [(0, 0.001), (4, 0.0), (4, math.inf), (4, -1.0)])
def test_bad_observations_are_refused(batch: int, seconds: float) -> None:
    model = ServiceTimeModel(0.001, 0.0001)
    with pytest.raises(ValueError):
        model.observe(batch, seconds)
    assert model.observations == 0
