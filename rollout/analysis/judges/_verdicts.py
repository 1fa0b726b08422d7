"""Verdict pieces every judge shares: failed queries, missing data and the run's summary."""

from __future__ import annotations

from collections.abc import Sequence

from ..model import MetricSpec
from ..results import Measurement, MetricVerdict, Outcome


def spec_of(metrics: dict[str, MetricSpec], measurement: Measurement) -> MetricSpec:
    spec = metrics.get(measurement.metric)
    if spec is None:
        raise ValueError(f"no metric named {measurement.metric!r} in the analysis")
    return spec


def query_failed(measurement: Measurement, error: str) -> MetricVerdict:
    return MetricVerdict(
        metric=measurement.metric,
        result=Outcome.ERROR,
        failed=True,
        reason=f"{measurement.metric} could not be measured over {measurement.window}: {error}",
        query=measurement.query,
        window=measurement.window,
    )


def no_data(measurement: Measurement, spec: MetricSpec, *, whose: str) -> MetricVerdict:
    counted = spec.on_no_data == "fail"
    effect = "counted as a failure" if counted else "ignored"
    return MetricVerdict(
        metric=measurement.metric,
        result=Outcome.NO_DATA,
        failed=counted,
        reason=(
            f"{measurement.metric} had no data for {whose} over {measurement.window}, "
            f"{effect} (onNoData: {spec.on_no_data}; query: {measurement.query})"
        ),
        query=measurement.query,
        window=measurement.window,
    )


def summary(verdicts: Sequence[MetricVerdict], *, passed: str, lead: str = "") -> str:
    """`passed` if nothing failed, else each failed metric's reason after `lead`."""
    failed = [verdict for verdict in verdicts if verdict.failed]
    if not failed:
        return passed
    head = f"{lead}; " if lead else ""
    head += f"{len(failed)} of {len(verdicts)} metrics failed: "
    return head + "; ".join(verdict.reason for verdict in failed)
