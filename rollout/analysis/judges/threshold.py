"""Flagger-style judge: each metric's canary value must lie inside its thresholdRange."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rollout.analysis.judges._verdicts import (
    decision,
    no_data,
    query_failed,
    spec_of,
    summary,
    waiting_on,
)
from rollout.analysis.results import Decision, Measurement, MetricOutcome, MetricVerdict, Verdict
from rollout.analysis.wording import show
from rollout.core.analysis_model import MetricSpec, NoData, ThresholdRange


def check(value: float, bounds: ThresholdRange) -> MetricOutcome:
    """LOW below min, HIGH above max, else PASS. NaN never passes: callers treat it as no data."""
    if bounds.min is not None and value < bounds.min:
        return MetricOutcome.LOW
    if bounds.max is not None and value > bounds.max:
        return MetricOutcome.HIGH
    return MetricOutcome.PASS


class ThresholdJudge:
    """One run's checks; a run with any failed metric adds one failed check (as in Flagger)."""

    def __init__(
        self, *, metrics: Sequence[MetricSpec], on_no_data: NoData = "inconclusive"
    ) -> None:
        self._metrics = {metric.name: metric for metric in metrics}
        self._on_no_data = on_no_data
        for metric in metrics:
            if metric.threshold_range is None:
                raise ValueError(f"metric {metric.name!r} has no thresholdRange")

    def judge(self, measurements: Sequence[Measurement]) -> Verdict:
        verdicts = tuple(self._metric(measurement) for measurement in measurements)
        result = decision(verdicts)
        reason = summary(verdicts, passed=f"all {len(verdicts)} metrics within their ranges")
        if result is Decision.INCONCLUSIVE:
            reason = waiting_on(verdicts)
        return Verdict(
            result=result,
            metrics=verdicts,
            reason=reason,
            failed_checks=1 if result is Decision.FAIL else 0,
        )

    def _metric(self, measurement: Measurement) -> MetricVerdict:
        spec = spec_of(self._metrics, measurement)
        if measurement.error is not None:
            return query_failed(measurement, measurement.error)
        if len(measurement.canary) > 1:
            return query_failed(
                measurement,
                f"the query returned {len(measurement.canary)} series where one was expected "
                f"(aggregate it, e.g. with sum(...); query: {measurement.query})",
            )
        if not measurement.canary or not math.isfinite(measurement.canary[0]):
            return no_data(
                measurement, spec, whose=f"canary {measurement.canary_workload}",
                default=self._on_no_data,
            )
        assert spec.threshold_range is not None
        value = measurement.canary[0]
        outcome = check(value, spec.threshold_range)
        return MetricVerdict(
            metric=measurement.metric,
            result=outcome,
            failed=outcome is not MetricOutcome.PASS,
            reason=_reason(measurement, spec.threshold_range, value, outcome),
            canary=value,
            primary=_primary_value(measurement),
            minimum=spec.threshold_range.min,
            maximum=spec.threshold_range.max,
            query=measurement.query,
            window=measurement.window,
        )


def _primary_value(measurement: Measurement) -> float | None:
    return measurement.primary[0] if len(measurement.primary) == 1 else None


def _reason(
    measurement: Measurement, bounds: ThresholdRange, value: float, outcome: MetricOutcome
) -> str:
    unit = measurement.unit
    if outcome is MetricOutcome.LOW:
        verdict = f"below the minimum {show(bounds.min, unit)}"
    elif outcome is MetricOutcome.HIGH:
        verdict = f"above the maximum {show(bounds.max, unit)}"
    else:
        limits = [f"min {show(bounds.min, unit)}"] if bounds.min is not None else []
        limits += [f"max {show(bounds.max, unit)}"] if bounds.max is not None else []
        verdict = f"within range ({', '.join(limits)})"
    primary = _primary_value(measurement)
    context = (
        f"primary {measurement.primary_workload} was {show(primary, unit)}; "
        if primary is not None
        else ""
    )
    return (
        f"{measurement.metric} of canary {measurement.canary_workload} was {show(value, unit)} "
        f"over {measurement.window}, {verdict} ({context}query: {measurement.query})"
    )
