"""Covers the Prometheus provider over real HTTP against a stand-in server on 127.0.0.1:
result parsing, auth headers, retries with backoff, error mapping and secret redaction."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from rollout.adapters.prometheus import PrometheusProvider
from rollout.adapters.providers import provider_for
from rollout.analysis import InvalidQuery, MetricQueryError, NopProvider
from rollout.core.analysis_model import ProviderSpec
from rollout.core.errors import InvalidInput

TOKEN = "tok-0123456789"
Answer = tuple[int, dict[str, object] | str]


def _vector(*values: str) -> Answer:
    result = [{"metric": {"pod": f"p{i}"}, "value": [1.0, v]} for i, v in enumerate(values)]
    return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}


class StandIn:
    """A Prometheus stand-in: `answer(query, headers)` decides each response."""

    def __init__(self) -> None:
        self.requests: list[dict[str, object]] = []
        self.answer: Callable[[str, dict[str, str]], Answer] = lambda q, h: _vector()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                headers = dict(self.headers.items())
                stand_in.requests.append({"path": url.path, "params": params, "headers": headers})
                status, body = stand_in.answer(params.get("query", ""), headers)
                raw = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def provider(self, **kwargs: object) -> tuple[PrometheusProvider, list[float]]:
        slept: list[float] = []
        options: dict[str, object] = {"address": self.address, "timeout": 5, "sleep": slept.append}
        return PrometheusProvider(**(options | kwargs)), slept  # type: ignore[arg-type]


@pytest.fixture
def prometheus() -> Iterator[StandIn]:
    stand_in = StandIn()
    stand_in.thread.start()
    yield stand_in
    stand_in.server.shutdown()
    stand_in.server.server_close()


def test_instant_queries_give_one_float_per_series(prometheus: StandIn) -> None:
    prometheus.answer = lambda q, h: _vector("99.5", "NaN", "+Inf")
    provider, _ = prometheus.provider()
    values = provider.query("up", at=datetime(2024, 1, 1, tzinfo=UTC))
    assert values[0] == 99.5 and values[1] != values[1] and values[2] == float("inf")
    request = prometheus.requests[0]
    assert request["path"] == "/api/v1/query"
    assert request["params"] == {"query": "up", "time": "1704067200.000"}


def test_empty_results_are_no_data_and_scalars_are_one_value(prometheus: StandIn) -> None:
    provider, _ = prometheus.provider()
    assert provider.query("absent") == []
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "1"]}}
    prometheus.answer = lambda q, h: (200, scalar)
    assert provider.query("vector(1)") == [1.0]
    assert provider.is_online()


def test_range_queries_give_values_per_series(prometheus: StandIn) -> None:
    matrix = {"resultType": "matrix", "result": [{"metric": {}, "values": [[1, "1"], [2, "2.5"]]}]}
    prometheus.answer = lambda q, h: (200, {"status": "success", "data": matrix})
    provider, _ = prometheus.provider()
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, 0, 10, tzinfo=UTC)
    assert provider.query_range("up", start, end, "30s") == [[1.0, 2.5]]
    assert prometheus.requests[0]["params"] == {
        "query": "up", "start": "1704067200", "end": "1704067800", "step": "30s"
    }  # fmt: skip


def test_a_parse_error_is_invalid_input_with_prometheus_message(prometheus: StandIn) -> None:
    error = {
        "status": "error",
        "errorType": "bad_data",
        "error": '1:5: parse error: unexpected "("',
    }
    prometheus.answer = lambda q, h: (400, error)
    provider, slept = prometheus.provider()
    with pytest.raises(InvalidQuery) as caught:
        provider.query("sum((up")
    assert isinstance(caught.value, InvalidInput)
    assert 'bad_data: 1:5: parse error: unexpected "("' in caught.value.message
    assert "query: sum((up)" in caught.value.message and caught.value.query == "sum((up"
    assert slept == [] and len(prometheus.requests) == 1


def test_server_errors_are_retried_with_exponential_backoff(prometheus: StandIn) -> None:
    answers = iter([(503, "overloaded"), (502, "bad gateway"), _vector("1")])
    prometheus.answer = lambda q, h: next(answers)
    provider, slept = prometheus.provider(retries=3, backoff=0.5)
    assert provider.query("up") == [1.0]
    assert slept == [0.5, 1.0]


def test_persistent_server_errors_become_metric_query_errors(prometheus: StandIn) -> None:
    prometheus.answer = lambda q, h: (
        503,
        {"status": "error", "errorType": "timeout", "error": "x"},
    )
    provider, slept = prometheus.provider(retries=2, backoff=1)
    with pytest.raises(MetricQueryError) as caught:
        provider.query("up")
    assert caught.value.status == 503 and slept == [1, 2]
    assert "answered HTTP 503: timeout: x (gave up after 3 attempts)" in caught.value.message
    assert not provider.is_online()


def test_execution_errors_are_not_retried(prometheus: StandIn) -> None:
    error = {"status": "error", "errorType": "execution", "error": "many-to-many matching"}
    prometheus.answer = lambda q, h: (422, error)
    provider, slept = prometheus.provider()
    with pytest.raises(MetricQueryError, match="could not run the query: execution"):
        provider.query("a / b")
    assert slept == []


def test_credentials_are_sent_but_never_shown(prometheus: StandIn) -> None:
    # A misbehaving proxy that echoes the Authorization header into its error page.
    prometheus.answer = lambda q, h: (500, f"upstream failed for {h.get('Authorization')}")
    provider, _ = prometheus.provider(
        bearer_token=TOKEN, headers={"X-Org": "org-secret"}, retries=0
    )
    with pytest.raises(MetricQueryError) as caught:
        provider.query("up")
    headers = prometheus.requests[0]["headers"]
    assert isinstance(headers, dict)
    assert headers["Authorization"] == f"Bearer {TOKEN}" and headers["X-Org"] == "org-secret"
    assert TOKEN not in str(caught.value) and "upstream failed for ***" in str(caught.value)
    assert TOKEN not in repr(provider) and "org-secret" not in repr(provider)


def test_refused_credentials_say_what_to_check(prometheus: StandIn) -> None:
    prometheus.answer = lambda q, h: (401, "unauthorized")
    provider, slept = prometheus.provider(basic_auth=("admin", "pw-secret"))
    with pytest.raises(MetricQueryError) as caught:
        provider.query("up")
    assert caught.value.status == 401 and slept == []
    assert "basicAuth" in str(caught.value) and "pw-secret" not in str(caught.value)
    headers = prometheus.requests[0]["headers"]
    assert isinstance(headers, dict) and headers["Authorization"].startswith("Basic ")


def test_an_unreachable_server_is_retried_then_reported() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    slept: list[float] = []
    provider = PrometheusProvider(
        address=f"http://user:url-secret@127.0.0.1:{port}", retries=1, sleep=slept.append
    )
    with pytest.raises(MetricQueryError) as caught:
        provider.query("up")
    assert slept == [0.5] and "could not reach Prometheus at http://***@127.0.0.1" in str(
        caught.value
    )
    assert "url-secret" not in str(caught.value) and "url-secret" not in repr(provider)
    assert not provider.is_online()


def test_the_factory_builds_known_kinds_and_refuses_others(
    prometheus: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROM_TOKEN", TOKEN)
    spec = ProviderSpec.model_validate(
        {"address": prometheus.address, "bearerTokenEnv": "PROM_TOKEN", "timeoutSeconds": 2}
    )
    provider = provider_for(spec)
    assert isinstance(provider, PrometheusProvider) and provider.query("up") == []
    assert isinstance(provider_for(ProviderSpec(kind="nop")), NopProvider)
    with pytest.raises(InvalidInput, match="unknown metric provider kind 'datadog'"):
        provider_for(ProviderSpec.model_construct(kind="datadog"))


def test_the_nop_provider_has_no_data() -> None:
    nop = NopProvider()
    now = datetime.now(UTC)
    assert nop.query("up") == [] and nop.query_range("up", now, now, "1m") == []
    assert nop.is_online()
