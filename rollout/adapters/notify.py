"""Notifiers: where rollout events are announced. Slack-compatible webhook, or nothing."""

from __future__ import annotations

from typing import Any, Protocol

import httpx

from rollout.core.policy import redact_url, url_from_env


class Notifier(Protocol):
    def post(self, *, title: str, text: str, ok: bool, fields: dict[str, Any]) -> None: ...


class NopNotifier:
    def post(self, *, title: str, text: str, ok: bool, fields: dict[str, Any]) -> None:
        return None


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


def notifier_from_env(variable: str | None) -> Notifier:
    if not variable:
        return NopNotifier()
    return SlackNotifier(url_from_env(variable, key="slackWebhookEnv",
                                      what="the Slack incoming webhook URL"))
