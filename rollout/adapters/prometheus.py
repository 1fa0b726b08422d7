"""Metric provider on Prometheus' HTTP API via prometheus-api-client, with retries and redaction."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from rollout.analysis.errors import InvalidQuery, MetricQueryError
from rollout.core.analysis_model import ProviderSpec, provider_credentials
from rollout.core.errors import InvalidInput, RolloutError

_log = logging.getLogger(__name__)
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class _HttpStatus(Exception):
    """An HTTP error answer, raised from a response hook so the status and body survive."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


class PrometheusProvider:
    """Instant and range queries; one float per series; connection errors and 5xx retried."""

    def __init__(
        self,
        *,
        address: str,
        bearer_token: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        verify: bool | str = True,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._address = _without_userinfo(address.rstrip("/"))
        self._retries = retries
        self._backoff = backoff
        self._sleep = sleep
        all_headers = dict(headers or {})
        if bearer_token:
            all_headers["Authorization"] = f"Bearer {bearer_token}"
        self._secrets = _secrets_of(address, bearer_token, basic_auth, all_headers)
        session = requests.Session()
        session.verify = verify
        session.hooks["response"].append(_raise_unless_ok)
        self._client = PrometheusConnect(
            url=address.rstrip("/"),
            headers=all_headers or None,
            auth=basic_auth,
            session=session,
            timeout=timeout,  # type: ignore[arg-type]
            # Retries are ours (with backoff and error mapping), so the adapter makes one attempt.
            retry=Retry(total=0, read=False, redirect=0, raise_on_status=False),
        )

    @classmethod
    def from_spec(cls, spec: ProviderSpec) -> PrometheusProvider:
        secrets = provider_credentials(spec)
        token, basic = secrets.bearer_token, secrets.basic_auth
        return cls(
            address=spec.address,
            bearer_token=token.get_secret_value() if token else None,
            basic_auth=(basic[0], basic[1].get_secret_value()) if basic else None,
            headers={name: value.get_secret_value() for name, value in secrets.headers.items()},
            verify=spec.ca_file or not spec.insecure_skip_verify,
            timeout=spec.timeout_seconds,
            retries=spec.retries,
            backoff=spec.backoff_seconds,
        )

    def __repr__(self) -> str:
        auth = "with credentials" if self._secrets else "without credentials"
        return f"PrometheusProvider(address={self._address!r}, {auth})"

    def close(self) -> None:
        self._client.close()

    def query(self, promql: str, at: datetime | None = None) -> list[float]:
        params = {"time": f"{at.timestamp():.3f}"} if at is not None else None
        result = self._call(promql, lambda: self._client.custom_query(promql, params=params))
        return _instant_values(result, promql)

    def query_series(
        self, promql: str, at: datetime | None = None
    ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        params = {"time": f"{at.timestamp():.3f}"} if at is not None else None
        result = self._call(promql, lambda: self._client.custom_query(promql, params=params))
        try:
            return [
                (
                    dict(series["metric"]),
                    [(float(t), _number(v, promql)) for t, v in series["values"]]
                    if "values" in series
                    else [(float(series["value"][0]), _number(series["value"][1], promql))],
                )
                for series in result
            ]
        except (KeyError, TypeError, IndexError, ValueError):
            raise _unexpected(result, promql) from None

    def query_range(
        self, promql: str, start: datetime, end: datetime, step: str
    ) -> list[list[float]]:
        result = self._call(
            promql, lambda: self._client.custom_query_range(promql, start, end, step)
        )
        return _range_values(result, promql)

    def is_online(self) -> bool:
        try:
            return self.query("vector(1)") == [1.0]
        except MetricQueryError as exc:
            _log.info("Prometheus at %s is not answering: %s", self._address, exc.message)
            return False

    def _call(self, promql: str, send: Callable[[], Any]) -> Any:
        attempt = 0
        while True:
            try:
                return send()
            except _HttpStatus as exc:
                failure = self._status_error(exc, promql)
                if exc.status not in _RETRY_STATUSES:
                    raise failure from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                failure = MetricQueryError(
                    f"could not reach Prometheus at {self._address}: {self._redact(str(exc))}",
                    query=promql,
                    hint="check the provider address and that Prometheus is running",
                )
            except (requests.RequestException, PrometheusApiClientException, ValueError) as exc:
                raise MetricQueryError(
                    f"unreadable answer from Prometheus at {self._address}: "
                    f"{self._redact(str(exc))[:300]}",
                    query=promql,
                ) from None
            if attempt == self._retries:
                raise _gave_up(failure, attempts=attempt + 1) from None
            delay = self._backoff * 2**attempt
            _log.warning("%s; retrying in %.1fs", failure.message, delay)
            self._sleep(delay)
            attempt += 1

    def _status_error(self, exc: _HttpStatus, promql: str) -> InvalidInput | MetricQueryError:
        detail = self._redact(_error_text(exc.body))
        where = f"Prometheus at {self._address}"
        if exc.status == 400:
            return InvalidQuery(
                f"{where} rejected the query: {detail} (query: {promql})",
                query=promql,
                hint="fix the PromQL in the metric's query or template",
            )
        if exc.status in (401, 403):
            return MetricQueryError(
                f"{where} refused the request (HTTP {exc.status}): {detail}",
                query=promql,
                status=exc.status,
                hint="check the provider's bearerTokenEnv, basicAuth.passwordEnv or headersEnv "
                "and the environment variables they name",
            )
        if exc.status == 422:
            return MetricQueryError(
                f"{where} could not run the query: {detail} (query: {promql})",
                query=promql,
                status=exc.status,
            )
        return MetricQueryError(
            f"{where} answered HTTP {exc.status}: {detail}", query=promql, status=exc.status
        )

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _gave_up(failure: RolloutError, *, attempts: int) -> MetricQueryError:
    assert isinstance(failure, MetricQueryError)
    return MetricQueryError(
        f"{failure.message} (gave up after {attempts} attempts)",
        query=failure.query,
        status=failure.status,
        hint=failure.hint,
    )


def _raise_unless_ok(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    if response.status_code >= 400:
        raise _HttpStatus(response.status_code, response.text)


def _error_text(body: str) -> str:
    try:
        answer = json.loads(body)
    except ValueError:
        return body.strip()[:500] or "(empty body)"
    if isinstance(answer, dict) and "error" in answer:
        return f"{answer.get('errorType', 'error')}: {answer['error']}"
    return body.strip()[:500]


def _secrets_of(
    address: str,
    bearer_token: str | None,
    basic_auth: tuple[str, str] | None,
    headers: Mapping[str, str],
) -> tuple[str, ...]:
    parts = urlsplit(address)
    found = [bearer_token, parts.password, *(headers.values())]
    if basic_auth:
        found.append(basic_auth[1])
    # Longest first, so "Bearer <token>" is hidden whole; values under 4 characters (a header
    # such as X-Scope-OrgID: 1) are no secret and would blank unrelated text.
    return tuple(sorted({s for s in found if s and len(s) >= 4}, key=len, reverse=True))


def _without_userinfo(address: str) -> str:
    parts = urlsplit(address)
    if parts.username is None and parts.password is None:
        return address
    host = re.sub(r"^.*@", "", parts.netloc)
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


def _number(raw: Any, promql: str) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise MetricQueryError(
            f"Prometheus returned a non-numeric value {raw!r}", query=promql
        ) from None


def _instant_values(result: Any, promql: str) -> list[float]:
    try:
        if len(result) == 2 and not isinstance(result[0], dict):
            return [_number(result[1], promql)]  # a scalar: [time, "value"]
        return [_number(series["value"][1], promql) for series in result]
    except (KeyError, TypeError, IndexError):
        raise _unexpected(result, promql) from None


def _range_values(result: Any, promql: str) -> list[list[float]]:
    try:
        return [[_number(value, promql) for _, value in series["values"]] for series in result]
    except (KeyError, TypeError, IndexError, ValueError):
        raise _unexpected(result, promql) from None


def _unexpected(result: Any, promql: str) -> MetricQueryError:
    return MetricQueryError(f"unexpected Prometheus result {str(result)[:200]}", query=promql)


def default_prometheus() -> str:
    """$CANARY_PROMETHEUS_URL, else the Prometheus of the lab in use (its port base)."""
    from rollout.adapters.lab_layout import ports_from_env

    return os.environ.get("CANARY_PROMETHEUS_URL") or (
        f"http://127.0.0.1:{ports_from_env().prometheus}")


def prometheus_fetcher(
    base_url: str,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
    client: httpx.Client | None = None,
) -> Callable[[str, float, float, float], list[tuple[float, float]]]:
    """A fetcher on Prometheus' `GET /api/v1/query_range`; the first series of each answer."""
    url = base_url.rstrip("/") + "/api/v1/query_range"

    def fetch(promql: str, start: float, end: float, step: float) -> list[tuple[float, float]]:
        params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": step}
        if client is None:
            response = httpx.get(url, params=params, headers=headers, timeout=timeout)
        else:
            response = client.get(url, params=params, headers=headers, timeout=timeout)
        response.raise_for_status()
        result = response.json()["data"]["result"]
        if not result:
            return []
        return [(float(at), float(value)) for at, value in result[0]["values"]]

    return fetch
