"""Verdict pieces every judge shares: failed queries, missing data and the run's summary."""

from __future__ import annotations

from collections.abc import Sequence

from rollout.analysis.results import Decision, Measurement, MetricOutcome, MetricVerdict
from rollout.core.analysis_model import MetricSpec, NoData


def spec_of(metrics: dict[str, MetricSpec], measurement: Measurement) -> MetricSpec:
    spec = metrics.get(measurement.metric)
    if spec is None:
        raise ValueError(f"no metric named {measurement.metric!r} in the analysis")
    return spec


def query_failed(measurement: Measurement, error: str) -> MetricVerdict:
    return MetricVerdict(
        metric=measurement.metric,
        result=MetricOutcome.ERROR,
        failed=True,
        reason=f"{measurement.metric} could not be measured over {measurement.window}: {error}",
        query=measurement.query,
        window=measurement.window,
    )


def no_data(
    measurement: Measurement, spec: MetricSpec, *, whose: str, default: NoData
) -> MetricVerdict:
    """Never a pass: a failed check, or inconclusive (the step waits) as onNoData says."""
    policy = spec.on_no_data or default
    counted = policy == "fail"
    effect = "counted as a failed check" if counted else "inconclusive, the step waits"
    return MetricVerdict(
        metric=measurement.metric,
        result=MetricOutcome.NO_DATA,
        failed=counted,
        reason=(
            f"{measurement.metric} had no data for {whose} over {measurement.window}, "
            f"{effect} (onNoData: {policy}; query: {measurement.query})"
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


def decision(verdicts: Sequence[MetricVerdict]) -> Decision:
    """FAIL if any metric failed, else INCONCLUSIVE if any had no data, else PASS."""
    if any(verdict.failed for verdict in verdicts):
        return Decision.FAIL
    if any(verdict.result is MetricOutcome.NO_DATA for verdict in verdicts):
        return Decision.INCONCLUSIVE
    return Decision.PASS


def waiting_on(verdicts: Sequence[MetricVerdict]) -> str:
    """Why a run without failures is still inconclusive: each metric that had no data."""
    return "inconclusive: " + "; ".join(
        v.reason for v in verdicts if v.result is MetricOutcome.NO_DATA and not v.failed
    )
