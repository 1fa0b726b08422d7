"""Covers turning an analysis into queries and plain results, through the strict fake."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rollout.analysis import (
    MetricQueryError,
    Workloads,
    count_events,
    measure,
    metric_queries,
    sample,
)
from rollout.core.analysis_model import parse_analysis
from rollout.core.errors import InvalidInput
from tests.fake_prometheus import FakePrometheus, UnknownQuery

WORKLOADS = Workloads(namespace="shop", canary="cart", primary="cart-primary")
START = datetime(2024, 1, 1, tzinfo=UTC)
END = datetime(2024, 1, 1, 0, 5, tzinfo=UTC)

ANALYSIS = parse_analysis(
    {
        "interval": "1m",
        "metrics": [
            {"name": "request-success-rate", "thresholdRange": {"min": 99}},
            {"name": "latency", "query": 'lat{app="{{ target }}"}[{{ interval }}]',
             "thresholdRange": {"max": 1}, "interval": "2m"},
        ],
    }
)  # fmt: skip


def _success(interval: str) -> tuple[str, str]:
    queries = metric_queries(ANALYSIS.metrics[0], workloads=WORKLOADS, interval=interval,
                             templates={})
    return queries.canary, queries.primary


def test_measure_asks_for_each_metric_on_both_sides() -> None:
    fake = FakePrometheus()
    canary, primary = _success("1m")
    fake.define(canary, lambda t: [97.0])
    fake.define(primary, lambda t: [99.9])
    fake.define('lat{app="cart"}[2m]', lambda t: [0.5])
    fake.define('lat{app="cart-primary"}[2m]', lambda t: [0.4])
    success, latency = measure(analysis=ANALYSIS, provider=fake, workloads=WORKLOADS)
    assert success.canary == (97.0,) and success.primary == (99.9,) and success.unit == "%"
    assert latency.canary == (0.5,) and latency.window == "2m"
    assert len(fake.asked) == 4


def test_a_failed_query_is_recorded_not_raised() -> None:
    fake = FakePrometheus()
    fake.fail("*", MetricQueryError("Prometheus answered HTTP 503", query="q", status=503))
    success, _ = measure(analysis=ANALYSIS, provider=fake, workloads=WORKLOADS,
                         with_primary=False)
    assert success.error == "Prometheus answered HTTP 503" and success.canary == ()
    assert success.primary_query is None and len(fake.asked) == 2


def test_sample_takes_one_value_per_step_and_each_window_its_own() -> None:
    fake = FakePrometheus()
    canary, primary = _success("30s")
    fake.define(canary, lambda t: [t - START.timestamp()])
    fake.define(primary, lambda t: [99.0])
    fake.define('lat{app="cart"}[30s]', lambda t: [1.0])
    fake.define('lat{app="cart-primary"}[30s]', lambda t: [1.0])
    success, latency = sample(analysis=ANALYSIS, provider=fake, workloads=WORKLOADS,
                              start=START, end=END)
    assert success.canary == tuple(float(s) for s in range(0, 301, 30))
    later, _ = sample(analysis=ANALYSIS, provider=fake, workloads=WORKLOADS,
                      start=END, end=END + timedelta(minutes=1))
    assert later.canary == (300.0, 330.0, 360.0)
    assert success.window == "5m" and latency.query == 'lat{app="cart"}[30s]'


def test_an_undefined_query_fails_the_test_rather_than_answering() -> None:
    with pytest.raises(UnknownQuery):
        FakePrometheus().query("sum(rate(anything[1m]))")


def _requests(fake: FakePrometheus, workload: str, code: str, samples: list[tuple[float, float]],
              pod: str = "p1") -> None:
    fake.add({"__name__": "istio_requests_total", "reporter": "destination",
              "destination_workload_namespace": "shop", "destination_workload": workload,
              "response_code": code, "pod": pod}, samples)


def _buckets(fake: FakePrometheus, workload: str, le: str,
             samples: list[tuple[float, float]]) -> None:
    fake.add({"__name__": "istio_request_duration_milliseconds_bucket", "reporter": "destination",
              "destination_workload_namespace": "shop", "destination_workload": workload,
              "le": le, "pod": "p1"}, samples)


T0 = START.timestamp()


def test_count_events_differences_the_counters_at_both_ends_of_the_window() -> None:
    fake = FakePrometheus()
    _requests(fake, "cart", "200", [(T0, 1000), (T0 + 30, 1050), (T0 + 60, 1100)])
    _requests(fake, "cart", "503", [(T0 + 45, 1), (T0 + 60, 3)])  # born inside the window
    _requests(fake, "cart-primary", "200", [(T0, 5000), (T0 + 60, 5900)])
    counts, readings = count_events(provider=fake, workloads=WORKLOADS, slow_request_ms=None,
                                    start=START, end=START + timedelta(seconds=60))
    errors = counts["errors"]
    assert (errors.canary_total, errors.canary_bad) == (103, 3)
    assert (errors.primary_total, errors.primary_bad) == (900, 0)
    assert list(counts) == ["errors"] and errors.window == "1m"
    assert readings is not None and readings[0].at == T0 + 60


def test_count_events_continues_from_the_last_readings() -> None:
    fake = FakePrometheus()
    _requests(fake, "cart", "200", [(T0, 0), (T0 + 60, 100), (T0 + 120, 160)])
    _requests(fake, "cart-primary", "200", [(T0, 0), (T0 + 60, 900), (T0 + 120, 1800)])
    first, readings = count_events(provider=fake, workloads=WORKLOADS, slow_request_ms=None,
                                   start=START, end=START + timedelta(seconds=60))
    # A start far in the past is ignored: the window begins where the last one ended.
    second, _ = count_events(provider=fake, workloads=WORKLOADS, slow_request_ms=None,
                             start=START - timedelta(hours=1),
                             end=START + timedelta(seconds=120), since=readings)
    assert first["errors"].canary_total == 100 and second["errors"].canary_total == 60
    assert second["errors"].primary_total == 900


def test_a_restarted_canary_counts_from_zero_not_negative() -> None:
    fake = FakePrometheus()
    _requests(fake, "cart", "503", [(T0, 50), (T0 + 30, 2)])  # the proxy restarted
    _requests(fake, "cart", "200", [(T0, 950), (T0 + 30, 10)])
    _requests(fake, "cart-primary", "200", [(T0, 0), (T0 + 30, 500)])
    counts, _ = count_events(provider=fake, workloads=WORKLOADS, slow_request_ms=None,
                             start=START, end=START + timedelta(seconds=30))
    assert (counts["errors"].canary_total, counts["errors"].canary_bad) == (12, 2)


def test_count_events_counts_slow_requests_from_the_bucket_at_the_bound() -> None:
    fake = FakePrometheus()
    for workload in ("cart", "cart-primary"):
        _requests(fake, workload, "200", [(T0, 0), (T0 + 60, 100)])
        _buckets(fake, workload, "+Inf", [(T0, 0), (T0 + 60, 100)])
        _buckets(fake, workload, "250", [(T0, 0), (T0 + 60, 90)])
        _buckets(fake, workload, "2500", [(T0, 0), (T0 + 60, 99)])
    counts, _ = count_events(provider=fake, workloads=WORKLOADS, slow_request_ms=250,
                             start=START, end=START + timedelta(seconds=60))
    slow = counts["slow-requests"]
    assert (slow.canary_total, slow.canary_bad, slow.primary_bad) == (100, 10, 10)


def test_a_slow_bound_that_is_not_a_bucket_is_a_config_error() -> None:
    fake = FakePrometheus()
    _buckets(fake, "cart", "+Inf", [(T0, 0), (T0 + 60, 100)])
    _buckets(fake, "cart", "250", [(T0, 0), (T0 + 60, 100)])
    with pytest.raises(InvalidInput, match="no bucket at 300 ms"):
        count_events(provider=fake, workloads=WORKLOADS, slow_request_ms=300,
                     start=START, end=START + timedelta(seconds=60))


def test_count_events_records_a_failed_query_and_keeps_the_old_readings() -> None:
    fake = FakePrometheus()
    fake.fail("*", MetricQueryError("could not reach Prometheus", query="q"))
    counts, readings = count_events(provider=fake, workloads=WORKLOADS, slow_request_ms=None,
                                    start=START, end=END)
    assert counts["errors"].error == "could not reach Prometheus" and readings is None


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_counter_is_missing_data_not_an_exception(value: float) -> None:
    fake = FakePrometheus()
    _requests(fake, "cart", "200", [(T0, 0), (T0 + 60, value)])
    _requests(fake, "cart-primary", "200", [(T0, 0), (T0 + 60, 100)])
    counts, readings = count_events(provider=fake, workloads=WORKLOADS, slow_request_ms=None,
                                    start=START, end=START + timedelta(seconds=60))
    missing = counts["errors"].missing
    assert missing is not None and "istio_requests_total" in missing
    assert counts["errors"].error is None and readings is None
