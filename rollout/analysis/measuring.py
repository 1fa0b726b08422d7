"""Runs the analysis queries through a provider and returns plain measurements and counts."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from rollout.analysis.counters import (
    CounterQueries,
    Increase,
    Reading,
    UnreadableCounter,
    advance,
    counter_queries,
    read,
)
from rollout.analysis.errors import InvalidQuery, MetricQueryError
from rollout.analysis.providers import MetricProvider
from rollout.analysis.results import EventCounts, Measurement
from rollout.analysis.templates import Workloads, metric_queries
from rollout.core.analysis_model import AnalysisSpec, MetricSpec
from rollout.core.durations import format_duration


def measure(
    *,
    analysis: AnalysisSpec,
    provider: MetricProvider,
    workloads: Workloads,
    at: datetime | None = None,
    with_primary: bool = True,
) -> tuple[Measurement, ...]:
    """One instant value per metric over its interval (for the threshold judge)."""
    results = []
    for metric in analysis.metrics:
        base = _measurement(metric, analysis=analysis, workloads=workloads)
        canary, error = _instant(provider, base.query, at)
        primary: tuple[float, ...] = ()
        primary_error = None
        if with_primary and base.primary_query is not None:
            primary, primary_error = _instant(provider, base.primary_query, at)
        else:
            base = replace(base, primary_query=None, primary_workload=None)
        results.append(
            replace(base, canary=canary, primary=primary, error=error, primary_error=primary_error)
        )
    return tuple(results)


def sample(
    *,
    analysis: AnalysisSpec,
    provider: MetricProvider,
    workloads: Workloads,
    start: datetime,
    end: datetime,
) -> tuple[Measurement, ...]:
    """Each metric sampled every judge step over [start, end] on both sides (comparative judge).

    The query's own window is the step, so samples cover disjoint time and are not the same
    requests counted twice (the Mann-Whitney test assumes independent samples).
    """
    step = analysis.judge.step
    results = []
    for metric in analysis.metrics:
        base = _measurement(metric, analysis=analysis, workloads=workloads, interval=step)
        assert base.primary_query is not None
        canary, error = _ranged(provider, base.query, start=start, end=end, step=step)
        primary, primary_error = _ranged(
            provider, base.primary_query, start=start, end=end, step=step
        )
        window = format_duration((end - start).total_seconds())
        results.append(
            replace(
                base,
                window=window,
                canary=canary,
                primary=primary,
                error=error,
                primary_error=primary_error,
            )
        )
    return tuple(results)


def read_counters(
    *, provider: MetricProvider, workloads: Workloads, slow_request_ms: float | None,
    at: datetime,
) -> tuple[Reading, Reading]:
    """The last value of every raw counter series of the canary and the primary at `at`."""

    def side(workload: str) -> Reading:
        queries = _counters(workloads, workload, slow_request_ms)
        return read(
            at=at.timestamp(),
            requests=provider.query_series(queries.requests, at),
            buckets=provider.query_series(queries.buckets, at) if queries.buckets else [],
            slow_request_ms=slow_request_ms,
        )

    return side(workloads.canary), side(workloads.primary)


def count_events(
    *,
    provider: MetricProvider,
    workloads: Workloads,
    slow_request_ms: float | None,
    start: datetime,
    end: datetime,
    since: tuple[Reading, Reading] | None = None,
) -> tuple[dict[str, EventCounts], tuple[Reading, Reading] | None]:
    """Requests, 5xx and (if a bound is given) slow requests on each side, counted exactly.

    The counts run from `since` (the readings the last count ended with) or, at the first
    count, from the counters at `start`, to `end`, over every raw sample in between. Returns
    the counts and the readings to continue from next time (None when `end` could not be
    read: the next count then covers this interval too).
    """
    kinds = ["errors"] if slow_request_ms is None else ["errors", "slow-requests"]
    window = format_duration(_seconds(start, end))
    try:
        before = since or read_counters(
            provider=provider, workloads=workloads, slow_request_ms=slow_request_ms, at=start
        )
        window = format_duration(_seconds(datetime.fromtimestamp(before[0].at, UTC), end))
        canary, canary_after = _advance(provider, workloads, workloads.canary, before[0],
                                        slow_request_ms, end)
        primary, primary_after = _advance(provider, workloads, workloads.primary, before[1],
                                          slow_request_ms, end)
    except (MetricQueryError, InvalidQuery) as exc:
        failed = EventCounts(0, 0, 0, 0, window=window, error=exc.message)
        return dict.fromkeys(kinds, failed), since
    except UnreadableCounter as exc:
        missing = EventCounts(0, 0, 0, 0, window=window, missing=str(exc))
        return dict.fromkeys(kinds, missing), since
    found = {
        "errors": _clamped(
            EventCounts(
                canary_total=_whole(canary.requests),
                canary_bad=_whole(canary.errors),
                primary_total=_whole(primary.requests),
                primary_bad=_whole(primary.errors),
                window=window,
            )
        )
    }
    if slow_request_ms is not None:
        found["slow-requests"] = _clamped(
            EventCounts(
                canary_total=_whole(canary.timed),
                canary_bad=_whole(canary.timed) - _whole(canary.under),
                primary_total=_whole(primary.timed),
                primary_bad=_whole(primary.timed) - _whole(primary.under),
                window=window,
            )
        )
    return found, (canary_after, primary_after)


def _counters(workloads: Workloads, workload: str, slow_request_ms: float | None
              ) -> CounterQueries:
    return counter_queries(namespace=workloads.namespace, workload=workload,
                           timed=slow_request_ms is not None)


def _advance(provider: MetricProvider, workloads: Workloads, workload: str, before: Reading,
             slow_request_ms: float | None, end: datetime) -> tuple[Increase, Reading]:
    queries = _counters(workloads, workload, slow_request_ms).over(end.timestamp() - before.at)
    return advance(
        before,
        at=end.timestamp(),
        requests=provider.query_series(queries.requests, end),
        buckets=provider.query_series(queries.buckets, end) if queries.buckets else [],
        slow_request_ms=slow_request_ms,
    )


def _whole(count: float) -> int:
    # Envoy's counters are whole numbers; rounding only removes float noise.
    return max(round(count), 0)


def _seconds(start: datetime, end: datetime) -> float:
    return max((end - start).total_seconds(), 0.001)


def _clamped(counts: EventCounts) -> EventCounts:
    return replace(
        counts,
        canary_bad=min(max(counts.canary_bad, 0), counts.canary_total),
        primary_bad=min(max(counts.primary_bad, 0), counts.primary_total),
    )


def _measurement(
    metric: MetricSpec, *, analysis: AnalysisSpec, workloads: Workloads, interval: str | None = None
) -> Measurement:
    window = interval or analysis.interval_of(metric)
    queries = metric_queries(
        metric, workloads=workloads, interval=window, templates=analysis.templates
    )
    return Measurement(
        metric=metric.name,
        query=queries.canary,
        window=window,
        canary_workload=workloads.canary,
        canary=(),
        primary_query=queries.primary,
        primary_workload=workloads.primary,
        unit=queries.unit,
    )


def _instant(
    provider: MetricProvider, query: str, at: datetime | None
) -> tuple[tuple[float, ...], str | None]:
    try:
        return tuple(provider.query(query, at)), None
    except (MetricQueryError, InvalidQuery) as exc:
        return (), exc.message


def _ranged(
    provider: MetricProvider, query: str, *, start: datetime, end: datetime, step: str
) -> tuple[tuple[float, ...], str | None]:
    try:
        series = provider.query_range(query, start, end, step)
    except (MetricQueryError, InvalidQuery) as exc:
        return (), exc.message
    return tuple(value for values in series for value in values), None
