"""The oracle ceiling and the confidence bound the live benchmark prints.

The ceiling is the detection of the best single fixed-sample test that is told the truth: at
interval k it sees the canary's cumulative requests N and bad events X (5xx, or requests slower
than a latency bound), knows the base rate p0, and rejects "no regression" with the uniformly
most powerful one-sided binomial test at a given level (randomised at the critical count, so
its size is exactly the level). N is Poisson, so its power is averaged over N. A judge that
must learn the base rate from the primary, and may be asked every interval, cannot beat it.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from bench.simulation import ISTIO_BUCKETS_MS


def clopper_pearson_upper(hits: int, runs: int, *, confidence: float = 0.95) -> float:
    """The upper end of the two-sided Clopper-Pearson interval for hits / runs."""
    if runs == 0:
        return math.nan
    if hits >= runs:
        return 1.0
    return float(stats.beta.ppf(1 - (1 - confidence) / 2, hits + 1, runs - hits))


def ump_power(requests: np.ndarray, p0: float, p1: float, level: float) -> np.ndarray:
    """Power of the randomised UMP test of p = p0 against p = p1 > p0 on X ~ Binomial(n, p),
    for each n in `requests`, at size `level`."""
    n = np.asarray(requests, dtype=np.int64)
    if level <= 0:
        return np.zeros(n.shape)
    if level >= 1:
        return np.ones(n.shape)
    # Critical count c: reject when X > c, and with probability gamma when X == c.
    c = stats.binom.isf(level, n, p0)
    c = np.where(stats.binom.sf(c, n, p0) > level, c + 1, c)
    c = np.where((c > 0) & (stats.binom.sf(c - 1, n, p0) <= level), c - 1, c)
    above = stats.binom.sf(c, n, p0)
    at = stats.binom.pmf(c, n, p0)
    gamma = np.where(at > 0, np.clip((level - above) / np.where(at > 0, at, 1), 0, 1), 0)
    return stats.binom.sf(c, n, p1) + gamma * stats.binom.pmf(c, n, p1)


def ceiling(expected_requests: float, p0: float, p1: float, level: float) -> float:
    """The UMP test's power when the request count is Poisson(expected_requests)."""
    if p1 <= p0 or expected_requests <= 0:
        return level if p1 == p0 else 0.0
    low = int(stats.poisson.ppf(1e-9, expected_requests))
    high = int(stats.poisson.isf(1e-9, expected_requests)) + 1
    n = np.arange(low, high + 1)
    weights = stats.poisson.pmf(n, expected_requests)
    return float(np.sum(weights * ump_power(n, p0, p1, level)) / np.sum(weights))


def slow_share(median_ms: float, sigma: float, bound_ms: float) -> float:
    """P(latency > bound) for a lognormal latency."""
    return float(stats.lognorm.sf(bound_ms, s=sigma, scale=median_ms))


def latency_ceiling(
    expected_requests: float, *, median_ms: float, sigma: float, factor: float, level: float
) -> float:
    """The best ceiling over Istio's bucket bounds of a test on requests slower than the bound."""
    best = 0.0
    for bound in ISTIO_BUCKETS_MS[:-1]:
        p0 = slow_share(median_ms, sigma, float(bound))
        p1 = slow_share(median_ms * factor, sigma, float(bound))
        if 1e-12 < p0 < 1 - 1e-12:
            best = max(best, ceiling(expected_requests, p0, p1, level))
    return best
