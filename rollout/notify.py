"""Notifiers: where rollout events are announced. Slack-compatible webhook, or nothing."""

from __future__ import annotations

import os
from typing import Any, Protocol

import httpx

from rollout.errors import InvalidInput


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
        return "SlackNotifier(url=<redacted>)"

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
        except httpx.HTTPError as err:
            self.errors.append(type(err).__name__)


def notifier_from_env(variable: str | None) -> Notifier:
    if not variable:
        return NopNotifier()
    url = os.environ.get(variable)
    if not url:
        raise InvalidInput(
            f"slackWebhookEnv names ${variable}, which is not set",
            hint=f"export {variable}=<Slack incoming webhook URL>, or remove slackWebhookEnv",
        )
    return SlackNotifier(url)
