"""PromQL templates: safe placeholder substitution and the built-in Istio queries."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from rollout.core.analysis_model import MetricSpec
from rollout.core.durations import parse_duration
from rollout.core.errors import InvalidInput
from rollout.core.values import check_name, check_variable

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")

_SELECTOR = (
    'reporter="destination",destination_workload_namespace="{{ namespace }}",'
    'destination_workload=~"{{ target }}"'
)
# Istio creates a series with its first request, so a canary failing every request has no
# non-5xx series at all; `or on() vector(0)` makes that 0% rather than no data.
SUCCESS_RATE = (
    "100 * (sum(rate(istio_requests_total{" + _SELECTOR + ',response_code!~"5.*"}'
    "[{{ interval }}])) or on() vector(0))"
    " / sum(rate(istio_requests_total{" + _SELECTOR + "}[{{ interval }}]))"
)
DURATION_P99 = (
    "histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{"
    + _SELECTOR
    + "}[{{ interval }}])) by (le))"
)
BUILTIN_TEMPLATES = {
    "request-success-rate": (SUCCESS_RATE, "%"),
    "request-duration": (DURATION_P99, "ms"),
}

# The canary's request rate, for planning: how much evidence a step can gather.
REQUEST_RATE = "sum(rate(istio_requests_total{" + _SELECTOR + "}[{{ interval }}]))"


@dataclass(frozen=True)
class Workloads:
    """Where a canary runs: its namespace and the canary and primary workload names."""

    namespace: str
    canary: str
    primary: str

    def __post_init__(self) -> None:
        check_name(self.namespace, what="namespace")
        check_name(self.canary, what="canary workload")
        check_name(self.primary, what="primary workload")


@dataclass(frozen=True)
class MetricQueries:
    canary: str
    primary: str
    unit: str


def render(
    template: str,
    *,
    namespace: str,
    target: str,
    primary: str,
    interval: str,
    variables: Mapping[str, str] | None = None,
) -> str:
    """Fill {{ namespace }}, {{ target }}, {{ primary }}, {{ interval }} and {{ variables.X }}."""
    check_name(namespace, what="namespace")
    check_name(target, what="target workload")
    check_name(primary, what="primary workload")
    parse_duration(interval, positive=True)
    for name, value in (variables or {}).items():
        check_variable(name, value)
    roots = {"namespace": namespace, "target": target, "primary": primary, "interval": interval}
    # One pass: substituted values are never scanned again, so they cannot inject placeholders.
    rendered = _PLACEHOLDER.sub(
        lambda match: _lookup(match.group(1), roots, variables or {}), template
    )
    if "{{" in rendered or "}}" in rendered:
        raise InvalidInput(
            f"template has an unclosed or nested placeholder: {template!r}",
            hint="write placeholders as {{ name }}, one per pair of braces",
        )
    return rendered


def _lookup(name: str, roots: Mapping[str, str], variables: Mapping[str, str]) -> str:
    if name in roots:
        return roots[name]
    if name.startswith("variables."):
        key = name.removeprefix("variables.")
        if key in variables:
            return variables[key]
        known = ", ".join(sorted(variables)) or "none"
        raise InvalidInput(
            f"template uses variable {key!r}, which the metric does not set (set: {known})",
            hint=f"add variables: {{{key}: ...}} to the metric",
        )
    raise InvalidInput(
        f"template uses unknown placeholder {{{{ {name} }}}}",
        hint="known placeholders: namespace, target, primary, interval, variables.<name>",
    )


def metric_queries(
    metric: MetricSpec, *, workloads: Workloads, interval: str, templates: Mapping[str, str]
) -> MetricQueries:
    """The metric's query for the canary workload and for the primary workload."""
    if metric.builtin:
        template, unit = BUILTIN_TEMPLATES[metric.name]
    elif metric.query is not None:
        template, unit = metric.query, ""
    elif metric.template_ref is not None and metric.template_ref in templates:
        template, unit = templates[metric.template_ref], ""
    else:
        raise InvalidInput(
            f"metric {metric.name!r} refers to unknown template {metric.template_ref!r}"
        )

    def side(target: str) -> str:
        return render(
            template,
            namespace=workloads.namespace,
            target=target,
            primary=workloads.primary,
            interval=interval,
            variables=metric.variables,
        )

    return MetricQueries(canary=side(workloads.canary), primary=side(workloads.primary), unit=unit)
