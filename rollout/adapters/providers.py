"""The metric providers by kind: the factory that turns a provider spec into a provider."""

from __future__ import annotations

from collections.abc import Callable

from rollout.adapters.prometheus import PrometheusProvider
from rollout.analysis.providers import MetricProvider, NopProvider
from rollout.core.analysis_model import ProviderSpec
from rollout.core.errors import InvalidInput

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
