"""Simulated rollouts: the project's own judges and failed-check rule, fed simulated traffic.

Each run walks the schedule as the driver does: every analysis is judged by the real judge
class (ThresholdJudge, SequentialJudge, ComparativeJudge, plus the absolute guards (guarded)
for the relative two) and counted by `add_check`; a passing analysis moves to the next step, a
failed or inconclusive one holds the step, and `threshold` failed checks roll back.

Traffic per analysis slice (the interval, or the comparative judge's step): requests ~
Poisson(rps x share x seconds) on each side, 5xx ~ Binomial, latency lognormal (sigma SIGMA)
counted into Istio's default histogram buckets. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
from scipy import stats

from rollout.analysis import (
    ComparativeJudge,
    Decision,
    EventCounts,
    JudgeState,
    Measurement,
    SequentialJudge,
    ThresholdJudge,
    Verdict,
    Workloads,
    guarded,
    metric_queries,
)
from rollout.core.analysis_model import AnalysisSpec, MetricSpec
from rollout.core.durations import format_duration, parse_duration
from rollout.core.errors import InvalidInput
from rollout.core.tally import Tally, add_check

# Istio's default istio_request_duration_milliseconds buckets; +Inf follows.
ISTIO_BUCKETS_MS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
                    60000, 300000, 600000, 1800000, 3600000)
SIGMA = 0.5
Z99 = float(stats.norm.ppf(0.99))
SUCCESS, DURATION = "request-success-rate", "request-duration"

_BOUNDS = np.array([*ISTIO_BUCKETS_MS, math.inf])
_PASSED = {Decision.PASS: True, Decision.FAIL: False, Decision.INCONCLUSIVE: None}
_END = datetime.fromtimestamp(0, UTC)


# -- the traffic model --------------------------------------------------------------------


def bucket_probabilities(median_ms: float, factor: float = 1.0) -> np.ndarray:
    """P(a request falls in each Istio bucket) for a lognormal latency times `factor`."""
    cdf = stats.lognorm.cdf(_BOUNDS, s=SIGMA, scale=median_ms * factor)
    return np.diff(np.concatenate([[0.0], cdf]))


def with_slow_share(probs: np.ndarray, bound: int, added: float) -> np.ndarray:
    """`probs` with a share `added` of requests moved from the buckets up to index `bound` to
    those above it, each side keeping its shape."""
    under, over = probs[: bound + 1].sum(), probs[bound + 1:].sum()
    moved = probs.copy()
    moved[: bound + 1] *= (under - added) / under if under > 0 else 0.0
    if over > 0:
        moved[bound + 1:] *= (over + added) / over
    else:
        moved[bound + 1] = added
    return moved


def histogram_quantile(q: float, cumulative: np.ndarray) -> np.ndarray:
    """Prometheus' histogram_quantile over the last axis of cumulative bucket counts (+Inf last):
    linear inside the bucket holding rank q; NaN without requests."""
    total = cumulative[..., -1]
    rank = q * total
    index = np.minimum((cumulative < rank[..., None]).sum(axis=-1), len(_BOUNDS) - 1)
    below = np.where(index > 0, np.take_along_axis(
        cumulative, np.maximum(index - 1, 0)[..., None], axis=-1)[..., 0], 0.0)
    inside = np.take_along_axis(cumulative, index[..., None], axis=-1)[..., 0] - below
    lower = np.where(index > 0, _BOUNDS[np.maximum(index - 1, 0)], 0.0)
    upper = _BOUNDS[index]
    with np.errstate(invalid="ignore", divide="ignore"):
        value = lower + (upper - lower) * np.where(inside > 0, (rank - below) / inside, 1.0)
    value = np.where(index == len(_BOUNDS) - 1, _BOUNDS[-2], value)
    return np.where(total > 0, value, np.nan)


@dataclass(frozen=True)
class Canary:
    error_rate: float
    probs: np.ndarray


@dataclass(frozen=True)
class _Draw:
    """One analysis of every active run: arrays indexed [run, slice] (buckets cumulative,
    [run, slice, bucket]; None when the judge reads no latency)."""

    canary_requests: np.ndarray
    canary_errors: np.ndarray
    primary_requests: np.ndarray
    primary_errors: np.ndarray
    canary_buckets: np.ndarray | None
    primary_buckets: np.ndarray | None

    def totals(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (self.canary_requests.sum(1), self.canary_errors.sum(1),
                self.primary_requests.sum(1), self.primary_errors.sum(1))


def _success(requests: np.ndarray, errors: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(requests > 0, 100.0 * (requests - errors) / requests, np.nan)


# -- the judges, fed simulated data -------------------------------------------------------


class _Analyst(Protocol):
    latency_sides: int  # 0: no latency read, 1: the canary's, 2: both sides'
    slice_seconds: float  # what one simulated slice of traffic covers

    def fresh(self) -> Any: ...

    def slices(self, analysis: int) -> int: ...

    def prepare(self, draw: _Draw) -> Any: ...

    def judge(self, state: Any, prepared: Any, run: int) -> tuple[Verdict, Any]: ...


class _Canned:
    """A metric provider whose answers are the simulated values of one analysis, by query."""

    def __init__(self, values: dict[str, float]) -> None:
        self._values = values

    def query(self, promql: str, at: datetime | None = None) -> list[float]:
        value = self._values.get(promql)
        return [] if value is None or math.isnan(value) else [value]

    def query_series(self, promql: str, at: datetime | None = None) -> list[Any]:
        return []

    def query_range(self, promql: str, start: datetime, end: datetime, step: str
                    ) -> list[list[float]]:
        return []

    def is_online(self) -> bool:
        return True


def _passing_value(metric: MetricSpec) -> float:
    """A custom metric is not modelled: it reads as healthy, at the edge of its range."""
    bounds = metric.threshold_range
    if bounds is None:
        return 1.0
    value = bounds.min if bounds.min is not None else bounds.max
    assert value is not None  # a thresholdRange sets min, max or both
    return value


class _Metrics:
    """The spec's metrics with their rendered queries, and simulated values for each."""

    def __init__(self, spec: AnalysisSpec, workloads: Workloads) -> None:
        self.spec = spec
        self.workloads = workloads
        self.queries = {m.name: metric_queries(m, workloads=workloads,
                                               interval=spec.interval_of(m),
                                               templates=spec.templates)
                        for m in spec.metrics}
        self.window = spec.interval
        self.reads_latency = any(m.builtin and m.name == DURATION for m in spec.metrics)
        self.guards = any(m.threshold_range is not None for m in spec.metrics)

    def canary_values(self, success: float, p99: float) -> dict[str, float]:
        return {m.name: success if m.builtin and m.name == SUCCESS
                else p99 if m.builtin and m.name == DURATION else _passing_value(m)
                for m in self.spec.metrics}

    def guarded(self, verdict: Verdict, success: float, p99: float) -> Verdict:
        if not self.guards:
            return verdict
        values = self.canary_values(success, p99)
        canned = _Canned({self.queries[name].canary: v for name, v in values.items()})
        return guarded(verdict, self.spec, canned, self.workloads, end=_END)


def _interval_values(metrics: _Metrics, draw: _Draw) -> tuple[np.ndarray, np.ndarray]:
    requests, errors, _, _ = draw.totals()
    success = _success(requests, errors)
    if draw.canary_buckets is None:
        return success, np.full(len(requests), np.nan)
    return success, histogram_quantile(0.99, draw.canary_buckets.sum(1))


class _Threshold:
    def __init__(self, metrics: _Metrics) -> None:
        self.metrics = metrics
        self.latency_sides = 1 if metrics.reads_latency else 0
        self.slice_seconds = parse_duration(metrics.spec.interval)
        self._judge = ThresholdJudge(metrics=metrics.spec.metrics,
                                     on_no_data=metrics.spec.on_no_data)

    def fresh(self) -> None:
        return None

    def slices(self, analysis: int) -> int:
        return 1

    def prepare(self, draw: _Draw) -> tuple[np.ndarray, np.ndarray]:
        return _interval_values(self.metrics, draw)

    def judge(self, state: None, prepared: tuple[np.ndarray, np.ndarray], run: int
              ) -> tuple[Verdict, None]:
        success, p99 = prepared
        values = self.metrics.canary_values(float(success[run]), float(p99[run]))
        measurements = tuple(
            Measurement(metric=name, query=self.metrics.queries[name].canary,
                        window=self.metrics.window, canary_workload=self.metrics.workloads.canary,
                        canary=() if math.isnan(value) else (value,),
                        unit=self.metrics.queries[name].unit)
            for name, value in values.items())
        return self._judge.judge(measurements), None


class _Sequential:
    def __init__(self, metrics: _Metrics) -> None:
        spec = metrics.spec
        self.metrics = metrics
        self._judge = SequentialJudge.from_spec(spec.judge, on_no_data=spec.on_no_data)
        self.slow_ms = spec.judge.slow_request_ms
        self._bound = bucket_index(self.slow_ms) if self.slow_ms is not None else None
        self.latency_sides = 2 if self.slow_ms is not None else 1 if metrics.reads_latency else 0
        self.slice_seconds = parse_duration(spec.interval)

    def fresh(self) -> JudgeState:
        return JudgeState()

    def slices(self, analysis: int) -> int:
        return 1

    def prepare(self, draw: _Draw) -> tuple[np.ndarray, ...]:
        totals = draw.totals()
        success, p99 = _interval_values(self.metrics, draw)
        if self._bound is None or draw.canary_buckets is None or draw.primary_buckets is None:
            return (*totals, success, p99)
        canary_slow = totals[0] - draw.canary_buckets.sum(1)[:, self._bound]
        primary_slow = totals[2] - draw.primary_buckets.sum(1)[:, self._bound]
        return (*totals, success, p99, canary_slow, primary_slow)

    def judge(self, state: JudgeState, prepared: tuple[np.ndarray, ...], run: int
              ) -> tuple[Verdict, JudgeState]:
        cn, ce, pn, pe, success, p99, *slow = (column[run] for column in prepared)
        window = self.metrics.window
        observations = {"errors": EventCounts(int(cn), int(ce), int(pn), int(pe), window=window)}
        if slow:
            observations["slow-requests"] = EventCounts(int(cn), int(slow[0]), int(pn),
                                                        int(slow[1]), window=window)
        state, verdict = self._judge.judge(state=state, observations=observations)
        return self.metrics.guarded(verdict, float(success), float(p99)), state


class _Comparative:
    """Samples one per judge step, accumulated from the first analysis in the JudgeState."""

    def __init__(self, metrics: _Metrics) -> None:
        spec = metrics.spec
        self.metrics = metrics
        self._step = parse_duration(spec.judge.step)
        self._interval = parse_duration(spec.interval)
        self._judge = ComparativeJudge(spec=spec.judge, metrics=spec.metrics,
                                       on_no_data=spec.on_no_data)
        self.latency_sides = 2 if metrics.reads_latency else 0
        self.slice_seconds = self._step

    def fresh(self) -> JudgeState:
        return JudgeState()

    def slices(self, analysis: int) -> int:
        # Analyses one interval apart take floor(n x interval / step) samples by the n-th.
        def taken(n: int) -> int:
            return math.floor(n * self._interval / self._step + 1e-6)
        return max(taken(analysis) - taken(analysis - 1), 0)

    def prepare(self, draw: _Draw) -> tuple[np.ndarray, ...]:
        success, p99 = _interval_values(self.metrics, draw)
        canary = _success(draw.canary_requests, draw.canary_errors)
        primary = _success(draw.primary_requests, draw.primary_errors)
        if draw.canary_buckets is None or draw.primary_buckets is None:
            nan = np.full(canary.shape, np.nan)
            return canary, primary, nan, nan, success, p99
        return (canary, primary, histogram_quantile(0.99, draw.canary_buckets),
                histogram_quantile(0.99, draw.primary_buckets), success, p99)

    def judge(self, state: JudgeState, prepared: tuple[np.ndarray, ...], run: int
              ) -> tuple[Verdict, JudgeState]:
        c_success, p_success, c_p99, p_p99, success, p99 = (column[run] for column in prepared)
        fresh: dict[str, tuple[Sequence[float], Sequence[float]]] = {}
        for metric in self.metrics.spec.metrics:
            if metric.builtin and metric.name == SUCCESS:
                fresh[metric.name] = (c_success.tolist(), p_success.tolist())
            elif metric.builtin and metric.name == DURATION:
                fresh[metric.name] = (c_p99.tolist(), p_p99.tolist())
            else:
                same = [_passing_value(metric)] * len(c_success)
                fresh[metric.name] = (same, same)
        until = (state.sampled_until or 0.0) + len(c_success) * self._step
        state = state.with_samples(fresh, start=0.0, until=until)
        measurements = []
        for metric in self.metrics.spec.metrics:
            kept = state.samples[metric.name]
            queries = self.metrics.queries[metric.name]
            measurements.append(Measurement(
                metric=metric.name, query=queries.canary, window=format_duration(until),
                canary_workload=self.metrics.workloads.canary, canary=kept.canary,
                primary=kept.primary, primary_query=queries.primary,
                primary_workload=self.metrics.workloads.primary, unit=queries.unit))
        verdict = self._judge.judge(measurements)
        return self.metrics.guarded(verdict, float(success), float(p99)), state


def bucket_index(slow_ms: float) -> int:
    for index, bound in enumerate(ISTIO_BUCKETS_MS):
        if math.isclose(bound, slow_ms):
            return index
    raise InvalidInput(
        f"judge.slowRequestMs {slow_ms:g} is not a bucket of Istio's latency histogram",
        hint="use one of " + ", ".join(f"{b:g}" for b in ISTIO_BUCKETS_MS[:12])
        + " (the sequential judge counts requests above that bucket)")


# Each judge kind fed simulated traffic; planning a kind missing here is refused.
_ANALYSTS: dict[str, type[_Threshold | _Sequential | _Comparative]] = {
    "threshold": _Threshold,
    "sequential": _Sequential,
    "comparative": _Comparative,
}


def _analyst(spec: AnalysisSpec, workloads: Workloads) -> _Analyst:
    analyst = _ANALYSTS.get(spec.judge.kind)
    if analyst is None:
        raise InvalidInput(
            f"the {spec.judge.kind} judge cannot be simulated; the kinds that can are "
            f"{', '.join(sorted(_ANALYSTS))}",
            hint="plan with one of those judges, or backtest this one (rollout analyze)")
    return analyst(_Metrics(spec, workloads))


# -- rollouts ------------------------------------------------------------------------------


class Simulation:
    """`runs` seeded rollouts of the schedule `weights` (percent) under `spec`, at `rps` requests
    per second in all, the primary failing `base_error_rate` of them, latency lognormal."""

    def __init__(self, *, spec: AnalysisSpec, weights: Sequence[int], rps: float,
                 base_error_rate: float, median_ms: float, workloads: Workloads, runs: int,
                 seed: int) -> None:
        self.spec = spec
        self.analyst = _analyst(spec, workloads)
        self.weights = np.array(weights, dtype=float) / 100
        self.rps = rps
        self.base_error_rate = base_error_rate
        self.runs = runs
        self.seed = seed
        self.interval = parse_duration(spec.interval)
        self.base_probs = bucket_probabilities(median_ms)
        self.analyses = 0

    @property
    def most_rounds(self) -> int:
        # At most one pass per step; every other analysis adds a failed check, or is one of at
        # most maxInconclusive inconclusive ones in a row before one does.
        return len(self.weights) + self.spec.threshold * (self.spec.max_inconclusive + 1)

    def rollback_steps(self, canary: Canary, *, upto: int, stream: int) -> np.ndarray:
        """The step (0-based) at which each run stopped (`upto` for runs that did not within
        the first `upto` steps)."""
        rng = np.random.default_rng([self.seed, stream])
        step = np.zeros(self.runs, dtype=int)
        stopped = np.full(self.runs, upto)
        done = np.zeros(self.runs, dtype=bool)
        states = [self.analyst.fresh() for _ in range(self.runs)]
        tallies = [Tally()] * self.runs
        for analysis in range(1, self.most_rounds + 1):
            active = np.flatnonzero(~done & (step < upto))
            if not active.size:
                break
            draw = self._draw(rng, self.weights[step[active]], canary,
                              self.analyst.slices(analysis))
            prepared = self.analyst.prepare(draw)
            for row, run in enumerate(active):
                verdict, states[run] = self.analyst.judge(states[run], prepared, row)
                tally = add_check(tallies[run], passed=_PASSED[verdict.result],
                                  failed_checks=verdict.failed_checks, final=verdict.final,
                                  threshold=self.spec.threshold,
                                  max_inconclusive=self.spec.max_inconclusive)
                tallies[run] = tally
                if tally.rolls_back(self.spec.threshold):
                    stopped[run], done[run] = step[run], True
                elif verdict.result is Decision.PASS:
                    step[run] += 1
            self.analyses += active.size
        return stopped

    def detection(self, canary: Canary, *, upto: int, stream: int) -> np.ndarray:
        """Share of runs stopped by the end of each of the first `upto` steps."""
        stopped = self.rollback_steps(canary, upto=upto, stream=stream)
        return np.array([(stopped <= k).mean() for k in range(upto)])

    def _draw(self, rng: np.random.Generator, weights: np.ndarray, canary: Canary,
              slices: int) -> _Draw:
        shape = (len(weights), slices)
        seconds = self.analyst.slice_seconds
        rps, base = self.rps, self.base_error_rate
        c_requests = rng.poisson(np.broadcast_to((rps * weights * seconds)[:, None], shape))
        p_requests = rng.poisson(np.broadcast_to((rps * (1 - weights) * seconds)[:, None], shape))
        c_errors = rng.binomial(c_requests, min(canary.error_rate, 1.0))
        p_errors = rng.binomial(p_requests, base)
        sides = self.analyst.latency_sides
        c_buckets = rng.multinomial(c_requests, canary.probs).cumsum(-1) if sides else None
        p_buckets = (rng.multinomial(p_requests, self.base_probs).cumsum(-1)
                     if sides == 2 else None)
        return _Draw(c_requests, c_errors, p_requests, p_errors, c_buckets, p_buckets)
