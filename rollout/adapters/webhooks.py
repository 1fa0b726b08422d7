"""Flagger-compatible webhooks: JSON POSTs with timeouts and retries, and gates built on them.

A hook succeeds when it answers 2xx. Gates (confirm-*) hold the rollout until every hook of
their type succeeds; pre-rollout and rollout failures count as failed checks; a rollback hook
answering 2xx asks for a rollback now; post-rollout and event failures are only reported.
A hook's URL is shown only as `redact_url` makes it: in results, the journal, logs and errors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from rollout.core.durations import parse_duration
from rollout.core.errors import InvalidInput
from rollout.core.policy import HookType, Webhook, redact_url

__all__ = ["HookResult", "WebhookCaller", "redact_url"]


@dataclass(frozen=True)
class HookResult:
    name: str
    type: str
    ok: bool
    status: int | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class WebhookCaller:
    def __init__(self, hooks: list[Webhook], *, transport: httpx.BaseTransport | None = None,
                 backoff: float = 0.5) -> None:
        for hook in hooks:
            hook.resolved_url()  # an unset urlEnv fails now, before the rollout changes anything
        self.hooks = hooks
        self._transport = transport
        self._backoff = backoff

    def of_type(self, hook_type: HookType) -> list[Webhook]:
        return [h for h in self.hooks if h.type == hook_type]

    def call_all(self, hook_type: HookType, payload: dict[str, Any]) -> list[HookResult]:
        return [self._call(hook, payload) for hook in self.of_type(hook_type)]

    def all_pass(
        self, hook_type: HookType, payload: dict[str, Any]
    ) -> tuple[bool, list[HookResult]]:
        results = self.call_all(hook_type, payload)
        return all(r.ok for r in results), results

    def _call(self, hook: Webhook, payload: dict[str, Any]) -> HookResult:
        body = {**payload, "type": hook.type, "metadata": {**hook.metadata}}
        timeout = parse_duration(hook.timeout)
        try:
            url = hook.resolved_url()
        except InvalidInput as err:
            return HookResult(hook.name, hook.type, False, None,
                              f"{hook.type} hook {hook.name} not called: {err.message}")
        last = HookResult(hook.name, hook.type, False, None, "not called")
        for attempt in range(hook.retries + 1):
            if attempt:
                time.sleep(self._backoff * 2 ** (attempt - 1))
            last = self._post(hook, url, body, timeout)
            if last.ok or (last.status is not None and last.status < 500):
                return last
        return last

    def _post(self, hook: Webhook, url: str, body: dict[str, Any], timeout: float
              ) -> HookResult:
        where = hook.shown(url)
        try:
            with httpx.Client(timeout=timeout, transport=self._transport) as client:
                response = client.post(url, json=body)
        except httpx.TimeoutException:
            return HookResult(hook.name, hook.type, False, None,
                              f"{hook.type} hook {hook.name} at {where} timed out "
                              f"after {timeout:g}s")
        except (httpx.HTTPError, httpx.InvalidURL) as err:
            # httpx puts the URL it was given into some of its messages.
            detail = hook.scrubbed(str(err), url).strip()[:200]
            return HookResult(hook.name, hook.type, False, None,
                              f"{hook.type} hook {hook.name} at {where} failed: "
                              f"{type(err).__name__}" + (f": {detail}" if detail else ""))
        ok = 200 <= response.status_code < 300
        # An endpoint may echo the request, URL and all, into its answer.
        text = hook.scrubbed(response.text, url).strip().replace("\n", " ")[:200]
        verdict = "accepted" if ok else "refused"
        return HookResult(hook.name, hook.type, ok, response.status_code,
                          f"{hook.type} hook {hook.name} {verdict} with HTTP "
                          f"{response.status_code}" + (f": {text}" if text else ""))
