"""Covers the threshold judge: range checks, no data / NaN / errors never pass, reasons, JSON."""

from __future__ import annotations

import json
import math

import pytest

from rollout.analysis import Decision, Measurement, MetricOutcome, ThresholdJudge
from rollout.analysis.judges.threshold import check
from rollout.core.analysis_model import MetricSpec, ThresholdRange

SUCCESS = MetricSpec(name="request-success-rate", thresholdRange={"min": 99})
DURATION = MetricSpec(name="request-duration", thresholdRange={"max": 500})
BOTH = ThresholdRange(min=1, max=2)


def _measured(metric: str, *values: float, error: str | None = None) -> Measurement:
    return Measurement(
        metric=metric,
        query=f"query-of-{metric}",
        window="1m",
        canary_workload="demo",
        canary=values,
        primary=(99.8,),
        primary_workload="demo-primary",
        unit="%" if metric == "request-success-rate" else "ms",
        error=error,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.5, MetricOutcome.LOW), (1, MetricOutcome.PASS), (2, MetricOutcome.PASS),
     (2.01, MetricOutcome.HIGH), (math.inf, MetricOutcome.HIGH), (-math.inf, MetricOutcome.LOW)],
)  # fmt: skip
def test_bounds_are_inclusive(value: float, expected: MetricOutcome) -> None:
    assert check(value, BOTH) is expected


def test_a_value_below_the_minimum_fails_with_a_readable_reason() -> None:
    judge = ThresholdJudge(metrics=[SUCCESS, DURATION])
    verdict = judge.judge(
        [_measured("request-success-rate", 93.12), _measured("request-duration", 120)]
    )
    assert verdict.result is Decision.FAIL and verdict.failed_checks == 1
    low = verdict.metrics[0]
    assert low.result is MetricOutcome.LOW and low.failed
    assert low.canary == 93.12 and low.minimum == 99
    assert low.reason == (
        "request-success-rate of canary demo was 93.12% over 1m, below the minimum 99% "
        "(primary demo-primary was 99.8%; query: query-of-request-success-rate)"
    )
    assert verdict.metrics[1].result is MetricOutcome.PASS and not verdict.metrics[1].failed
    assert verdict.reason.startswith("1 of 2 metrics failed: request-success-rate of canary")


def test_several_failing_metrics_still_add_one_failed_check() -> None:
    judge = ThresholdJudge(metrics=[SUCCESS, DURATION])
    verdict = judge.judge(
        [_measured("request-success-rate", 50), _measured("request-duration", 900)]
    )
    assert verdict.failed_checks == 1
    assert [m.result for m in verdict.failed_metrics] == [MetricOutcome.LOW, MetricOutcome.HIGH]


@pytest.mark.parametrize("values", [(), (math.nan,), (math.inf,)])
def test_no_data_nan_and_inf_are_inconclusive_by_default(values: tuple[float, ...]) -> None:
    verdict = ThresholdJudge(metrics=[SUCCESS]).judge([_measured("request-success-rate", *values)])
    assert verdict.result is Decision.INCONCLUSIVE and verdict.failed_checks == 0
    assert verdict.metrics[0].result is MetricOutcome.NO_DATA
    assert "onNoData: inconclusive" in verdict.reason


def test_no_data_can_be_a_failed_check() -> None:
    strict = MetricSpec(name="request-success-rate", thresholdRange={"min": 99}, onNoData="fail")
    verdict = ThresholdJudge(metrics=[strict]).judge([_measured("request-success-rate")])
    assert verdict.result is Decision.FAIL and verdict.failed_checks == 1
    assert "onNoData: fail" in verdict.metrics[0].reason


def test_every_metric_without_data_is_never_a_pass() -> None:
    # Finding 6: this used to read "all 1 metrics within their ranges".
    verdict = ThresholdJudge(metrics=[SUCCESS, DURATION], on_no_data="inconclusive").judge(
        [_measured("request-success-rate"), _measured("request-duration")])
    assert verdict.result is Decision.INCONCLUSIVE
    assert "within their ranges" not in verdict.reason


def test_query_errors_and_many_series_fail() -> None:
    judge = ThresholdJudge(metrics=[SUCCESS, DURATION])
    verdict = judge.judge(
        [
            _measured("request-success-rate", error="could not reach Prometheus"),
            _measured("request-duration", 1.0, 2.0),
        ]
    )
    assert [m.result for m in verdict.metrics] == [MetricOutcome.ERROR, MetricOutcome.ERROR]
    assert "could not reach Prometheus" in verdict.metrics[0].reason
    assert "returned 2 series" in verdict.metrics[1].reason


def test_verdicts_serialise_to_json() -> None:
    verdict = ThresholdJudge(metrics=[SUCCESS]).judge([_measured("request-success-rate", math.nan)])
    data = json.loads(json.dumps(verdict.to_dict(), allow_nan=False))
    assert data["result"] == "INCONCLUSIVE" and data["metrics"][0]["result"] == "NO_DATA"
    assert json.dumps(_measured("x", math.nan).to_dict(), allow_nan=False)


def test_every_metric_needs_a_range() -> None:
    with pytest.raises(ValueError, match="thresholdRange"):
        ThresholdJudge(metrics=[MetricSpec(name="request-duration")])
