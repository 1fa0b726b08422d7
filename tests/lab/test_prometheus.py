"""Metric analysis against the lab's real Prometheus, scraping exporters at known rates."""

from __future__ import annotations

import itertools
import socket
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rollout.adapters.prometheus import PrometheusProvider
from rollout.analysis import (
    Decision,
    EventCounts,
    InvalidQuery,
    JudgeState,
    MetricOutcome,
    SequentialJudge,
    ThresholdJudge,
    Workloads,
    count_events,
    measure,
)
from rollout.analysis.counters import counter_queries
from rollout.app.analyzing import MetricAnalysis
from rollout.app.backtest import backtest, windows
from rollout.core.analysis_model import AnalysisSpec, parse_analysis
from rollout.core.errors import InfrastructureError
from rollout.core.ports import AnalysisContext
from rollout.core.tally import Tally, add_check
from rollout.lab.lab import Lab
from tests.fake_prometheus import FakePrometheus
from tests.lab.support.exporter import Exporter, Phase, Workload, serving, steady

RUN = uuid.uuid4().hex[:6]
# p99 falls in the (100, 250] bucket, which holds the last 2%: 100 + 150 * (1 / 2) = 175 ms.
FAST = {25.0: 0.90, 100.0: 0.98, 250.0: 1.0}
# p99 falls in (250, 500], which holds the last 5%: 250 + 250 * (4 / 5) = 450 ms.
SLOW = {25.0: 0.50, 250.0: 0.95, 500.0: 1.0}
CHANGE = 40.0  # seconds after the exporter started when the backtest's canary turns bad
RESTART_AT = 20.0  # seconds after the exporter started when a canary's proxy restarts


def _workloads(purpose: str, app: str) -> Workloads:
    return Workloads(namespace=f"pt-{RUN}-{purpose}", canary=f"{app}-canary",
                     primary=f"{app}-primary")


RATES = _workloads("rates", "web")
CUSTOM = _workloads("custom", "api")
NODATA = _workloads("nodata", "cart")
BROKEN = _workloads("broken", "auth")
DOWN = _workloads("down", "mail")
COUNTS = _workloads("counts", "pay")
BACKTEST = _workloads("backtest", "shop")
ALLBAD = _workloads("allbad", "feed")
RESTART = _workloads("restart", "cart")
SPELLED_2 = _workloads("spelled2", "ads")
SPELLED_3 = _workloads("spelled3", "ads")
UNREADABLE = _workloads("nan", "img")
# Bucket bounds where a regex on spellings goes wrong: le=~"100|100.0" also matches "10000".
WIDE = (1.0, 10.0, 100.0, 1000.0, 10000.0)
HALF_SLOW = {100.0: 0.5, 10000.0: 1.0}


def _served() -> list[Workload]:
    backtest_canary = Workload(BACKTEST.namespace, BACKTEST.canary, (
        Phase(10, 0.005, FAST), Phase(10, 0.20, FAST, since=CHANGE)))
    return [
        steady(RATES.namespace, RATES.primary, 100, 0.005, FAST),
        steady(RATES.namespace, RATES.canary, 10, 0.05, SLOW),
        steady(CUSTOM.namespace, CUSTOM.primary, 50, 0.01),
        steady(CUSTOM.namespace, CUSTOM.canary, 20, 0.10),
        steady(NODATA.namespace, NODATA.primary, 20, 0.0),
        steady(NODATA.namespace, NODATA.canary, 5, 0.0),
        steady(COUNTS.namespace, COUNTS.primary, 100, 0.01, FAST),
        steady(COUNTS.namespace, COUNTS.canary, 10, 0.05, {25.0: 0.5, 250.0: 0.9, 1000.0: 1.0}),
        steady(BACKTEST.namespace, BACKTEST.primary, 50, 0.005, FAST),
        backtest_canary,
        steady(ALLBAD.namespace, ALLBAD.primary, 20, 0.0),
        steady(ALLBAD.namespace, ALLBAD.canary, 5, 1.0),
        steady(RESTART.namespace, RESTART.primary, 100, 0.01),
        Workload(RESTART.namespace, RESTART.canary, (Phase(10, 0.05),), restart_at=RESTART_AT),
        *[Workload(w.namespace, name, (Phase(rps, 0.0, latency),), bounds=WIDE, le=le)
          for w, le in ((SPELLED_2, "{:g}"), (SPELLED_3, "{:.1f}"))
          for name, rps, latency in ((w.canary, 10, HALF_SLOW), (w.primary, 50, {1.0: 1.0}))],
        steady(UNREADABLE.namespace, UNREADABLE.primary, 50, 0.0),
        Workload(UNREADABLE.namespace, UNREADABLE.canary, (Phase(10, 0.0),), broken=True),
    ]


@pytest.fixture(scope="module")
def exporter(lab: Lab) -> Iterator[Exporter]:
    """One exporter for the module, so its history grows while the tests run."""
    with serving(lab.layout.scrape_targets, lab.prometheus_url, _served()) as running:
        yield running


@pytest.fixture
def prometheus(lab: Lab) -> Iterator[PrometheusProvider]:
    provider = PrometheusProvider(address=lab.prometheus_url, retries=1, backoff=0.1)
    yield provider
    provider.close()


def _spec(metrics: list[dict[str, Any]], **more: Any) -> AnalysisSpec:
    return parse_analysis({"interval": "10s", "metrics": metrics, **more})


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _context(workloads: Workloads) -> AnalysisContext:
    return AnalysisContext(app="x", namespace=workloads.namespace,
                           canary_workload=workloads.canary, primary_workload=workloads.primary,
                           weight=10, step=0, interval_seconds=10, canary_share=0.1)


def test_builtin_metrics_come_back_for_canary_and_primary(
    exporter: Exporter, prometheus: PrometheusProvider
) -> None:
    exporter.wait_history(12)
    spec = _spec([{"name": "request-success-rate", "thresholdRange": {"min": 99}},
                  {"name": "request-duration", "thresholdRange": {"max": 500}}])
    success, duration = measure(analysis=spec, provider=prometheus, workloads=RATES)
    assert success.error is None and duration.error is None
    assert success.canary == pytest.approx((95.0,), abs=0.2)
    assert success.primary == pytest.approx((99.5,), abs=0.05)
    assert duration.canary == pytest.approx((450.0,), abs=5)
    assert duration.primary == pytest.approx((175.0,), abs=2)
    verdict = ThresholdJudge(metrics=spec.metrics).judge((success, duration))
    assert verdict.result is Decision.FAIL and verdict.failed_checks == 1
    assert [m.result for m in verdict.metrics] == [MetricOutcome.LOW, MetricOutcome.PASS]


def test_a_canary_failing_every_request_has_no_success_not_no_data(
    exporter: Exporter, prometheus: PrometheusProvider
) -> None:
    exporter.wait_history(12)
    spec = _spec([{"name": "request-success-rate", "thresholdRange": {"min": 99}}])
    (success,) = measure(analysis=spec, provider=prometheus, workloads=ALLBAD)
    assert success.canary == (0.0,) and success.primary == (100.0,)
    verdict = ThresholdJudge(metrics=spec.metrics).judge((success,))
    assert verdict.result is Decision.FAIL and verdict.metrics[0].result is MetricOutcome.LOW
    idle = Workloads(ALLBAD.namespace, canary="feed-idle", primary=ALLBAD.primary)
    (success,) = measure(analysis=spec, provider=prometheus, workloads=idle)
    assert success.canary == ()  # no requests at all is still no data, not 0%


def test_a_custom_template_with_variables(
    exporter: Exporter, prometheus: PrometheusProvider
) -> None:
    exporter.wait_history(12)
    template = ('sum(rate(istio_requests_total{reporter="{{ variables.reporter }}",'
                'destination_workload_namespace="{{ namespace }}",'
                'destination_workload="{{ target }}",response_code=~"{{ variables.codes }}"}'
                "[{{ interval }}]))")
    spec = _spec([{"name": "errors-per-second", "templateRef": "errors",
                   "variables": {"reporter": "destination", "codes": "5.."},
                   "thresholdRange": {"max": 1}}], templates={"errors": template})
    (errors,) = measure(analysis=spec, provider=prometheus, workloads=CUSTOM)
    assert 'destination_workload="api-canary"' in errors.query
    assert errors.canary == pytest.approx((2.0,), rel=0.01)  # 20 req/s, 10% 5xx
    assert errors.primary == pytest.approx((0.5,), rel=0.01)  # 50 req/s, 1% 5xx
    verdict = ThresholdJudge(metrics=spec.metrics).judge((errors,))
    assert verdict.metrics[0].result is MetricOutcome.HIGH


def test_a_query_without_series_is_no_data_and_never_passes(
    exporter: Exporter, prometheus: PrometheusProvider
) -> None:
    exporter.wait_history(12)
    query = ('sum(rate(istio_requests_total{destination_workload_namespace="{{ namespace }}",'
             'destination_workload="{{ target }}",response_code="418"}[{{ interval }}]))')
    spec = _spec([{"name": "teapots", "query": query, "thresholdRange": {"max": 1}}])
    (teapots,) = measure(analysis=spec, provider=prometheus, workloads=NODATA)
    assert teapots.error is None and teapots.canary == ()
    verdict = ThresholdJudge(metrics=spec.metrics).judge((teapots,))
    assert verdict.result is Decision.INCONCLUSIVE
    assert verdict.metrics[0].result is MetricOutcome.NO_DATA and not verdict.metrics[0].failed
    step = MetricAnalysis(spec=spec, provider=prometheus).analyze(_context(NODATA), {})
    assert step.passed is None and step.failed_checks == 0 and "no data" in step.reason
    strict = _spec([{"name": "teapots", "query": query, "thresholdRange": {"max": 1}}],
                   onNoData="fail")
    step = MetricAnalysis(spec=strict, provider=prometheus).analyze(_context(NODATA), {})
    assert step.passed is False and step.failed_checks == 1


def test_a_promql_syntax_error_is_an_invalid_query_naming_it(
    prometheus: PrometheusProvider,
) -> None:
    bad = f'sum(rate(istio_requests_total{{destination_workload="{BROKEN.canary}"}}[1m])'
    with pytest.raises(InvalidQuery) as raised:
        prometheus.query(bad)
    assert raised.value.query == bad and bad in raised.value.message
    spec = _spec([{"name": "broken", "query": bad, "thresholdRange": {"max": 1}}])
    verdict = ThresholdJudge(metrics=spec.metrics).judge(
        measure(analysis=spec, provider=prometheus, workloads=BROKEN))
    assert verdict.result is Decision.FAIL and verdict.metrics[0].result is MetricOutcome.ERROR
    assert bad in verdict.reason


def test_prometheus_down_is_an_error_that_never_passes() -> None:
    down = PrometheusProvider(address=f"http://127.0.0.1:{_closed_port()}", retries=1,
                              backoff=0.05)
    spec = _spec([{"name": "request-success-rate", "thresholdRange": {"min": 99}}])
    assert not down.is_online()
    verdict = ThresholdJudge(metrics=spec.metrics).judge(
        measure(analysis=spec, provider=down, workloads=DOWN))
    assert verdict.result is Decision.FAIL
    assert verdict.metrics[0].result is MetricOutcome.ERROR and verdict.metrics[0].failed
    # In a rollout that is no verdict on the version but an infrastructure failure (exit 3).
    with pytest.raises(InfrastructureError) as failed:
        MetricAnalysis(spec=spec, provider=down).analyze(_context(DOWN), {})
    assert "could not reach Prometheus" in failed.value.message
    assert "gave up after 2" in failed.value.message


def test_count_events_are_rate_times_window(
    exporter: Exporter, prometheus: PrometheusProvider
) -> None:
    exporter.wait_history(22)
    end = datetime.now(UTC)
    counts, readings = count_events(provider=prometheus, workloads=COUNTS, slow_request_ms=250,
                                    start=end - timedelta(seconds=20), end=end)
    errors, slow = counts["errors"], counts["slow-requests"]
    assert errors.error is None and slow.error is None and readings is not None
    assert errors.primary_total == pytest.approx(2000, rel=0.06)  # 100 req/s
    assert errors.primary_bad == pytest.approx(20, abs=3)  # 1% 5xx
    assert errors.canary_total == pytest.approx(200, rel=0.06)  # 10 req/s
    assert errors.canary_bad == pytest.approx(10, abs=2)  # 5% 5xx
    assert slow.canary_total == errors.canary_total
    assert slow.canary_bad == pytest.approx(20, abs=3)  # 10% slower than 250 ms
    assert slow.primary_bad == 0
    judge = SequentialJudge(alpha=0.01, tests=("errors", "slow-requests"))
    _, verdict = judge.judge(state=JudgeState(), observations=counts)
    assert verdict.metrics[0].canary == pytest.approx(0.05, abs=0.01)
    assert verdict.metrics[1].canary == pytest.approx(0.10, abs=0.015)


def _chained_counts(prometheus: PrometheusProvider, workloads: Workloads, ends: list[datetime],
                    slow_request_ms: float | None = None) -> list[dict[str, EventCounts]]:
    found, since = [], None
    for start, end in itertools.pairwise(ends):
        counts, since = count_events(provider=prometheus, workloads=workloads,
                                     slow_request_ms=slow_request_ms, start=start, end=end,
                                     since=since)
        found.append(counts)
    return found


def test_counts_are_exact_across_windows_and_a_restart(
    exporter: Exporter, prometheus: PrometheusProvider
) -> None:
    # Finding 3: increase() extrapolated each window, so windows did not add up to the whole.
    exporter.wait_history(RESTART_AT + 10)
    # From after the first scrape: requests before it would rightly count from zero.
    assert exporter.seen_at is not None
    first, last = exporter.seen_at + timedelta(seconds=1), exporter.at(RESTART_AT + 8)
    assert first < exporter.at(RESTART_AT) - timedelta(seconds=5)
    ends = [first + (last - first) * i / 4 for i in range(5)]
    pieces = _chained_counts(prometheus, RESTART, ends)
    (whole,) = _chained_counts(prometheus, RESTART, [first, last])
    for kind in ("canary_total", "canary_bad", "primary_total", "primary_bad"):
        # The exporter's counters are fractional (Envoy's are whole), so each piece may round.
        assert sum(getattr(p["errors"], kind) for p in pieces) == pytest.approx(
            getattr(whole["errors"], kind), abs=len(pieces) / 2)
    # 10 req/s throughout; at most one scrape's worth (1 s) is lost at the restart.
    seconds = (last - first).total_seconds()
    assert 10 * (seconds - 2) <= whole["errors"].canary_total <= 10 * (seconds + 1)
    assert whole["errors"].canary_bad == pytest.approx(0.05 * whole["errors"].canary_total,
                                                       abs=2)


@pytest.mark.parametrize("workloads", [SPELLED_2, SPELLED_3], ids=["le=100", "le=100.0"])
def test_slow_requests_are_counted_from_the_bucket_matched_by_number(
    exporter: Exporter, prometheus: PrometheusProvider, workloads: Workloads
) -> None:
    # Finding 4: le=~"100|100.0" matched "10000" as well, and half-slow canaries passed.
    exporter.wait_history(12)
    end = datetime.now(UTC)
    counts, _ = count_events(provider=prometheus, workloads=workloads, slow_request_ms=100,
                             start=end - timedelta(seconds=10), end=end)
    slow = counts["slow-requests"]
    assert slow.canary_total == pytest.approx(100, rel=0.15)
    assert slow.canary_bad == pytest.approx(slow.canary_total / 2, abs=2)
    assert slow.primary_bad == 0
    spec = _spec([], judge={"kind": "sequential", "slowRequestMs": 100})
    state: dict[str, Any] = {}
    for ago in (20, 10, 0):
        step = MetricAnalysis(spec=spec, provider=prometheus).analyze(
            _context(workloads), state, at=end - timedelta(seconds=ago))
        state = step.judge_state
    assert step.passed is False and step.final, step.reason


def test_a_nan_counter_is_no_data_not_a_crash(
    exporter: Exporter, prometheus: PrometheusProvider
) -> None:
    # Finding 5: a NaN from a count query raised out of count_events.
    exporter.wait_history(12)
    spec = _spec([], judge={"kind": "sequential"})
    step = MetricAnalysis(spec=spec, provider=prometheus).analyze(_context(UNREADABLE), {})
    assert step.passed is None and step.failed_checks == 0
    assert "holds nan" in step.reason.lower()


def test_a_primary_without_traffic_never_lets_a_failing_canary_pass(
    exporter: Exporter, prometheus: PrometheusProvider
) -> None:
    # Finding 2: with a wrong primary name, a canary failing every request passed.
    exporter.wait_history(40)
    wrong = Workloads(ALLBAD.namespace, canary=ALLBAD.canary, primary="feed-nobody")
    spec = _spec([], judge={"kind": "sequential"}, maxInconclusive=2)
    tally, state, end = Tally(), {}, datetime.now(UTC)
    results = []
    for ago in (30, 20, 10, 0):
        step = MetricAnalysis(spec=spec, provider=prometheus).analyze(
            _context(wrong), state, at=end - timedelta(seconds=ago))
        state = step.judge_state
        results.append(step.passed)
        tally = add_check(tally, passed=step.passed, failed_checks=step.failed_checks,
                          final=step.final, threshold=1, max_inconclusive=2)
        assert "the primary served no requests" in step.reason
    assert results == [None] * 4 and tally.rolls_back(1)


def test_the_comparative_judge_fails_a_broken_canary_at_short_intervals(
    exporter: Exporter, prometheus: PrometheusProvider
) -> None:
    # Finding 1: 3 samples a side (20s interval / 10s steps) could never beat alpha 0.01.
    exporter.wait_history(65)  # the first sample's 10 s rate window starts 60 s back
    spec = _spec([{"name": "request-success-rate"}], interval="20s",
                 judge={"kind": "comparative", "step": "10s"})
    ctx = replace(_context(ALLBAD), interval_seconds=20)
    state: dict[str, Any] = {}
    end = datetime.now(UTC)
    results = []
    for ago in (40, 20, 0):
        step = MetricAnalysis(spec=spec, provider=prometheus).analyze(
            ctx, state, at=end - timedelta(seconds=ago))
        state = step.judge_state
        results.append(step.passed)
    assert results == [None, None, False], step.reason
    assert "over 6 samples in 1m" in step.reason


def test_the_fake_prometheus_answers_as_the_real_one_does(
    exporter: Exporter, prometheus: PrometheusProvider
) -> None:
    # tests/fake_prometheus.py stands in for Prometheus in unit tests; it must not be kinder.
    exporter.wait_history(25)
    end = datetime.now(UTC) - timedelta(seconds=2)
    queries = counter_queries(namespace=RESTART.namespace, workload=RESTART.canary, timed=True)
    assert queries.buckets is not None
    fake = FakePrometheus()
    for selector in (queries.requests, queries.buckets):
        for labels, samples in prometheus.query_series(selector + "[60000ms]", end):
            fake.add(labels, samples)
    for ago in (0.0, 0.4, 3.7, 9.0, 15.5):
        at = end - timedelta(seconds=ago)
        for selector in (queries.requests, queries.buckets, queries.over(4.5).requests):
            real = sorted(prometheus.query_series(selector, at), key=repr)
            assert sorted(fake.query_series(selector, at), key=repr) == real, (selector, ago)
        assert sorted(fake.query(queries.requests, at)) == sorted(
            prometheus.query(queries.requests, at))


def test_backtest_over_the_last_minute(
    exporter: Exporter, prometheus: PrometheusProvider
) -> None:
    exporter.wait_history(62)
    spec = _spec([{"name": "request-success-rate", "thresholdRange": {"min": 99}}],
                 threshold=2)
    end = datetime.now(UTC)
    planned = windows(start=end - timedelta(seconds=60), end=end, length=10, step=10)
    result = backtest(spec=spec, provider=prometheus, workloads=BACKTEST, windows=planned)
    change = exporter.at(CHANGE)
    results = [check.verdict.result for check in result.checks]
    assert len(results) == 6
    assert results[:2] == [Decision.PASS] * 2 and results[-2:] == [Decision.FAIL] * 2
    for check in result.checks:
        rate = check.verdict.metrics[0]
        if check.window.end < change:
            assert check.verdict.result is Decision.PASS, rate.reason
            assert rate.canary == pytest.approx(99.5, abs=0.05)
        elif check.window.start > change + timedelta(seconds=1):
            assert check.verdict.result is Decision.FAIL, rate.reason
            assert rate.canary == pytest.approx(80.0, abs=0.2)
    failed_at = [check.window.end for check in result.checks
                 if check.verdict.result is Decision.FAIL]
    assert result.rollback is not None and result.rollback.at == failed_at[1] > change
    assert result.summary.startswith(f"would have rolled back at {failed_at[1]:%Y-%m-%dT%H:%M}")
    assert "after 2 failed checks (threshold 2)" in result.summary


def test_every_query_is_checked_by_prometheus_before_a_rollout_starts(
    prometheus: PrometheusProvider,
) -> None:
    broken = ('sum(rate(istio_requests_total{destination_workload="{{ target }}"}'
              "[{{ interval }}])")
    spec = _spec([{"name": "request-success-rate", "thresholdRange": {"min": 99}},
                  {"name": "broken", "query": broken, "thresholdRange": {"max": 1}}])
    with pytest.raises(InvalidQuery, match="metric 'broken'") as refused:
        MetricAnalysis(spec=spec, provider=prometheus).validate(_context(BROKEN))
    assert "nothing was changed" in (refused.value.hint or "")
    fine = _spec([{"name": "request-success-rate", "thresholdRange": {"min": 99}}])
    MetricAnalysis(spec=fine, provider=prometheus).validate(_context(BROKEN))
