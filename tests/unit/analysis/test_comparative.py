"""Covers the comparative judge: Mann-Whitney, Hodges-Lehmann, effect guard, edge data, score."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rollout.analysis import ComparativeJudge, Decision, Measurement, MetricOutcome
from rollout.analysis.judges.comparative import compare, hodges_lehmann
from rollout.core.analysis_model import JudgeSpec, MetricSpec

LOW_SIDE = [1.0, 2.0, 3.0, 4.0, 5.0]
HIGH_SIDE = [6.0, 7.0, 8.0, 9.0, 10.0]


def _compare(canary: list[float], primary: list[float], **kwargs: object):
    options: dict[str, object] = {
        "worse": "higher-is-worse", "alpha": 0.01, "min_effect": 0.0, "confidence": 0.98
    }  # fmt: skip
    return compare(canary, primary, **(options | kwargs))  # type: ignore[arg-type]


def test_a_clear_increase_is_high_with_the_exact_p_value() -> None:
    found = _compare(HIGH_SIDE, LOW_SIDE)
    assert found is not None and found.outcome is MetricOutcome.HIGH
    assert found.p_value == pytest.approx(1 / 252)  # one ordering out of C(10, 5)
    assert (found.shift, found.low, found.high) == (5.0, 2.0, 8.0)
    assert found.effect == pytest.approx(5 / 3)  # means 8 vs 3, relative (8 - 3) / 3


def test_hodges_lehmann_is_the_median_pairwise_difference() -> None:
    shift, low, high = hodges_lehmann(
        np.array([10.0, 12.0]), np.array([1.0, 2.0, 3.0]), confidence=0.9
    )
    # differences 7 8 9 9 10 11; too few samples for 90%, so the interval is the whole range
    assert shift == 9.0 and (low, high) == (7.0, 11.0)


def test_direction_decides_what_counts_as_worse() -> None:
    assert _compare(HIGH_SIDE, LOW_SIDE, worse="lower-is-worse").outcome is MetricOutcome.PASS
    assert _compare(LOW_SIDE, HIGH_SIDE, worse="lower-is-worse").outcome is MetricOutcome.LOW
    assert _compare(LOW_SIDE, HIGH_SIDE, worse="either").outcome is MetricOutcome.LOW
    assert _compare(HIGH_SIDE * 2, LOW_SIDE * 2, worse="either").outcome is MetricOutcome.HIGH


def test_identical_samples_and_zero_variance_pass() -> None:
    found = _compare([5.0] * 8, [5.0] * 12)
    assert found is not None and found.outcome is MetricOutcome.PASS and found.p_value == 1.0
    assert found.shift == 0.0 and found.effect == 0.0


def test_ties_between_sides_are_not_a_difference() -> None:
    found = _compare([1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0], worse="either")
    assert found is not None and found.outcome is MetricOutcome.PASS and found.p_value == 1.0


def test_a_significant_but_tiny_change_is_held_back_by_the_effect_guard() -> None:
    canary = [100.0 + i / 100 for i in range(20)]
    primary = [99.0 + i / 100 for i in range(20)]
    assert _compare(canary, primary).outcome is MetricOutcome.HIGH
    held = _compare(canary, primary, min_effect=0.05)
    assert held is not None and held.outcome is MetricOutcome.PASS and held.p_value < 1e-6


def test_nan_is_dropped_and_empty_sides_are_no_data() -> None:
    with_nan = _compare([*HIGH_SIDE, math.nan, math.inf], LOW_SIDE)
    assert with_nan is not None and with_nan.p_value == pytest.approx(1 / 252)
    assert with_nan.sizes == (5, 5)
    assert _compare([], LOW_SIDE) is None
    assert _compare([math.nan, math.nan], LOW_SIDE) is None
    assert _compare(HIGH_SIDE, []) is None


def _measured(metric: str, canary: list[float], primary: list[float]) -> Measurement:
    return Measurement(
        metric=metric,
        query=f"q-{metric}",
        window="10m",
        canary_workload="demo",
        canary=tuple(canary),
        primary=tuple(primary),
        primary_workload="demo-primary",
        unit="ms",
    )


def _judge(*metrics: MetricSpec, **spec: object) -> ComparativeJudge:
    return ComparativeJudge(spec=JudgeSpec(kind="comparative", **spec), metrics=metrics)


def test_weighted_score_decides_between_pass_inconclusive_and_fail() -> None:
    metrics = [MetricSpec(name=n, query="q", weight=w) for n, w in (("a", 8), ("b", 1), ("c", 1))]
    judge = _judge(*metrics, passScore=95, marginalScore=75)
    same = {n: _measured(n, LOW_SIDE, LOW_SIDE) for n in "abc"}
    worse = {n: _measured(n, HIGH_SIDE, LOW_SIDE) for n in "abc"}
    verdict = judge.judge([same["a"], same["b"], same["c"]])
    assert verdict.result is Decision.PASS and verdict.score == 100
    verdict = judge.judge([same["a"], same["b"], worse["c"]])
    assert verdict.result is Decision.INCONCLUSIVE and verdict.score == pytest.approx(90)
    assert verdict.failed_checks == 0
    verdict = judge.judge([worse["a"], same["b"], same["c"]])
    assert verdict.result is Decision.FAIL and verdict.score == pytest.approx(20)
    assert verdict.reason.startswith("score 20 is below marginalScore 75; 1 of 3 metrics failed")


def test_a_failed_critical_metric_fails_the_run_whatever_the_score() -> None:
    metrics = [
        MetricSpec(name="a", query="q", weight=100),
        MetricSpec(name="b", query="q", critical=True),
    ]
    verdict = _judge(*metrics).judge(
        [_measured("a", LOW_SIDE, LOW_SIDE), _measured("b", HIGH_SIDE, LOW_SIDE)]
    )
    assert verdict.result is Decision.FAIL and verdict.failed_checks == 1
    assert verdict.score == pytest.approx(100 * 100 / 101)
    assert "a critical metric failed" in verdict.reason
    assert "b of canary demo had median 8 ms" in verdict.reason


def test_missing_data_follows_each_metrics_policy_and_is_never_a_pass() -> None:
    strict = MetricSpec(name="a", query="q", onNoData="fail")
    waiting = MetricSpec(name="b", query="q")
    judge = _judge(strict, waiting)
    verdict = judge.judge([_measured("a", LOW_SIDE, LOW_SIDE), _measured("b", [], LOW_SIDE)])
    assert verdict.result is Decision.INCONCLUSIVE and verdict.score == 100
    assert verdict.metrics[1].result is MetricOutcome.NO_DATA and not verdict.metrics[1].failed
    assert "canary demo" in verdict.metrics[1].reason and verdict.failed_checks == 0
    verdict = judge.judge([_measured("a", LOW_SIDE, [math.nan]), _measured("b", [], [])])
    assert verdict.result is Decision.FAIL and verdict.score == 0
    assert "primary demo-primary" in verdict.metrics[0].reason
    only_waiting = _judge(waiting).judge([_measured("b", [], [])])
    assert only_waiting.result is Decision.INCONCLUSIVE and only_waiting.score is None


def test_too_few_samples_to_ever_be_significant_wait_rather_than_pass() -> None:
    # Finding 1: 3 samples a side, 0% success against 100%: p = 0.05 can never beat 0.01.
    success = MetricSpec(name="request-success-rate")
    verdict = _judge(success).judge([_measured("request-success-rate", [0.0] * 3, [100.0] * 3)])
    assert verdict.result is Decision.INCONCLUSIVE and verdict.failed_checks == 0
    assert "needs 5 a side" in verdict.metrics[0].reason
    verdict = _judge(success).judge([_measured("request-success-rate", [0.0, 1, 2, 3, 4],
                                               [100.0, 99, 98, 97, 96])])
    assert verdict.result is Decision.FAIL


def test_the_smallest_p_value_rule_matches_the_test_the_judge_runs() -> None:
    from rollout.core.mann_whitney import samples_needed, smallest_p_value

    assert smallest_p_value(5, "higher-is-worse") == pytest.approx(1 / 252)
    assert samples_needed(0.01, "higher-is-worse") == 5
    assert samples_needed(0.01, "either") == 5 and samples_needed(0.001, "lower-is-worse") == 7


def test_a_failed_query_on_either_side_is_an_error() -> None:
    broken = Measurement(
        metric="a", query="q", window="1m", canary_workload="demo", canary=(1.0,),
        primary_error="HTTP 503",
    )  # fmt: skip
    verdict = _judge(MetricSpec(name="a", query="q")).judge([broken])
    assert verdict.metrics[0].result is MetricOutcome.ERROR and verdict.result is Decision.FAIL


def test_metric_verdicts_carry_the_statistics() -> None:
    judge = _judge(MetricSpec(name="request-duration"))
    verdict = judge.judge([_measured("request-duration", HIGH_SIDE, LOW_SIDE)])
    metric = verdict.metrics[0]
    assert metric.result is MetricOutcome.HIGH and metric.p_value == pytest.approx(1 / 252)
    assert metric.statistic == 5.0 and metric.interval == (2.0, 8.0)
    assert (metric.canary, metric.primary) == (8.0, 3.0)
    assert "significantly higher" in metric.reason and "q-request-duration" in metric.reason
