"""The data plane sends traffic to a Service's ready pods, as Istio's sidecars do: readiness,
retries and Envoy's response flags, DestinationRule subsets and consistent-hash affinity, and
both reporters' telemetry."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from rollout.lab.components import POD_READY_DELAY_ANNOTATION, kwok_stages
from rollout.lab.dataplane.backends import Backends
from rollout.lab.dataplane.plane import DataPlane
from tests.unit.lab import cluster_objects

APP = "demo"


class _Answer:
    """A demo app stand-in per version: answers `status`, or cannot be connected to."""

    def __init__(self, version: str, status: int | None) -> None:
        self.version = version
        self.status = status
        self.calls = 0

    def forward(self, method: str, path: str, headers: Any,
                body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes]:
        self.calls += 1
        if self.status is None:
            raise ConnectionRefusedError(111, "Connection refused")
        return self.status, [], b"{}"


class _Backends(Backends):
    def __init__(self, answers: dict[str, int | None]) -> None:
        super().__init__()
        self.answers = {v: _Answer(v, s) for v, s in answers.items()}

    def want(self, versions: frozenset[str]) -> None:
        pass

    def current(self, version: str) -> Any:
        return self.answers.get(version)


@pytest.fixture
def planes() -> Iterator[list[DataPlane]]:
    made: list[DataPlane] = []
    yield made
    for plane in made:
        plane.close()


def _plane(planes: list[DataPlane], answers: dict[str, int | None],
           pods: dict[str, list[dict[str, Any]]], spec: str | None = None,
           router: str = "istio", rules: list[dict[str, Any]] | None = None) -> DataPlane:
    plane = DataPlane(APP, "shop", router, backends=_Backends(answers))
    planes.append(plane)
    cluster_objects.feed(plane, pods)
    plane.rules.set_all(rules or [])
    if spec is not None:
        plane.apply_object({"metadata": {"generation": 1}, "spec": yaml.safe_load(spec)})
    return plane


def _series(plane: DataPlane, reporter: str) -> Counter[tuple[str, str, str, str]]:
    """(service, workload, code, flags) -> requests, as one reporter counted them."""
    found: Counter[tuple[str, str, str, str]] = Counter()
    for line in plane.telemetry.render().splitlines():
        if line.startswith("istio_requests_total{") and f'reporter="{reporter}"' in line:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            found[(labels["destination_service_name"], labels["destination_workload"],
                   labels["response_code"], labels["response_flags"])] += int(line.split()[-1])
    return found


TO_CANARY = "http: [{route: [{destination: {host: demo-canary}}]}]"


def test_only_ready_pods_with_a_listening_app_take_traffic(planes: list[DataPlane]) -> None:
    pods = [cluster_objects.pod("demo-canary", "v1", 0),
            cluster_objects.pod("demo-canary", "v2", 1, ready=False),
            cluster_objects.pod("demo-canary", "v9", 2)]  # ready, but its app never started
    plane = _plane(planes, {"v1": 200}, {"demo-canary": pods}, TO_CANARY)
    answered = {dict(plane.handle("GET", "/", {}, None)[1])["x-lab-pod"] for _ in range(30)}
    assert answered == {pods[0]["metadata"]["name"]}


def test_a_service_without_ready_pods_answers_503_no_healthy_upstream(
        planes: list[DataPlane]) -> None:
    plane = _plane(planes, {"v2": 200}, {
        "demo-canary": [cluster_objects.pod("demo-canary", "v2", ready=False)]}, TO_CANARY)
    assert plane.handle("GET", "/", {}, None)[0] == 503
    assert _series(plane, "source") == {("demo-canary", "unknown", "503", "UH"): 1}
    assert _series(plane, "destination") == {}


@pytest.mark.parametrize(("router", "code"), [("istio", 503), ("gateway-api", 500)])
def test_a_destination_that_is_no_service_here_gets_no_cluster(
        planes: list[DataPlane], router: str, code: int) -> None:
    spec = (TO_CANARY.replace("demo-canary", "ghost") if router == "istio" else
            "rules: [{backendRefs: [{name: ghost, port: 80}]}]")
    plane = _plane(planes, {"v1": 200}, {"demo-canary": [cluster_objects.pod("demo-canary", "v1")]},
                   spec, router)
    status, _, body = plane.handle("GET", "/", {}, None)
    assert (status, body) == (code, b"there is no Service ghost in shop\n")
    assert _series(plane, "source") == {("ghost", "unknown", str(code), "NC"): 1}


def test_another_namespace_or_kind_is_refused_not_guessed(planes: list[DataPlane]) -> None:
    pods = {"demo-canary": [cluster_objects.pod("demo-canary", "v1")]}
    plane = _plane(planes, {"v1": 200}, pods,
                   "http: [{route: [{destination: {host: demo-canary.other.svc.cluster.local}}]}]")
    assert plane.handle("GET", "/", {}, None)[0] == 503
    gateway = _plane(planes, {"v1": 200}, pods, "rules: [{backendRefs: [{name: demo-canary, "
                     "kind: ServiceImport, group: multicluster.x-k8s.io}]}]", "gateway-api")
    status, _, body = gateway.handle("GET", "/", {}, None)
    assert status == 500 and b"is not a Service" in body


def test_connect_failures_are_retried_on_another_pod_as_istio_does(
        planes: list[DataPlane]) -> None:
    pods = [cluster_objects.pod("demo-canary", "v1", 0),
            cluster_objects.pod("demo-canary", "v2", 1)]
    plane = _plane(planes, {"v1": 200, "v2": None}, {"demo-canary": pods}, TO_CANARY)
    assert {plane.handle("GET", "/", {}, None)[0] for _ in range(40)} == {200}
    answers = plane.backends.answers  # type: ignore[attr-defined]
    assert answers["v2"].calls > 0, "some requests tried the refusing pod first"
    assert _series(plane, "source") == {("demo-canary", "demo-canary", "200", "-"): 40}
    assert _series(plane, "destination") == {("demo-canary", "demo-canary", "200", "-"): 40}


def test_retries_exhausted_say_uf_and_urx_and_no_retries_say_uf(planes: list[DataPlane]) -> None:
    pods = {"demo-canary": [cluster_objects.pod("demo-canary", "v1")]}
    plane = _plane(planes, {"v1": None}, pods, TO_CANARY)
    assert plane.handle("GET", "/", {}, None)[0] == 503
    assert plane.backends.answers["v1"].calls == 3  # type: ignore[attr-defined]
    assert _series(plane, "source") == {("demo-canary", "unknown", "503", "UF,URX"): 1}
    assert _series(plane, "destination") == {}, "no destination saw a connection refused"
    once = _plane(planes, {"v1": None}, pods, "http: [{route: [{destination: {host: demo-canary}}]"
                  ", retries: {attempts: 0}}]")
    assert once.handle("GET", "/", {}, None)[0] == 503
    assert _series(once, "source") == {("demo-canary", "unknown", "503", "UF"): 1}


def test_a_503_is_retried_by_default_but_a_500_is_not(planes: list[DataPlane]) -> None:
    pods = {"demo-canary": [cluster_objects.pod("demo-canary", "v1")]}
    unavailable = _plane(planes, {"v1": 503}, pods, TO_CANARY)
    assert unavailable.handle("GET", "/", {}, None)[0] == 503
    assert _series(unavailable, "source") == {("demo-canary", "demo-canary", "503", "URX"): 1}
    assert _series(unavailable, "destination") == {("demo-canary", "demo-canary", "503", "-"): 3}
    failing = _plane(planes, {"v1": 500}, pods, TO_CANARY)
    assert failing.handle("GET", "/", {}, None)[0] == 500
    assert _series(failing, "destination") == {("demo-canary", "demo-canary", "500", "-"): 1}
    five_xx = _plane(planes, {"v1": 500}, pods, "http: [{route: [{destination: {host: "
                     "demo-canary}}], retries: {attempts: 1, retryOn: 5xx}}]")
    assert five_xx.handle("GET", "/", {}, None)[0] == 500
    assert _series(five_xx, "source") == {("demo-canary", "demo-canary", "500", "URX"): 1}


def _rule(host: str, spec: str, name: str = "demo", created: str = "2026-01-01T00:00:00Z"
          ) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "shop", "creationTimestamp": created},
            "spec": {"host": host, **yaml.safe_load(spec)}}


SUBSETS = "subsets: [{name: old, labels: {app.kubernetes.io/version: v1}}, " \
          "{name: new, labels: {app.kubernetes.io/version: v2}}]"


def test_subsets_route_to_the_pods_their_labels_select(planes: list[DataPlane]) -> None:
    pods = {"demo": [cluster_objects.pod("demo-primary", "v1", 0),
                     cluster_objects.pod("demo-canary", "v2", 1)]}
    spec = """
http:
- match: [{headers: {x-new: {exact: "yes"}}}]
  route: [{destination: {host: demo, subset: new}}]
- match: [{headers: {x-typo: {exact: "yes"}}}]
  route: [{destination: {host: demo, subset: newest}}]
- route: [{destination: {host: demo, subset: old}}]
"""
    plane = _plane(planes, {"v1": 200, "v2": 200}, pods, spec,
                   rules=[_rule("demo.shop.svc.cluster.local", SUBSETS)])
    assert {dict(plane.handle("GET", "/", {"x-new": "yes"}, None)[1])["x-lab-destination"]
            for _ in range(20)} == {"demo-canary"}
    assert {dict(plane.handle("GET", "/", {}, None)[1])["x-lab-destination"]
            for _ in range(20)} == {"demo-primary"}
    assert plane.handle("GET", "/", {"x-typo": "yes"}, None)[0] == 503
    assert _series(plane, "source")[("demo", "unknown", "503", "NC")] == 1
    no_rule = _plane(planes, {"v1": 200, "v2": 200}, pods, spec)
    assert no_rule.handle("GET", "/", {"x-new": "yes"}, None)[0] == 503


def test_consistent_hash_keeps_a_user_on_one_pod_and_spreads_users(
        planes: list[DataPlane]) -> None:
    pods = {"demo": [cluster_objects.pod("demo-primary", "v1", i) for i in range(4)]}
    affinity = "trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}"
    plane = _plane(planes, {"v1": 200}, pods, "http: [{route: [{destination: {host: demo}}]}]",
                   rules=[_rule("demo", affinity)])

    def pod_for(user: str) -> str:
        return dict(plane.handle("GET", "/", {"x-user": user}, None)[1])["x-lab-pod"]

    for user in ("ana", "bo", "cy"):
        assert len({pod_for(user) for _ in range(15)}) == 1
    assert len({pod_for(f"user-{i}") for i in range(60)}) == 4
    # A pod that leaves moves only the users it had.
    before = {f"user-{i}": pod_for(f"user-{i}") for i in range(60)}
    gone = pods["demo"][0]["metadata"]["name"]
    plane.endpoints.set_slices([cluster_objects.endpoint_slice("demo", pods["demo"],
                                                               terminating=frozenset({gone}))])
    after = {user: pod_for(user) for user in before}
    assert {u for u in before if before[u] != after[u]} == {u for u in before
                                                           if before[u] == gone}


def test_a_hash_cookie_with_a_ttl_is_set_when_missing_and_then_followed(
        planes: list[DataPlane]) -> None:
    pods = {"demo": [cluster_objects.pod("demo-primary", "v1", i) for i in range(4)]}
    # What the program's DestinationRule says for sessionAffinity {cookieName, maxAge: 1h}.
    cookie = "trafficPolicy: {loadBalancer: {consistentHash: {httpCookie: " \
             "{name: lab-affinity, ttl: 3600s, path: /}}}}"
    plane = _plane(planes, {"v1": 200}, pods, "http: [{route: [{destination: {host: demo}}]}]",
                   rules=[_rule("demo", cookie)])
    _, headers, _ = plane.handle("GET", "/", {}, None)
    set_cookie = dict(headers)["set-cookie"]
    assert re.fullmatch(r'lab-affinity="[0-9a-f]{16}"; Max-Age=3600; Path=/; HttpOnly',
                        set_cookie)
    sent = {"cookie": "theme=dark; " + set_cookie.split(";")[0]}
    answers = [dict(plane.handle("GET", "/", sent, None)[1]) for _ in range(10)]
    assert len({a["x-lab-pod"] for a in answers}) == 1
    assert all("set-cookie" not in a for a in answers)


def test_the_older_of_two_rules_for_one_host_wins(planes: list[DataPlane]) -> None:
    pods = {"demo": [cluster_objects.pod("demo-primary", "v1", 0),
                     cluster_objects.pod("demo-canary", "v2", 1)]}
    newer = _rule("demo", "subsets: [{name: new, labels: {app.kubernetes.io/version: v1}}]",
                  "newer", "2026-02-01T00:00:00Z")
    plane = _plane(planes, {"v1": 200, "v2": 200}, pods,
                   "http: [{route: [{destination: {host: demo, subset: new}}]}]",
                   rules=[newer, _rule("demo", SUBSETS, "older")])
    assert dict(plane.handle("GET", "/", {}, None)[1])["x-lab-destination"] == "demo-canary"


def test_each_request_is_counted_once_by_the_source_and_per_attempt_at_the_destination(
        planes: list[DataPlane]) -> None:
    pods = {"demo-primary": [cluster_objects.pod("demo-primary", "v1")]}
    plane = _plane(planes, {"v1": 200}, pods,
                   "http: [{match: [{uri: {prefix: /api}}], route: [{destination: "
                   "{host: demo-primary}}]}]")
    for target in ("/api", "/api/x", "/nowhere"):
        plane.handle("GET", target, {"user-agent": "lab-loadgen/1"}, None)
    assert _series(plane, "source") == {("demo-primary", "demo-primary", "200", "-"): 2,
                                        ("demo", "unknown", "404", "NR"): 1}
    assert _series(plane, "destination") == {("demo-primary", "demo-primary", "200", "-"): 2}
    text = plane.telemetry.render()
    assert re.search(r'reporter="source",source_workload="loadgen",[^}]*'
                     r'connection_security_policy="unknown"', text)
    assert re.search(r'reporter="destination",[^}]*connection_security_policy="mutual_tls"', text)


def test_a_pods_workload_is_its_deployment() -> None:
    from rollout.lab.dataplane.endpoints import pod_from_object

    pod = pod_from_object(cluster_objects.pod("demo-canary", "v3"))
    assert (pod.workload, pod.version) == ("demo-canary", "v3")
    bare = pod_from_object({"metadata": {"name": "debug", "labels": {
        "app.kubernetes.io/version": "v1"}}, "spec": {}})
    assert bare.workload == "debug"


def test_kwok_stages_get_the_readiness_delay_and_the_pod_annotation() -> None:
    upstream = """
kind: Stage
metadata: {name: pod-ready}
spec: {resourceRef: {kind: Pod}, next: {statusTemplate: "phase: Running"}}
---
kind: Stage
metadata: {name: pod-delete}
spec: {resourceRef: {kind: Pod}}
"""
    stages = list(yaml.safe_load_all(kwok_stages(upstream, 2.0)))
    ready = next(s for s in stages if s["metadata"]["name"] == "pod-ready")
    assert ready["spec"]["delay"]["durationMilliseconds"] == 2000
    assert ready["spec"]["delay"]["jitterDurationMilliseconds"] == 2500
    assert POD_READY_DELAY_ANNOTATION in ready["spec"]["delay"]["durationFrom"]["expressionFrom"]
    assert ready["spec"]["delay"]["jitterDurationFrom"] == ready["spec"]["delay"]["durationFrom"]
    assert ready["spec"]["next"] == {"statusTemplate": "phase: Running"}
    assert "delay" not in next(s for s in stages if s["metadata"]["name"] == "pod-delete")["spec"]
    instant = yaml.safe_load_all(kwok_stages(upstream, 0))
    assert next(iter(instant))["spec"]["delay"]["jitterDurationMilliseconds"] == 0


def test_what_a_virtual_service_asks_that_the_lab_does_not_do_is_named() -> None:
    from rollout.lab.dataplane.routing import table_from_virtual_service

    table = table_from_virtual_service({"spec": yaml.safe_load("""
http:
- name: slow
  timeout: 2s
  rewrite: {uri: /v2}
  route: [{destination: {host: demo-primary}}]
- route: [{destination: {host: demo-primary}}]
""")}, APP)
    assert table.problems == ("VirtualService route 'slow': the lab does not apply rewrite, "
                              "timeout; it forwards the requests the route takes as sent",)


def test_nonsense_objects_are_logged_and_change_nothing(
        planes: list[DataPlane], caplog: pytest.LogCaptureFixture) -> None:
    pods = {"demo": [cluster_objects.pod("demo-primary", "v1")]}
    plane = _plane(planes, {"v1": 200}, pods, TO_CANARY.replace("demo-canary", "demo"))
    before = plane.table
    with caplog.at_level("ERROR", logger="dataplane"):
        plane.apply_object({"spec": {"http": [{"route": [
            {"destination": {"host": "demo"}, "weight": "lots"},
            {"destination": {"host": "demo"}, "weight": 1}]}]}})
        plane.rules.set_all([_rule("demo", "trafficPolicy: {loadBalancer: {consistentHash: "
                                   "{httpCookie: oops}}}")])
    assert plane.table is before
    assert plane.rules.policy("demo") is None
    assert "the route object cannot be read" in caplog.text
    assert "DestinationRule demo cannot be read" in caplog.text
    assert plane.handle("GET", "/", {}, None)[0] == 200


class _Held(_Answer):
    """A demo app whose answers wait until released."""

    def __init__(self, version: str) -> None:
        super().__init__(version, 200)
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()

    def forward(self, method: str, path: str, headers: Any,
                body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes]:
        self.entered.release()
        self.release.wait(10)
        return super().forward(method, path, headers, body)


def test_least_request_by_default_sends_work_away_from_a_busy_pod(
        planes: list[DataPlane]) -> None:
    pods = {"demo": [cluster_objects.pod("demo-primary", "slow", 0),
                     cluster_objects.pod("demo-primary", "v1", 1)]}
    plane = _plane(planes, {"v1": 200}, pods, "http: [{route: [{destination: {host: demo}}]}]")
    held = _Held("slow")
    plane.backends.answers["slow"] = held  # type: ignore[attr-defined]
    busy = []
    for _ in range(20):  # until one request is held on the slow pod
        thread = threading.Thread(target=plane.handle, args=("GET", "/", {}, None))
        thread.start()
        busy.append(thread)
        if held.entered.acquire(timeout=0.2):
            break
    try:
        answered = [dict(plane.handle("GET", "/", {}, None)[1])["x-lab-pod"]
                    for _ in range(30)]
        assert set(answered) == {pods["demo"][1]["metadata"]["name"]}, \
            "every pick of the two compared their requests in flight"
    finally:
        held.release.set()
        for thread in busy:
            thread.join()


@pytest.mark.parametrize(("simple", "spread"), [("ROUND_ROBIN", {10}), ("RANDOM", None)])
def test_a_destination_rule_can_ask_for_round_robin_or_random(
        planes: list[DataPlane], simple: str, spread: set[int] | None) -> None:
    pods = {"demo": [cluster_objects.pod("demo-primary", "v1", i) for i in range(3)]}
    rule = _rule("demo", f"trafficPolicy: {{loadBalancer: {{simple: {simple}}}}}")
    plane = _plane(planes, {"v1": 200}, pods, "http: [{route: [{destination: {host: demo}}]}]",
                   rules=[rule])
    answered = Counter(dict(plane.handle("GET", "/", {}, None)[1])["x-lab-pod"]
                       for _ in range(30))
    assert len(answered) == 3
    if spread is not None:
        assert set(answered.values()) == spread


def test_an_unknown_balancer_makes_the_rule_unreadable(
        planes: list[DataPlane], caplog: pytest.LogCaptureFixture) -> None:
    plane = _plane(planes, {"v1": 200}, {"demo": [cluster_objects.pod("demo-primary", "v1")]})
    with caplog.at_level("ERROR", logger="dataplane"):
        plane.rules.set_all([_rule("demo", "trafficPolicy: {loadBalancer: {simple: FASTEST}}")])
    assert plane.rules.policy("demo") is None
    assert "loadBalancer.simple 'FASTEST' is none the lab knows" in caplog.text


def test_a_cookie_ttl_outside_the_duration_grammar_makes_the_rule_unreadable(
        planes: list[DataPlane], caplog: pytest.LogCaptureFixture) -> None:
    plane = _plane(planes, {"v1": 200}, {"demo": [cluster_objects.pod("demo-primary", "v1")]})
    with caplog.at_level("ERROR", logger="dataplane"):
        plane.rules.set_all([_rule("demo", "trafficPolicy: {loadBalancer: {consistentHash: "
                                   "{httpCookie: {name: c, ttl: soon}}}}")])
    assert plane.rules.policy("demo") is None
    assert "'soon' is not a duration" in caplog.text
