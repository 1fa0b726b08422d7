"""An in-memory metric provider at least as strict as Prometheus for what unit tests ask of it.

- Raw series selectors (`name{label="value",...}`, equality matchers only) are evaluated over
  stored samples as Prometheus evaluates an instant vector: each series' last sample at or
  before the instant, if it is at most 5 minutes old; labels come back with `__name__`. With
  a range (`name{...}[60000ms]`) every sample inside it comes back.
  tests/lab/test_prometheus.py checks these answers against real Prometheus.
- Any other expression must be defined by its exact text, as a function of the evaluation
  time. A query nobody defined fails the test: there is no substring matching and no default.
- Range queries evaluate at start, start + step, ... <= end, so each window gets its own
  values, as in Prometheus.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rollout.core.durations import parse_duration

LOOKBACK = 300.0
_SELECTOR = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\}(?:\[(\d+)ms\])?$")
_MATCHER = re.compile(r'^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"$')

Expression = Callable[[float], list[float]]


class UnknownQuery(AssertionError):
    """The code under test asked for a query the test did not define."""


@dataclass
class FakePrometheus:
    series: list[tuple[dict[str, str], list[tuple[float, float]]]] = field(default_factory=list)
    expressions: dict[str, Expression] = field(default_factory=dict)
    failures: dict[str, Exception] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def add(self, labels: Mapping[str, str], samples: Iterable[tuple[float, float]]) -> None:
        ordered = sorted(samples)
        self.series.append((dict(labels), ordered))

    def define(self, promql: str, value_at: Expression) -> None:
        self.expressions[promql] = value_at

    def fail(self, promql: str, error: Exception) -> None:
        """`promql` raises `error`; "*" makes every query raise it."""
        self.failures[promql] = error

    # -- the MetricProvider protocol ------------------------------------------------------

    def query(self, promql: str, at: datetime | None = None) -> list[float]:
        when = _seconds(at)
        self._record(promql)
        if promql in self.expressions:
            return self.expressions[promql](when)
        name, matchers, window = _parse(promql)
        if window is not None:
            raise UnknownQuery(f"Prometheus cannot return a range vector as a value: {promql}")
        return [samples[-1][1] for _, samples in self._select(name, matchers, when, None)]

    def query_series(
        self, promql: str, at: datetime | None = None
    ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        self._record(promql)
        name, matchers, window = _parse(promql)
        return self._select(name, matchers, _seconds(at), window)

    def query_range(
        self, promql: str, start: datetime, end: datetime, step: str
    ) -> list[list[float]]:
        self._record(promql)
        every = parse_duration(step)
        first, last = start.timestamp(), end.timestamp()
        times = [first + i * every for i in range(int((last - first) // every) + 1)]
        if promql not in self.expressions:
            raise UnknownQuery(f"range query not defined in the fake: {promql}")
        columns = [self.expressions[promql](t) for t in times]
        width = max((len(c) for c in columns), default=0)
        return [[c[i] for c in columns if i < len(c)] for i in range(width)]

    def is_online(self) -> bool:
        return True

    # -- evaluation -----------------------------------------------------------------------

    def _record(self, promql: str) -> None:
        self.asked.append(promql)
        error = self.failures.get(promql) or self.failures.get("*")
        if error is not None:
            raise error

    def _select(
        self, name: str, matchers: dict[str, str], when: float, window: float | None
    ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        found = []
        for labels, samples in self.series:
            if labels.get("__name__") != name:
                continue
            if any(labels.get(key, "") != value for key, value in matchers.items()):
                continue
            if window is not None:
                # A range selector: every sample in [when - window, when], as in Prometheus 2.
                inside = [(t, v) for t, v in samples if when - window <= t <= when]
                if inside:
                    found.append((dict(labels), inside))
                continue
            before = [(t, v) for t, v in samples if t <= when]
            if before and when - before[-1][0] <= LOOKBACK:
                # An instant vector carries the evaluation time, not the sample's own.
                found.append((dict(labels), [(when, before[-1][1])]))
        return found


def _parse(promql: str) -> tuple[str, dict[str, str], float | None]:
    match = _SELECTOR.match(promql)
    if match is None:
        raise UnknownQuery(f"not a raw selector and not defined in the fake: {promql}")
    matchers = {}
    for part in filter(None, match.group(2).split(",")):
        one = _MATCHER.match(part.strip())
        if one is None:
            raise UnknownQuery(f"the fake evaluates equality matchers only, not {part!r}")
        matchers[one.group(1)] = one.group(2)
    window = int(match.group(3)) / 1000 if match.group(3) else None
    return match.group(1), matchers, window


def _seconds(at: datetime | None) -> float:
    # The provider sends times in milliseconds, and Prometheus answers with that time.
    return round((at or datetime.now(UTC)).timestamp(), 3)
