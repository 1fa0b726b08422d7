"""What analysis produces: measurements taken, and verdicts per metric and per run."""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass
from typing import Any


class MetricOutcome(enum.StrEnum):
    """One metric's result. HIGH / LOW say which way it moved or crossed a bound."""

    PASS = "PASS"
    HIGH = "HIGH"
    LOW = "LOW"
    NO_DATA = "NO_DATA"
    ERROR = "ERROR"


class Decision(enum.StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"


@dataclass(frozen=True)
class Measurement:
    """Values one metric query returned for the canary and (if asked) the primary."""

    metric: str
    query: str
    window: str
    canary_workload: str
    canary: tuple[float, ...]
    primary: tuple[float, ...] = ()
    primary_query: str | None = None
    primary_workload: str | None = None
    unit: str = ""
    error: str | None = None
    primary_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _record(self)


@dataclass(frozen=True)
class EventCounts:
    """Requests and bad events (5xx, or slower than a bound) of each side over one interval."""

    canary_total: int
    canary_bad: int
    primary_total: int
    primary_bad: int
    window: str = ""
    error: str | None = None
    # Why the counts could not be read although the queries worked (NaN or Inf in a series).
    missing: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _record(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EventCounts:
        return cls(**data)


@dataclass(frozen=True)
class MetricVerdict:
    """One metric's result and a sentence saying why; `failed` is what counts against the run."""

    metric: str
    result: MetricOutcome
    failed: bool
    reason: str
    canary: float | None = None
    primary: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    statistic: float | None = None
    interval: tuple[float, float] | None = None
    p_value: float | None = None
    query: str = ""
    window: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _record(self)


@dataclass(frozen=True)
class Verdict:
    """One analysis run: PASS advances, FAIL counts against the canary, INCONCLUSIVE holds.

    `failed_checks` is what the run adds to the rollout's failed-check count (0 or 1, as in
    Flagger); `final` means the evidence is already conclusive: roll back without waiting for
    the threshold.
    """

    result: Decision
    metrics: tuple[MetricVerdict, ...]
    reason: str
    score: float | None = None
    failed_checks: int = 0
    final: bool = False

    @property
    def failed_metrics(self) -> tuple[MetricVerdict, ...]:
        return tuple(metric for metric in self.metrics if metric.failed)

    def to_dict(self) -> dict[str, Any]:
        return _record(self)


def _record(value: Any) -> dict[str, Any]:
    plain = _plain(value)
    assert isinstance(plain, dict)
    return plain


def _plain(value: Any) -> Any:
    """JSON-ready copy: enums to strings, tuples to lists, NaN and infinities to None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
