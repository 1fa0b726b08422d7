"""Covers exact counting from raw counter samples: resets, new and gone series, `le` by number."""

from __future__ import annotations

import math

import pytest

from rollout.analysis.counters import (
    Reading,
    UnreadableCounter,
    advance,
    counter_queries,
    read,
)
from rollout.core.errors import InvalidInput

Samples = list[tuple[float, float]]


def _series(code: str, samples: Samples, pod: str = "a") -> tuple[dict[str, str], Samples]:
    return {"__name__": "istio_requests_total", "pod": pod, "response_code": code}, samples


def _bucket(le: str, samples: Samples, pod: str = "a") -> tuple[dict[str, str], Samples]:
    return ({"__name__": "istio_request_duration_milliseconds_bucket", "pod": pod, "le": le},
            samples)


def test_the_count_is_the_sum_of_steps_between_raw_samples_not_extrapolated() -> None:
    before = read(at=0, requests=[_series("200", [(0, 1000)]), _series("503", [(0, 10)])])
    counted, after = advance(before, at=60, requests=[
        _series("200", [(15, 1030), (30, 1060), (45, 1090), (60, 1120)]),
        _series("503", [(30, 12), (60, 13)]),
    ])
    assert (counted.requests, counted.errors) == (123, 3)
    assert after.at == 60 and sorted(after.requests.values()) == [13, 1120]


def test_a_reset_counts_from_zero_and_keeps_what_came_before_it() -> None:
    before = read(at=0, requests=[_series("200", [(0, 1000)])])
    counted, _ = advance(before, at=60, requests=[
        _series("200", [(15, 1040), (30, 5), (45, 25)]),  # the proxy restarted after 15 s
    ])
    assert counted.requests == 40 + 5 + 20


def test_a_new_pod_counts_from_zero_and_a_gone_pod_keeps_its_last_steps() -> None:
    before = read(at=0, requests=[_series("200", [(0, 500)], pod="old")])
    counted, after = advance(before, at=60, requests=[
        _series("200", [(15, 510)], pod="old"),  # went away after 15 s
        _series("200", [(30, 7), (60, 30)], pod="new"),
        _series("503", [(60, 2)], pod="new"),
    ])
    assert counted.requests == 10 + 30 + 2 and counted.errors == 2
    assert len(after.requests) == 3


def test_a_sample_at_the_last_reading_is_not_counted_twice() -> None:
    before = read(at=60, requests=[_series("200", [(60, 100)])])
    counted, _ = advance(before, at=120, requests=[_series("200", [(60, 100), (120, 160)])])
    assert counted.requests == 60


def test_windows_chain_without_gaps_or_overlaps() -> None:
    samples = [(15.0 * i, 7.0 * i) for i in range(1, 17)]
    reading = read(at=0, requests=[])
    total = 0.0
    for end in (60, 120, 180, 240):
        inside = [(t, v) for t, v in samples if reading.at <= t <= end]
        counted, reading = advance(reading, at=end, requests=[_series("200", inside)])
        total += counted.requests
    assert total == samples[-1][1]


def test_only_5xx_codes_are_errors() -> None:
    reading = read(at=0, requests=[_series(code, [(0, n)]) for code, n in
                                   (("503", 1), ("500", 2), ("404", 4), ("50", 8), ("5xx", 16))])
    assert sum(reading.errors.values()) == 3


@pytest.mark.parametrize("spelling", ["100", "100.0", "1e2"])
def test_the_slow_request_bucket_is_matched_by_number(spelling: str) -> None:
    # The old regex le=~"100|100.0" also matched 10000 (the dot matches any character).
    buckets = [_bucket(le, [(0, n)]) for le, n in (("1", 1), ("10", 2), (spelling, 50),
                                                   ("1000", 80), ("10000", 99), ("+Inf", 100))]
    reading = read(at=0, requests=[], buckets=buckets, slow_request_ms=100)
    assert list(reading.under.values()) == [50] and list(reading.timed.values()) == [100]


def test_the_same_bucket_under_both_spellings_is_one_series() -> None:
    # Prometheus 3 rewrites le="100" as "100.0": a rollout that spans an upgrade still counts.
    before = read(at=0, requests=[], buckets=[_bucket("100", [(0, 40)]),
                                              _bucket("+Inf", [(0, 50)])], slow_request_ms=100)
    counted, _ = advance(before, at=60, requests=[], slow_request_ms=100,
                         buckets=[_bucket("100.0", [(60, 70)]), _bucket("+Inf", [(60, 90)])])
    assert (counted.under, counted.timed) == (30, 40)


def test_a_histogram_without_the_bound_is_refused_with_the_fix() -> None:
    with pytest.raises(InvalidInput, match="no bucket at 300 ms") as raised:
        read(at=0, requests=[], buckets=[_bucket("250", [(0, 1)]), _bucket("+Inf", [(0, 2)])],
             slow_request_ms=300)
    assert "slowRequestMs" in (raised.value.hint or "")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_counter_is_unreadable_not_a_count(value: float) -> None:
    with pytest.raises(UnreadableCounter, match="istio_requests_total"):
        read(at=0, requests=[_series("200", [(0, value)])])


def test_readings_survive_the_journal() -> None:
    reading = read(at=12.5, requests=[_series("200", [(10, 7)]), _series("503", [(10, 1)])],
                   buckets=[_bucket("250", [(10, 3)]), _bucket("+Inf", [(10, 8)])],
                   slow_request_ms=250)
    assert Reading.from_dict(reading.to_dict()) == reading


def test_counter_queries_select_raw_series_of_one_workload() -> None:
    queries = counter_queries(namespace="shop", workload="cart", timed=True)
    assert queries.requests == (
        'istio_requests_total{reporter="destination",destination_workload_namespace="shop",'
        'destination_workload="cart"}'
    )
    assert queries.over(60.0004).requests.endswith("}[60001ms]")
    assert queries.buckets is not None and "increase" not in queries.buckets
    assert counter_queries(namespace="shop", workload="cart", timed=False).buckets is None
    with pytest.raises(InvalidInput):
        counter_queries(namespace="shop", workload='cart"} or vector(1) #', timed=False)
