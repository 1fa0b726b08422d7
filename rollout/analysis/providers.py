"""The metric provider port: a three-method Protocol, and a no-op provider."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class MetricProvider(Protocol):
    def query(self, promql: str, at: datetime | None = None) -> list[float]:
        """One value per series; an empty list means no data."""
        ...

    def query_series(
        self, promql: str, at: datetime | None = None
    ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        """Each series' labels and raw samples (time, value): one for an instant selector,
        every sample in the range for a range selector such as `name{...}[60s]`."""
        ...

    def query_range(
        self, promql: str, start: datetime, end: datetime, step: str
    ) -> list[list[float]]:
        """One list of values per series."""
        ...

    def is_online(self) -> bool: ...


class NopProvider:
    """Answers every query with no data; judges then apply each metric's onNoData policy."""

    def query(self, promql: str, at: datetime | None = None) -> list[float]:
        return []

    def query_series(
        self, promql: str, at: datetime | None = None
    ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        return []

    def query_range(
        self, promql: str, start: datetime, end: datetime, step: str
    ) -> list[list[float]]:
        return []

    def is_online(self) -> bool:
        return True
