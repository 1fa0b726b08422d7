"""The lab's data plane routes as Istio and the Gateway API specify: matches, paths, precedence."""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest
import yaml

from rollout.lab.dataplane.backends import Backends
from rollout.lab.dataplane.matching import split_target
from rollout.lab.dataplane.plane import DataPlane
from rollout.lab.dataplane.routing import table_from_http_route, table_from_virtual_service
from rollout.lab.dataplane.server import ProxyServer
from tests.unit.lab import cluster_objects

APP = "demo"


class _StubBackend:
    """Answers 200 and says which path (query and all) it was sent."""

    def __init__(self, version: str) -> None:
        self.version = version

    def forward(self, method: str, path: str, headers: Any,
                body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes]:
        return 200, [("x-seen", f"{method} {path}")], b"ok\n"


class _StubBackends(Backends):
    """Every version has a backend, and no process is started."""

    def want(self, versions: frozenset[str]) -> None:
        pass

    def current(self, version: str) -> Any:
        return _StubBackend(version)


SERVICES = ("demo", "demo-primary", "demo-canary", "demo-a", "demo-b", "demo-c", "demo-zero")


def with_services(plane: DataPlane, *names: str) -> DataPlane:
    """Gives each Service (named like its Deployment) one ready pod running v1."""
    cluster_objects.services(plane, *((n, "v1") for n in names or SERVICES))
    return plane


@pytest.fixture
def plane_for() -> Iterator[Callable[[str, str], DataPlane]]:
    planes: list[DataPlane] = []

    def make(router: str, spec: str) -> DataPlane:
        plane = with_services(DataPlane(APP, "shop", router, backends=_StubBackends()))
        plane.apply_object({"metadata": {"generation": 1}, "spec": yaml.safe_load(spec)})
        planes.append(plane)
        return plane

    yield make
    for plane in planes:
        plane.close()


def _outcome(plane: DataPlane, request: str, headers: dict[str, str]) -> str | int:
    """The workload that got the request ("GET /path?query"), or the status when none did."""
    method, target = request.split(" ", 1)
    status, out, _ = plane.handle(method, target, {k.lower(): v for k, v in headers.items()},
                                  None)
    return dict(out)["x-lab-destination"] if status == 200 else status


class Case(NamedTuple):
    spec: str  # the route object's spec, as YAML
    request: str  # method and target
    headers: dict[str, str]
    expected: str | int  # the workload, or 404 (no route) or 500 (no weighted destination)


def _cases(spec: str, *requests: tuple[str, dict[str, str], str | int]) -> list[Case]:
    return [Case(spec, request, headers, expected) for request, headers, expected in requests]


# -- Istio VirtualService ------------------------------------------------------------------------

ISTIO_PRIMARY = """
- name: primary
  route: [{destination: {host: demo-primary}}]
"""


def _vs(first_route: str) -> str:
    return "http:\n" + first_route + ISTIO_PRIMARY


def _vs_match(match: str) -> str:
    return _vs(f"""
- name: ab
  match: [{match}]
  route: [{{destination: {{host: demo-canary}}}}]
""")


ISTIO_CASES: dict[str, list[Case]] = {
    # The review's failing examples: each failed on the old code (see the report).
    "regression: a method-only match does not catch a GET": _cases(
        _vs_match("{method: {exact: POST}}"),
        ("GET /", {}, "demo-primary"), ("POST /", {}, "demo-canary")),
    "regression: a queryParams-only match does not catch everything": _cases(
        _vs_match("{queryParams: {beta: {exact: '1'}}}"),
        ("GET /", {}, "demo-primary"), ("GET /?beta=2", {}, "demo-primary"),
        ("GET /?beta=1", {}, "demo-canary"), ("GET /x?a=b&beta=1", {}, "demo-canary")),
    "regression: withoutHeaders excludes the requests carrying the header": _cases(
        _vs_match("{withoutHeaders: {x-internal: {exact: 'yes'}}}"),
        ("GET /", {"x-internal": "yes"}, "demo-primary"),
        ("GET /", {"x-internal": "no"}, "demo-canary"), ("GET /", {}, "demo-canary")),
    "regression: a sourceLabels match never matches in the lab": _cases(
        _vs_match("{sourceLabels: {app: frontend}}"), ("GET /", {}, "demo-primary")),
    "regression: uri.exact ignores the query string": _cases(
        _vs_match("{uri: {exact: /api}}"),
        ("GET /api?x=1", {}, "demo-canary"), ("GET /api", {}, "demo-canary"),
        ("GET /api/", {}, "demo-primary")),
    "regression: all weights zero is a 500, not the first destination": _cases(
        """
http:
- name: primary
  route:
  - {destination: {host: demo-primary}, weight: 0}
  - {destination: {host: demo-canary}, weight: 0}
""", ("GET /", {}, 500)),
    # Matching, clause by clause.
    "method prefix and regex": _cases(
        _vs_match("{method: {regex: 'P(UT|ATCH)'}}, {method: {prefix: DEL}}"),
        ("PATCH /", {}, "demo-canary"), ("DELETE /", {}, "demo-canary"),
        ("POST /", {}, "demo-primary"), ("PUTS /", {}, "demo-primary")),
    "queryParams regex matches the whole value": _cases(
        _vs_match(r"{queryParams: {id: {regex: '\d+'}}}"),
        ("GET /?id=123", {}, "demo-canary"), ("GET /?id=a123", {}, "demo-primary"),
        ("GET /?id=123a", {}, "demo-primary")),
    "queryParams prefix (documented in istio.io/api v1.32.0)": _cases(
        _vs_match("{queryParams: {key: {prefix: ab}}}"),
        ("GET /?key=abc", {}, "demo-canary"), ("GET /?key=xab", {}, "demo-primary")),
    "queryParams: {} tests presence, exact '' a bare key": _cases(
        _vs_match("{queryParams: {debug: {}}}, {queryParams: {flag: {exact: ''}}}"),
        ("GET /?debug=1", {}, "demo-canary"), ("GET /?flag", {}, "demo-canary"),
        ("GET /?flag=1", {}, "demo-primary"), ("GET /?other", {}, "demo-primary")),
    "a repeated query parameter counts by its first value": _cases(
        _vs_match("{queryParams: {v: {exact: '1'}}}"),
        ("GET /?v=1&v=2", {}, "demo-canary"), ("GET /?v=2&v=1", {}, "demo-primary")),
    "a query parameter is percent-decoded": _cases(
        _vs_match("{queryParams: {q: {exact: 'a b'}}}"), ("GET /?q=a%20b", {}, "demo-canary")),
    "headers: {} tests presence": _cases(
        _vs_match("{headers: {x-user: {}}}"),
        ("GET /", {}, "demo-primary"), ("GET /", {"X-User": ""}, "demo-canary")),
    "withoutHeaders: {} means the header is absent": _cases(
        _vs_match("{withoutHeaders: {x-debug: {}}}"),
        ("GET /", {}, "demo-canary"), ("GET /", {"x-debug": "1"}, "demo-primary")),
    "headers and withoutHeaders together": _cases(
        _vs_match("{headers: {x-group: {exact: qa}}, withoutHeaders: {x-skip: {regex: '.+'}}}"),
        ("GET /", {"x-group": "qa"}, "demo-canary"),
        ("GET /", {"x-group": "qa", "x-skip": "1"}, "demo-primary"),
        ("GET /", {"x-skip": "1"}, "demo-primary")),
    "uri.prefix is a plain string prefix (Istio's semantics)": _cases(
        _vs_match("{uri: {prefix: /foo}}"),
        ("GET /foobar", {}, "demo-canary"), ("GET /foo/x", {}, "demo-canary"),
        ("GET /fo", {}, "demo-primary")),
    "uri.regex sees the path without its query": _cases(
        _vs_match("{uri: {regex: '/api/v[0-9]+'}}"),
        ("GET /api/v2?x=1", {}, "demo-canary"), ("GET /api/v2/x", {}, "demo-primary")),
    "ignoreUriCase folds exact and prefix, not regex": _cases(
        _vs_match("{uri: {prefix: /API}, ignoreUriCase: true}, "
                  "{uri: {regex: /CASE}, ignoreUriCase: true}"),
        ("GET /api/x", {}, "demo-canary"), ("GET /Api", {}, "demo-canary"),
        ("GET /case", {}, "demo-primary"), ("GET /CASE", {}, "demo-canary")),
    "without ignoreUriCase the URI is case-sensitive": _cases(
        _vs_match("{uri: {prefix: /API}}"), ("GET /api/x", {}, "demo-primary")),
    "scheme is http and authority the Host header": _cases(
        _vs_match("{scheme: {exact: http}, authority: {prefix: demo.shop}}"),
        ("GET /", {"host": "demo.shop:80"}, "demo-canary"),
        ("GET /", {"host": "127.0.0.1:8080"}, "demo-primary")),
    "scheme https never comes to the lab's plain-HTTP proxy": _cases(
        _vs_match("{scheme: {exact: https}}"), ("GET /", {}, "demo-primary")),
    "a match is all of its clauses": _cases(
        _vs_match("{uri: {prefix: /api}, method: {exact: GET}, "
                  "queryParams: {beta: {exact: '1'}}, headers: {x-a: {exact: '1'}}}"),
        ("GET /api?beta=1", {"x-a": "1"}, "demo-canary"),
        ("POST /api?beta=1", {"x-a": "1"}, "demo-primary"),
        ("GET /api", {"x-a": "1"}, "demo-primary"),
        ("GET /api?beta=1", {}, "demo-primary")),
    "a name and a statPrefix do not restrict a match": _cases(
        _vs_match("{name: m, statPrefix: s, uri: {prefix: /a}}"), ("GET /a", {}, "demo-canary")),
    # What the lab cannot evaluate, or does not know, never matches.
    "gateways never match in the lab": _cases(
        _vs_match("{gateways: [mesh]}"), ("GET /", {}, "demo-primary")),
    "port never matches in the lab": _cases(
        _vs_match("{port: 80}"), ("GET /", {}, "demo-primary")),
    "sourceNamespace never matches in the lab": _cases(
        _vs_match("{sourceNamespace: shop}"), ("GET /", {}, "demo-primary")),
    "JWT claims never match in the lab": _cases(
        _vs_match("{headers: {'@request.auth.claims.group': {exact: qa}}}"),
        ("GET /", {}, "demo-primary")),
    "an unknown key makes the match never match": _cases(
        _vs_match("{methd: {exact: POST}}"), ("GET /", {}, "demo-primary"),
        ("POST /", {}, "demo-primary")),
    "an unknown StringMatch key never matches": _cases(
        _vs_match("{method: {exac: POST}}"), ("POST /", {}, "demo-primary")),
    "a StringMatch with two kinds never matches": _cases(
        _vs_match("{uri: {exact: /a, prefix: /a}}"), ("GET /a", {}, "demo-primary")),
    "an invalid regex never matches": _cases(
        _vs_match("{headers: {x-a: {regex: '('}}}"), ("GET /", {"x-a": "("}, "demo-primary")),
    "the other matches of the route still count": _cases(
        _vs_match("{sourceLabels: {app: x}}, {headers: {x-a: {exact: '1'}}}"),
        ("GET /", {"x-a": "1"}, "demo-canary"), ("GET /", {}, "demo-primary")),
    # Order and weights.
    "the first matching route wins, in list order": _cases(
        """
http:
- name: wide
  match: [{uri: {prefix: /api}}]
  route: [{destination: {host: demo-a}}]
- name: narrow
  match: [{uri: {exact: /api/health}}]
  route: [{destination: {host: demo-b}}]
""", ("GET /api/health", {}, "demo-a")),
    "no matching route is a 404": _cases(
        """
http:
- name: ab
  match: [{headers: {x-a: {exact: '1'}}}]
  route: [{destination: {host: demo-canary}}]
""", ("GET /", {}, 404), ("GET /", {"x-a": "1"}, "demo-canary")),
    "a route without destinations is a 500": _cases(
        _vs("""
- name: nowhere
  match: [{uri: {prefix: /gone}}]
"""), ("GET /gone", {}, 500), ("GET /", {}, "demo-primary")),
    "a single destination takes everything, whatever its weight": _cases(
        """
http:
- name: primary
  route: [{destination: {host: demo-primary}, weight: 0}]
""", ("GET /", {}, "demo-primary")),
    "a zero weight sends nothing to its destination": _cases(
        """
http:
- name: primary
  route:
  - {destination: {host: demo-primary}, weight: 0}
  - {destination: {host: demo-canary}, weight: 100}
""", *[("GET /", {}, "demo-canary")] * 20),
}


# -- Gateway API HTTPRoute -----------------------------------------------------------------------

GATEWAY_PRIMARY = """
- backendRefs: [{name: demo-primary, port: 80}]
"""


def _rules(*rules: tuple[str, str]) -> str:
    """Rules of (matches as YAML, backend), in order, then the catch-all rule to the primary."""
    text = "rules:\n"
    for matches, backend in rules:
        text += f"- matches: {matches}\n  backendRefs: [{{name: {backend}, port: 80}}]\n"
    return text + GATEWAY_PRIMARY


def _route_match(matches: str) -> str:
    return _rules((matches, "demo-canary"))


GATEWAY_CASES: dict[str, list[Case]] = {
    "regression: a method-only match does not catch a GET": _cases(
        _route_match("[{method: POST}]"),
        ("GET /", {}, "demo-primary"), ("POST /", {}, "demo-canary")),
    "regression: a queryParams-only match does not catch everything": _cases(
        _route_match("[{queryParams: [{name: beta, value: '1'}]}]"),
        ("GET /", {}, "demo-primary"), ("GET /?beta=1", {}, "demo-canary")),
    "regression: PathPrefix matches whole path elements": _cases(
        _route_match("[{path: {type: PathPrefix, value: /foo}}]"),
        ("GET /foobar", {}, "demo-primary"), ("GET /foo", {}, "demo-canary"),
        ("GET /foo/", {}, "demo-canary"), ("GET /foo/bar", {}, "demo-canary"),
        ("GET /foo?x=1", {}, "demo-canary")),
    "regression: Exact wins over an earlier PathPrefix rule": _cases(
        _rules(("[{path: {type: PathPrefix, value: /api}}]", "demo-a"),
               ("[{path: {type: Exact, value: /api/health}}]", "demo-b")),
        ("GET /api/health", {}, "demo-b"), ("GET /api/other", {}, "demo-a")),
    "regression: the longest PathPrefix wins over an earlier one": _cases(
        _rules(("[{path: {value: /api}}]", "demo-a"), ("[{path: {value: /api/v2}}]", "demo-b")),
        ("GET /api/v2/x", {}, "demo-b"), ("GET /api/v1", {}, "demo-a")),
    "regression: a method match wins over an earlier rule with more headers": _cases(
        _rules(("[{headers: [{name: x-a, value: '1'}, {name: x-b, value: '1'}]}]", "demo-a"),
               ("[{method: GET}]", "demo-b")),
        ("GET /", {"x-a": "1", "x-b": "1"}, "demo-b"),
        ("POST /", {"x-a": "1", "x-b": "1"}, "demo-a")),
    "regression: more header matches win over an earlier rule": _cases(
        _rules(("[{headers: [{name: x-a, value: '1'}]}]", "demo-a"),
               ("[{headers: [{name: x-a, value: '1'}, {name: x-b, value: '1'}]}]", "demo-b")),
        ("GET /", {"x-a": "1", "x-b": "1"}, "demo-b"), ("GET /", {"x-a": "1"}, "demo-a")),
    "regression: a header match wins over an earlier rule with query params": _cases(
        _rules(("[{queryParams: [{name: p, value: '1'}, {name: q, value: '1'}]}]", "demo-a"),
               ("[{headers: [{name: x-a, value: '1'}]}]", "demo-b")),
        ("GET /?p=1&q=1", {"x-a": "1"}, "demo-b"), ("GET /?p=1&q=1", {}, "demo-a")),
    "regression: more query param matches win over an earlier rule": _cases(
        _rules(("[{queryParams: [{name: p, value: '1'}]}]", "demo-a"),
               ("[{queryParams: [{name: p, value: '1'}, {name: q, value: '1'}]}]", "demo-b")),
        ("GET /?p=1&q=1", {}, "demo-b"), ("GET /?p=1", {}, "demo-a")),
    "regression: all weights zero is a 500, not the first backend": _cases(
        """
rules:
- backendRefs:
  - {name: demo-primary, port: 80, weight: 0}
  - {name: demo-canary, port: 80, weight: 0}
""", ("GET /", {}, 500)),
    "regression: Exact path ignores the query string": _cases(
        _route_match("[{path: {type: Exact, value: /api}}]"),
        ("GET /api?x=1", {}, "demo-canary"), ("GET /api/", {}, "demo-primary")),
    # Matching, field by field.
    "a trailing slash in a PathPrefix is ignored": _cases(
        _route_match("[{path: {type: PathPrefix, value: /foo/}}]"),
        ("GET /foo", {}, "demo-canary"), ("GET /foo/bar", {}, "demo-canary"),
        ("GET /foobar", {}, "demo-primary")),
    "a RegularExpression path matches the whole path, without the query": _cases(
        _route_match("[{path: {type: RegularExpression, value: '/v[0-9]+'}}]"),
        ("GET /v2?x=1", {}, "demo-canary"), ("GET /v2/x", {}, "demo-primary")),
    "queryParams RegularExpression, and names are case-sensitive": _cases(
        _route_match(r"[{queryParams: [{type: RegularExpression, name: id, value: '\d+'}]}]"),
        ("GET /?id=42", {}, "demo-canary"), ("GET /?id=x42", {}, "demo-primary"),
        ("GET /?ID=42", {}, "demo-primary")),
    "header names are case-insensitive, and only the first of equivalent names counts": _cases(
        _route_match("[{headers: [{name: X-Env, value: a}, {name: x-env, value: b}]}]"),
        ("GET /", {"x-env": "a"}, "demo-canary"), ("GET /", {"x-env": "b"}, "demo-primary")),
    "header RegularExpression matches the whole value": _cases(
        _route_match("[{headers: [{type: RegularExpression, name: x-r, value: 'eu-.*'}]}]"),
        ("GET /", {"x-r": "eu-west"}, "demo-canary"), ("GET /", {"x-r": "us-eu-"}, "demo-primary")),
    "a match is all of its fields": _cases(
        _route_match("[{path: {value: /api}, method: GET, headers: [{name: x-a, value: '1'}], "
                     "queryParams: [{name: p, value: '1'}]}]"),
        ("GET /api?p=1", {"x-a": "1"}, "demo-canary"),
        ("POST /api?p=1", {"x-a": "1"}, "demo-primary"),
        ("GET /api", {"x-a": "1"}, "demo-primary"),
        ("GET /apix?p=1", {"x-a": "1"}, "demo-primary")),
    # Precedence.
    "each match is ranked on its own, not by its rule's best": _cases(
        _rules(("[{path: {type: Exact, value: /x}}, {headers: [{name: x-a, value: '1'}]}]",
                "demo-a"),
               ("[{path: {value: /api}}]", "demo-b")),
        ("GET /api", {"x-a": "1"}, "demo-b"), ("GET /x", {}, "demo-a"),
        ("GET /other", {"x-a": "1"}, "demo-a")),
    "a RegularExpression path ranks below Exact and above PathPrefix": _cases(
        _rules(("[{path: {value: /api}}]", "demo-a"),
               ("[{path: {type: RegularExpression, value: '/api/v[0-9]+'}}]", "demo-b"),
               ("[{path: {type: Exact, value: /api/v1}}]", "demo-c")),
        ("GET /api/v2", {}, "demo-b"), ("GET /api/v1", {}, "demo-c"), ("GET /api/x", {}, "demo-a")),
    "ties go to the first rule": _cases(
        _rules(("[{headers: [{name: x-a, value: '1'}]}]", "demo-a"),
               ("[{headers: [{name: x-b, value: '1'}]}]", "demo-b")),
        ("GET /", {"x-a": "1", "x-b": "1"}, "demo-a")),
    "the catch-all rule loses to any header match listed after it": _cases(
        """
rules:
- backendRefs: [{name: demo-primary, port: 80}]
- matches: [{headers: [{name: x-a, value: '1'}]}]
  backendRefs: [{name: demo-canary, port: 80}]
""", ("GET /", {"x-a": "1"}, "demo-canary"), ("GET /", {}, "demo-primary")),
    # What the lab does not know never matches; weights.
    "an unknown key makes the match never match": _cases(
        _route_match("[{header: [{name: x-a, value: '1'}]}]"),
        ("GET /", {"x-a": "1"}, "demo-primary"), ("GET /", {}, "demo-primary")),
    "an unknown path type never matches": _cases(
        _route_match("[{path: {type: Glob, value: '/*'}}]"), ("GET /x", {}, "demo-primary")),
    "an unknown header type never matches": _cases(
        _route_match("[{headers: [{type: Prefix, name: x-a, value: '1'}]}]"),
        ("GET /", {"x-a": "1"}, "demo-primary")),
    "no matching rule is a 404": _cases(
        """
rules:
- matches: [{path: {type: Exact, value: /only}}]
  backendRefs: [{name: demo-canary, port: 80}]
""", ("GET /", {}, 404), ("GET /only", {}, "demo-canary")),
    "a rule without backendRefs is a 500": _cases(
        _route_match("[{path: {value: /gone}}]").replace(
            "  backendRefs: [{name: demo-canary, port: 80}]\n", ""),
        ("GET /gone/x", {}, 500), ("GET /", {}, "demo-primary")),
    "a backendRef of weight 0 gets nothing": _cases(
        """
rules:
- backendRefs:
  - {name: demo-primary, port: 80, weight: 0}
  - {name: demo-canary, port: 80}
""", *[("GET /", {}, "demo-canary")] * 20),
}


def _params(cases: dict[str, list[Case]]) -> list[Any]:
    return [pytest.param(case, id=f"{name} [{case.request} {case.headers or ''}]".strip())
            for name, group in cases.items() for case in group]


@pytest.mark.parametrize("case", _params(ISTIO_CASES))
def test_istio_virtual_service_routes_as_istio_does(
        plane_for: Callable[[str, str], DataPlane], case: Case) -> None:
    assert _outcome(plane_for("istio", case.spec), case.request, case.headers) == case.expected


@pytest.mark.parametrize("case", _params(GATEWAY_CASES))
def test_http_route_routes_as_the_gateway_api_specifies(
        plane_for: Callable[[str, str], DataPlane], case: Case) -> None:
    assert _outcome(plane_for("gateway-api", case.spec), case.request,
                    case.headers) == case.expected


# -- the pieces ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "path", "query"), [
    ("/", "/", {}),
    ("/api?x=1", "/api", {"x": "1"}),
    ("/a?b=1&b=2&c&d=&e=%2F%20", "/a", {"b": "1", "c": "", "d": "", "e": "/ "}),
    ("/a#frag", "/a", {}),
    ("http://demo.shop/p?q=1", "/p", {"q": "1"}),
])
def test_a_target_splits_into_path_and_query(target: str, path: str,
                                              query: dict[str, str]) -> None:
    assert split_target(target) == (path, query)


def test_select_takes_a_path_with_its_query_and_the_method() -> None:
    table = table_from_virtual_service({"spec": yaml.safe_load(_vs_match(
        "{uri: {exact: /api}, method: {exact: POST}, queryParams: {b: {exact: '1'}}}"))}, APP)
    canary = table.routes[0]
    assert table.select({}, "/api?b=1", method="POST") == canary
    assert table.select({}, "/api", method="POST", query={"b": "1"}) == canary
    assert table.select({}, "/api?b=1") != canary  # GET by default


def test_what_the_lab_cannot_route_by_is_named_once_and_shown(
        plane_for: Callable[[str, str], DataPlane], caplog: pytest.LogCaptureFixture) -> None:
    spec = _vs_match("{sourceLabels: {app: frontend}}, {methd: {exact: POST}}")
    with caplog.at_level(logging.WARNING, logger="dataplane"):
        plane = plane_for("istio", spec)
        for _ in range(20):
            assert _outcome(plane, "POST /", {}) == "demo-primary"
        plane.apply_object({"metadata": {"generation": 2}, "spec": yaml.safe_load(spec)})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "VirtualService route 'ab' match 0: sourceLabels: the lab's client is no labelled "
        "workload; the lab never routes by that match",
        "VirtualService route 'ab' match 1: match: unknown key 'methd'; the lab never routes "
        "by that match",
    ]
    state = json.loads(json.dumps(plane.state()))
    assert state["route"]["problems"] == warnings
    assert state["route"]["routes"][0]["matches"][0] == {
        "conditions": [], "never": "sourceLabels: the lab's client is no labelled workload"}


def test_the_state_shows_each_match_its_conditions_and_rank() -> None:
    spec = yaml.safe_load(_route_match(
        "[{path: {value: /api/}, method: GET, headers: [{name: X-A, value: '1'}], "
        "queryParams: [{type: RegularExpression, name: p, value: '[0-9]+'}]}]"))
    state = table_from_http_route({"spec": spec}, APP).as_dict()
    assert state["precedence"] == "gateway-api" and state["problems"] == []
    assert state["routes"][0]["matches"] == [{
        "conditions": [
            {"field": "path", "kind": "segments", "value": "/api"},
            {"field": "method", "kind": "exact", "value": "GET"},
            {"field": "header", "name": "x-a", "kind": "exact", "value": "1"},
            {"field": "query", "name": "p", "kind": "regex", "value": "[0-9]+"},
        ],
        "precedence": [1, 5, 1, 1, 1],
    }]
    assert state["routes"][1]["matches"] == [{"conditions": [], "precedence": [1, 1, 0, 0, 0]}]
    istio = table_from_virtual_service({"spec": yaml.safe_load(_vs_match(
        "{withoutHeaders: {x-b: {exact: 'no'}}, uri: {prefix: /A}, ignoreUriCase: true}"))}, APP)
    assert istio.as_dict()["precedence"] == "first-match"
    assert istio.as_dict()["routes"][0]["matches"] == [{"conditions": [
        {"field": "path", "kind": "prefix", "value": "/A", "ignore_case": True},
        {"field": "header", "name": "x-b", "kind": "exact", "value": "no", "negate": True},
    ]}]


def test_a_route_without_weight_is_a_500_counted_as_no_healthy_upstream(
        plane_for: Callable[[str, str], DataPlane]) -> None:
    plane = plane_for("istio", """
http:
- name: primary
  route:
  - {destination: {host: demo-primary}, weight: 0}
  - {destination: {host: demo-canary}, weight: 0}
""")
    status, _, body = plane.handle("GET", "/", {"user-agent": "lab-loadgen/1"}, None)
    assert (status, body) == (500, b"route primary gives no destination a weight\n")
    assert plane.state()["route"]["problems"] == [
        "VirtualService route 'primary' weighs every destination 0: the requests it takes get "
        "a 500"]
    text = plane.telemetry.render()
    line = next(x for x in text.splitlines() if x.startswith("istio_requests_total{"))
    for label in ('reporter="source"', 'source_workload="loadgen"',
                  'destination_workload="unknown"', 'destination_service_name="demo"',
                  'response_code="500"', 'response_flags="UH"'):
        assert label in line
    assert line.endswith(" 1")
    assert 'lab_unrouted_requests_total{reason="no_upstream",destination="primary"} 1' in text
    assert 'reporter="destination"' not in text  # no destination saw the request


# -- through the proxy server -------------------------------------------------------------------


def test_the_proxy_routes_by_method_and_query_and_forwards_the_whole_target() -> None:
    plane = with_services(DataPlane(APP, "shop", "gateway-api", backends=_StubBackends()))
    plane.apply_object({"spec": yaml.safe_load(_rules(
        ("[{method: POST}]", "demo-a"),
        ("[{path: {type: Exact, value: /api}, queryParams: [{name: beta, value: '1'}]}]",
         "demo-b"),
        ("[{path: {value: /zero}}]", "demo-zero"),
    ).replace("backendRefs: [{name: demo-zero, port: 80}]",
              "backendRefs: [{name: demo-zero, port: 80, weight: 0}]"))})
    server = ProxyServer(("127.0.0.1", 0), plane)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()

    def ask(method: str, target: str) -> tuple[int, str, str]:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
        conn.request(method, target, body=b"x" if method == "POST" else None)
        resp = conn.getresponse()
        resp.read()
        conn.close()
        return resp.status, resp.getheader("x-lab-destination") or "", resp.getheader(
            "x-seen") or ""

    try:
        assert ask("GET", "/api?beta=1&x=2") == (200, "demo-b", "GET /api?beta=1&x=2")
        assert ask("POST", "/other?beta=1") == (200, "demo-a", "POST /other?beta=1")
        assert ask("POST", "/api?beta=1") == (200, "demo-b", "POST /api?beta=1")  # Exact first
        assert ask("GET", "/api") == (200, "demo-primary", "GET /api")
        assert ask("GET", "/zero/x") == (500, "", "")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        plane.close()


class _RecordingBackends(_StubBackends):
    """Stub backends that keep the Host each request reached them with."""

    def __init__(self) -> None:
        super().__init__()
        self.hosts: list[str] = []

    def current(self, version: str) -> Any:
        seen = self.hosts

        class Recording(_StubBackend):
            def forward(self, method: str, path: str, headers: Any,
                        body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes]:
                seen.append(headers["host"])
                return super().forward(method, path, headers, body)

        return Recording(version)


def test_a_mirrored_request_reaches_its_target_with_the_shadow_host() -> None:
    backends = _RecordingBackends()
    plane = with_services(DataPlane(APP, "shop", "istio", backends=backends))
    try:
        plane.apply_object({"spec": yaml.safe_load("""
http:
- route: [{destination: {host: demo-primary}, weight: 100}]
  mirror: {host: demo-canary}
  mirrorPercentage: {value: 100}
""")})
        plane.handle("GET", "/", {}, None)
        deadline = time.monotonic() + 5
        while len(backends.hosts) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        plane.close()
    assert sorted(backends.hosts) == ["demo-canary.shop-shadow", "demo-primary.shop"]


def test_the_destination_latency_starts_when_the_request_reaches_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Routing before the forward (here a slow parse of the target) is not the
    destination's latency."""
    import rollout.lab.dataplane.plane as plane_module

    plane = with_services(DataPlane(APP, "shop", "istio", backends=_StubBackends()))
    quick = plane_module.split_target

    def slow(target: str) -> Any:
        time.sleep(0.3)
        return quick(target)

    monkeypatch.setattr(plane_module, "split_target", slow)
    recorded: dict[str, float] = {}
    monkeypatch.setattr(plane.telemetry, "record", lambda reporter, **labels: recorded.update(
        {reporter: labels["duration_ms"]}))
    try:
        assert plane.handle("GET", "/", {}, None)[0] == 200
    finally:
        plane.close()
    # The client's proxy times the whole request, routing and all.
    assert recorded["destination"] < 100 and recorded["source"] >= 300, recorded
