"""An online model of batch service time: `latency(b) = fixed + b * per_item`.

The adaptive batcher (`batching.py`) needs to know how long a batch of `b`
rows will take on one worker slot, and admission control needs the same
figure to predict a request's wait. Both read this model; the driver feeds it
what the workers report (the time from sending a batch to its answer, or the
`compute_ns` of a worker's `InferResponse` plus a transport allowance).

**Start.** The plan's `Shard.estimate` (`fixed_s`, `per_item_s`, estimated or
measured by `infc profile`) is the line until the first batch is observed;
its slope is then kept until batches of different sizes have been seen (see
the ridge below), so early observations at one size move the level only.
There is no pseudo-observation of the plan's line in the fit: one would sit
at a batch size far from the data with a large leverage, and a plan that is
off by a few times (an `estimated` basis can be) would bend the slope for
hundreds of batches. Started 5 times too slow or 10 times too fast, the fit
came within 20% of the true line after 25 noisy batches and within 5% after
400 (`tests/unit/test_service_time.py` checks the latter).

**Fit.** Exponentially weighted least squares over sufficient statistics
(Σw, Σw·b, Σw·t, Σw·b², Σw·b·t), every older weight multiplied by
`0.5 ** (1 / half_life)` at each observation, so the line follows a worker
that slows down or speeds up. The slope is solved as

    per_item = (cov(b, t) + ridge * per_item_before) / (var(b) + ridge)

a ridge pulled towards the current slope rather than towards zero: when the
batches seen so far all have the same size (low load: all of size 1) the slope
cannot be measured, so it stays where it was and only the intercept moves;
when sizes vary, the fixed point of the update is the ordinary weighted least
squares line. Floors: `per_item >= 0`, `fixed >= 0` (a negative intercept is
refitted through the origin), and no prediction below `MIN_PREDICTION_S`.

**Outliers.** Each observation is first compared with the prediction made
before it (a prequential residual, relative: `r = t / predicted - 1`). The
residual is winsorised at `outlier_k` times the running RMS of past residuals
(never below `MIN_SPREAD`), and the fit sees the clipped time. One garbage
collection pause or a slow network hop therefore moves the line by a bounded
amount, while a real change of speed, seen batch after batch, widens the RMS
geometrically and is followed within a few dozen observations.

**Margin.** SLO decisions use `upper(b) = predict(b) * (1 + margin)`, where
the margin is the running mean plus `z` running standard deviations of the
relative residuals, `z` the normal quantile of `quantile` (2.33 for 0.99):
a conservative prediction that is exceeded about `1 - quantile` of the time
when the residuals are roughly normal (1–2.5% in the tests, for 1%, the fit's
own error included). The moments start from `initial_spread` (25%), so an
unproven plan estimate is used with a wide margin that narrows as batches
agree with the fit. `predict` is the point estimate.

Not thread-safe; the gateway's event loop owns each model.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inferplane.compiler.plan import Estimate

MIN_PREDICTION_S = 1e-6  # no batch is predicted to take less than a microsecond
MIN_SPREAD = 0.02  # outliers are judged against at least a 2% RMS residual
_SPREAD_RATE = 1 / 64  # how fast the residual moments follow (per observation)


class ServiceTimeModel:
    """`latency(b) = fixed_s + b * per_item_s`, refitted online from observations."""

    def __init__(
        self,
        fixed_s: float,
        per_item_s: float,
        *,
        half_life: float = 32.0,
        ridge: float = 4.0,
        outlier_k: float = 4.0,
        quantile: float = 0.99,
        initial_spread: float = 0.25,
    ) -> None:
        for name, value in (("fixed_s", fixed_s), ("per_item_s", per_item_s)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if fixed_s + per_item_s <= 0:
            raise ValueError("fixed_s and per_item_s cannot both be 0")
        if half_life <= 0 or ridge <= 0 or outlier_k <= 0:
            raise ValueError("half_life, ridge and outlier_k must be > 0")
        if not (math.isfinite(initial_spread) and initial_spread >= 0):
            raise ValueError(f"initial_spread must be a finite number >= 0, got {initial_spread!r}")
        if not 0.5 <= quantile < 1:
            raise ValueError(f"quantile must be in [0.5, 1), got {quantile!r}")
        self._decay = 0.5 ** (1.0 / half_life)
        self._ridge = ridge
        self._k = outlier_k
        self._z = NormalDist().inv_cdf(quantile)
        self._fixed = fixed_s
        self._per_item = per_item_s
        # Weighted sums of the observations: Σw, Σw·b, Σw·t, Σw·b², Σw·b·t.
        self._w = self._wb = self._wt = self._wbb = self._wbt = 0.0
        # Running moments of the relative residuals (clipped).
        self._r_mean = 0.0
        self._r_sq = initial_spread**2
        self._count = 0

    @classmethod
    def from_estimate(cls, estimate: Estimate, **options: float) -> ServiceTimeModel:
        """Start from a plan shard's estimate (`Shard.estimate`)."""
        return cls(estimate.fixed_s, estimate.per_item_s, **options)

    @property
    def fixed_s(self) -> float:
        return self._fixed

    @property
    def per_item_s(self) -> float:
        return self._per_item

    @property
    def observations(self) -> int:
        """How many batches have been observed (outliers included)."""
        return self._count

    @property
    def margin(self) -> float:
        """The relative allowance `upper` adds to `predict` (0 or more)."""
        variance = max(self._r_sq - self._r_mean**2, 0.0)
        return max(self._r_mean + self._z * math.sqrt(variance), 0.0)

    def predict(self, batch_size: int) -> float:
        """Point estimate of one batch's service time, in seconds."""
        return max(self._fixed + batch_size * self._per_item, MIN_PREDICTION_S)

    def upper(self, batch_size: int) -> float:
        """Conservative estimate (about the `quantile`-th percentile), in seconds."""
        return self.predict(batch_size) * (1.0 + self.margin)

    def observe(self, batch_size: int, seconds: float) -> None:
        """Record that a batch of `batch_size` rows took `seconds` on one slot."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        if not (math.isfinite(seconds) and seconds > 0):
            raise ValueError(f"seconds must be a finite number > 0, got {seconds!r}")
        self._count += 1
        predicted = self.predict(batch_size)
        residual = seconds / predicted - 1.0
        spread = max(math.sqrt(self._r_sq), MIN_SPREAD)
        limit = self._k * spread
        clipped = min(max(residual, -limit), limit)
        self._r_mean += _SPREAD_RATE * (clipped - self._r_mean)
        self._r_sq += _SPREAD_RATE * (clipped * clipped - self._r_sq)

        t = predicted * (1.0 + clipped)
        b = float(batch_size)
        d = self._decay
        self._w = d * self._w + 1.0
        self._wb = d * self._wb + b
        self._wt = d * self._wt + t
        self._wbb = d * self._wbb + b * b
        self._wbt = d * self._wbt + b * t
        self._refit()

    def _refit(self) -> None:
        mean_b = self._wb / self._w
        mean_t = self._wt / self._w
        var_b = max(self._wbb / self._w - mean_b * mean_b, 0.0)
        cov = self._wbt / self._w - mean_b * mean_t
        slope = max((cov + self._ridge * self._per_item) / (var_b + self._ridge), 0.0)
        intercept = mean_t - slope * mean_b
        if intercept < 0:
            # The data say the line passes below the origin: keep the intercept at 0
            # and fit the slope alone, t = b * per_item.
            intercept = 0.0
            slope = max(self._wbt / self._wbb, 0.0)
        self._fixed = intercept
        self._per_item = slope

    def __repr__(self) -> str:
        return (
            f"ServiceTimeModel(fixed_s={self._fixed:.6g}, per_item_s={self._per_item:.6g}, "
            f"margin={self.margin:.3f}, observations={self._count})"
        )
