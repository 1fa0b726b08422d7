"""Covers the backtest: time ranges, failed-check accumulation, judges replayed and the summary."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from rollout.analysis import Decision, MetricQueryError, Verdict, Workloads, metric_queries
from rollout.app.backtest import (
    TimeSpan,
    backtest,
    first_rollback,
    parse_when,
    plan,
    table,
    tally,
    windows,
)
from rollout.core.analysis_model import parse_analysis
from rollout.core.errors import InvalidInput
from tests.fake_prometheus import FakePrometheus

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



def _metric(name: str, interval: str = "1m") -> tuple[str, str]:
    spec = parse_analysis(THRESHOLD)
    metric = next(m for m in spec.metrics if m.name == name)
    queries = metric_queries(metric, workloads=WORKLOADS, interval=interval, templates={})
    return queries.canary, queries.primary


def _success_drops_at(change: datetime) -> FakePrometheus:
    fake = FakePrometheus()
    canary, primary = _metric("request-success-rate")
    fake.define(canary, lambda t: [90.0] if t > change.timestamp() else [99.9])
    fake.define(primary, lambda t: [99.9])
    for query in _metric("request-duration"):
        fake.define(query, lambda t: [120.0])
    return fake


def _minutes(count: int) -> list[TimeSpan]:
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
    checks = tally(judged, threshold=2, max_inconclusive=3)
    assert [c.failed_checks for c in checks] == [0, 1, 1, 2, 2]
    rollback = first_rollback(checks, threshold=2)
    assert rollback is not None and rollback.at == checks[3].window.end
    assert rollback.failed_checks == 2 and rollback.why == ""


def test_conclusive_evidence_rolls_back_at_once() -> None:
    judged = [(w, _verdict(Decision.FAIL, 1, final=True)) for w in _minutes(2)]
    checks = tally(judged, threshold=3, max_inconclusive=3)
    assert checks[0].failed_checks == 3
    rollback = first_rollback(checks, threshold=3)
    assert rollback is not None and rollback.at == checks[0].window.end
    assert rollback.why == "the evidence of a regression is conclusive"


def test_more_inconclusive_analyses_in_a_row_than_allowed_count_as_failed_checks() -> None:
    results = [Decision.INCONCLUSIVE, Decision.INCONCLUSIVE, Decision.PASS,
               Decision.INCONCLUSIVE, Decision.INCONCLUSIVE, Decision.INCONCLUSIVE,
               Decision.INCONCLUSIVE]
    checks = tally([(w, _verdict(r)) for w, r in zip(_minutes(7), results, strict=True)],
                   threshold=2, max_inconclusive=2)
    assert [c.inconclusive for c in checks] == [1, 2, 0, 1, 2, 3, 4]
    assert [c.failed_checks for c in checks] == [0, 0, 0, 0, 0, 1, 2]
    rollback = first_rollback(checks, threshold=2)
    assert rollback is not None and rollback.at == checks[6].window.end
    assert rollback.why == ("inconclusive 4 times in a row, more than maxInconclusive 2: "
                            "counted as a failed check")


# -- judges replayed ------------------------------------------------------------------------


def test_threshold_backtest_measures_at_each_window_end_and_finds_the_rollback() -> None:
    spec = parse_analysis(THRESHOLD)
    planned = _minutes(6)
    provider = _success_drops_at(NOW - timedelta(minutes=3))
    result = backtest(spec=spec, provider=provider, workloads=WORKLOADS, windows=planned)
    assert len(provider.asked) == 4 * len(planned)
    assert [str(c.verdict.result) for c in result.checks] == ["PASS"] * 3 + ["FAIL"] * 3
    assert result.rollback is not None and result.rollback.at == NOW - timedelta(minutes=1)
    assert result.summary == ("would have rolled back at 2024-05-01T11:59:00Z after 2 failed "
                              "checks (threshold 2)")


def test_the_table_shows_values_verdicts_and_brief_reasons() -> None:
    spec = parse_analysis(THRESHOLD)
    provider = _success_drops_at(NOW - timedelta(minutes=2))
    header, rows = table(backtest(spec=spec, provider=provider, workloads=WORKLOADS,
                                  windows=_minutes(2)))
    assert header == ["time", "request-success-rate", "request-duration", "verdict", "reason"]
    assert rows[0] == ["2024-05-01T11:59:00Z", "90% / 99.9% ✗", "120 ms / 120 ms",
                       "FAIL (1/2)", "request-success-rate 90% not at least 99%"]
    assert rows[1][3] == "FAIL (2/2) ROLLBACK"


def test_a_steady_canary_would_have_passed() -> None:
    spec = parse_analysis(THRESHOLD)
    provider = _success_drops_at(NOW + timedelta(days=1))
    result = backtest(spec=spec, provider=provider, workloads=WORKLOADS, windows=_minutes(4))
    assert result.rollback is None
    assert result.summary == "would have passed: 0 failed checks in 4 analyses (threshold 2)"
    assert table(result)[1][0][-1] == "all metrics passed"
    plain = json.loads(json.dumps(result.to_dict()))
    assert plain["rolled_back_at"] is None and len(plain["windows"]) == 4
    assert plain["windows"][0]["metrics"][0]["canary"] == 99.9


def test_errors_count_as_failed_checks_and_no_data_waits() -> None:
    fake = FakePrometheus()
    for query in _metric("request-success-rate"):
        fake.define(query, lambda t: [])
    for query in _metric("request-duration"):
        fake.fail(query, MetricQueryError("could not reach Prometheus", query=query))
    spec = parse_analysis(THRESHOLD)
    result = backtest(spec=spec, provider=fake, workloads=WORKLOADS, windows=_minutes(2))
    assert [c.failed_checks for c in result.checks] == [1, 2]
    rows = table(result)[1]
    assert rows[0][1:3] == ["NO_DATA", "ERROR ✗"]
    assert rows[0][4].startswith("request-duration could not")

    fake = FakePrometheus()
    for query in (*_metric("request-success-rate"), *_metric("request-duration")):
        fake.define(query, lambda t: [])
    result = backtest(spec=spec, provider=fake, workloads=WORKLOADS, windows=_minutes(5))
    assert [str(c.verdict.result) for c in result.checks] == ["INCONCLUSIVE"] * 5
    assert [c.failed_checks for c in result.checks] == [0, 0, 0, 1, 2]


def _counts(canary_errors: float, minutes: int = 6) -> FakePrometheus:
    """600 canary and 5400 primary requests a minute, scraped every 15 s; 1% primary 5xx."""
    fake = FakePrometheus()
    start = NOW.timestamp() - minutes * 60
    times = [start + 15 * i for i in range(minutes * 4 + 1)]
    sides = (("cart-canary", 600, canary_errors), ("cart-primary", 5400, 0.01))
    for workload, per_minute, errors in sides:
        for code, share in (("200", 1 - errors), ("503", errors)):
            fake.add({"__name__": "istio_requests_total", "reporter": "destination",
                      "destination_workload_namespace": "shop",
                      "destination_workload": workload, "response_code": code},
                     [(t, (t - start) / 60 * per_minute * share) for t in times])
    return fake


def test_sequential_backtest_carries_its_evidence_across_windows() -> None:
    spec = parse_analysis({"interval": "1m", "threshold": 3, "judge": {"kind": "sequential"}})
    result = backtest(spec=spec, provider=_counts(0.03), workloads=WORKLOADS,
                      windows=_minutes(5))
    assert "18 5xx responses in 600 requests" in result.checks[0].verdict.metrics[0].reason
    assert "over 2 intervals" in result.checks[1].verdict.metrics[0].reason
    assert result.rollback is not None and result.rollback.why.endswith("conclusive")
    first = next(c for c in result.checks if c.verdict.result is Decision.FAIL)
    assert first.failed_checks == 3 and result.rollback.at == first.window.end
    assert "errors: canary 3% against 1%, evidence" in table(result)[1][-1][-1]


def test_sequential_backtest_passes_a_canary_as_good_as_the_primary() -> None:
    spec = parse_analysis({"interval": "1m", "judge": {"kind": "sequential"}})
    result = backtest(spec=spec, provider=_counts(0.01), workloads=WORKLOADS,
                      windows=_minutes(5))
    assert result.rollback is None and result.summary.startswith("would have passed")


def test_comparative_backtest_accumulates_samples_one_per_step() -> None:
    spec = parse_analysis({
        "interval": "2m", "judge": {"kind": "comparative", "step": "30s"},
        "metrics": [{"name": "request-duration"}],
    })  # fmt: skip
    fake = FakePrometheus()
    canary, primary = _metric("request-duration", "30s")
    fake.define(canary, lambda t: [300.0 + t % 7])
    fake.define(primary, lambda t: [100.0 + t % 7])
    planned = windows(start=NOW - timedelta(minutes=6), end=NOW, length=120, step=120)
    result = backtest(spec=spec, provider=fake, workloads=WORKLOADS, windows=planned)
    assert [str(c.verdict.result) for c in result.checks] == ["INCONCLUSIVE", "FAIL", "FAIL"]
    assert "4 canary and 4 primary samples" in result.checks[0].verdict.reason
    assert "over 8 samples in 4m" in result.checks[1].verdict.metrics[0].reason
    reason = table(result)[1][1][-1]
    assert reason.startswith("score 0; request-duration significantly higher than the primary")


def test_times_given_with_a_zone_are_judged_in_utc() -> None:
    spec = parse_analysis(THRESHOLD)
    planned = plan(spec, start="2024-05-01T13:58:00+02:00", end="2024-05-01T14:00:00+02:00",
                   step=None, now=NOW)
    assert [w.end for w in planned] == [NOW - timedelta(minutes=1), NOW]
    assert planned[0].end.tzinfo == UTC
