"""The metric provider seam: a three-method Protocol, a no-op and the factory."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from rollout.errors import InvalidInput

from .model import ProviderSpec
from .prometheus import PrometheusProvider


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


_FACTORIES: dict[str, Callable[[ProviderSpec], MetricProvider]] = {
    "prometheus": PrometheusProvider.from_spec,
    "nop": lambda spec: NopProvider(),
}


def provider_for(spec: ProviderSpec) -> MetricProvider:
    """The provider `spec.kind` names; an unknown kind is an error, never a silent default."""
    factory = _FACTORIES.get(spec.kind)
    if factory is None:
        raise InvalidInput(
            f"unknown metric provider kind {spec.kind!r}",
            hint=f"use one of: {', '.join(sorted(_FACTORIES))}",
        )
    return factory(spec)
