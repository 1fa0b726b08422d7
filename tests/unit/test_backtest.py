"""Covers the backtest: time ranges, failed-check accumulation, judges replayed and the summary."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from rollout.analysis import Decision, MetricQueryError, Verdict, Workloads, parse_analysis
from rollout.backtest import (
    Window,
    backtest,
    first_rollback,
    parse_when,
    plan,
    table,
    tally,
    windows,
)
from rollout.errors import InvalidInput

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
WORKLOADS = Workloads(namespace="shop", canary="cart-canary", primary="cart-primary")
THRESHOLD = {
    "interval": "1m",
    "threshold": 2,
    "metrics": [
        {"name": "request-success-rate", "thresholdRange": {"min": 99}},
        {"name": "request-duration", "thresholdRange": {"max": 500}},
    ],
}

Answer = Callable[[str, datetime], list[float]]


class TimedProvider:
    """Answers from a function of the query and the time asked about; records the times."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.times: list[datetime] = []

    def query(self, promql: str, at: datetime | None = None) -> list[float]:
        assert at is not None, "a backtest must ask about a past time"
        self.times.append(at)
        return self.answer(promql, at)

    def query_range(
        self, promql: str, start: datetime, end: datetime, step: str
    ) -> list[list[float]]:
        return [self.answer(promql, end)]

    def is_online(self) -> bool:
        return True


def _canary(promql: str) -> bool:
    return '"cart-canary"' in promql


def _minutes(count: int) -> list[Window]:
    return windows(start=NOW - timedelta(minutes=count), end=NOW, length=60, step=60)


def _verdict(result: Decision, failed: int = 0, *, final: bool = False) -> Verdict:
    return Verdict(result=result, metrics=(), reason=str(result), failed_checks=failed,
                   final=final)


# -- time ranges ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("now", NOW),
    ("-15m", NOW - timedelta(minutes=15)),
    ("-1h30m", NOW - timedelta(minutes=90)),
    ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
    ("2024-05-01T10:00:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
    ("2024-05-01T12:00:00+02:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
])  # fmt: skip
def test_parse_when(text: str, expected: datetime) -> None:
    assert parse_when(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "-15 minutes", "15m", "2024-13-01"])
def test_parse_when_rejects_what_it_cannot_read(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_when(text, now=NOW)


def test_windows_end_every_step_from_one_interval_after_the_start() -> None:
    found = windows(start=NOW, end=NOW + timedelta(seconds=60), length=10, step=20)
    assert [(w.start - NOW).seconds for w in found] == [0, 20, 40]
    assert [(w.end - NOW).seconds for w in found] == [10, 30, 50]
    assert len(windows(start=NOW, end=NOW + timedelta(seconds=60), length=10, step=10)) == 6


def test_a_range_shorter_than_an_interval_or_with_too_many_windows_is_refused() -> None:
    with pytest.raises(InvalidInput, match="shorter than one analysis interval"):
        windows(start=NOW, end=NOW + timedelta(seconds=5), length=10, step=10)
    with pytest.raises(InvalidInput, match="at most 2000"):
        windows(start=NOW - timedelta(days=1), end=NOW, length=10, step=10)


def test_plan_steps_by_the_analysis_interval_unless_told() -> None:
    spec = parse_analysis(THRESHOLD)
    assert len(plan(spec, start="-15m", end="now", step=None, now=NOW)) == 15
    assert len(plan(spec, start="-15m", end="now", step="30s", now=NOW)) == 29
    with pytest.raises(InvalidInput, match="is not after"):
        plan(spec, start="now", end="-1m", step=None, now=NOW)


def test_the_sequential_judge_refuses_overlapping_windows() -> None:
    spec = parse_analysis({"interval": "1m", "judge": {"kind": "sequential"}})
    with pytest.raises(InvalidInput, match="do not overlap"):
        plan(spec, start="-15m", end="now", step="30s", now=NOW)
    assert len(plan(spec, start="-15m", end="now", step="2m", now=NOW)) == 8


# -- failed checks --------------------------------------------------------------------------


def test_failed_checks_add_up_and_a_pass_does_not_reset_them() -> None:
    results = [Decision.PASS, Decision.FAIL, Decision.PASS, Decision.FAIL, Decision.PASS]
    judged = [(w, _verdict(r, int(r is Decision.FAIL))) for w, r in zip(
        _minutes(5), results, strict=True)]
    checks = tally(judged, threshold=2)
    assert [c.failed_checks for c in checks] == [0, 1, 1, 2, 2]
    rollback = first_rollback(checks, threshold=2)
    assert rollback is not None and rollback.at == checks[3].window.end
    assert rollback.failed_checks == 2 and rollback.why == ""


def test_conclusive_evidence_rolls_back_at_once() -> None:
    judged = [(w, _verdict(Decision.FAIL, 1, final=True)) for w in _minutes(2)]
    checks = tally(judged, threshold=3)
    assert checks[0].failed_checks == 3
    rollback = first_rollback(checks, threshold=3)
    assert rollback is not None and rollback.at == checks[0].window.end
    assert rollback.why == "the evidence of a regression was conclusive"


def test_more_inconclusive_analyses_in_a_row_than_the_threshold_roll_back() -> None:
    results = [Decision.INCONCLUSIVE, Decision.INCONCLUSIVE, Decision.PASS,
               Decision.INCONCLUSIVE, Decision.INCONCLUSIVE, Decision.INCONCLUSIVE]
    checks = tally([(w, _verdict(r)) for w, r in zip(_minutes(6), results, strict=True)],
                   threshold=2)
    assert [c.inconclusive for c in checks] == [1, 2, 0, 1, 2, 3]
    rollback = first_rollback(checks, threshold=2)
    assert rollback is not None and rollback.at == checks[5].window.end
    assert rollback.why == "3 inconclusive analyses in a row"


# -- judges replayed ------------------------------------------------------------------------


def _success_drops_at(change: datetime) -> Answer:
    def answer(promql: str, at: datetime) -> list[float]:
        if "histogram_quantile" in promql:
            return [120.0]
        if _canary(promql) and at > change:
            return [90.0]
        return [99.9]

    return answer


def test_threshold_backtest_measures_at_each_window_end_and_finds_the_rollback() -> None:
    spec = parse_analysis(THRESHOLD)
    planned = _minutes(6)
    provider = TimedProvider(_success_drops_at(NOW - timedelta(minutes=3)))
    result = backtest(spec=spec, provider=provider, workloads=WORKLOADS, windows=planned)
    assert sorted(set(provider.times)) == [w.end for w in planned]
    assert [str(c.verdict.result) for c in result.checks] == ["PASS"] * 3 + ["FAIL"] * 3
    assert result.rollback is not None and result.rollback.at == NOW - timedelta(minutes=1)
    assert result.summary == ("would have rolled back at 2024-05-01T11:59:00Z after 2 failed "
                              "checks (threshold 2)")


def test_the_table_shows_values_verdicts_and_brief_reasons() -> None:
    spec = parse_analysis(THRESHOLD)
    provider = TimedProvider(_success_drops_at(NOW - timedelta(minutes=2)))
    header, rows = table(backtest(spec=spec, provider=provider, workloads=WORKLOADS,
                                  windows=_minutes(2)))
    assert header == ["time", "request-success-rate", "request-duration", "verdict", "reason"]
    assert rows[0] == ["2024-05-01T11:59:00Z", "90% / 99.9% ✗", "120 ms / 120 ms",
                       "FAIL (1/2)", "request-success-rate 90% not at least 99%"]
    assert rows[1][3] == "FAIL (2/2) ROLLBACK"


def test_a_steady_canary_would_have_passed() -> None:
    spec = parse_analysis(THRESHOLD)
    provider = TimedProvider(_success_drops_at(NOW + timedelta(days=1)))
    result = backtest(spec=spec, provider=provider, workloads=WORKLOADS, windows=_minutes(4))
    assert result.rollback is None
    assert result.summary == "would have passed: 0 failed checks in 4 analyses (threshold 2)"
    assert table(result)[1][0][-1] == "all metrics passed"
    plain = json.loads(json.dumps(result.to_dict()))
    assert plain["rolled_back_at"] is None and len(plain["windows"]) == 4
    assert plain["windows"][0]["metrics"][0]["canary"] == 99.9


def test_no_data_and_errors_count_as_failed_checks() -> None:
    def answer(promql: str, at: datetime) -> list[float]:
        if "histogram_quantile" in promql:
            raise MetricQueryError("could not reach Prometheus", query=promql)
        return []

    spec = parse_analysis(THRESHOLD)
    result = backtest(spec=spec, provider=TimedProvider(answer), workloads=WORKLOADS,
                      windows=_minutes(2))
    assert [c.failed_checks for c in result.checks] == [1, 2]
    rows = table(result)[1]
    assert rows[0][1:3] == ["NO_DATA ✗", "ERROR ✗"]
    assert rows[0][4].startswith("request-success-rate: no data; request-duration could not")


def _counts(canary_errors: float) -> Answer:
    def answer(promql: str, at: datetime) -> list[float]:
        errors = 'response_code=~"5' in promql
        if _canary(promql):
            return [600 * canary_errors if errors else 600.0]
        return [54.0 if errors else 5400.0]  # 1% on the primary

    return answer


def test_sequential_backtest_carries_its_evidence_across_windows() -> None:
    spec = parse_analysis({"interval": "1m", "threshold": 3, "judge": {"kind": "sequential"}})
    result = backtest(spec=spec, provider=TimedProvider(_counts(0.03)), workloads=WORKLOADS,
                      windows=_minutes(5))
    assert "over 2 intervals" in result.checks[1].verdict.metrics[0].reason
    assert result.rollback is not None and result.rollback.why.endswith("conclusive")
    first = next(c for c in result.checks if c.verdict.result is Decision.FAIL)
    assert first.failed_checks == 3 and result.rollback.at == first.window.end
    assert "errors: canary 3% against 1%, evidence" in table(result)[1][-1][-1]


def test_sequential_backtest_passes_a_canary_as_good_as_the_primary() -> None:
    spec = parse_analysis({"interval": "1m", "judge": {"kind": "sequential"}})
    result = backtest(spec=spec, provider=TimedProvider(_counts(0.01)), workloads=WORKLOADS,
                      windows=_minutes(5))
    assert result.rollback is None and result.summary.startswith("would have passed")


def test_comparative_backtest_samples_each_window() -> None:
    spec = parse_analysis({
        "interval": "5m", "judge": {"kind": "comparative", "step": "30s"},
        "metrics": [{"name": "request-duration"}],
    })  # fmt: skip

    def answer(promql: str, at: datetime) -> list[float]:
        if _canary(promql):
            return [300.0 + i for i in range(10)]
        return [100.0 + i for i in range(10)]

    planned = windows(start=NOW - timedelta(minutes=10), end=NOW, length=300, step=300)
    result = backtest(spec=spec, provider=TimedProvider(answer), workloads=WORKLOADS,
                      windows=planned)
    assert [str(c.verdict.result) for c in result.checks] == ["FAIL", "FAIL"]
    reason = table(result)[1][0][-1]
    assert reason.startswith("score 0; request-duration significantly higher than the primary")


def test_times_given_with_a_zone_are_judged_in_utc() -> None:
    spec = parse_analysis(THRESHOLD)
    planned = plan(spec, start="2024-05-01T13:58:00+02:00", end="2024-05-01T14:00:00+02:00",
                   step=None, now=NOW)
    assert [w.end for w in planned] == [NOW - timedelta(minutes=1), NOW]
    assert planned[0].end.tzinfo == UTC
