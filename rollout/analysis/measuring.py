"""Runs the analysis queries through a provider and returns plain measurements and counts."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from rollout.errors import InvalidInput

from .errors import InvalidQuery, MetricQueryError
from .model import AnalysisSpec, MetricSpec
from .providers import MetricProvider
from .results import EventCounts, Measurement
from .templates import CountQueries, Workloads, count_queries, metric_queries
from .values import format_duration


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


def count_events(
    *,
    provider: MetricProvider,
    workloads: Workloads,
    window: str,
    slow_request_ms: float | None = None,
    at: datetime | None = None,
) -> dict[str, EventCounts]:
    """Requests, 5xx and (if a bound is given) slow requests on each side over `window`."""
    canary = count_queries(
        namespace=workloads.namespace,
        workload=workloads.canary,
        interval=window,
        slow_request_ms=slow_request_ms,
    )
    primary = count_queries(
        namespace=workloads.namespace,
        workload=workloads.primary,
        interval=window,
        slow_request_ms=slow_request_ms,
    )
    try:
        return _counts(provider, canary=canary, primary=primary, window=window, at=at)
    except (MetricQueryError, InvalidQuery) as exc:
        failed = EventCounts(0, 0, 0, 0, window=window, error=exc.message)
        kinds = ["errors"] if slow_request_ms is None else ["errors", "slow-requests"]
        return dict.fromkeys(kinds, failed)


def _counts(
    provider: MetricProvider,
    *,
    canary: CountQueries,
    primary: CountQueries,
    window: str,
    at: datetime | None,
) -> dict[str, EventCounts]:
    def total(query: str) -> int:
        return _count(provider.query(query, at))

    found = {
        "errors": EventCounts(
            canary_total=total(canary.requests),
            canary_bad=total(canary.errors),
            primary_total=total(primary.requests),
            primary_bad=total(primary.errors),
            window=window,
        )
    }
    if canary.timed is not None:
        canary_timed, canary_slow = _slow(provider, canary, at)
        primary_timed, primary_slow = _slow(provider, primary, at)
        found["slow-requests"] = EventCounts(
            canary_total=canary_timed,
            canary_bad=canary_slow,
            primary_total=primary_timed,
            primary_bad=primary_slow,
            window=window,
        )
    return {kind: _clamped(counts) for kind, counts in found.items()}


def _count(values: list[float]) -> int:
    # increase() extrapolates to the window's edges, so counts come back fractional.
    return max(round(sum(values)), 0)


def _slow(provider: MetricProvider, queries: CountQueries, at: datetime | None) -> tuple[int, int]:
    """Timed requests and those slower than the bucket bound `queries.le`."""
    assert queries.timed is not None and queries.timed_under is not None
    timed = provider.query(queries.timed, at)
    under = provider.query(queries.timed_under, at)
    if timed and not under:
        raise InvalidInput(
            f"the latency histogram has no bucket le={queries.le!r}",
            hint="set slowRequestMs to one of the histogram's bucket bounds "
            "(Istio's defaults include 100, 250, 500, 1000, 2500)",
        )
    return _count(timed), _count(timed) - _count(under)


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
