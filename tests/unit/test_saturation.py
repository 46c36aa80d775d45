"""gateway/saturation.py: CPU seconds per wall second, on injected clocks."""

from __future__ import annotations

import pytest

from inferplane.gateway.saturation import LoadGauge


class Clocks:
    def __init__(self) -> None:
        self.wall = 100.0
        self.cpu = 5.0

    def spend(self, wall_s: float, cpu_s: float) -> None:
        self.wall += wall_s
        self.cpu += cpu_s


def gauge(clocks: Clocks, **options) -> LoadGauge:
    options.setdefault("period_s", 0.04)  # below the tests' steps, whatever the rounding
    return LoadGauge(wall=lambda: clocks.wall, cpu=lambda: clocks.cpu, **options)


def test_busy_over_a_period_is_saturated_and_idle_is_not():
    clocks = Clocks()
    g = gauge(clocks)
    clocks.spend(0.05, 0.045)  # 0.9 of a core
    assert g.saturated()
    assert g.load == pytest.approx(0.9)
    clocks.spend(0.05, 0.01)  # 0.2 of a core
    assert not g.saturated()
    assert g.load == pytest.approx(0.2)


def test_it_samples_at_most_once_a_period():
    clocks = Clocks()
    g = gauge(clocks, period_s=0.04)
    clocks.spend(0.01, 0.01)  # busy, but the period is not over: still the first verdict
    assert not g.saturated()
    clocks.spend(0.04, 0.04)  # the period ends: 0.05 of CPU over 0.05 s
    assert g.saturated()
    clocks.spend(0.02, 0.0)  # idle, mid-period: the last verdict holds
    assert g.saturated()


def test_the_threshold_is_the_share_of_one_core():
    clocks = Clocks()
    g = gauge(clocks, threshold=1.5)  # two busy threads would count
    clocks.spend(0.1, 0.1)
    assert not g.saturated()
    clocks.spend(0.1, 0.16)
    assert g.saturated()


@pytest.mark.parametrize("options", [{"threshold": 0}, {"period_s": 0}])
def test_bad_options_are_refused(options):
    with pytest.raises(ValueError):
        LoadGauge(**options)
