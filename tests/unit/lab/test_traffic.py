"""The lab's traffic without a cluster: demo app versions, routing, telemetry, load generator."""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rollout.adapters.lab_layout import Layout, Ports
from rollout.core.service import load_settings
from rollout.lab import demoapp, loadgen
from rollout.lab.dataplane.backends import Backends, start_demoapp
from rollout.lab.dataplane.endpoints import declared_version
from rollout.lab.dataplane.plane import DataPlane
from rollout.lab.dataplane.routing import (
    Destination,
    Mirror,
    table_from_http_route,
    table_from_virtual_service,
)
from rollout.lab.dataplane.server import ProxyServer
from rollout.lab.dataplane.telemetry import Telemetry
from rollout.lab.processes import port_in_use
from rollout.lab.traffic import Traffic, TrafficPorts, pick_ports
from rollout.pulumi.routers.gateway_api import http_route_spec
from rollout.pulumi.routers.istio import virtual_service_spec
from tests.unit.lab import cluster_objects

LAB = Path(loadgen.__file__).parent
APP = "demo"
BASE: dict[str, Any] = {"app": APP, "image": "registry.local/demo", "stableVersion": "v1",
                        "namespace": "shop"}


# -- demo app --------------------------------------------------------------------------------


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def test_behaviour_table_by_version() -> None:
    rng = random.Random(7)
    for version, errors in (("v1", 0.0), ("v2", 0.0), ("v3", 0.08), ("v4", 0.0)):
        draws = [demoapp.draw(demoapp.behaviour_of(version), rng) for _ in range(20000)]
        share = sum(code >= 500 for code, _ in draws) / len(draws)
        assert share == pytest.approx(errors, abs=0.01), version
        latencies = [s * 1000 for _, s in draws]
        assert 3 < _quantile(latencies, 0.5) < 8, version
    slow = [s * 1000 for _, s in (demoapp.draw(demoapp.BEHAVIOURS["v4"], rng)
                                  for _ in range(20000))]
    assert 600 <= _quantile(slow, 0.99) <= 1000
    assert _quantile([s * 1000 for _, s in (demoapp.draw(demoapp.GOOD, rng)
                                            for _ in range(20000))], 0.99) < 15
    with pytest.raises(demoapp.UnknownVersion, match="knows v0, v1, v2, v3, v4"):
        demoapp.behaviour_of("v9-unknown")


def test_a_version_the_demo_app_does_not_know_fails_to_start_saying_why() -> None:
    with pytest.raises(RuntimeError) as err:
        start_demoapp("v9")
    assert "no version 'v9': it knows v0, v1, v2, v3, v4" in str(err.value)


def _start_demoapp(version: str) -> tuple[subprocess.Popen[bytes], int]:
    return start_demoapp(version)


def _hammer(port: int, n: int, workers: int = 10) -> list[tuple[int, float, dict[str, Any]]]:
    local = threading.local()

    def one(_: int) -> tuple[int, float, dict[str, Any]]:
        conn = getattr(local, "conn", None) or http.client.HTTPConnection("127.0.0.1", port)
        local.conn = conn
        started = time.perf_counter()
        conn.request("GET", "/")
        resp = conn.getresponse()
        body = json.loads(resp.read())
        return resp.status, time.perf_counter() - started, body

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(n)))


def test_demoapp_processes_behave_as_their_versions() -> None:
    (v3, v3_port), (v4, v4_port) = _start_demoapp("v3"), _start_demoapp("v4")
    try:
        errors = _hammer(v3_port, 300)
        slow = _hammer(v4_port, 200)
        conn = http.client.HTTPConnection("127.0.0.1", v3_port)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        for proc in (v3, v4):
            proc.terminate()
            assert proc.wait(5) == 0
    assert {body["version"] for _, _, body in errors} == {"v3"}
    assert 0.03 <= sum(code >= 500 for code, _, _ in errors) / len(errors) <= 0.15
    assert all(code == 200 for code, _, _ in slow)
    assert 0.01 <= sum(secs > 0.5 for _, secs, _ in slow) / len(slow) <= 0.12
    assert _quantile([secs for _, secs, _ in slow], 0.5) < 0.1


# -- routing tables from the objects the infra program declares -----------------------------


def _settings(**overrides: Any) -> Any:
    if overrides.get("router") == "gateway-api":
        overrides.setdefault("parentRefs", [{"name": "mesh-gateway"}])
    return load_settings({**BASE, **overrides}, service="demo")


AB_RULES = [{"headers": {"x-user": {"prefix": "beta-"}}},
            {"cookie": "canary=always"},
            {"headers": {"x-group": {"exact": "qa"}, "x-region": {"regex": "eu-(west|north)"}}}]


@pytest.mark.parametrize("router", ["istio", "gateway-api"])
def test_weights_and_ab_rules_follow_the_declared_route(router: str) -> None:
    settings = _settings(canaryWeight=30, canaryVersion="v2", match=AB_RULES, router=router)
    if router == "istio":
        table = table_from_virtual_service({"metadata": {"generation": 4},
                                            "spec": virtual_service_spec(settings)}, APP)
    else:
        table = table_from_http_route({"metadata": {"generation": 4},
                                       "spec": http_route_spec(settings)}, APP)
    assert table.weights() == {"demo-primary": 70, "demo-canary": 30}
    assert table.generation == 4
    to_canary = [{"x-user": "beta-17"}, {"cookie": "canary=always"},
                 {"cookie": "session=abc; canary=always; theme=dark"},
                 {"x-group": "qa", "x-region": "eu-west"}]
    for headers in to_canary:
        route = table.select(headers, "/")
        assert route is not None
        assert route.destinations == (Destination("demo-canary", 100),), headers
    weighted = [{}, {"x-user": "alpha-beta-1"}, {"cookie": "canary=always2"},
                {"cookie": "notcanary=always"}, {"x-group": "qa", "x-region": "eu-westish"},
                {"x-group": "qa"}]
    for headers in weighted:
        assert table.select(headers, "/") == table.weighted_route(), headers


def test_weighted_choice_follows_weights() -> None:
    table = table_from_virtual_service({"spec": virtual_service_spec(_settings(canaryWeight=10))},
                                       APP)
    route = table.weighted_route()
    assert route is not None
    rng = random.Random(3)
    picks = [getattr(route.pick(rng.random()), "service", None) for _ in range(10000)]
    assert picks.count("demo-canary") / len(picks) == pytest.approx(0.10, abs=0.01)
    assert route.pick(0.0) == Destination("demo-primary", 90)
    assert route.pick(0.9999) == Destination("demo-canary", 10)


def test_no_route_object_sends_everything_to_the_primary() -> None:
    for table in (table_from_virtual_service(None, APP), table_from_http_route(None, APP)):
        assert table.weights() == {"demo-primary": 100}
        route = table.select({"cookie": "canary=always"}, "/")
        assert route is not None and route.pick(0.99) == Destination("demo-primary", 100)


def test_mirroring_and_fqdn_hosts() -> None:
    vs = {"spec": {"http": [{"name": "primary", "route": [
        {"destination": {"host": "demo-primary.shop.svc.cluster.local"}, "weight": 100},
        {"destination": {"host": "demo-canary.shop.svc.cluster.local"}, "weight": 0}],
        "mirror": {"host": "demo-canary"}, "mirrorPercentage": {"value": 25.0}}]}}
    route = table_from_virtual_service(vs, APP).weighted_route()
    assert route is not None
    assert route.mirrors == (Mirror(Destination("demo-canary", 0), 25.0),)
    assert route.destinations == (Destination("demo-primary", 100, "shop"),
                                  Destination("demo-canary", 0, "shop"))
    spec = http_route_spec(_settings(router="gateway-api", mirror=True, mirrorWeight=40))
    gw = table_from_http_route({"spec": spec}, APP).weighted_route()
    assert gw is not None and gw.mirrors == (Mirror(Destination("demo-canary", 0), 40.0),)
    several = table_from_virtual_service({"spec": {"http": [{"route": [
        {"destination": {"host": "demo-primary"}}],
        "mirrors": [{"destination": {"host": "demo-canary"}, "percentage": {"value": 5}},
                    {"destination": {"host": "demo-b"}}]}]}}, APP).routes[0]
    assert several.mirrors == (Mirror(Destination("demo-canary", 0), 5.0),
                               Mirror(Destination("demo-b", 0), 100.0))


def test_a_pods_version_comes_from_its_labels_env_or_image_tag() -> None:
    def version(labels: dict[str, str], env: dict[str, str], image: str) -> str | None:
        spec = {"containers": [{"image": image, "env": [
            {"name": k, "value": v} for k, v in env.items()]}]}
        return declared_version("demo-canary-abc", labels, spec)

    assert version({"app.kubernetes.io/version": "v3"}, {"VERSION": "v9"}, "demo:v7") == "v3"
    assert version({}, {"VERSION": "v4"}, "demo:v7") == "v4"
    assert version({}, {}, "registry.local/demo:v7") == "v7"


def test_a_pod_without_a_usable_version_is_served_by_no_demo_app_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("ERROR", logger="dataplane"):
        assert declared_version("demo-canary-abc", {}, {"containers": [
            {"image": "registry.local/demo", "env": []}]}) is None, "not v1, never declared"
        assert declared_version("demo-canary-abc", {}, {"containers": [
            {"image": "registry.local/demo:" + "v" * 100, "env": []}]}) is None

    assert "demo-canary-abc declares no version" in caplog.text
    assert "which is no label value" in caplog.text


# -- telemetry --------------------------------------------------------------------------------


def test_metrics_use_istio_names_and_labels() -> None:
    telemetry = Telemetry(APP, "shop")
    for duration_ms in (7.0, 300.0):
        telemetry.record("destination", service="demo-canary", workload="demo-canary",
                         version="v3", code=503, duration_ms=duration_ms, source="loadgen")
    telemetry.record("destination", service="demo-primary", workload="demo-primary",
                     version="v1", code=200, duration_ms=0.2, source="loadgen")
    telemetry.route_applied(table_from_virtual_service(
        {"metadata": {"generation": 9}, "spec": virtual_service_spec(_settings(canaryWeight=20))},
        APP))
    text = telemetry.render()
    assert "# TYPE istio_requests_total counter" in text
    assert "# TYPE istio_request_duration_milliseconds histogram" in text
    line = next(x for x in text.splitlines() if x.startswith("istio_requests_total{")
                and 'destination_workload="demo-canary"' in x)
    for label in ('reporter="destination"', 'destination_workload_namespace="shop"',
                  'response_code="503"', 'source_workload="loadgen"', 'request_protocol="http"',
                  'destination_version="v3"'):
        assert label in line
    assert line.endswith(" 2")
    bucket = re.compile(r'istio_request_duration_milliseconds_bucket\{.*'
                        r'destination_workload="demo-canary".*le="([^"]+)"\} (\d+)')
    counts = {m[1]: int(m[2]) for m in map(bucket.match, text.splitlines()) if m}
    assert (counts["5"], counts["10"], counts["250"], counts["500"], counts["+Inf"]) == (
        0, 1, 1, 2, 2)
    assert "1.8e+06" in counts
    assert 'lab_route_weight{destination="demo-canary"} 20' in text
    assert "lab_route_generation 9" in text


# -- the proxy with real demo apps, no cluster -----------------------------------------------


@pytest.fixture
def plane() -> Iterator[tuple[DataPlane, int]]:
    plane = DataPlane(APP, "shop", backends=Backends())
    server = ProxyServer(("127.0.0.1", 0), plane)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield plane, int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        plane.close()


def _get(port: int, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/", headers={"User-Agent": loadgen.USER_AGENT, **(headers or {})})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    version = json.loads(body)["version"] if resp.status != 503 else ""
    return resp.status, version, resp.getheader("x-lab-destination") or ""


def test_proxy_routes_rolls_pods_without_a_gap_and_counts(
        plane: tuple[DataPlane, int]) -> None:
    dp, port = plane
    assert _get(port)[0] == 503  # no Service yet
    primary = [cluster_objects.pod("demo-primary", "v1")]
    canary_v2 = [cluster_objects.pod("demo-canary", "v2")]
    cluster_objects.feed(dp, {"demo-primary": primary, "demo-canary": canary_v2})
    dp.apply_object({"spec": virtual_service_spec(_settings(canaryWeight=50, canaryVersion="v2",
                                                            match=AB_RULES))})
    assert _get(port, {"cookie": "canary=always"})[1:] == ("v2", "demo-canary")
    seen = {_get(port)[1] for _ in range(40)}
    assert seen == {"v1", "v2"}

    dp.apply_object({"spec": virtual_service_spec(_settings(canaryWeight=100,
                                                            canaryVersion="v2"))})
    results: list[tuple[int, str, str]] = []
    stop = threading.Event()

    def keep_asking() -> None:
        while not stop.is_set():
            results.append(_get(port))

    asker = threading.Thread(target=keep_asking)
    asker.start()
    # A rolling update of the canary to v1, as the Deployment controller makes it: the new
    # pod starts unready, becomes ready, then the old one terminates and goes.
    new = cluster_objects.pod("demo-canary", "v1", 1, ready=False)
    cluster_objects.feed(dp, {"demo-primary": primary, "demo-canary": [*canary_v2, new]})
    time.sleep(0.1)
    assert {v for _, v, _ in results} == {"v2"}, "an unready pod takes no traffic"
    new = cluster_objects.pod("demo-canary", "v1", 1)
    cluster_objects.feed(dp, {"demo-primary": primary, "demo-canary": [*canary_v2, new]})
    time.sleep(0.2)
    cluster_objects.feed(dp, {"demo-primary": primary, "demo-canary": [*canary_v2, new]},
             terminating=frozenset({canary_v2[0]["metadata"]["name"]}))
    time.sleep(0.1)
    cluster_objects.feed(dp, {"demo-primary": primary, "demo-canary": [new]})
    time.sleep(0.1)
    stop.set()
    asker.join()
    assert {code for code, _, _ in results} == {200}
    assert {v for _, v, _ in results} == {"v2", "v1"}
    assert results[-1][1] == "v1"

    cluster_objects.feed(dp, {"demo-primary": primary, "demo-canary": []})
    assert _get(port)[0] == 503  # the canary Service has no ready pod
    process = dp.backends.current("v1")
    assert process is not None
    process.proc.kill()
    process.proc.wait()
    dp.backends.revive()
    revived = dp.backends.current("v1")
    assert revived is not None and revived.proc.pid != process.proc.pid
    dp.apply_object(None)
    assert _get(port)[:2] == (200, "v1")
    text = dp.telemetry.render()
    for reporter in ("source", "destination"):
        assert re.search(rf'istio_requests_total{{reporter="{reporter}",[^}}]*'
                         r'destination_workload="demo-canary",destination_workload_namespace='
                         r'"shop"[^}]*response_code="200"', text)
    assert re.search(r'istio_requests_total{reporter="source",[^}]*destination_service_name='
                     r'"demo-canary"[^}]*response_code="503",response_flags="UH"', text)
    assert 'lab_unrouted_requests_total{reason="no_endpoint",destination="demo-canary"}' in text
    assert dp.state()["processes"] == {"v1": revived.port}, "v2's process was retired"


# -- load generator ---------------------------------------------------------------------------


class _Counting(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hits: list[float] = []  # noqa: RUF012 - one test server at a time

    def do_GET(self) -> None:
        _Counting.hits.append(time.monotonic())
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_loadgen_holds_a_steady_rate() -> None:
    _Counting.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        gen = loadgen.LoadGenerator(f"http://127.0.0.1:{server.server_address[1]}/", 50)
        stats = gen.run(duration=3.0)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert stats.sent == stats.ok == 150
    assert 145 <= len(_Counting.hits) <= 150
    gaps = [b - a for a, b in zip(_Counting.hits, _Counting.hits[1:], strict=False)]
    assert _quantile(gaps, 0.5) == pytest.approx(0.02, abs=0.005)


@pytest.mark.parametrize("url", ["http://10.0.0.1:80/", "http://example.com/",
                                 "https://127.0.0.1:8443/", "http://[::2]:80/", "ftp://127.0.0.1/"])
def test_loadgen_refuses_targets_off_the_loopback(url: str) -> None:
    with pytest.raises(ValueError, match=r"loopback|only http"):
        loadgen.check_target(url)


def test_loadgen_cli_refuses_before_sending() -> None:
    done = subprocess.run([sys.executable, "-P", str(LAB / "loadgen.py"),
                           "--target", "http://192.0.2.1/", "--duration", "1"],
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 2
    assert "loopback" in done.stderr
    assert loadgen.check_target("http://localhost:8080/x?y=1") == ("localhost", 8080, "/x?y=1")


# -- Traffic: ports and files, without starting anything -------------------------------------


def test_traffic_ports_are_deterministic_and_fall_back_when_taken(tmp_path: Path) -> None:
    ports = Ports(21000)
    first = pick_ports(ports, "shop", APP)
    assert first == pick_ports(ports, "shop", APP)
    assert 21500 <= first.listen < 21700 and first.metrics == first.listen + 1
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", first.listen))
        other = pick_ports(ports, "shop", APP)
    assert other != first
    assert not port_in_use(other.metrics)


def test_traffic_that_never_started_reports_stopped(tmp_path: Path) -> None:
    traffic = Traffic(Layout(tmp_path), TrafficPorts(1, 2), app=APP, namespace="shop")
    assert traffic.dataplane_name == "dataplane-shop-demo"
    assert traffic.loadgen_name == "loadgen-shop-demo"
    assert traffic.status().state == "stopped"
    assert not traffic.stop()


# -- the data plane and Traffic end to end, against a fake Kubernetes API --------------------

VS_PATH = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices"
POD_PATH = "/api/v1/namespaces/shop/pods"
SLICE_PATH = "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices"
SERVICE_PATH = "/api/v1/namespaces/shop/services"
DR_PATH = "/apis/networking.istio.io/v1/namespaces/shop/destinationrules"


class FakeKube(ThreadingHTTPServer):
    """List and watch (chunked, like the real API) for the collections the data plane reads;
    any other path is a 404, as on the real API server. Watches end after 1 s."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _FakeKubeHandler)
        self.rv = 0
        self.objects: dict[str, dict[str, dict[str, Any]]] = {
            path: {} for path in (VS_PATH, SERVICE_PATH, POD_PATH, SLICE_PATH, DR_PATH)}
        self.events: list[tuple[int, str, str, dict[str, Any]]] = []
        self.changed = threading.Condition()
        self.watches = 0

    def put(self, path: str, obj: dict[str, Any]) -> None:
        with self.changed:
            self.rv += 1
            name = obj["metadata"]["name"]
            old = self.objects[path].get(name)
            generation = (old["metadata"]["generation"] + 1) if old else 1
            obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.rv),
                                       "generation": generation}}
            self.objects[path][name] = obj
            self.events.append((self.rv, path, "MODIFIED" if old else "ADDED", obj))
            self.changed.notify_all()

    def delete(self, path: str, name: str) -> None:
        with self.changed:
            self.rv += 1
            obj = self.objects[path].pop(name)
            self.events.append((self.rv, path, "DELETED", obj))
            self.changed.notify_all()

    def kubeconfig(self, path: Path) -> Path:
        server = f"http://127.0.0.1:{self.server_address[1]}"
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": server}}],
            "users": [{"name": "fake", "user": {}}],  # it asks for no credentials
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        }))
        return path


class _FakeKubeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeKube

    def do_GET(self) -> None:
        from urllib.parse import parse_qs, urlsplit

        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        name = query.get("fieldSelector", "").removeprefix("metadata.name=") or None
        if url.path not in self.server.objects:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if query.get("watch") in ("true", "True", "1"):
            self._watch(url.path, int(query.get("resourceVersion") or 0), name)
            return
        with self.server.changed:
            items = [o for n, o in self.server.objects.get(url.path, {}).items()
                     if name in (None, n)]
            body = {"items": items, "metadata": {"resourceVersion": str(self.server.rv)}}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _watch(self, path: str, since: int, name: str | None) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._stream(path, since, name)
        self.close_connection = True

    def _stream(self, path: str, since: int, name: str | None) -> None:
        self.server.watches += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            with self.server.changed:
                fresh = [(rv, kind, obj) for rv, p, kind, obj in self.server.events
                         if rv > since and p == path and name in (None, obj["metadata"]["name"])]
                if not fresh:
                    self.server.changed.wait(deadline - time.monotonic())
            for rv, kind, obj in fresh:
                line = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
                self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                self.wfile.flush()
                since = rv
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: object) -> None:
        pass


def _roll(kube: FakeKube, workload: str, version: str | None, replicas: int = 1) -> None:
    """Replaces a workload's pods (and its Service's slice) with `replicas` at `version`."""
    for name, obj in list(kube.objects[POD_PATH].items()):
        if obj["metadata"]["labels"]["app.kubernetes.io/instance"] == workload:
            kube.delete(POD_PATH, name)
    pods = [cluster_objects.pod(workload, version, i) for i in range(replicas)]
    for pod in pods:
        kube.put(POD_PATH, pod)
    if workload not in kube.objects[SERVICE_PATH]:
        kube.put(SERVICE_PATH, cluster_objects.service(workload))
    kube.put(SLICE_PATH, cluster_objects.endpoint_slice(workload, pods))


def _vs(canary_weight: int) -> dict[str, Any]:
    spec = virtual_service_spec(_settings(canaryWeight=canary_weight, match=AB_RULES[:1]))
    return {"metadata": {"name": APP, "namespace": "shop"}, "spec": spec}


def _wait_for(check: Any, timeout: float = 10.0) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "timed out"
        time.sleep(0.01)
    return time.monotonic() - started


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    server = FakeKube()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_traffic_follows_the_live_route_and_endpoints(kube: FakeKube, tmp_path: Path) -> None:
    _roll(kube, "demo-primary", "v1")
    _roll(kube, "demo-canary", "v2")
    kube.put(VS_PATH, _vs(10))
    layout = Layout(tmp_path / "lab")
    traffic = Traffic(layout, Ports(22000), app=APP, namespace="shop",
                      kubeconfig=kube.kubeconfig(tmp_path / "kubeconfig"), rps=40)
    try:
        first = traffic.start()
        assert first.ready and first.loadgen_pid is not None
        assert first.weights == {"demo-primary": 90, "demo-canary": 10}
        assert first.backends == {"demo-primary": "v1", "demo-canary": "v2"}
        assert traffic.start() == traffic.status()  # idempotent
        port = int(traffic.url.rsplit(":", 1)[1])
        assert traffic.metrics_url == f"http://127.0.0.1:{port + 1}/metrics"
        assert json.loads(traffic.scrape_file.read_text()) == [
            {"targets": [f"127.0.0.1:{port + 1}"], "labels": {"job": "lab-dataplane"}}]
        assert _get(port, {"x-user": "beta-1"})[1] == "v2"

        kube.put(VS_PATH, _vs(50))
        reaction = _wait_for(lambda: traffic.status().weights.get("demo-canary") == 50)
        assert reaction < 1.0
        _roll(kube, "demo-canary", "v3")
        _wait_for(lambda: traffic.status().backends.get("demo-canary") == "v3")
        answers = [_get(port, {"x-user": "beta-1"}) for _ in range(100)]
        assert {v for _, v, _ in answers} == {"v3"}
        assert 1 <= sum(code == 500 for code, _, _ in answers) <= 25
        kube.delete(VS_PATH, APP)
        _wait_for(lambda: traffic.status().weights == {"demo-primary": 100})
        _roll(kube, "demo-canary", "v3", replicas=0)
        _wait_for(lambda: "demo-canary" not in traffic.status().backends)
        time.sleep(1.2)  # outlives one server-side watch: the data plane must have rewatched
        kube.put(VS_PATH, _vs(30))
        _wait_for(lambda: traffic.status().weights.get("demo-canary") == 30)
        assert kube.watches >= 4

        metrics = http.client.HTTPConnection("127.0.0.1", port + 1)
        metrics.request("GET", "/metrics")
        text = metrics.getresponse().read().decode()
        metrics.close()
        assert 'source_workload="loadgen"' in text
        assert re.search(r'istio_requests_total\{[^}]*destination_workload="demo-canary"'
                         r'[^}]*destination_version="v3"[^}]*response_code="500"', text)
        pids = [first.dataplane_pid, first.loadgen_pid]
    finally:
        assert traffic.stop()
    assert traffic.status().state == "stopped"
    assert not traffic.scrape_file.exists() and not traffic.state_file.exists()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
