"""Covers PromQL templates: substitution, the built-in Istio queries and injection attempts."""

from __future__ import annotations

import pytest

from rollout.analysis import Workloads, metric_queries, render
from rollout.core.analysis_model import MetricSpec
from rollout.core.errors import InvalidInput

WORKLOADS = Workloads(namespace="shop", canary="cart", primary="cart-primary")
SELECTOR = 'reporter="destination",destination_workload_namespace="shop",destination_workload=~"{}"'


def _render(template: str, **variables: str) -> str:
    return render(
        template,
        namespace="shop",
        target="cart",
        primary="cart-primary",
        interval="1m",
        variables=variables,
    )


def test_builtin_success_rate_is_flaggers_query_with_all_5xx_as_zero_for_each_side() -> None:
    queries = metric_queries(
        MetricSpec(name="request-success-rate"), workloads=WORKLOADS, interval="1m", templates={}
    )
    for workload, query in (("cart", queries.canary), ("cart-primary", queries.primary)):
        labels = SELECTOR.format(workload)
        assert query == (
            f'100 * (sum(rate(istio_requests_total{{{labels},response_code!~"5.*"}}[1m]))'
            f" or on() vector(0)) / sum(rate(istio_requests_total{{{labels}}}[1m]))"
        )
    assert queries.unit == "%"


def test_builtin_duration_is_the_p99_of_the_istio_histogram() -> None:
    queries = metric_queries(
        MetricSpec(name="request-duration"), workloads=WORKLOADS, interval="2m", templates={}
    )
    labels = SELECTOR.format("cart")
    assert queries.canary == (
        "histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket"
        f"{{{labels}}}[2m])) by (le))"
    )
    assert queries.unit == "ms"


def test_placeholders_and_variables_are_filled_once() -> None:
    template = (
        'sum(rate(x{ns="{{namespace}}",app=~"{{ target }}|{{  primary }}",'
        'v="{{ variables.v }}"}[{{ interval }}]))'
    )
    assert _render(template, v="a-b_c.d:e/f") == (
        'sum(rate(x{ns="shop",app=~"cart|cart-primary",v="a-b_c.d:e/f"}[1m]))'
    )


def test_custom_templates_render_for_canary_and_primary() -> None:
    metric = MetricSpec(name="errors", templateRef="t", variables={"route": "/api"})
    queries = metric_queries(
        metric,
        workloads=WORKLOADS,
        interval="1m",
        templates={"t": 'errors{app="{{ target }}",route="{{ variables.route }}"}'},
    )
    assert queries.canary == 'errors{app="cart",route="/api"}'
    assert queries.primary == 'errors{app="cart-primary",route="/api"}'


@pytest.mark.parametrize(
    ("template", "variables", "named"),
    [
        ("{{ variables.missing }}", {}, "'missing'"),
        ("{{ target_name }}", {}, "target_name"),
        ("{{ variables.v | upper }}", {"v": "x"}, "'v | upper'"),
        ("{{ target", {}, "unclosed"),
    ],
)
def test_unknown_placeholders_are_named(
    template: str, variables: dict[str, str], named: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        _render(template, **variables)
    assert named in str(caught.value)


@pytest.mark.parametrize(
    "value",
    [
        'x"} or vector(1) #',
        'a",namespace!="',
        "x) or up",
        "a b",
        "{{ target }}",
        "a\nb",
        "x,y",
        "~",
    ],
)
def test_variable_values_cannot_change_the_query(value: str) -> None:
    with pytest.raises(InvalidInput, match="could change the query"):
        _render('m{v="{{ variables.v }}"}', v=value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("namespace", 'shop",x="1'),
        ("target", "Cart"),
        ("target", "cart.*"),
        ("primary", "a" * 64),
        ("interval", "1m]) or vector(1"),
        ("interval", "5 minutes"),
    ],
)
def test_names_and_interval_are_validated(field: str, value: str) -> None:
    kwargs = {"namespace": "shop", "target": "cart", "primary": "cart-primary", "interval": "1m"}
    with pytest.raises(InvalidInput):
        render("{{ target }}", **(kwargs | {field: value}))


def test_workloads_are_checked_when_built() -> None:
    with pytest.raises(InvalidInput, match="canary workload"):
        Workloads(namespace="shop", canary="Cart_1", primary="cart-primary")
