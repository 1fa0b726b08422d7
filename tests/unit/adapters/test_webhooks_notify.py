"""Covers webhook calls (timeouts, retries, redaction) and the Slack-compatible notifier."""

from __future__ import annotations

import json

import httpx
import pytest

from rollout.adapters.notify import SlackNotifier, notifiers_for, slack_from_env
from rollout.adapters.webhooks import WebhookCaller, redact_url
from rollout.core.errors import InvalidInput
from rollout.core.policy import load_policy

METRICS = [{"name": "request-success-rate", "thresholdRange": {"min": 99}}]
SECRET_URL = "https://hooks.example.internal/services/T000/B000/very-secret-token?x=1"


@pytest.fixture(autouse=True)
def _hook_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_URL", SECRET_URL)


def _caller(handler, **hook) -> WebhookCaller:
    policy = load_policy({"metrics": METRICS, "webhooks": [
        {"name": "h", "type": "rollout", "urlEnv": "HOOK_URL", **hook}]})
    return WebhookCaller(policy.webhooks, transport=httpx.MockTransport(handler), backoff=0)


def test_a_5xx_is_retried_and_a_4xx_is_not() -> None:
    calls: list[int] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(503 if len(calls) < 3 else 200)

    assert _caller(flaky, retries=2).all_pass("rollout", {})[0]
    assert len(calls) == 3
    calls.clear()
    ok, results = _caller(lambda r: (calls.append(1), httpx.Response(403))[1],
                          retries=3).all_pass("rollout", {})
    assert not ok and len(calls) == 1 and results[0].status == 403


def test_a_timeout_is_a_failure_that_names_the_hook_without_its_secret_url() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    ok, results = _caller(slow, retries=0, timeout="1s").all_pass("rollout", {})
    assert not ok
    assert "timed out after 1s" in results[0].message
    assert "very-secret-token" not in results[0].message


def test_the_payload_carries_the_type_and_metadata() -> None:
    seen: list[dict] = []
    caller = _caller(lambda r: (seen.append(json.loads(r.content)), httpx.Response(200))[1],
                     metadata={"cmd": "hey -z 1m"})
    caller.call_all("rollout", {"name": "demo", "phase": "Progressing"})
    assert seen == [{"name": "demo", "phase": "Progressing", "type": "rollout",
                     "metadata": {"cmd": "hey -z 1m"}}]


def test_redact_url_hides_query_values_and_the_path_of_a_secret_url() -> None:
    assert redact_url(SECRET_URL) == (
        "https://hooks.example.internal/services/T000/B000/very-secret-token?x=***")
    assert redact_url(SECRET_URL, path=False) == "https://hooks.example.internal/***?x=***"


def test_slack_notifier_posts_attachments_and_hides_its_url() -> None:
    sent: list[dict] = []
    notifier = SlackNotifier(SECRET_URL, transport=httpx.MockTransport(
        lambda r: (sent.append(json.loads(r.content)), httpx.Response(200))[1]))
    notifier.post(title="demo on prod: rolled-back", text="success rate 93%", ok=False,
                  fields={"candidate": "v3"})
    assert sent[0]["attachments"][0]["color"] == "danger"
    assert "secret" not in repr(notifier)


def test_the_notifiers_a_policy_configures(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = [{"name": "request-success-rate", "thresholdRange": {"min": 99}}]
    assert notifiers_for(load_policy({"metrics": metrics})) == []
    monkeypatch.delenv("SLACK_URL", raising=False)
    with pytest.raises(InvalidInput) as err:
        slack_from_env("SLACK_URL")
    assert "SLACK_URL" in str(err.value)
    monkeypatch.setenv("SLACK_URL", SECRET_URL)
    [slack] = notifiers_for(load_policy({"metrics": metrics, "slackWebhookEnv": "SLACK_URL"}))
    assert isinstance(slack, SlackNotifier)
