"""The Gateway API project's own conformance cases for HTTPRoute, run against the lab's router.

The cases are transcribed in data/gateway_conformance.yaml (which says how); the routes and the
Services they name come from the suite's manifests, cached by `toolchain/build
gateway-conformance`. A case routes as the suite expects when the route the table selects sends
every share of its requests where the suite wants the answer from: a Service's pods, or a 404
(no route) or a 500 (no backend a request can reach)."""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollout.adapters.toolchain import locate, read_versions
from rollout.lab.dataplane.backends import Backends
from rollout.lab.dataplane.plane import DataPlane
from rollout.lab.dataplane.routing import Destination, Route, RoutingTable, table_from_http_route
from tests.unit.lab import cluster_objects

TABLE: dict[str, Any] = yaml.safe_load(
    (Path(__file__).parent / "data" / "gateway_conformance.yaml").read_text())
SUITE = locate().gateway_conformance

if not (SUITE / ".complete").exists():
    pytest.skip(f"the Gateway API conformance cases are not in {SUITE}: run "
                "`toolchain/build gateway-conformance`", allow_module_level=True)

# The Services every test may route to: the suite's infrastructure (conformance/base and mesh).
INFRASTRUCTURE = ("base/manifests.yaml", "mesh/manifests.yaml")

# How the suite's sources name the backends they expect (conformance/utils/suite/consts.go).
GO_NAMES = {f"infra-backend-v{i}": f"InfraBackendServiceNameV{i}" for i in (1, 2, 3)}

Reached = tuple[str, str] | int  # (Service, namespace), or the status a request gets instead


@dataclass(frozen=True)
class Case:
    test: str
    manifests: tuple[str, ...]
    route: str  # namespace/name
    source: str  # conformance/tests/<file>.go:<line>
    request: Mapping[str, Any]
    expect: Mapping[str, Any]

    @property
    def file(self) -> str:
        return self.source.rsplit(":", 1)[0]

    @property
    def line(self) -> int:
        return int(self.source.rsplit(":", 1)[1])

    @property
    def method(self) -> str:
        return str(self.request.get("method", "GET"))


def _cases() -> Iterator[tuple[Case, str | None]]:
    for test in TABLE["tests"]:
        for case in test.get("cases") or []:
            yield (Case(test["test"], tuple(test["manifests"]), test.get("route", ""),
                        case["source"], case["request"], case["expect"]),
                   case.get("skip") or test.get("skip"))


def _case_id(case: Case) -> str:
    return f"{case.source.removeprefix('conformance/tests/')} {case.method} {case.request['path']}"


def _routing_params() -> list[Any]:
    params = [pytest.param(case, id=_case_id(case),
                           marks=[pytest.mark.skip(reason=skip)] if skip else [])
              for case, skip in _cases()]
    params += [pytest.param(None, id=f"{t['source'].removeprefix('conformance/tests/')} "
                                     f"{t['test']}",
                            marks=[pytest.mark.skip(reason=t["skip"])])
               for t in TABLE["tests"] if "cases" not in t]
    return params


@cache
def _documents(manifest: str) -> tuple[Mapping[str, Any], ...]:
    return tuple(d for d in yaml.safe_load_all((SUITE / manifest).read_text()) if d)


def _objects(manifests: tuple[str, ...], kind: str) -> Iterator[Mapping[str, Any]]:
    for manifest in manifests:
        yield from (d for d in _documents(manifest) if d.get("kind") == kind)


def _key(obj: Mapping[str, Any]) -> str:
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


def _http_route(case: Case) -> Mapping[str, Any]:
    routes = {_key(r): r for r in _objects(case.manifests, "HTTPRoute")}
    assert case.route in routes, f"no HTTPRoute {case.route} in {case.manifests}: {list(routes)}"
    return routes[case.route]


def _services(case: Case) -> set[str]:
    return {_key(s) for s in _objects((*INFRASTRUCTURE, *case.manifests), "Service")}


def _reach(destination: Destination, route_namespace: str, services: set[str]) -> Reached:
    """Where a request sent to `destination` ends: a Service of the cluster, or a 500 for an
    invalid backendRef or one to a Service that does not exist (ResolvedRefs false with
    BackendNotFound, which the suite answers with a 500)."""
    namespace = destination.namespace or route_namespace
    if destination.invalid or f"{namespace}/{destination.service}" not in services:
        return 500
    return destination.service, namespace


def _select(case: Case) -> tuple[RoutingTable, Route | None]:
    obj = _http_route(case)
    table = table_from_http_route(obj, obj["metadata"]["name"])
    headers = dict(case.request.get("headers") or {})
    if "host" in case.request:
        headers["Host"] = case.request["host"]
    return table, table.select(headers, case.request["path"], method=case.method)


def _matches(reached: Reached, backend: str, namespace: str | None) -> bool:
    return (isinstance(reached, tuple) and reached[0] == backend
            and (namespace is None or reached[1] == namespace))


@pytest.mark.parametrize("case", _routing_params())
def test_routes_as_the_suite_expects(case: Case | None) -> None:
    assert case is not None  # None: a test the table skips as a whole
    expect = case.expect
    table, route = _select(case)
    if expect.get("status") == 404:
        assert route is None, f"the suite expects a 404; the lab routes by {route}"
        return
    assert route is not None, f"the lab matches no route (a 404); the suite expects {expect}"
    route_namespace = _http_route(case)["metadata"]["namespace"]
    services = _services(case)

    def reach(destination: Destination | None) -> Reached:
        return 500 if destination is None else _reach(destination, route_namespace, services)

    if "weights" in expect:
        _assert_distribution(route, reach, expect["weights"], expect.get("namespace"))
        return
    # Each share of the route's requests; a route with none answers them all with a 500.
    reached = {reach(d) for d in route.destinations if d.weight > 0} or {500}
    context = (f"route {route.name!r} of {case.route}: {route.destinations} (problems: "
               f"{list(table.problems)})")
    if expect.get("status") == 500:
        assert reached == {500}, context
    elif "backend" in expect:
        assert all(_matches(r, expect["backend"], expect.get("namespace")) for r in reached), \
            f"the suite expects {expect['backend']}; {reached} from {context}"
    else:
        assert expect.get("status") == 200, f"no expectation the test knows: {expect}"
        assert all(isinstance(r, tuple) and r[1] == expect.get("namespace", r[1])
                   for r in reached), f"{reached} from {context}"
    for mirror in expect.get("mirrored_to") or []:
        _assert_mirror(route, reach, mirror)
    _assert_served(case, route_namespace)


class _EveryVersion(Backends):
    """An answer from any pod's demo app, keeping the Host each request came with; no process
    is started."""

    def __init__(self) -> None:
        super().__init__()
        self.hosts: list[str] = []

    def want(self, versions: frozenset[str]) -> None:
        pass

    def current(self, version: str) -> Any:
        hosts = self.hosts

        class Answer:
            def forward(self, method: str, path: str, headers: Any,
                        body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes]:
                hosts.append(headers["host"])
                return 200, [], b"{}"

        answer = Answer()
        answer.version = "v1"  # type: ignore[attr-defined]
        return answer


def _assert_served(case: Case, namespace: str) -> None:
    """The same case through the data plane's live path (DataPlane.handle): the suite's
    Services in the route's namespace each have a ready pod of a Deployment of their name;
    the answer must come from the expected one's pod, or be the expected status."""
    expect = case.expect
    if expect.get("namespace", namespace) != namespace:
        return  # the lab's data plane serves one namespace (no ReferenceGrants): a 500 there
    obj = _http_route(case)
    backends = _EveryVersion()
    plane = DataPlane(obj["metadata"]["name"], namespace, "gateway-api", backends=backends)
    try:
        names = sorted(key.split("/", 1)[1] for key in _services(case)
                       if key.startswith(f"{namespace}/"))
        pods = [cluster_objects.pod(name, "v1", i) for i, name in enumerate(names)]
        cluster_objects.feed(plane, {name: [pod] for name, pod in zip(names, pods,
                                                                       strict=True)})
        plane.apply_object(obj)
        headers = {k.lower(): str(v) for k, v in (case.request.get("headers") or {}).items()}
        if "host" in case.request:
            headers["host"] = case.request["host"]
        answers = [plane.handle(case.method, case.request["path"], headers, None)
                   for _ in range(10)]
        # Each copy the suite expects on every request reaches its Service, shadow-marked.
        shadows = {f"{m['backend']}.{namespace}-shadow" for m in expect.get("mirrored_to") or []
                   if "percent" not in m}
        deadline = time.monotonic() + 5
        while (not all(backends.hosts.count(h) == 10 for h in shadows)
               and time.monotonic() < deadline):
            time.sleep(0.01)
        assert all(backends.hosts.count(h) == 10 for h in shadows), (shadows, backends.hosts)
    finally:
        plane.close()
    got = {(status, dict(out).get("x-lab-destination")) for status, out, _ in answers}
    if "backend" in expect:
        assert got == {(200, expect["backend"])}, f"{case.source}: {got}"
    elif expect.get("status") in (404, 500):
        assert got == {(expect["status"], None)}, f"{case.source}: {got}"
    else:
        assert {status for status, _ in got} == {200}, f"{case.source}: {got}"


def _assert_distribution(route: Route, reach: Callable[[Destination | None], Reached],
                         weights: Mapping[str, float], namespace: str | None) -> None:
    """The suite's check of a weighted split. The draws are an even grid over [0, 1) rather
    than random, so the shares are the router's own and no seed decides the outcome."""
    spec = TABLE["weight_distribution"]
    n = int(spec["requests"])
    seen = Counter(reach(route.pick((i + 0.5) / n)) for i in range(n))
    got = {r[0]: count for r, count in seen.items()
           if isinstance(r, tuple) and r[0] in weights and namespace in (None, r[1])}
    # The rest failed (a 500) or reached a Service the suite does not expect: it fails on both.
    assert sum(got.values()) == n, seen
    assert set(got) == {b for b, w in weights.items() if w > 0}, seen
    for backend, weight in weights.items():
        assert abs(got.get(backend, 0) / n - weight) <= spec["tolerance"], (backend, seen)


def _assert_mirror(route: Route, reach: Callable[[Destination | None], Reached],
                   mirror: Mapping[str, Any]) -> None:
    found = [m for m in route.mirrors
             if _matches(reach(m.destination), mirror["backend"], mirror.get("namespace"))]
    assert len(found) == 1, f"route {route.name!r} mirrors to {route.mirrors}; the suite " \
                            f"expects {mirror}"
    if "percent" not in mirror:
        assert found[0].percent == 100.0
        return
    spec = TABLE["mirror_distribution"]
    n, p = float(spec["requests"]), mirror["percent"] / 100
    margin = spec["stddevs"] * math.sqrt(n * p * (1 - p))
    assert abs(n * found[0].percent / 100 - n * p) <= margin, (found[0], mirror)


def test_filters_the_lab_does_not_apply_are_named() -> None:
    """The skipped tests' routes still load, and say what the lab leaves out."""
    route = next(_objects(("tests/httproute-rewrite-path.yaml",), "HTTPRoute"))
    table = table_from_http_route(route, "rewrite-path")
    assert table.problems and all("URLRewrite" in p and "the lab does not apply" in p
                                  for p in table.problems), table.problems


# -- The table against the suite's sources ----------------------------------------------------


def _source(file: str) -> list[str]:
    return (SUITE / file.removeprefix("conformance/")).read_text().splitlines()


def _window(case: Case) -> str:
    """The source of a case: from its line to the next case's in the same file (the last: 30
    lines, as far as the longest case reaches)."""
    starts = sorted(c.line for c, _ in _cases() if c.file == case.file)
    later = [line for line in starts if line > case.line]
    end = later[0] if later else case.line + 30
    return "\n".join(_source(case.file)[case.line - 1:end - 1])


def _go_name(backend: str) -> str:
    return GO_NAMES.get(backend, f'"{backend}"')


@pytest.mark.parametrize("case", [pytest.param(c, id=_case_id(c)) for c, _ in _cases()])
def test_each_case_is_transcribed_from_the_line_it_cites(case: Case) -> None:
    """The request and the expectation appear in the cited case of the suite's source (for
    this version: a new version's moved or changed cases fail here)."""
    text = re.sub(r"\s+", " ", _window(case))  # gofmt aligns the fields of a literal
    request, expect = case.request, case.expect
    wanted = [f'Path: "{request["path"]}"']
    wanted += [f'"{name}": "{value}"' for name, value in (request.get("headers") or {}).items()]
    wanted += [f'Method: "{request["method"]}"'] if "method" in request else []
    wanted += ["Host:"] if "host" in request else []
    wanted += [f"StatusCode: {expect['status']}"] if "status" in expect else []
    wanted += [_go_name(expect["backend"])] if "backend" in expect else []
    wanted += ["Namespace:"] if "namespace" in expect else []
    wanted += [f"{_go_name(b)}: {w}" for b, w in (expect.get("weights") or {}).items()]
    for mirror in expect.get("mirrored_to") or []:
        wanted.append(_go_name(mirror["backend"]))
        wanted += [f"int32({mirror['percent']})"] if "percent" in mirror else []
    missing = [w for w in wanted if w not in text]
    assert not missing, f"{case.source} does not read {missing}:\n{text}"


def test_the_table_transcribes_the_pinned_suite() -> None:
    pinned = read_versions()["GATEWAY_API_VERSION"]
    assert TABLE["version"] == pinned, (
        f"data/gateway_conformance.yaml transcribes the suite at {TABLE['version']}; the "
        f"toolchain pins {pinned}: check each case against the new sources and update it")


def _short_names(file: Path) -> list[str]:
    return re.findall(r'ShortName:\s*"([^"]+)"', file.read_text())


def test_every_httproute_test_and_manifest_of_the_suite_is_in_the_table() -> None:
    """A test the suite adds, or a manifest, is either transcribed or skipped with a reason."""
    sources = sorted(SUITE.glob("tests/**/*.go"))
    in_suite = {name: f"conformance/{f.relative_to(SUITE)}"
                for f in sources for name in _short_names(f)}
    in_table = {t["test"]: t["source"] for t in TABLE["tests"]}
    assert in_table == in_suite

    manifests = {str(f.relative_to(SUITE)) for f in SUITE.glob("tests/**/*.yaml")}
    named = {m for t in TABLE["tests"] for m in t["manifests"]}
    assert manifests == named
    for test in TABLE["tests"]:
        text = (SUITE / test["source"].removeprefix("conformance/")).read_text()
        assert all(f'"{m}"' in text for m in test["manifests"]), test["test"]
        assert "cases" in test or test.get("skip"), f"{test['test']}: no cases and no skip"


def test_every_request_of_a_transcribed_test_is_a_case() -> None:
    """A case added to a test the table transcribes is noticed: each Request the source makes
    (not an ExpectedRequest's) is cited by a case."""
    for test in TABLE["tests"]:
        if "cases" not in test:
            continue
        lines = _source(test["source"])
        requests = [i + 1 for i, line in enumerate(lines)
                    if re.match(r"\s*Request:\s", line) and "ExpectedRequest" not in lines[i - 1]]
        cited = sorted(int(c["source"].rsplit(":", 1)[1]) for c in test["cases"])
        assert requests == cited, test["test"]
