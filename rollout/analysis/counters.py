"""Exact event counts from raw cumulative counters, summed here rather than by increase().

`increase()` extrapolates to the edges of its window (x1.33 at a 15 s scrape and a 1m window,
x2 at 30 s), which breaks the sequential judge's anytime-valid guarantee: that holds for the
requests that were served, not for scaled-up guesses. So the judge reads every raw sample of
every counter series since its last reading and adds up the steps between them itself:
- a sample below the one before is a reset (a restarted proxy) and counts from zero;
- a series first seen in the window (a new pod) counts from zero;
- a series that stops (a pod that went away) keeps what it counted until its last sample.
The reading at the end of a window is where the next window starts, so windows never overlap
and never leave a gap; it is journaled, so a resumed rollout continues the same evidence.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rollout.core.errors import InvalidInput
from rollout.core.values import check_name

_ISTIO_SELECTOR = (
    'reporter="destination",destination_workload_namespace="{namespace}",'
    'destination_workload="{workload}"'
)
REQUESTS = "istio_requests_total{{" + _ISTIO_SELECTOR + "}}"
BUCKETS = "istio_request_duration_milliseconds_bucket{{" + _ISTIO_SELECTOR + "}}"
GROUPS = ("requests", "errors", "timed", "under")

# One series as a provider returns it: its labels and its samples (time, value), oldest first.
Series = tuple[Mapping[str, str], Sequence[tuple[float, float]]]


@dataclass(frozen=True)
class CounterQueries:
    """The raw counter selectors of one workload (no rate, no increase, no sum)."""

    requests: str
    buckets: str | None

    def over(self, seconds: float) -> CounterQueries:
        """The same selectors as range vectors: every raw sample of the last `seconds`."""
        window = f"[{max(math.ceil(seconds * 1000), 1)}ms]"
        return CounterQueries(
            requests=self.requests + window,
            buckets=self.buckets + window if self.buckets else None,
        )


def counter_queries(*, namespace: str, workload: str, timed: bool) -> CounterQueries:
    check_name(namespace, what="namespace")
    check_name(workload, what="workload")
    return CounterQueries(
        requests=REQUESTS.format(namespace=namespace, workload=workload),
        buckets=BUCKETS.format(namespace=namespace, workload=workload) if timed else None,
    )


@dataclass(frozen=True)
class Reading:
    """The last value of every counter series of one workload at the instant `at`, by key.

    `requests` and `errors` come from the request counter (errors: 5xx codes); `timed` and
    `under` from the latency histogram's +Inf bucket and the bucket at the slow-request bound.
    """

    at: float
    requests: Mapping[str, float] = field(default_factory=dict)
    errors: Mapping[str, float] = field(default_factory=dict)
    timed: Mapping[str, float] = field(default_factory=dict)
    under: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, **{group: dict(getattr(self, group)) for group in GROUPS}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reading:
        return cls(at=float(data["at"]), **{g: dict(data.get(g, {})) for g in GROUPS})


@dataclass(frozen=True)
class Increase:
    """Events counted between two readings, per group."""

    requests: float
    errors: float
    timed: float
    under: float


class UnreadableCounter(ValueError):
    """A counter sample held NaN or an infinity: nothing can be counted from it."""


def read(
    *,
    at: float,
    requests: Sequence[Series],
    buckets: Sequence[Series] = (),
    slow_request_ms: float | None = None,
) -> Reading:
    """The reading at `at`: the last sample of each series."""
    grouped = _grouped(requests, buckets, slow_request_ms)
    return Reading(
        at=at,
        **{group: {key: samples[-1][1] for key, samples in found.items() if samples}
           for group, found in grouped.items()},
    )


def advance(
    before: Reading,
    *,
    at: float,
    requests: Sequence[Series],
    buckets: Sequence[Series] = (),
    slow_request_ms: float | None = None,
) -> tuple[Increase, Reading]:
    """What the counters counted from `before` to `at`, given every sample in between, and
    the reading at `at`. Series without samples in between keep their last value."""
    grouped = _grouped(requests, buckets, slow_request_ms)
    totals: dict[str, float] = {}
    values: dict[str, dict[str, float]] = {}
    for group, found in grouped.items():
        last = dict(getattr(before, group))
        total = 0.0
        for key, samples in found.items():
            previous = last.get(key, 0.0)
            for when, value in samples:
                if when <= before.at:
                    previous = value  # already counted by the window before
                    continue
                total += value - previous if value >= previous else value
                previous = value
            last[key] = previous
        totals[group] = total
        values[group] = last
    return Increase(**totals), Reading(at=at, **values)


def _grouped(
    requests: Sequence[Series], buckets: Sequence[Series], slow_request_ms: float | None
) -> dict[str, dict[str, Sequence[tuple[float, float]]]]:
    grouped: dict[str, list[Series]] = {group: [] for group in GROUPS}
    for series in requests:
        grouped["requests"].append(series)
        if _is_5xx(series[0]):
            grouped["errors"].append(series)
    if slow_request_ms is not None:
        for series in buckets:
            bound = _bound(series[0].get("le", ""))
            if bound == math.inf:
                grouped["timed"].append(series)
            elif bound == slow_request_ms:
                grouped["under"].append(series)
        if grouped["timed"] and not grouped["under"]:
            raise InvalidInput(
                f"the latency histogram has no bucket at {slow_request_ms:g} ms",
                hint="set slowRequestMs to one of the histogram's bucket bounds "
                "(Istio's defaults include 100, 250, 500, 1000, 2500)",
            )
    return {group: _keyed(found) for group, found in grouped.items()}


def _keyed(series: Sequence[Series]) -> dict[str, Sequence[tuple[float, float]]]:
    keyed: dict[str, Sequence[tuple[float, float]]] = {}
    for labels, samples in series:
        for _, value in samples:
            if not math.isfinite(value):
                name = labels.get("__name__", "a counter")
                raise UnreadableCounter(f"{name} series {_describe(labels)} holds {value}")
        # `le` is left out of the key, so "100" and "100.0" are one series (Prometheus 3
        # rewrites the spelling); each group holds a single bound anyway.
        kept = sorted((k, v) for k, v in labels.items() if k not in ("le", "__name__"))
        key = hashlib.sha1(repr(kept).encode()).hexdigest()[:16]
        keyed[key] = sorted((*keyed.get(key, ()), *samples))
    return keyed


def _describe(labels: Mapping[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__") + "}"


def _is_5xx(labels: Mapping[str, str]) -> bool:
    code = labels.get("response_code", "")
    return len(code) == 3 and code.isdigit() and code.startswith("5")


def _bound(text: str) -> float | None:
    try:
        return float(text)  # float() reads "+Inf" as infinity
    except ValueError:
        return None
