"""Covers turning an analysis into queries and plain results through a fake provider."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rollout.analysis import (
    MetricQueryError,
    Workloads,
    count_events,
    measure,
    parse_analysis,
    sample,
)
from rollout.errors import InvalidInput

WORKLOADS = Workloads(namespace="shop", canary="cart", primary="cart-primary")
START = datetime(2024, 1, 1, tzinfo=UTC)
END = datetime(2024, 1, 1, 0, 5, tzinfo=UTC)


class FakeProvider:
    """Answers by the first rule whose text occurs in the query; records what was asked."""

    def __init__(self, rules: list[tuple[str, list[float] | Exception]]) -> None:
        self.rules = rules
        self.asked: list[str] = []

    def _answer(self, promql: str) -> list[float]:
        self.asked.append(promql)
        for text, answer in self.rules:
            if text in promql:
                if isinstance(answer, Exception):
                    raise answer
                return answer
        return []

    def query(self, promql: str, at: datetime | None = None) -> list[float]:
        return self._answer(promql)

    def query_range(
        self, promql: str, start: datetime, end: datetime, step: str
    ) -> list[list[float]]:
        return [self._answer(promql)]

    def is_online(self) -> bool:
        return True


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


def test_measure_asks_for_each_metric_on_both_sides() -> None:
    provider = FakeProvider([('"cart-primary"', [99.9]), ('"cart"', [97.0])])
    success, latency = measure(analysis=ANALYSIS, provider=provider, workloads=WORKLOADS)
    assert success.canary == (97.0,) and success.primary == (99.9,) and success.unit == "%"
    assert 'destination_workload=~"cart"' in success.query
    assert success.primary_query is not None and '=~"cart-primary"' in success.primary_query
    assert latency.query == 'lat{app="cart"}[2m]' and latency.window == "2m"
    assert len(provider.asked) == 4


def test_a_failed_query_is_recorded_not_raised() -> None:
    failure = MetricQueryError("Prometheus answered HTTP 503", query="q", status=503)
    provider = FakeProvider([('"cart"', failure)])
    success, _ = measure(
        analysis=ANALYSIS, provider=provider, workloads=WORKLOADS, with_primary=False
    )
    assert success.error == "Prometheus answered HTTP 503" and success.canary == ()
    assert success.primary_query is None and len(provider.asked) == 2


def test_sample_uses_the_step_as_the_query_window() -> None:
    provider = FakeProvider([('"cart-primary"', [99.0, 99.5]), ('"cart"', [98.0, 97.0, 96.0])])
    success, latency = sample(
        analysis=ANALYSIS, provider=provider, workloads=WORKLOADS, start=START, end=END
    )
    assert success.canary == (98.0, 97.0, 96.0) and success.primary == (99.0, 99.5)
    assert "[30s]" in success.query and success.window == "5m"
    assert latency.query == 'lat{app="cart"}[30s]'


def test_count_events_treats_absent_error_series_as_zero() -> None:
    provider = FakeProvider([
        ('"cart",response_code', []), ('"cart-primary",response_code', [4.4]),
        ('"cart-primary"', [900.2]), ('"cart"', [99.6]),
    ])  # fmt: skip
    counts = count_events(provider=provider, workloads=WORKLOADS, window="1m")
    errors = counts["errors"]
    assert (errors.canary_total, errors.canary_bad) == (100, 0)
    assert (errors.primary_total, errors.primary_bad) == (900, 4)
    assert list(counts) == ["errors"] and errors.window == "1m"


def test_count_events_counts_slow_requests_from_the_histogram() -> None:
    provider = FakeProvider([
        ('le="+Inf"', [100.0]), ('le=~"250|250.0"', [90.0]),
        ("response_code", [1.0]), ("istio_requests_total", [100.0]),
    ])  # fmt: skip
    counts = count_events(provider=provider, workloads=WORKLOADS, window="1m", slow_request_ms=250)
    slow = counts["slow-requests"]
    assert (slow.canary_total, slow.canary_bad, slow.primary_bad) == (100, 10, 10)


def test_a_slow_bound_that_is_not_a_bucket_is_a_config_error() -> None:
    provider = FakeProvider(
        [('le="+Inf"', [100.0]), ("response_code", [1.0]), ("istio_requests_total", [100.0])]
    )
    with pytest.raises(InvalidInput, match="no bucket le='300'"):
        count_events(provider=provider, workloads=WORKLOADS, window="1m", slow_request_ms=300)


def test_count_events_records_a_failed_query() -> None:
    failure = MetricQueryError("could not reach Prometheus", query="q")
    provider = FakeProvider([("", failure)])
    counts = count_events(provider=provider, workloads=WORKLOADS, window="1m")
    assert counts["errors"].error == "could not reach Prometheus"
