"""Lab traffic on the real lab: live weights, versions and Istio metrics through Prometheus."""

from __future__ import annotations

import http.client
import json
import time
import uuid
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rollout.analysis.templates import SUCCESS_RATE, render
from rollout.lab import kube
from rollout.lab.components import POD_READY_DELAY_ANNOTATION
from rollout.lab.dataplane.endpoints import Endpoints
from rollout.lab.lab import Lab
from rollout.lab.traffic import Traffic
from tests.unit.lab import cluster_objects

APP = "web"
ISTIO = ("networking.istio.io", "v1", "virtualservices")
GATEWAY = ("gateway.networking.k8s.io", "v1", "httproutes")
# The client's default for a patch is JSON Patch, which wants a list of operations.
MERGE_PATCH = "application/merge-patch+json"


def _deployment(name: str, version: str, replicas: int = 1) -> dict[str, Any]:
    selector = {"app.kubernetes.io/instance": name}
    labels = {**selector, "app.kubernetes.io/name": APP, "app.kubernetes.io/version": version}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": selector},
                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                     {"name": "app", "image": f"registry.local/{APP}:{version}"}]}}},
    }


def _service(name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": selector, "ports": [{"name": "http", "port": 80,
                                                      "targetPort": 8080}]}}


def _virtual_service(canary: int) -> dict[str, Any]:
    def dest(host: str, weight: int) -> dict[str, Any]:
        return {"destination": {"host": host, "port": {"number": 80}}, "weight": weight}

    return {
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": APP},
        "spec": {"hosts": [APP], "http": [{"name": "primary", "route": [
            dest(f"{APP}-primary", 100 - canary), dest(f"{APP}-canary", canary)]}]},
    }


def _http_route(canary: int) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": APP},
        "spec": {"hostnames": [APP], "rules": [
            {"matches": [{"headers": [{"type": "Exact", "name": "x-canary", "value": "yes"}]}],
             "backendRefs": [{"name": f"{APP}-canary", "port": 80, "weight": 100}]},
            {"backendRefs": [{"name": f"{APP}-primary", "port": 80, "weight": 100 - canary},
                             {"name": f"{APP}-canary", "port": 80, "weight": canary}]},
        ]},
    }


@pytest.fixture
def cluster(lab: Lab) -> Iterator[tuple[client.ApiClient, str]]:
    api = kube.api_client(lab.layout.kubeconfig)
    namespace = f"traffic-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(namespace, _deployment(f"{APP}-primary", "v1", 2))
    apps.create_namespaced_deployment(namespace, _deployment(f"{APP}-canary", "v2"))
    core = client.CoreV1Api(api)
    # The Services the program declares: the data plane routes to their ready endpoints.
    core.create_namespaced_service(namespace, _service(APP, {"app.kubernetes.io/name": APP}))
    for track in ("primary", "canary"):
        name = f"{APP}-{track}"
        core.create_namespaced_service(namespace, _service(
            name, {"app.kubernetes.io/instance": name}))
    try:
        yield api, namespace
    finally:
        try:
            client.CoreV1Api(api).delete_namespace(namespace)
        except ApiException as err:
            if err.status != 404:
                raise
        api.close()


def _eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def _prom(lab: Lab, promql: str) -> list[dict[str, Any]]:
    resp = httpx.get(f"{lab.prometheus_url}/api/v1/query", params={"query": promql}, timeout=5)
    resp.raise_for_status()
    return list(resp.json()["data"]["result"])


def _requests_by_workload(lab: Lab, namespace: str) -> dict[str, float]:
    rows = _prom(lab, "sum by (destination_workload) (istio_requests_total{"
                      f'reporter="destination",destination_workload_namespace="{namespace}"}})')
    return {r["metric"]["destination_workload"]: float(r["value"][1]) for r in rows}


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/", headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, json.loads(body)["version"] if resp.status < 503 else ""


def test_traffic_follows_the_virtual_service_into_prometheus(
        lab: Lab, cluster: tuple[client.ApiClient, str]) -> None:
    api, namespace = cluster
    objects = client.CustomObjectsApi(api)
    group, version, plural = ISTIO
    objects.create_namespaced_custom_object(group, version, namespace, plural,
                                            _virtual_service(10))
    traffic = Traffic(lab.layout, lab.ports, app=APP, namespace=namespace, rps=40)
    try:
        status = traffic.start()
        assert status.ready and status.loadgen_pid is not None
        assert status.weights == {f"{APP}-primary": 90, f"{APP}-canary": 10}
        _eventually(lambda: traffic.status().backends == {f"{APP}-primary": "v1",
                                                          f"{APP}-canary": "v2"},
                    15, "both workloads' pods ready and serving")

        counts = _eventually(lambda: (c := _requests_by_workload(lab, namespace))
                             and sum(c.values()) >= 400 and c, 90, "400 requests in Prometheus")
        share = counts.get(f"{APP}-canary", 0) / sum(counts.values())
        assert 0.05 <= share <= 0.16, counts
        success = render(SUCCESS_RATE, namespace=namespace, target=f"{APP}-canary",
                         primary=f"{APP}-primary", interval="30s")
        assert float(_prom(lab, success)[0]["value"][1]) == pytest.approx(100.0)

        vs = objects.get_namespaced_custom_object(group, version, namespace, plural, APP)
        vs["spec"] = _virtual_service(50)["spec"]
        started = time.monotonic()
        objects.replace_namespaced_custom_object(group, version, namespace, plural, APP, vs)
        # The 1 s reaction target is measured by bench/weight_reaction.py; here: it follows.
        while traffic.status().weights.get(f"{APP}-canary") != 50:
            assert time.monotonic() - started < 30, "the data plane never applied 50/50"
            time.sleep(0.01)

        patch = {"spec": {"template": {"metadata": {"labels": {
            "app.kubernetes.io/version": "v3"}}}}}
        client.AppsV1Api(api).patch_namespaced_deployment(f"{APP}-canary", namespace, patch,
                                                          _content_type=MERGE_PATCH)
        _eventually(lambda: traffic.status().backends.get(f"{APP}-canary") == "v3", 10,
                    "the canary backend to run v3")
        errors = ("sum(istio_requests_total{reporter=\"destination\","
                  f'destination_workload_namespace="{namespace}",'
                  f'destination_workload="{APP}-canary",destination_version="v3",'
                  'response_code=~"5.."})')
        _eventually(lambda: _prom(lab, errors), 60, "v3's 5xx in Prometheus")
    finally:
        traffic.stop()
    assert not traffic.scrape_file.exists()
    assert traffic.status().state == "stopped"


def test_traffic_follows_an_http_route_and_its_header_rule(
        lab: Lab, cluster: tuple[client.ApiClient, str]) -> None:
    api, namespace = cluster
    objects = client.CustomObjectsApi(api)
    group, version, plural = GATEWAY
    objects.create_namespaced_custom_object(group, version, namespace, plural, _http_route(20))
    traffic = Traffic(lab.layout, lab.ports, app=APP, namespace=namespace,
                      router="gateway-api", rps=0)
    try:
        status = traffic.start()
        assert status.weights == {f"{APP}-primary": 80, f"{APP}-canary": 20}
        assert status.loadgen_pid is None
        _eventually(lambda: len(traffic.status().backends) == 2, 15, "pods ready and serving")
        assert {_get(traffic.url, {"x-canary": "yes"})[1] for _ in range(20)} == {"v2"}
        versions = [_get(traffic.url)[1] for _ in range(200)]
        assert 0.08 <= versions.count("v2") / len(versions) <= 0.35

        objects.delete_namespaced_custom_object(group, version, namespace, plural, APP)
        _eventually(lambda: traffic.status().weights == {f"{APP}-primary": 100}, 1,
                    "100% primary once the HTTPRoute is gone")
        client.AppsV1Api(api).patch_namespaced_deployment(
            f"{APP}-canary", namespace, {"spec": {"replicas": 0}}, _content_type=MERGE_PATCH)
        _eventually(lambda: f"{APP}-canary" not in traffic.status().backends, 10,
                    "no canary backend at 0 replicas")
    finally:
        traffic.stop()


def test_a_rolling_update_moves_traffic_through_ready_pods_only(
        lab: Lab, cluster: tuple[client.ApiClient, str]) -> None:
    """The real Deployment controller rolls the primary's two pods; kwok makes each new pod
    Ready after the delay its annotation asks; the EndpointSlice controller publishes it; only
    then does it take requests. Versions mix meanwhile, and no request fails."""
    api, namespace = cluster
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        *ISTIO[:2], namespace, ISTIO[2], _virtual_service(0))
    traffic = Traffic(lab.layout, lab.ports, app=APP, namespace=namespace, rps=0)
    try:
        traffic.start()
        primary = f"{APP}-primary"
        _eventually(lambda: traffic.status().backends.get(primary) == "v1", 15, "v1 serving")
        patch = {"spec": {"template": {"metadata": {
            "labels": {"app.kubernetes.io/version": "v2"},
            "annotations": {POD_READY_DELAY_ANNOTATION: "3s"}}}}}
        client.AppsV1Api(api).patch_namespaced_deployment(primary, namespace, patch,
                                                          _content_type=MERGE_PATCH)
        patched = time.monotonic()
        seen: list[tuple[float, str, int, str]] = []
        while time.monotonic() - patched < 25:
            serving = traffic.status().backends.get(primary, "")
            code, answered = _get(traffic.url)
            seen.append((time.monotonic() - patched, serving, code, answered))
            if serving == "v2" and time.monotonic() - patched > 4:
                break
            time.sleep(0.05)
        assert {code for _, _, code, _ in seen} == {200}, seen
        first_v2 = next(t for t, _, _, answered in seen if answered == "v2")
        assert first_v2 >= 2.5, f"a v2 pod answered {first_v2:.1f}s after the patch, before " \
                                "its 3s readiness delay"
        assert any(serving == "v1+v2" for _, serving, _, _ in seen), "versions never mixed"
        assert seen[-1][1] == "v2", seen[-5:]
        pods = traffic.state()["endpoints"][primary]  # type: ignore[index]
        assert {p["version"] for p in pods if p["serving"]} == {"v2"}
    finally:
        traffic.stop()


def _endpoints_read(feed: Callable[[Endpoints], None]) -> list[tuple[str, bool, str, str]]:
    """What the data plane's endpoint model makes of some objects, pod names aside."""
    endpoints = Endpoints()
    feed(endpoints)
    return sorted((service, e["ready"], e["workload"], e["version"])
                  for service, found in endpoints.summary().items() for e in found)


def test_the_unit_tests_pods_and_slices_read_as_the_real_ones(
        cluster: tuple[client.ApiClient, str]) -> None:
    """The contract of tests/unit/lab/cluster_objects: the Services, Pods and EndpointSlices
    the real controllers and kwok write read, in the data plane's model, exactly as the
    unit tests' hand-made ones for the same Deployments do."""
    api, namespace = cluster
    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)

    def real(endpoints: Endpoints) -> None:
        def plain(items: Any) -> list[dict[str, Any]]:
            return list(api.sanitize_for_serialization(items))

        endpoints.set_services(plain(core.list_namespaced_service(namespace).items))
        endpoints.set_pods(plain(core.list_namespaced_pod(namespace).items))
        endpoints.set_slices(plain(
            discovery.list_namespaced_endpoint_slice(namespace).items))

    primary = [cluster_objects.pod(f"{APP}-primary", "v1", i) for i in range(2)]
    canary = [cluster_objects.pod(f"{APP}-canary", "v2")]

    def fake(endpoints: Endpoints) -> None:
        cluster_objects.feed(SimpleNamespace(endpoints=endpoints), {
            APP: [*primary, *canary], f"{APP}-primary": primary, f"{APP}-canary": canary})

    expected = _endpoints_read(fake)
    assert len(expected) == 6 and all(ready for _, ready, _, _ in expected)
    _eventually(lambda: _endpoints_read(real) == expected, 20,
                f"the real objects to read as {expected}")
