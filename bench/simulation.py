"""Simulated request outcomes and Istio-style latency histograms for a primary and a canary."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

# Istio's default istio_request_duration_milliseconds buckets (the last one is +Inf).
ISTIO_BUCKETS_MS = np.array(
    [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000,
     600000, 1800000, 3600000, math.inf]
)  # fmt: skip


@dataclass(frozen=True)
class Traffic:
    rps: float = 20.0
    weight: float = 0.10
    error_rate: float = 0.005
    latency_median_ms: float = 100.0
    latency_sigma: float = 0.5
    interval_s: float = 60.0
    step_s: float = 30.0


@dataclass(frozen=True)
class Scenario:
    name: str
    extra_errors: float = 0.0  # added to the canary's error rate (0.01 = +1 percentage point)
    latency_factor: float = 1.0  # multiplies every canary latency, so p99 too

    @property
    def regressed(self) -> bool:
        return self.extra_errors > 0 or self.latency_factor != 1.0


@dataclass(frozen=True)
class Window:
    """One side over one step: requests, 5xx and cumulative bucket counts (le order)."""

    requests: int
    errors: int
    buckets: np.ndarray

    def __add__(self, other: Window) -> Window:
        return Window(
            self.requests + other.requests, self.errors + other.errors, self.buckets + other.buckets
        )


def bucket_probabilities(*, median_ms: float, sigma: float) -> np.ndarray:
    """P(latency falls in each bucket) for a lognormal latency."""
    cdf = stats.lognorm.cdf(ISTIO_BUCKETS_MS, s=sigma, scale=median_ms)
    return np.diff(np.concatenate([[0.0], cdf]))


def simulate(
    rng: np.random.Generator, *, rps: float, seconds: float, error_rate: float, probs: np.ndarray
) -> Window:
    requests = int(rng.poisson(rps * seconds))
    errors = int(rng.binomial(requests, min(error_rate, 1.0)))
    return Window(requests, errors, np.cumsum(rng.multinomial(requests, probs)))


def histogram_quantile(q: float, cumulative: np.ndarray) -> float:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket holding rank q."""
    total = cumulative[-1]
    if total == 0:
        return math.nan
    rank = q * total
    index = int(np.searchsorted(cumulative, rank, side="left"))
    if index == len(ISTIO_BUCKETS_MS) - 1:
        return float(ISTIO_BUCKETS_MS[-2])
    lower = 0.0 if index == 0 else float(ISTIO_BUCKETS_MS[index - 1])
    below = 0.0 if index == 0 else float(cumulative[index - 1])
    inside = float(cumulative[index]) - below
    upper = float(ISTIO_BUCKETS_MS[index])
    return lower + (upper - lower) * ((rank - below) / inside if inside else 1.0)


def success_rate(window: Window) -> float:
    return 100.0 * (1 - window.errors / window.requests) if window.requests else math.nan


@dataclass(frozen=True)
class Step:
    canary: Window
    primary: Window


def simulate_rollout(
    rng: np.random.Generator, *, traffic: Traffic, scenario: Scenario, intervals: int
) -> list[list[Step]]:
    """Steps of every interval: canary at `weight` of the traffic, primary at the rest."""
    primary_probs = bucket_probabilities(
        median_ms=traffic.latency_median_ms, sigma=traffic.latency_sigma
    )
    canary_probs = bucket_probabilities(
        median_ms=traffic.latency_median_ms * scenario.latency_factor, sigma=traffic.latency_sigma
    )
    steps = max(round(traffic.interval_s / traffic.step_s), 1)
    seconds = traffic.interval_s / steps

    def step() -> Step:
        return Step(
            canary=simulate(
                rng,
                rps=traffic.rps * traffic.weight,
                seconds=seconds,
                error_rate=traffic.error_rate + scenario.extra_errors,
                probs=canary_probs,
            ),
            primary=simulate(
                rng,
                rps=traffic.rps * (1 - traffic.weight),
                seconds=seconds,
                error_rate=traffic.error_rate,
                probs=primary_probs,
            ),
        )

    return [[step() for _ in range(steps)] for _ in range(intervals)]
