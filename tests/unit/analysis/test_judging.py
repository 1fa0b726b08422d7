"""Covers each judge kind run on a window through the strict fake: its verdict is its pure
judge's on what the measuring functions return, its state carries over, guards are added."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from rollout.analysis import (
    ComparativeJudge,
    Decision,
    JudgeState,
    SequentialJudge,
    ThresholdJudge,
    Verdict,
    Window,
    Workloads,
    count_events,
    guarded,
    judge_for,
    measure,
    metric_queries,
    sample,
)
from rollout.core.analysis_model import AnalysisSpec, parse_analysis
from tests.fake_prometheus import FakePrometheus

WORKLOADS = Workloads(namespace="shop", canary="cart", primary="cart-primary")
START = datetime(2024, 1, 1, tzinfo=UTC)
T0 = START.timestamp()
SUCCESS_GUARD = {"name": "request-success-rate", "thresholdRange": {"min": 99}}


def _window(provider: FakePrometheus, *, seconds: float, end: datetime) -> Window:
    return Window(provider=provider, workloads=WORKLOADS, seconds=seconds, end=end)


def _queries(spec: AnalysisSpec, name: str, interval: str) -> tuple[str, str]:
    metric = next(m for m in spec.metrics if m.name == name)
    found = metric_queries(metric, workloads=WORKLOADS, interval=interval,
                           templates=spec.templates)
    return found.canary, found.primary


# -- threshold ------------------------------------------------------------------------------

THRESHOLD = parse_analysis({
    "interval": "1m",
    "metrics": [
        SUCCESS_GUARD,
        {"name": "latency", "query": 'lat{app="{{ target }}"}[{{ interval }}]',
         "thresholdRange": {"max": 1}, "interval": "2m"},
    ],
})  # fmt: skip


def _threshold_fake() -> FakePrometheus:
    fake = FakePrometheus()
    canary, primary = _queries(THRESHOLD, "request-success-rate", "1m")
    fake.define(canary, lambda t: [97.0])
    fake.define(primary, lambda t: [99.9])
    fake.define('lat{app="cart"}[2m]', lambda t: [0.5])
    fake.define('lat{app="cart-primary"}[2m]', lambda t: [0.4])
    return fake


def test_threshold_judges_each_metric_over_its_interval_and_carries_no_state() -> None:
    end = START + timedelta(minutes=5)
    state = JudgeState()
    fake = _threshold_fake()
    verdict, after = judge_for(THRESHOLD).run(_window(fake, seconds=60, end=end), state)
    measured = measure(analysis=THRESHOLD, provider=_threshold_fake(), workloads=WORKLOADS,
                       at=end)
    assert verdict == ThresholdJudge(metrics=THRESHOLD.metrics).judge(measured)
    assert after is state
    assert verdict.result is Decision.FAIL and verdict.failed_metrics[0].canary == 97.0
    assert len(fake.asked) == 4


# -- sequential -----------------------------------------------------------------------------


def _counters(canary_errors: float) -> FakePrometheus:
    """600 canary and 5400 primary requests a minute for 4 minutes, scraped every 15 s; 1%
    5xx on the primary, and 600 canary requests a minute, `canary_errors` of them 5xx."""
    fake = FakePrometheus()
    times = [T0 + 15 * i for i in range(17)]
    sides = (("cart", 600, canary_errors), ("cart-primary", 5400, 0.01))
    for workload, per_minute, errors in sides:
        for code, share in (("200", 1 - errors), ("503", errors)):
            fake.add({"__name__": "istio_requests_total", "reporter": "destination",
                      "destination_workload_namespace": "shop",
                      "destination_workload": workload, "response_code": code, "pod": "p1"},
                     [(t, round((t - T0) / 60 * per_minute * share)) for t in times])
    return fake


def test_sequential_counts_each_window_from_where_the_last_ended() -> None:
    spec = parse_analysis({"interval": "1m", "judge": {"kind": "sequential"}})
    # The second run is 30 s late: it counts from where the first ended, not 60 s back.
    ends = [START + timedelta(seconds=s) for s in (60, 150, 210)]
    fake, state, verdicts = _counters(0.03), JudgeState(), []
    for end in ends:
        verdict, state = judge_for(spec).run(_window(fake, seconds=60, end=end), state)
        verdicts.append(verdict)
        state = JudgeState.from_dict(state.to_dict())  # as the journal carries it

    reference, judge = _counters(0.03), SequentialJudge.from_spec(spec.judge)
    expected, since = JudgeState(), None
    for number, end in enumerate(ends):
        counts, since = count_events(provider=reference, workloads=WORKLOADS,
                                     slow_request_ms=None, start=end - timedelta(seconds=60),
                                     end=end, since=since)
        assert since is not None
        expected, verdict = judge.judge(state=expected, observations=counts)
        expected = expected.with_readings(*since)
        assert verdicts[number] == verdict
    assert state.to_dict() == expected.to_dict()
    assert [c.canary_total for c in state.history["errors"]] == [600, 900, 600]
    assert verdicts[-1].result is Decision.FAIL and verdicts[-1].final


def test_sequential_checks_each_thresholdrange_as_an_absolute_guard() -> None:
    spec = parse_analysis({"interval": "1m", "judge": {"kind": "sequential"},
                           "metrics": [SUCCESS_GUARD]})
    end = START + timedelta(minutes=1)
    canary, _ = _queries(spec, "request-success-rate", "1m")
    fake, reference = _counters(0.01), _counters(0.01)
    for provider in (fake, reference):
        provider.define(canary, lambda t: [97.0])  # the primary's value is never asked
    verdict, _ = judge_for(spec).run(_window(fake, seconds=60, end=end), JudgeState())

    counts, _ = count_events(provider=reference, workloads=WORKLOADS, slow_request_ms=None,
                             start=START, end=end)
    _, relative = SequentialJudge.from_spec(spec.judge).judge(state=JudgeState(),
                                                              observations=counts)
    assert relative.result is Decision.PASS
    assert verdict == guarded(relative, spec, reference, WORKLOADS, end=end)
    assert verdict.result is Decision.FAIL
    assert [m.metric for m in verdict.metrics] == ["errors", "request-success-rate (absolute)"]


# -- comparative ----------------------------------------------------------------------------

COMPARATIVE = parse_analysis({
    "interval": "2m", "judge": {"kind": "comparative", "step": "30s"},
    "metrics": [{"name": "request-duration"}, SUCCESS_GUARD],
})  # fmt: skip


def _samples() -> FakePrometheus:
    fake = FakePrometheus()
    canary, primary = _queries(COMPARATIVE, "request-duration", "30s")
    fake.define(canary, lambda t: [300.0 + t % 7])
    fake.define(primary, lambda t: [100.0 + t % 7])
    canary, primary = _queries(COMPARATIVE, "request-success-rate", "30s")
    fake.define(canary, lambda t: [99.5 + t % 3 / 10])
    fake.define(primary, lambda t: [99.5 + t % 5 / 10])
    guard, _ = _queries(COMPARATIVE, "request-success-rate", "2m")
    fake.define(guard, lambda t: [99.6])
    return fake


def _reference(*, first: datetime, end: datetime, window: str) -> Verdict:
    """The comparative judge on one sample of every step from `first` to `end`, guarded."""
    provider = _samples()
    sampled = sample(analysis=COMPARATIVE, provider=provider, workloads=WORKLOADS,
                     start=first, end=end)
    judge = ComparativeJudge(spec=COMPARATIVE.judge, metrics=COMPARATIVE.metrics)
    relative = judge.judge([replace(m, window=window) for m in sampled])
    return guarded(relative, COMPARATIVE, provider, WORKLOADS, end=end)


def test_comparative_accumulates_one_sample_per_step_across_windows() -> None:
    first_end = START + timedelta(minutes=2)
    second_end = first_end + timedelta(minutes=2)
    fake = _samples()
    first, state = judge_for(COMPARATIVE).run(_window(fake, seconds=120, end=first_end),
                                              JudgeState())
    state = JudgeState.from_dict(state.to_dict())
    second, state = judge_for(COMPARATIVE).run(_window(fake, seconds=120, end=second_end),
                                               state)
    # The first step sampled is the one ending a step after the window's start.
    earliest = START + timedelta(seconds=30)
    assert first == _reference(first=earliest, end=first_end, window="2m")
    assert second == _reference(first=earliest, end=second_end, window="4m")
    assert len(state.samples["request-duration"].canary) == 8
    assert first.result is Decision.INCONCLUSIVE  # 4 samples a side are too few
    assert second.result is Decision.FAIL
    assert second.metrics[-1].metric == "request-success-rate (absolute)"


def test_comparative_before_the_next_step_samples_nothing_and_keeps_its_state() -> None:
    end = START + timedelta(minutes=2)
    fake = _samples()
    _, state = judge_for(COMPARATIVE).run(_window(fake, seconds=120, end=end), JudgeState())
    asked = len(fake.asked)
    verdict, after = judge_for(COMPARATIVE).run(
        _window(fake, seconds=120, end=end + timedelta(seconds=10)), state)
    assert after == state and verdict.result is Decision.INCONCLUSIVE
    assert len(fake.asked) == asked + 1  # the guard only


# -- queries ----------------------------------------------------------------------------------


def test_queries_are_rendered_as_a_run_renders_them() -> None:
    assert judge_for(THRESHOLD).queries(WORKLOADS) == (
        ("request-success-rate", _queries(THRESHOLD, "request-success-rate", "1m")[0]),
        ("request-success-rate", _queries(THRESHOLD, "request-success-rate", "1m")[1]),
        ("latency", 'lat{app="cart"}[2m]'),
        ("latency", 'lat{app="cart-primary"}[2m]'),
    )
    # The comparative judge samples every metric over its judge step.
    found = judge_for(COMPARATIVE).queries(WORKLOADS)
    assert found[:2] == tuple(("request-duration", query) for query in
                              _queries(COMPARATIVE, "request-duration", "30s"))
    assert len(found) == 4
