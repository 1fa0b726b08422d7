"""Covers credentials kept out of the stack file: inline provider secrets and webhook URLs with
credentials are refused (exit 2, naming the key and the fix); `*Env` names are read from the
environment; webhook URLs are shown redacted in results, the journal, history and status JSON.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from typer.testing import CliRunner

from rollout.adapters.notify import SlackNotifier, slack_from_env
from rollout.adapters.prometheus import PrometheusProvider
from rollout.adapters.providers import provider_for
from rollout.adapters.webhooks import WebhookCaller
from rollout.app.api import Rollouts
from rollout.cli import app
from rollout.core.errors import InvalidInput, SettingsError
from rollout.core.policy import analysis_spec, load_policy, redact_url, url_credentials
from rollout.core.stack_data import ConfigEntry
from rollout.core.state import Outcome
from tests.unit.app.test_driver import STACK, make
from tests.unit.fakes import PROJECT, FakeStack, base_config, file_store_project

METRICS = [{"name": "request-success-rate", "thresholdRange": {"min": 99}}]
SECRET = "tok-7f3a9c1e5b"
TOKEN_URL = f"https://hooks.example.internal/hook/run?token={SECRET}&team=ops"


def _error(load: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        load()
    assert caught.value.exit_code == 2
    return caught.value


def _refusal(raw: dict[str, Any]) -> str:
    return str(_error(lambda: load_policy(raw)))


# -- metric provider credentials ------------------------------------------------------------


@pytest.mark.parametrize(("provider", "key", "fix"), [
    ({"bearerToken": SECRET}, "bearerToken", "bearerTokenEnv: ENV_VAR"),
    ({"basicAuth": {"username": "u", "password": SECRET}}, "basicAuth.password",
     "basicAuth.passwordEnv: ENV_VAR"),
    ({"headers": {"X-Scope-OrgID": SECRET}}, "headers", "headersEnv: {Header-Name: ENV_VAR}"),
])
@pytest.mark.parametrize("skip_analysis", [False, True])
def test_inline_provider_secrets_are_refused_naming_the_key_and_the_fix(
        provider: dict[str, Any], key: str, fix: str, skip_analysis: bool) -> None:
    error = _error(lambda: load_policy({"metrics": METRICS, "provider": provider,
                                        "skipAnalysis": skip_analysis}))
    assert isinstance(error, SettingsError)  # one error type for every config model
    message = str(error)
    assert "demo:analysis.provider" in message
    assert f"{key} must not be written in the stack file" in message and fix in message
    assert SECRET not in message


def test_an_env_field_holding_a_value_instead_of_a_name_is_refused_without_echoing_it() -> None:
    message = _refusal({"metrics": METRICS, "provider": {"bearerTokenEnv": "Bearer abc.def-1"}})
    assert ("demo:analysis.provider.bearerTokenEnv = ***: must be the name of an "
            "environment variable") in message
    assert "abc.def-1" not in message
    message = _refusal({"metrics": METRICS, "slackWebhookEnv": TOKEN_URL})
    assert ("demo:analysis.slackWebhookEnv = ***: must be the name of an environment "
            "variable") in message
    assert SECRET not in message and "hooks.example.internal" not in message


@pytest.mark.parametrize(("provider", "variable", "key"), [
    ({"bearerTokenEnv": "PROM_TOKEN"}, "PROM_TOKEN", "provider.bearerTokenEnv"),
    ({"basicAuth": {"username": "u", "passwordEnv": "PROM_PASSWORD"}}, "PROM_PASSWORD",
     "provider.basicAuth.passwordEnv"),
    ({"headersEnv": {"X-Scope-OrgID": "PROM_ORG"}}, "PROM_ORG",
     "provider.headersEnv.X-Scope-OrgID"),
])
def test_an_unset_variable_is_an_error_naming_it(
        monkeypatch: pytest.MonkeyPatch, provider: dict[str, Any], variable: str,
        key: str) -> None:
    monkeypatch.delenv(variable, raising=False)
    message = _refusal({"metrics": METRICS, "provider": provider})
    assert f"demo:analysis.{key} names ${variable}, which is not set" in message
    assert f"export {variable}=" in message


class _Prometheus(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        _Prometheus.seen.append(dict(self.headers.items()))
        body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def prometheus() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Prometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Prometheus.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("provider", "header", "expected"), [
    ({"bearerTokenEnv": "PROM_SECRET"}, "Authorization", f"Bearer {SECRET}"),
    ({"basicAuth": {"username": "u", "passwordEnv": "PROM_SECRET"}}, "Authorization", "Basic "),
    ({"headersEnv": {"X-Scope-OrgID": "PROM_SECRET"}}, "X-Scope-OrgID", SECRET),
])
def test_env_credentials_are_sent_and_never_stored_in_the_spec(
        monkeypatch: pytest.MonkeyPatch, prometheus: str, provider: dict[str, Any],
        header: str, expected: str) -> None:
    monkeypatch.setenv("PROM_SECRET", SECRET)
    spec = analysis_spec(load_policy(
        {"metrics": METRICS, "provider": {"address": prometheus, **provider}}))
    client = provider_for(spec.provider)
    assert isinstance(client, PrometheusProvider) and client.query("up") == []
    assert _Prometheus.seen[0][header].startswith(expected)
    for shown in (spec.model_dump_json(), str(spec.model_dump()), repr(spec), repr(client)):
        assert SECRET not in shown


def test_the_policy_level_token_variable_is_passed_as_a_name(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROM_TOKEN", SECRET)
    spec = analysis_spec(load_policy({"metrics": METRICS, "bearerTokenEnv": "PROM_TOKEN"}))
    assert spec.provider.bearer_token_env == "PROM_TOKEN"
    assert SECRET not in spec.model_dump_json()
    message = _refusal({"metrics": METRICS, "bearerTokenEnv": "PROM_TOKEN",
                        "provider": {"bearerTokenEnv": "OTHER"}})
    assert ("demo:analysis.bearerTokenEnv = ***: is set both at its top level and in "
            "provider; keep one") in message


# -- webhook URLs ---------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    f"https://bot:{SECRET}@hooks.example.internal/run",
    f"https://{SECRET}@hooks.example.internal/run",
    *(f"https://hooks.example.internal/run?x=1&{name}={SECRET}" for name in (
        "token", "key", "apikey", "api_key", "access_token", "secret", "signature", "sig",
        "password", "auth", "TOKEN", "Api_Key", "X-Amz-Signature", "accessToken",
        "client_secret", "private-token")),
])
def test_a_webhook_url_with_credentials_is_refused_naming_the_hook_and_the_fix(url: str) -> None:
    message = _refusal({"metrics": METRICS, "webhooks": [
        {"name": "load-test", "type": "rollout", "url": url}]})
    shown = json.dumps(redact_url(url))
    assert ('demo:analysis.webhooks[0] = {"name": "load-test", "type": "rollout", '
            f'"url": {shown}}}: webhook \'load-test\': its url carries credentials') in message
    assert "urlEnv: ENV_VAR instead of url" in message
    assert SECRET not in message


@pytest.mark.parametrize(("raw", "shown"), [
    # Where a value is shown, whatever in it looks like a credential is masked.
    ({"webhooks": [{"name": "h", "type": "rollout", "url": f"h.example/run?token={SECRET}"}]},
     'demo:analysis.webhooks[0].url = "h.example/run?token=***": must be an http(s) '
     "URL"),
    ({"webhooks": [{"name": "h", "type": "rollout", "url": f"ftp://u:{SECRET}@h.example/x"}]},
     'demo:analysis.webhooks[0].url = "ftp://***@h.example/x": must be an http(s) URL'),
    # An unknown key's text is never shown: it may be a misspelt credential.
    ({"provider": {"bearerTokn": SECRET}},
     "demo:analysis.provider.bearerTokn = ***: is not a known setting; did you mean "
     "bearerTokenEnv?"),
    ({"provider": {"headersEnv": {"X-Org": f"Bearer {SECRET}"}}},
     'demo:analysis.provider.headersEnv["X-Org"] = ***: must be the name of an '
     "environment variable"),
    ({"provider": {"basicAuth": {"username": "u", "passwordEnv": SECRET}}},
     "demo:analysis.provider.basicAuth.passwordEnv = ***: must be the name of an "
     "environment variable"),
    ({"webhooks": [{"name": "h", "type": "rollout", "urlEnv": TOKEN_URL}]},
     "demo:analysis.webhooks[0].urlEnv = ***: must be the name of an environment "
     "variable"),
])
def test_a_refused_value_is_shown_without_its_secret(raw: dict[str, Any], shown: str) -> None:
    message = _refusal({"metrics": METRICS, **raw})
    assert shown in message
    assert SECRET not in message


@pytest.mark.parametrize("url", [
    "http://loadtester/run", "https://approvals.example.internal/check?stage=prod&page=2",
    "https://hooks.example.internal/run?monkey=1&keys_only",
])
def test_a_webhook_url_without_credentials_is_accepted(url: str) -> None:
    assert url_credentials(url) == []
    policy = load_policy({"metrics": METRICS, "webhooks": [
        {"name": "h", "type": "rollout", "url": url}]})
    assert policy.webhooks[0].url == url


@pytest.mark.parametrize("hook", [
    {"url": "http://loadtester/run", "urlEnv": "HOOK_URL"},
    {},
])
def test_a_webhook_needs_exactly_one_of_url_and_url_env(hook: dict[str, str]) -> None:
    message = _refusal({"metrics": METRICS, "webhooks": [
        {"name": "gate", "type": "confirm-promotion", **hook}]})
    assert "webhook 'gate' needs exactly one of url and urlEnv" in message


def _caller(handler: Any, **hook: Any) -> WebhookCaller:
    policy = load_policy({"metrics": METRICS, "webhooks": [
        {"name": "load", "type": "rollout", "urlEnv": "HOOK_URL", "retries": 0, **hook}]})
    return WebhookCaller(policy.webhooks, transport=httpx.MockTransport(handler), backoff=0)


def test_url_env_must_be_set_when_the_caller_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOOK_URL", raising=False)
    with pytest.raises(InvalidInput) as caught:
        _caller(lambda request: httpx.Response(200))
    assert caught.value.exit_code == 2
    assert "webhook 'load' urlEnv names $HOOK_URL, which is not set" in str(caught.value)
    monkeypatch.setenv("HOOK_URL", f"hooks.example.internal/run?token={SECRET}")
    with pytest.raises(InvalidInput) as caught:
        _caller(lambda request: httpx.Response(200))
    assert "does not hold an http(s) URL" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_url_env_is_read_when_the_hook_is_called(monkeypatch: pytest.MonkeyPatch) -> None:
    called: list[str] = []
    monkeypatch.setenv("HOOK_URL", "https://old.example.internal/run")
    caller = _caller(lambda request: (called.append(str(request.url)), httpx.Response(200))[1])
    monkeypatch.setenv("HOOK_URL", TOKEN_URL)
    assert caller.all_pass("rollout", {})[0]
    assert called == [TOKEN_URL]
    monkeypatch.delenv("HOOK_URL")
    ok, results = caller.all_pass("rollout", {})
    assert not ok and "$HOOK_URL, which is not set" in results[0].message


def test_an_error_calling_a_url_env_hook_never_shows_its_token(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_URL", TOKEN_URL)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"could not connect to {request.url}", request=request)

    ok, results = _caller(refuse).all_pass("rollout", {})
    assert not ok and SECRET not in results[0].message
    assert "at https://hooks.example.internal/***?token=***&team=*** failed: ConnectError" in (
        results[0].message)

    ok, results = _caller(lambda request: httpx.Response(
        502, text=f"bad gateway for {request.url}")).all_pass("rollout", {})
    assert not ok and results[0].status == 502 and SECRET not in results[0].message


def test_a_hooks_token_reaches_neither_journal_nor_history_nor_status_json(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_URL", TOKEN_URL)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/hook/run":
            return httpx.Response(500, text=f"load test at {request.url} failed")
        raise httpx.ConnectError(f"could not connect to {request.url}", request=request)

    policy = load_policy({"metrics": METRICS, "webhooks": [
        {"name": "load", "type": "rollout", "urlEnv": "HOOK_URL", "retries": 0},
        {"name": "audit", "type": "event", "urlEnv": "AUDIT_URL", "retries": 0}]})
    monkeypatch.setenv("AUDIT_URL", f"https://audit:{SECRET}@audit.example.internal/e")
    hooks = WebhookCaller(policy.webhooks, transport=httpx.MockTransport(handler), backoff=0)
    driver, _, _, journal = make(tmp_path, hooks=hooks)
    state = driver.run("v2")
    assert state.outcome is Outcome.ROLLED_BACK and "load test at" in state.reason
    assert SECRET not in journal.path.read_text()
    assert SECRET not in journal.history_path.read_text()

    monkeypatch.setenv("CANARY_JOURNAL_DIR", str(tmp_path / "journal"))
    monkeypatch.setenv("CANARY_PROJECT_DIR", str(file_store_project(tmp_path / "p", STACK)))
    status = CliRunner().invoke(app, ["status", "--stack", STACK, "--output", "json"])
    assert status.exit_code == 0, status.output
    assert "hooks.example.internal" in status.output and SECRET not in status.output


def test_a_run_with_an_inline_secret_exits_2_and_changes_nothing(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    analysis = {"metrics": METRICS, "webhooks": [
        {"name": "load", "type": "rollout", "url": TOKEN_URL}]}
    stack = FakeStack(entries={**base_config(),
                               f"{PROJECT}:namespace": ConfigEntry("lab"),
                               f"{PROJECT}:analysis": ConfigEntry(json.dumps(analysis))})

    class Adapter(FakeStack):
        def stack(self, *, create: bool) -> None:
            return None

    adapter = Adapter(entries=stack.entries)
    monkeypatch.setattr(Rollouts, "adapter", property(lambda self: adapter))
    monkeypatch.setenv("CANARY_JOURNAL_DIR", str(tmp_path / "journal"))
    monkeypatch.setenv("CANARY_PROJECT_DIR", str(file_store_project(tmp_path / "p", STACK)))
    result = CliRunner().invoke(app, ["run", "--stack", STACK, "--version", "v2"])
    assert result.exit_code == 2, result.output
    assert "'load'" in result.output and "urlEnv" in result.output
    assert SECRET not in result.output
    assert adapter.ups == [] and not (tmp_path / "journal").exists()


# -- redaction ------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "path", "shown"), [
    (f"https://u:{SECRET}@h.example:8443/a/b?token={SECRET}&x=1#frag", True,
     "https://***@h.example:8443/a/b?token=***&x=***#***"),
    (f"https://hooks.slack.com/services/T0/B0/{SECRET}", False, "https://hooks.slack.com/***"),
    ("http://loadtester/run", True, "http://loadtester/run"),
    ("http://loadtester/", False, "http://loadtester/"),
    (f"https://h.example/?{SECRET}", True, "https://h.example/?***"),
    ("http://[::1/x", True, "***"),
])
def test_redact_url(url: str, path: bool, shown: str) -> None:
    assert redact_url(url, path=path) == shown


def test_the_slack_notifier_resolves_and_redacts_its_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_URL", f"https://hooks.slack.com/services/T0/B0/{SECRET}")
    notifier = slack_from_env("SLACK_URL")
    assert isinstance(notifier, SlackNotifier)
    assert repr(notifier) == "SlackNotifier(url='https://hooks.slack.com/***')"
    monkeypatch.setenv("SLACK_URL", SECRET)
    with pytest.raises(InvalidInput) as caught:
        slack_from_env("SLACK_URL")
    assert "does not hold an http(s) URL" in str(caught.value) and SECRET not in str(caught.value)


@pytest.mark.parametrize("address", ["http://admin:s3cret-pass@prom:9090", "https://tok3n@prom"])
def test_a_provider_address_with_credentials_is_refused_without_echoing_them(
    address: str,
) -> None:
    from rollout.core.analysis_model import parse_analysis

    with pytest.raises(SettingsError, match="passwordEnv") as refused:
        parse_analysis({"metrics": [{"name": "request-success-rate",
                                     "thresholdRange": {"min": 99}}],
                        "provider": {"address": address}})
    assert f'analysis.provider.address = "{address.split("//")[0]}//***@' in str(refused.value)
    assert "address carries credentials" in str(refused.value)
    assert "s3cret" not in str(refused.value) and "tok3n" not in str(refused.value)


def test_the_default_prometheus_follows_the_lab_port_base(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Issue 12 item 16: under CANARY_LAB_PORT_BASE=17000 the demo queried 16090, found nothing,
    # and "rolled back as expected" for the wrong reason.
    from rollout.adapters.prometheus import default_prometheus
    from rollout.core.policy import analysis_spec, load_policy

    monkeypatch.delenv("CANARY_PROMETHEUS_URL", raising=False)
    monkeypatch.setenv("CANARY_LAB_PORT_BASE", "17000")
    policy = load_policy({"metrics": [{"name": "request-success-rate",
                                       "thresholdRange": {"min": 99}}]})
    spec = analysis_spec(policy, default_address=default_prometheus())
    assert spec.provider.address == "http://127.0.0.1:17090"
    monkeypatch.setenv("CANARY_PROMETHEUS_URL", "http://prom:9090")
    spec = analysis_spec(policy, default_address=default_prometheus())
    assert spec.provider.address == "http://prom:9090"
    # A policy that names its Prometheus keeps it.
    named = load_policy({"provider": {"address": "http://named:9090"},
                         "metrics": [{"name": "request-success-rate",
                                      "thresholdRange": {"min": 99}}]})
    spec = analysis_spec(named, default_address=default_prometheus())
    assert spec.provider.address == "http://named:9090"
