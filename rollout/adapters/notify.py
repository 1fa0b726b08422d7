"""Notifiers: where finished rollouts are announced. Today a Slack-compatible webhook."""

from __future__ import annotations

from typing import Any

import httpx

from rollout.core.policy import Policy, redact_url, url_from_env
from rollout.core.ports import Notifier


class SlackNotifier:
    """Posts Slack's incoming-webhook JSON; failures never stop a rollout."""

    def __init__(self, url: str, *, transport: httpx.BaseTransport | None = None) -> None:
        self._url = url
        self._transport = transport
        self.errors: list[str] = []

    def __repr__(self) -> str:
        return f"SlackNotifier(url={redact_url(self._url, path=False)!r})"

    def post(self, *, title: str, text: str, ok: bool, fields: dict[str, Any]) -> None:
        body = {
            "text": f"{title}: {text}",
            "attachments": [{
                "color": "good" if ok else "danger",
                "title": title,
                "text": text,
                "fields": [{"title": k, "value": str(v), "short": True} for k, v in fields.items()],
            }],
        }
        try:
            with httpx.Client(timeout=5, transport=self._transport) as client:
                client.post(self._url, json=body).raise_for_status()
        except (httpx.HTTPError, httpx.InvalidURL) as err:
            self.errors.append(type(err).__name__)


def slack_from_env(variable: str) -> SlackNotifier:
    """The Slack notifier whose URL the environment variable `variable` holds."""
    return SlackNotifier(url_from_env(variable, key="slackWebhookEnv",
                                      what="the Slack incoming webhook URL"))


def notifiers_for(policy: Policy) -> list[Notifier]:
    """Every notifier the policy configures; none is fine."""
    found: list[Notifier] = []
    if policy.slack_webhook_env:
        found.append(slack_from_env(policy.slack_webhook_env))
    return found
