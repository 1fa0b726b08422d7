"""Covers analysis config: camelCase fields, defaults, cross-field rules, errors and secrets."""

from __future__ import annotations

import pytest

from rollout.core.analysis_model import AnalysisSpec, MetricSpec, ProviderSpec, parse_analysis
from rollout.core.errors import InvalidInput, SettingsError


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
    assert success.on_no_data is None and spec.no_data_of(success) == "inconclusive"
    assert success.weight == 1.0 and spec.max_inconclusive == 3


def test_custom_metrics_use_camel_case_and_templates() -> None:
    spec = parse_analysis(
        _analysis(
            judge={"kind": "comparative", "passScore": 90, "marginalScore": 50},
            templates={"errors": "sum(rate(errors{app='{{ target }}'}[{{ interval }}]))"},
            metrics=[
                {"name": "errors", "templateRef": "errors", "onNoData": "fail", "critical": True},
                {"name": "q", "query": "vector(1)", "direction": "either", "minEffect": 0.2},
            ],
        )
    )
    assert spec.judge.pass_score == 90
    assert spec.no_data_of(spec.metrics[0]) == "fail" and spec.metrics[0].worse == "either"
    assert spec.metrics[1].min_effect == 0.2


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"metrics": [{"name": "latency", "thresholdRange": {"max": 1}}]},
            'analysis.metrics[0] = {"name": "latency", "thresholdRange": {"max": 1}}: '
            "metric 'latency' needs a query",
        ),
        ({"interval": "1 minute"}, 'analysis.interval = "1 minute": must be a duration: '),
        (
            {"metrics": [{"name": "x", "query": "q", "thresholdRang": {}}]},
            "analysis.metrics[0].thresholdRang = {}: is not a known setting; "
            "did you mean thresholdRange?",
        ),
        ({"metrics": [{"name": "request-duration"}]}, "needs a thresholdRange"),
        (
            {"metrics": [{"name": "x", "templateRef": "nope", "thresholdRange": {"min": 1}}]},
            "not in templates (none defined)",
        ),
        (
            {"metrics": [{"name": "x", "query": "q", "thresholdRange": {"min": 2, "max": 1}}]},
            'analysis.metrics[0].thresholdRange = {"min": 2, "max": 1}: min 2.0 is above max',
        ),
        (
            {"metrics": [{"name": "x", "query": "q", "thresholdRange": {"min": 1}}] * 2},
            "repeated: x",
        ),
        (
            {"judge": {"kind": "bayesian"}},
            'analysis.judge.kind = "bayesian": must be one of: threshold, comparative, sequential',
        ),
        (
            {"provider": {"kind": "datadog"}},
            'analysis.provider.kind = "datadog": must be one of: prometheus, nop',
        ),
        (
            {"judge": {"kind": "sequential", "alpha": 0.9}},
            "analysis.judge.alpha = 0.9: must be a number > 0 and < 0.5",
        ),
        (
            {"metrics": [{"name": "Bad_Name", "query": "q", "thresholdRange": {"min": 1}}]},
            'analysis.metrics[0].name = "Bad_Name": must be a DNS-1123 label',
        ),
        (
            {"metrics": [{"name": "x", "query": "q", "interval": "1.5m",
                          "thresholdRange": {"min": 1}}]},
            'analysis.metrics[0].interval = "1.5m": must be a duration: whole numbers',
        ),
        ({"judge": {"step": "0s"}}, 'analysis.judge.step = "0s": must be a duration longer than'),
    ],
)
def test_bad_config_names_the_field(change: dict[str, object], expected: str) -> None:
    with pytest.raises(SettingsError) as caught:
        parse_analysis(_analysis(**change))
    assert caught.value.exit_code == 2
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
        {"bearerTokenEnv": "PROM_TOKEN", "headersEnv": {"X-Key": "PROM_KEY"}}
    )
    assert provider.bearer_token_env == "PROM_TOKEN"
    assert provider.headers_env == {"X-Key": "PROM_KEY"}
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
    # An unknown key's text is never shown: it may be a misspelt credential.
    assert "analysis.bogus = ***: is not a known setting" in str(caught.value)
    assert 'analysis.provider.basicAuth = ***: basicAuth.password must not be written' in str(
        caught.value)


def test_models_are_frozen_plain_data() -> None:
    metric = MetricSpec(name="request-success-rate")
    with pytest.raises(ValueError, match="frozen"):
        metric.weight = 2  # type: ignore[misc]
    assert AnalysisSpec.model_validate({"judge": {"kind": "sequential"}}).provider.retries == 3


def test_no_data_is_never_ignored() -> None:
    # Finding 6: "ignore" let a threshold judge pass with no data at all.
    with pytest.raises(InvalidInput, match="onNoData: ignore is no longer accepted"):
        parse_analysis(_analysis(metrics=[{"name": "request-success-rate",
                                           "thresholdRange": {"min": 99}, "onNoData": "ignore"}]))
    with pytest.raises(InvalidInput, match="onNoData"):
        parse_analysis(_analysis(onNoData="pass"))


def test_a_comparative_policy_that_could_never_fail_is_refused_naming_the_fix() -> None:
    # Finding 1: 3 samples a side can never give p < 0.01, so the judge passed anything.
    comparative = {"kind": "comparative", "step": "30s"}
    with pytest.raises(InvalidInput, match="could never fail") as refused:
        parse_analysis(_analysis(interval="30s", maxInconclusive=1, judge=comparative))
    assert "Set interval to at least 1m30s" in refused.value.message
    accepted = parse_analysis(_analysis(interval="1m30s", maxInconclusive=1, judge=comparative))
    assert accepted.interval == "1m30s"
    # At the defaults (1m, 30s steps, maxInconclusive 3) samples of 4 intervals are enough.
    parse_analysis(_analysis(interval="1m", judge=comparative))


def test_sequential_metrics_are_absolute_guards_and_need_a_range() -> None:
    with pytest.raises(InvalidInput, match="absolute guards"):
        parse_analysis(_analysis(judge={"kind": "sequential"},
                                 metrics=[{"name": "request-success-rate"}]))
