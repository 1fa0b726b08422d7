"""Covers analysis config: camelCase fields, defaults, cross-field rules, errors and secrets."""

from __future__ import annotations

import pytest

from rollout.analysis import AnalysisSpec, MetricSpec, ProviderSpec, parse_analysis
from rollout.errors import InvalidInput


def _analysis(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "interval": "1m",
        "threshold": 5,
        "metrics": [
            {"name": "request-success-rate", "thresholdRange": {"min": 99}},
            {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": "30s"},
        ],
    }
    return base | overrides


def test_builtin_metrics_need_no_query_and_know_their_direction() -> None:
    spec = parse_analysis(_analysis())
    success, duration = spec.metrics
    assert success.builtin and success.worse == "lower-is-worse"
    assert duration.worse == "higher-is-worse"
    assert spec.interval_of(success) == "1m" and spec.interval_of(duration) == "30s"
    assert success.on_no_data == "fail" and success.weight == 1.0


def test_custom_metrics_use_camel_case_and_templates() -> None:
    spec = parse_analysis(
        _analysis(
            judge={"kind": "comparative", "passScore": 90, "marginalScore": 50},
            templates={"errors": "sum(rate(errors{app='{{ target }}'}[{{ interval }}]))"},
            metrics=[
                {"name": "errors", "templateRef": "errors", "onNoData": "ignore", "critical": True},
                {"name": "q", "query": "vector(1)", "direction": "either", "minEffect": 0.2},
            ],
        )
    )
    assert spec.judge.pass_score == 90
    assert spec.metrics[0].on_no_data == "ignore" and spec.metrics[0].worse == "either"
    assert spec.metrics[1].min_effect == 0.2


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"metrics": [{"name": "latency", "thresholdRange": {"max": 1}}]}, "needs a query"),
        ({"interval": "1 minute"}, "analysis.interval: "),
        ({"metrics": [{"name": "x", "query": "q", "thresholdRang": {}}]}, "thresholdRang"),
        ({"metrics": [{"name": "request-duration"}]}, "needs a thresholdRange"),
        (
            {"metrics": [{"name": "x", "templateRef": "nope", "thresholdRange": {"min": 1}}]},
            "not in templates (none defined)",
        ),
        ({"metrics": [{"name": "x", "query": "q", "thresholdRange": {"min": 2, "max": 1}}]}, "min"),
        (
            {"metrics": [{"name": "x", "query": "q", "thresholdRange": {"min": 1}}] * 2},
            "repeated: x",
        ),
        ({"judge": {"kind": "bayesian"}}, "analysis.judge.kind"),
        ({"provider": {"kind": "datadog"}}, "analysis.provider.kind"),
        ({"judge": {"kind": "sequential", "alpha": 0.9}}, "analysis.judge.alpha"),
    ],
)
def test_bad_config_names_the_field(change: dict[str, object], expected: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_analysis(_analysis(**change))
    assert expected in str(caught.value)


def test_variables_are_checked_when_the_config_is_read() -> None:
    bad = {"name": "x", "query": "q", "thresholdRange": {"min": 1}, "variables": {"v": 'a"}'}}
    with pytest.raises(InvalidInput, match="could change the query"):
        parse_analysis(_analysis(metrics=[bad]))


def test_the_sequential_judge_needs_no_metrics() -> None:
    spec = parse_analysis({"judge": {"kind": "sequential", "slowRequestMs": 250}})
    assert spec.metrics == [] and spec.judge.slow_request_ms == 250


def test_secrets_stay_out_of_reprs_and_errors() -> None:
    provider = ProviderSpec.model_validate(
        {"bearerToken": "s3cret-token", "headers": {"X-Key": "hdr-secret"}}
    )
    assert "s3cret" not in repr(provider) and "hdr-secret" not in repr(provider)
    with pytest.raises(InvalidInput) as caught:
        parse_analysis(
            {
                "provider": {"basicAuth": {"username": "u", "password": "pw-secret"}},
                "metrics": [],
                "judge": {"kind": "sequential"},
                "bogus": "pw-secret",
            }
        )
    assert "pw-secret" not in str(caught.value)
    assert "analysis.bogus" in str(caught.value)


def test_models_are_frozen_plain_data() -> None:
    metric = MetricSpec(name="request-success-rate")
    with pytest.raises(ValueError, match="frozen"):
        metric.weight = 2  # type: ignore[misc]
    assert AnalysisSpec.model_validate({"judge": {"kind": "sequential"}}).provider.retries == 3
