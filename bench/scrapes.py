"""Simulated Istio counters of one canary run, as Prometheus would have scraped them.

Each pod's Envoy counts requests (`istio_requests_total` by response code) and latencies
(`istio_request_duration_milliseconds` buckets) cumulatively. The traffic model is
bench/simulation.py's: Poisson requests at `rps * weight` (canary) and `rps * (1 - weight)`
(primary), Binomial 5xx, lognormal latencies in Istio's default buckets. Counters are drawn on a
15 s grid; a 30 s scrape reads every other grid point of the same counters. The primary is one
pod: a second one changes no verdict logic (sums over pods are exercised by canary restarts)
and costs 15% more of the benchmark's CPU.

What a live Prometheus sees and this reproduces:
- each pod is scraped at its own phase within the scrape interval;
- a series exists only from the first scrape after its first event (Istio creates it with its
  first request, so a canary's 503 series appears with its first 503);
- the primary has served traffic for hours, so its counters start high;
- in some runs the canary restarts: a new pod (new `pod` and `instance` labels, counters from 0)
  or Envoy restarting in place (the same series drops to a low value); requests between the last
  scrape and the restart are never scraped;
- a few scrapes of each pod are missed.
Backfilled data holds no staleness markers, so an old pod's series stays visible to instant
queries for the 5 minute lookback after its last sample (rate() drops it after its window).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from bench.simulation import ISTIO_BUCKETS_MS, Scenario, Traffic, bucket_probabilities

GRID_S = 15.0
LEAD_S = 60.0  # data before the canary gets its weight: the primary's counters already run
PRIMARY_PODS = 1
MISSED_SCRAPES = 0.03
# Envoy's and Prometheus 2's spelling of the bounds: "100", "0.5", "1.8e+06", "+Inf".
LE = tuple("+Inf" if math.isinf(b) else f"{b:g}" for b in ISTIO_BUCKETS_MS)


@dataclass(frozen=True)
class RunPlan:
    """One simulated rollout: where it runs, what the canary does, and when."""

    namespace: str
    app: str
    traffic: Traffic
    scenario: Scenario
    start: float  # unix seconds at which the canary gets its weight (t0)
    intervals: int
    restart: str | None = None  # None, "new-pod" or "in-place"

    @property
    def canary(self) -> str:
        return f"{self.app}-canary"

    @property
    def primary(self) -> str:
        return f"{self.app}-primary"

    def interval_end(self, k: int) -> float:
        return self.start + k * self.traffic.interval_s


@dataclass
class PodCounters:
    """One pod's counters on the grid (cumulative since its process started)."""

    workload: str
    pod: str
    instance: str
    times: np.ndarray  # grid times, seconds
    ok: np.ndarray
    bad: np.ndarray
    buckets: np.ndarray  # (times, buckets), cumulative in le order
    # Where the pod's process ran (False before a new pod started / after the old one stopped).
    alive: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    # Requests since the process (re)started, to know when each series exists.
    served: np.ndarray = field(default_factory=lambda: np.zeros(0))
    bad_served: np.ndarray = field(default_factory=lambda: np.zeros(0))


@dataclass(frozen=True)
class Series:
    """One scraped series: metric name, labels, sample times and values."""

    name: str
    labels: tuple[tuple[str, str], ...]
    times: np.ndarray
    values: np.ndarray


def simulate_run(rng: np.random.Generator, plan: RunPlan) -> list[PodCounters]:
    """Every pod of the run: the primary's and the canary's (two after a new-pod restart)."""
    t = plan.traffic
    end = plan.interval_end(plan.intervals)
    base_probs = bucket_probabilities(median_ms=t.latency_median_ms, sigma=t.latency_sigma)
    canary_probs = bucket_probabilities(
        median_ms=t.latency_median_ms * plan.scenario.latency_factor, sigma=t.latency_sigma
    )
    pods = []
    for _ in range(PRIMARY_PODS):
        times = _grid(rng, plan.start - LEAD_S, end)
        before = t.rps / PRIMARY_PODS
        after = t.rps * (1 - t.weight) / PRIMARY_PODS
        uptime = rng.uniform(3600, 86400)
        n, e, h = _draw(rng, _expected(times, plan.start, before, after), t.error_rate, base_probs)
        n0 = int(rng.poisson(before * uptime))
        e0 = int(rng.binomial(n0, t.error_rate))
        h0 = rng.multinomial(n0, base_probs)
        pods.append(
            _counters(
                plan.primary, _pod_name(rng, plan.primary), _ip(rng), times,
                n, e, h, start=(n0, e0, h0),
            )
        )
    times = _grid(rng, plan.start - LEAD_S, end)
    error_rate = t.error_rate + plan.scenario.extra_errors
    n, e, h = _draw(
        rng, _expected(times, plan.start, 0.0, t.rps * t.weight), error_rate, canary_probs
    )
    name, ip = _pod_name(rng, plan.canary), _ip(rng)
    if plan.restart is None:
        pods.append(_counters(plan.canary, name, ip, times, n, e, h))
        return pods
    # The restart falls inside grid slot j: the part of that slot's traffic before it is lost.
    at = rng.uniform(plan.start + 30, end - 30)
    j = int(np.searchsorted(times, at))
    share = (at - times[j - 1]) / (times[j] - times[j - 1])
    lost_n = int(rng.binomial(n[j], share))
    lost_e = int(rng.hypergeometric(e[j], n[j] - e[j], lost_n)) if lost_n else 0
    kept = n.copy(), e.copy(), h.copy()
    kept[0][j] -= lost_n
    kept[1][j] -= lost_e
    kept[2][j] -= rng.multivariate_hypergeometric(h[j], lost_n) if lost_n else 0
    old_slots = np.arange(len(times)) < j
    if plan.restart == "in-place":
        pods.append(_counters(plan.canary, name, ip, times, *kept, restart_at=j))
        return pods
    old = tuple(np.where(old_slots[(...,) + (None,) * (a.ndim - 1)], a, 0) for a in kept)
    new = tuple(np.where(old_slots[(...,) + (None,) * (a.ndim - 1)], 0, a) for a in kept)
    first = _counters(plan.canary, name, ip, times, *old)
    first.alive = old_slots
    second = _counters(plan.canary, _pod_name(rng, plan.canary), _ip(rng), times, *new)
    second.alive = ~old_slots
    pods += [first, second]
    return pods


def scraped(
    pods: list[PodCounters], plan: RunPlan, *, every: int, rng: np.random.Generator,
    missed: float = MISSED_SCRAPES,
) -> Iterator[Series]:
    """The series a Prometheus scraping every `every` grid points stored, with missed scrapes."""
    for pod in pods:
        keep = np.zeros(len(pod.times), dtype=bool)
        keep[::every] = True
        keep &= pod.alive & (rng.random(len(pod.times)) >= missed)
        common = (
            ("reporter", "destination"),
            ("destination_workload_namespace", plan.namespace),
            ("destination_workload", pod.workload),
            ("pod", pod.pod),
            ("instance", pod.instance),
        )
        ok_present = keep & (pod.served - pod.bad_served > 0)
        bad_present = keep & (pod.bad_served > 0)
        timed_present = keep & (pod.served > 0)
        for code, values, present in (("200", pod.ok, ok_present), ("503", pod.bad, bad_present)):
            if present.any():
                yield Series(
                    "istio_requests_total", (*common, ("response_code", code)),
                    pod.times[present], values[present],
                )
        if timed_present.any():
            for b, le in enumerate(LE):
                yield Series(
                    "istio_request_duration_milliseconds_bucket", (*common, ("le", le)),
                    pod.times[timed_present], pod.buckets[timed_present, b],
                )


def _grid(rng: np.random.Generator, first: float, last: float) -> np.ndarray:
    """Scrape times every GRID_S from `first` at a random phase (ms), one beyond `last`."""
    phase = round(float(rng.uniform(0, GRID_S)), 3)
    count = math.ceil((last - first - phase) / GRID_S) + 2
    return np.round(first + phase + GRID_S * np.arange(count), 3)


def _expected(times: np.ndarray, start: float, before: float, after: float) -> np.ndarray:
    """Expected requests in each slot (previous grid time, this one]; the first slot is empty."""
    lower = np.concatenate([[times[0]], times[:-1]])
    pre = np.clip(np.minimum(times, start) - lower, 0, None)
    post = np.clip(times - np.maximum(lower, start), 0, None)
    return before * pre + after * post


def _draw(
    rng: np.random.Generator, expected: np.ndarray, error_rate: float, probs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-slot requests, 5xx and latency bucket counts (not cumulative)."""
    n = rng.poisson(expected)
    e = rng.binomial(n, min(error_rate, 1.0))
    h = rng.multinomial(n, probs)
    return n, e, h


def _counters(
    workload: str, pod: str, instance: str, times: np.ndarray, n: np.ndarray, e: np.ndarray,
    h: np.ndarray, *, start: tuple[int, int, np.ndarray] | None = None,
    restart_at: int | None = None,
) -> PodCounters:
    """Cumulative counters from per-slot counts; at `restart_at` they start again from zero."""
    n0, e0, h0 = start or (0, 0, np.zeros(h.shape[1], dtype=np.int64))
    served = np.cumsum(n)
    bad_served = np.cumsum(e)
    cum_h = np.cumsum(h, axis=0)
    if restart_at is not None:
        served = served - np.where(np.arange(len(n)) >= restart_at, served[restart_at - 1], 0)
        bad_served = bad_served - np.where(
            np.arange(len(e)) >= restart_at, bad_served[restart_at - 1], 0
        )
        cum_h = cum_h - np.where(
            (np.arange(len(n)) >= restart_at)[:, None], cum_h[restart_at - 1], 0
        )
    ok = served - bad_served
    return PodCounters(
        workload=workload,
        pod=pod,
        instance=instance,
        times=times,
        ok=ok + (n0 - e0),
        bad=bad_served + e0,
        buckets=np.cumsum(cum_h + h0, axis=1),
        alive=np.ones(len(times), dtype=bool),
        served=served + n0,
        bad_served=bad_served + e0,
    )


_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def _pod_name(rng: np.random.Generator, workload: str) -> str:
    chars = rng.choice(list(_ALPHABET), size=15)
    return f"{workload}-{''.join(chars[:10])}-{''.join(chars[10:])}"


def _ip(rng: np.random.Generator) -> str:
    a, b, c = rng.integers(0, 256, size=3)
    return f"10.{a}.{b}.{c}:15020"
