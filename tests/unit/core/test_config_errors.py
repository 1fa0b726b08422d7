"""Covers the one translator of config errors: keys, values, rules, secrets, every problem."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import Field, model_validator

from rollout.core.config_errors import conflict, validate_config
from rollout.core.config_model import ConfigModel, Duration, PositiveDuration
from rollout.core.errors import InvalidInput, Problem, SettingsError
from rollout.core.policy import load_policy
from rollout.core.redaction import scrub

SECRET = "s3cr3t-7f3a9c1e"


class Range(ConfigModel):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self


class Auth(ConfigModel):
    username: str
    password_env: str = Field(pattern=r"^[A-Z_]+$")


class Check(ConfigModel):
    name: str = Field(pattern=r"^[a-z-]+$")
    interval: PositiveDuration | None = None
    threshold_range: Range | None = None
    weight: float = Field(default=1.0, gt=0, le=10)
    on_no_data: Literal["fail", "inconclusive"] = "inconclusive"
    labels: dict[str, str] = Field(default_factory=dict)


class Spec(ConfigModel):
    interval: Duration = "30s"
    max_weight: int = Field(default=50, ge=1, le=100)
    enabled: bool = False
    checks: list[Check] = Field(default_factory=list)
    auth: Auth | None = None
    webhook_url: str | None = Field(default=None, pattern=r"^https?://")
    opaque: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _some_check(self) -> Spec:
        if self.enabled and not self.checks:
            raise conflict("enabled needs at least one check")
        return self


KEY = "demo:spec"
RULES = {"checks.name": "must be a check name: lowercase letters and '-'"}


def problems(raw: Any, *, key: str = KEY, by_name: bool = True) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        validate_config(Spec, raw, key=key, rules=RULES, hint="fix it", by_name=by_name)
    assert isinstance(caught.value, InvalidInput) and caught.value.exit_code == 2
    assert caught.value.hint == "fix it"
    assert caught.value.__cause__ is None  # its text would repeat the input
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize(("raw", "expected"), [
    # Nested keys, list indexes, the value as JSON and the rule.
    ({"checks": [{"name": "a"}, {"name": "b", "interval": "1.5x"}]},
     'demo:spec.checks[1].interval = "1.5x": must be a duration: whole numbers with '
     "units in falling order, such as 500ms, 30s, 1m30s, 2h or 1d"),
    ({"checks": [{"name": "a", "interval": "0s"}]},
     'demo:spec.checks[0].interval = "0s": must be a duration longer than zero: '
     "whole numbers"),
    ({"interval": 30}, "demo:spec.interval = 30: must be a duration: whole numbers"),
    ({"checks": [{"name": "a", "thresholdRange": {"min": 2, "max": 1}}]},
     'demo:spec.checks[0].thresholdRange = {"min": 2, "max": 1}: min 2 is above max 1'),
    # A rule from the table, for the key and (by prefix) for anything under it.
    ({"checks": [{"name": "Bad Name"}]},
     'demo:spec.checks[0].name = "Bad Name": must be a check name: lowercase letters'),
    # Missing required keys.
    ({"checks": [{}]},
     "demo:spec.checks[0].name is not set: run "
     "`pulumi config set --path 'spec.checks[0].name' <value>`; it must be a check name"),
    ({"auth": {"passwordEnv": "PW"}},
     "demo:spec.auth.username is not set: run "
     "`pulumi config set --path spec.auth.username <value>`; it must be text"),
    # Unknown keys, with a did-you-mean when a known key is close or is their camelCase.
    ({"intervall": "30s"},
     "demo:spec.intervall = ***: is not a known setting; did you mean interval? "
     "known settings: interval, maxWeight, enabled, checks, auth, webhookUrl, opaque"),
    ({"checks": [{"name": "a", "wieght": 2}]},
     "demo:spec.checks[0].wieght = 2: is not a known setting; did you mean weight? "
     "known settings: name, interval, thresholdRange, weight, onNoData, labels"),
    ({"zzz": 1}, "demo:spec.zzz = 1: is not a known setting; known settings: interval"),
    # Wrong types, in plain words read off the field's type and constraints.
    ({"maxWeight": "lots"}, 'demo:spec.maxWeight = "lots": must be an integer from 1 '
     "to 100"),
    ({"maxWeight": 0}, "demo:spec.maxWeight = 0: must be an integer from 1 to 100"),
    ({"maxWeight": 2.5}, "demo:spec.maxWeight = 2.5: must be an integer from 1 to 100"),
    ({"enabled": "maybe"}, 'demo:spec.enabled = "maybe": must be true or false'),
    ({"checks": {"name": "a"}}, 'demo:spec.checks = {"name": "a"}: must be a list'),
    ({"checks": ["a"]}, 'demo:spec.checks[0] = "a": must be a map with the settings '
     "name, interval, thresholdRange, weight, onNoData, labels"),
    ({"checks": [{"name": "a", "weight": 0}]},
     "demo:spec.checks[0].weight = 0: must be a number > 0 and <= 10"),
    ({"checks": [{"name": "a", "onNoData": "ignore"}]},
     'demo:spec.checks[0].onNoData = "ignore": must be one of: fail, inconclusive'),
    ({"checks": [{"name": "a", "labels": {"team": 5}}]},
     "demo:spec.checks[0].labels.team = 5: must be text"),
    ({"checks": [{"name": "a", "labels": {"a b": ["x"]}}]},
     'demo:spec.checks[0].labels["a b"] = ["x"]: must be text'),
    ({"webhookUrl": "hooks.example"},
     'demo:spec.webhookUrl = "hooks.example": must be text matching ^https?://'),
    ({"opaque": [1]}, "demo:spec.opaque = [1]: must be a map"),
    ({3: "x"}, 'demo:spec["3"] = 3: keys must be text: quote this one'),
    # The object itself: a non-map value is shown; a cross-field error names no value.
    (["a"], 'demo:spec = ["a"]: must be a map with the settings interval, maxWeight'),
    (None, "demo:spec = null: must be a map with the settings interval"),
    ({"enabled": True}, "demo:spec: enabled needs at least one check"),
])
def test_each_problem_names_its_key_its_value_and_what_is_allowed(
        raw: Any, expected: str) -> None:
    found = problems(raw)
    assert any(expected in line for line in found), found


def test_python_names_are_unknown_keys_where_the_loader_says_so() -> None:
    assert validate_config(Spec, {"max_weight": 5}, key=KEY).max_weight == 5
    assert problems({"max_weight": 5}, by_name=False) == [
        "demo:spec.max_weight = 5: is not a known setting; did you mean maxWeight? "
        "known settings: interval, maxWeight, enabled, checks, auth, webhookUrl, opaque"]


@pytest.mark.parametrize(("key", "raw", "expected"), [
    # The namespace itself: keys follow its colon, and `pulumi config set` needs no --path.
    ("demo:", {"auth": {"username": "u"}},
     "demo:auth.passwordEnv is not set: run "
     "`pulumi config set --path auth.passwordEnv <value>`"),
    ("demo:", {}, None),
    # Not in a stack (a bench, a test): no `pulumi config set` to suggest.
    ("analysis", {"checks": [{}]}, "analysis.checks[0].name is not set; it must be a check"),
])
def test_the_key_prefix(key: str, raw: Any, expected: str | None) -> None:
    if expected is None:
        assert validate_config(Spec, raw, key=key).max_weight == 50
        return
    assert expected in problems(raw, key=key)[0]


@pytest.mark.parametrize(("raw", "shown"), [
    # Values of credential-like keys, and of *Env keys (a refused one may be the secret).
    ({"auth": {"username": "u", "passwordEnv": SECRET}},
     "demo:spec.auth.passwordEnv = ***: must be text matching"),
    ({"auth": {"username": "u", "password": SECRET, "passwordEnv": "PW"}},
     "demo:spec.auth.password = ***: is not a known setting"),
    # An unknown key's text: it may be a misspelt credential.
    ({"bearerTokn": SECRET}, "demo:spec.bearerTokn = ***: is not a known setting"),
    ({"checks": [{"name": "a", "oops": {"nested": SECRET, "n": 1}}]},
     'demo:spec.checks[0].oops = {"nested": "***", "n": 1}: is not a known setting'),
    # Text under Any is unknown too.
    ({"opaque": {"x": 1}, "enabled": "no", "checks": [{"name": "a", "labels": {"apiKey": 1}}]},
     'demo:spec.checks[0].labels.apiKey = ***: must be text'),
    # Credentials in URLs and in text, wherever the value is shown.
    ({"webhookUrl": f"ftp://bot:{SECRET}@hooks.example/x?token={SECRET}"},
     'demo:spec.webhookUrl = "ftp://***@hooks.example/x?token=***": must be text'),
    ({"webhookUrl": f"hooks.example/x?page=2&access_token={SECRET}"},
     'demo:spec.webhookUrl = "hooks.example/x?page=2&access_token=***": must be'),
    ({"checks": [{"name": "a", "labels": {"how": f"Bearer {SECRET}"}}], "enabled": 1.5},
     "demo:spec.enabled = 1.5: must be true or false"),
    ({"checks": [{"name": "a", "thresholdRange": {"min": 2, "max": 1, "secret": SECRET}}]},
     'demo:spec.checks[0].thresholdRange.secret = ***: is not a known setting'),
    ({"enabled": True, "bearerToken": SECRET}, "demo:spec.bearerToken = ***"),
])
def test_a_secret_value_is_never_shown(raw: Any, shown: str) -> None:
    found = problems(raw)
    assert any(shown in line for line in found), found
    assert not any(SECRET in line for line in found)


def test_every_problem_is_listed_at_once_one_line_each() -> None:
    with pytest.raises(SettingsError) as caught:
        validate_config(Spec, {"maxWeight": 0, "intervall": "1m", "checks": [
            {"name": "a", "weight": -1}, {"interval": "1.5m"}]}, key=KEY)
    assert [p.key for p in caught.value.problems] == [
        "demo:spec.maxWeight", "demo:spec.checks[0].weight",
        "demo:spec.checks[1].name", "demo:spec.checks[1].interval",
        "demo:spec.intervall"]
    lines = str(caught.value).splitlines()
    assert lines[0] == "invalid stack configuration (5 problem(s)):"
    assert all(line.startswith("  - demo:spec.") for line in lines[1:])


def test_nonsense_is_one_short_line_per_problem() -> None:
    deep: list[Any] = []
    inner = deep
    for _ in range(2000):
        inner.append([])
        inner = inner[0]
    for raw in ("x" * 10_000, {"checks": deep}, {"é" * 10_000: "ünï"}, {"opaque": deep},
                {"checks": [{"name": "ü" * 10_000}]}):
        for line in problems(raw):
            assert len(line) < 400, line


def test_a_problem_without_a_value() -> None:
    assert str(Problem("k:a", "is not set", has_value=False)) == "k:a is not set"
    assert str(Problem("k:a", "choose one", has_value=False)) == "k:a: choose one"
    assert str(Problem("k:a", "must be text", "***")) == "k:a = ***: must be text"
    assert str(Problem("k:a", "too long", "x" * 500)).endswith('xxx...: too long')


@pytest.mark.parametrize(("text", "shown"), [
    ("https://u:pw@h.example:8443/a?token=t&x=1#f",
     "https://***@h.example:8443/a?token=***&x=***#***"),
    ("see https://h.example/a?sig=abc now", "see https://h.example/a?sig=*** now"),
    ("user:pw@host.example", "***@host.example"),
    ("h/x?page=2&api_key=abc", "h/x?page=2&api_key=***"),
    ("Authorization: Bearer abc.def", "Authorization: Bearer ***"),
    ("registry.local:5000/demo@sha256:abc", "registry.local:5000/demo@sha256:abc"),
    ("sum(rate(http_requests_total{app=\"demo\"}[1m]))",
     "sum(rate(http_requests_total{app=\"demo\"}[1m]))"),
    ("ops@example.internal", "ops@example.internal"),
])
def test_scrub(text: str, shown: str) -> None:
    assert scrub(text) == shown


def test_the_policy_and_its_analysis_are_refused_together() -> None:
    # The policy's own keys and the analysis model's are two models; one run lists both.
    with pytest.raises(SettingsError) as caught:
        load_policy({"gateTimeout": "1.5h", "interval": "1.5m", "judge": {"kind": "bayes"},
                     "metrics": [{"name": "x", "query": "q", "thresholdRange": {"mn": 1}}]})
    assert [p.key for p in caught.value.problems] == [
        "demo:analysis.interval", "demo:analysis.gateTimeout",
        "demo:analysis.metrics[0].thresholdRange.mn",
        "demo:analysis.judge.kind"]
    assert "README, 'Rollout policy'" in str(caught.value.hint)


def test_a_skipped_analysis_lists_only_its_provider() -> None:
    with pytest.raises(SettingsError) as caught:
        load_policy({"skipAnalysis": True, "maxWeight": 500, "provider": {"kind": "datadog"}})
    assert [p.key for p in caught.value.problems] == [
        "demo:analysis.maxWeight", "demo:analysis.provider.kind"]
