"""The lab's data plane: splits requests as the live route says and reports Istio's telemetry."""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import logging
import random
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

log = logging.getLogger("dataplane")

ISTIO = ("networking.istio.io", "v1", "virtualservices")
GATEWAY_API = ("gateway.networking.k8s.io", "v1", "httproutes")
ROUTERS = {"istio": ISTIO, "gateway-api": GATEWAY_API}
VERSION_LABEL = "app.kubernetes.io/version"
# Istio's default buckets for istio_request_duration_milliseconds.
BUCKETS_MS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
              300000, 600000, 1800000, 3600000)
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "te", "trailer", "trailers", "transfer-encoding", "upgrade", "host",
                        "content-length"})
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


# -- the routing table: pure functions of a VirtualService or HTTPRoute ----------------------


@dataclass(frozen=True)
class Condition:
    """One request condition; `header` None means the request path."""

    header: str | None
    kind: str  # exact | prefix | regex
    value: str

    def holds(self, headers: Mapping[str, str], path: str) -> bool:
        actual = path if self.header is None else headers.get(self.header)
        if actual is None:
            return False
        if self.kind == "exact":
            return actual == self.value
        if self.kind == "prefix":
            return actual.startswith(self.value)
        pattern = _compiled(self.value)
        return pattern is not None and pattern.fullmatch(actual) is not None


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        log.warning("ignoring invalid regex %r: it matches nothing", pattern)
        return None


@dataclass(frozen=True)
class Route:
    """A route: any one of `matches` (each all of its conditions) selects it; none means all."""

    name: str
    matches: tuple[tuple[Condition, ...], ...]
    destinations: tuple[tuple[str, int], ...]
    mirror: str | None = None
    mirror_percent: float = 0.0

    def selects(self, headers: Mapping[str, str], path: str) -> bool:
        if not self.matches:
            return True
        return any(all(c.holds(headers, path) for c in match) for match in self.matches)

    def pick(self, u: float) -> str | None:
        """The destination for a uniform draw u in [0, 1), by weight."""
        total = sum(w for _, w in self.destinations)
        if total <= 0:
            return self.destinations[0][0] if self.destinations else None
        point = u * total
        for name, weight in self.destinations:
            if point < weight:
                return name
            point -= weight
        return self.destinations[-1][0]


@dataclass(frozen=True)
class RoutingTable:
    routes: tuple[Route, ...]
    source: str = "default"
    generation: int = 0

    def select(self, headers: Mapping[str, str], path: str) -> Route | None:
        return next((r for r in self.routes if r.selects(headers, path)), None)

    def weighted_route(self) -> Route | None:
        """The route that carries the canary weight: "primary", else the last catch-all."""
        named = [r for r in self.routes if r.name == "primary"]
        catch_all = [r for r in self.routes if not r.matches]
        candidates = named or catch_all or list(self.routes)
        return candidates[-1] if candidates else None

    def weights(self) -> dict[str, int]:
        route = self.weighted_route()
        return dict(route.destinations) if route else {}

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "generation": self.generation, "weights": self.weights(),
            "routes": [
                {"name": r.name, "destinations": dict(r.destinations), "mirror": r.mirror,
                 "mirror_percent": r.mirror_percent,
                 "matches": [[vars(c) for c in m] for m in r.matches]}
                for r in self.routes
            ],
        }


def default_table(app: str) -> RoutingTable:
    """No route object: everything goes to the primary, as a plain Service would send it."""
    return RoutingTable((Route("default", (), ((f"{app}-primary", 100),)),))


def _workload(host: str) -> str:
    # Istio hosts may be short names or FQDNs (web-canary.ns.svc.cluster.local).
    return host.split(".", 1)[0]


def table_from_virtual_service(vs: Mapping[str, Any] | None, app: str) -> RoutingTable:
    if vs is None:
        return default_table(app)
    routes = []
    for i, entry in enumerate(vs.get("spec", {}).get("http") or []):
        dests = entry.get("route") or []
        single = len(dests) == 1
        destinations = tuple(
            (_workload(d.get("destination", {}).get("host", "")),
             int(d.get("weight", 100 if single else 0)))
            for d in dests
        )
        mirror = entry.get("mirror")
        percent = float((entry.get("mirrorPercentage") or {}).get("value", 100.0))
        routes.append(Route(
            name=entry.get("name") or f"http-{i}",
            matches=tuple(_istio_match(m) for m in entry.get("match") or []),
            destinations=destinations,
            mirror=_workload(mirror["host"]) if mirror and mirror.get("host") else None,
            mirror_percent=percent if mirror else 0.0,
        ))
    return RoutingTable(tuple(routes), "VirtualService", _generation(vs))


def _istio_match(match: Mapping[str, Any]) -> tuple[Condition, ...]:
    conditions = []
    for name, spec in (match.get("headers") or {}).items():
        for kind in ("exact", "prefix", "regex"):
            if kind in (spec or {}):
                conditions.append(Condition(name.lower(), kind, str(spec[kind])))
    uri = match.get("uri") or {}
    for kind in ("exact", "prefix", "regex"):
        if kind in uri:
            conditions.append(Condition(None, kind, str(uri[kind])))
    return tuple(conditions)


def table_from_http_route(route: Mapping[str, Any] | None, app: str) -> RoutingTable:
    if route is None:
        return default_table(app)
    routes = []
    for i, rule in enumerate(route.get("spec", {}).get("rules") or []):
        destinations = tuple(
            (str(ref.get("name", "")), int(ref.get("weight", 1)))
            for ref in rule.get("backendRefs") or []
        )
        mirror, percent = _gateway_mirror(rule.get("filters") or [])
        routes.append(Route(
            name=str(rule.get("name") or f"rule-{i}"),
            matches=tuple(_gateway_match(m) for m in rule.get("matches") or []),
            destinations=destinations,
            mirror=mirror,
            mirror_percent=percent,
        ))
    return RoutingTable(tuple(routes), "HTTPRoute", _generation(route))


def _gateway_match(match: Mapping[str, Any]) -> tuple[Condition, ...]:
    kinds = {"Exact": "exact", "RegularExpression": "regex", "PathPrefix": "prefix"}
    conditions = []
    for header in match.get("headers") or []:
        kind = kinds.get(header.get("type", "Exact"), "exact")
        conditions.append(Condition(str(header["name"]).lower(), kind, str(header["value"])))
    path = match.get("path")
    if path and not (path.get("type", "PathPrefix") == "PathPrefix" and path.get("value") == "/"):
        kind = kinds.get(path.get("type", "PathPrefix"), "prefix")
        conditions.append(Condition(None, kind, str(path.get("value", "/"))))
    return tuple(conditions)


def _gateway_mirror(filters: Iterable[Mapping[str, Any]]) -> tuple[str | None, float]:
    for f in filters:
        if f.get("type") != "RequestMirror":
            continue
        spec = f.get("requestMirror") or {}
        name = (spec.get("backendRef") or {}).get("name")
        if "percent" in spec:
            return name, float(spec["percent"])
        fraction = spec.get("fraction")
        if fraction:
            return name, 100.0 * fraction["numerator"] / fraction.get("denominator", 100)
        return name, 100.0
    return None, 0.0


def _generation(obj: Mapping[str, Any]) -> int:
    return int(obj.get("metadata", {}).get("generation") or 0)


def table_from_object(router: str, obj: Mapping[str, Any] | None, app: str) -> RoutingTable:
    if router == "gateway-api":
        return table_from_http_route(obj, app)
    return table_from_virtual_service(obj, app)


def declared_version(deployment: Mapping[str, Any] | None) -> str | None:
    """The version a Deployment declares, or None when it should have no backend."""
    if deployment is None:
        return None
    spec = deployment.get("spec") or {}
    replicas = spec.get("replicas")
    # No replicas field means the default of 1 (or an HPA owns the count).
    if replicas is not None and int(replicas) <= 0:
        return None
    template = spec.get("template") or {}
    version = ((template.get("metadata") or {}).get("labels") or {}).get(VERSION_LABEL)
    if not version:
        for container in (template.get("spec") or {}).get("containers") or []:
            env = {e.get("name"): e.get("value") for e in container.get("env") or []}
            image = str(container.get("image", ""))
            version = env.get("VERSION") or (image.rsplit(":", 1)[1] if ":" in image else None)
            if version:
                break
    version = str(version or "v1")
    return version if _VERSION_RE.match(version) else "v1"


# -- telemetry: Istio's standard metrics in the Prometheus text format -----------------------


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass
class _Series:
    count: int = 0
    total_ms: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS_MS))


class Telemetry:
    """Counts requests as Istio's destination reporter would, plus the lab's route gauges."""

    def __init__(self, app: str, namespace: str) -> None:
        self.app = app
        self.namespace = namespace
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str, str, str], _Series] = {}
        self._unrouted: dict[tuple[str, str], int] = {}
        self._table = default_table(app)
        self._applied_at = 0.0
        self._backends: dict[str, tuple[str, int]] = {}

    def record(self, workload: str, version: str, code: int, duration_ms: float,
               source: str) -> None:
        key = (workload, version, str(code), source)
        with self._lock:
            series = self._series.setdefault(key, _Series())
            series.count += 1
            series.total_ms += duration_ms
            for i, bound in enumerate(BUCKETS_MS):
                if duration_ms <= bound:
                    series.buckets[i] += 1
                    break

    def unrouted(self, reason: str, destination: str) -> None:
        with self._lock:
            key = (reason, destination)
            self._unrouted[key] = self._unrouted.get(key, 0) + 1

    def route_applied(self, table: RoutingTable) -> None:
        with self._lock:
            self._table = table
            self._applied_at = time.time()

    def backends_changed(self, backends: Mapping[str, tuple[str, int]]) -> None:
        with self._lock:
            self._backends = dict(backends)

    def _istio_labels(self, key: tuple[str, str, str, str]) -> list[tuple[str, str]]:
        workload, version, code, source = key
        ns = self.namespace
        return [
            ("reporter", "destination"), ("source_workload", source),
            ("source_workload_namespace", ns if source != "unknown" else "unknown"),
            ("destination_workload", workload), ("destination_workload_namespace", ns),
            ("destination_app", self.app), ("destination_version", version),
            ("destination_service", f"{workload}.{ns}.svc.cluster.local"),
            ("destination_service_name", workload), ("destination_service_namespace", ns),
            ("destination_canonical_service", self.app),
            ("destination_canonical_revision", version),
            ("request_protocol", "http"), ("response_code", code), ("response_flags", "-"),
            ("connection_security_policy", "mutual_tls"),
        ]

    def render(self) -> str:
        with self._lock:
            series = {k: (s.count, s.total_ms, list(s.buckets)) for k, s in self._series.items()}
            unrouted = dict(self._unrouted)
            table, applied_at, backends = self._table, self._applied_at, dict(self._backends)
        out = ["# HELP istio_requests_total Requests received, as Istio's destination reports.",
               "# TYPE istio_requests_total counter"]
        for key, (count, _, _) in sorted(series.items()):
            out.append(f"istio_requests_total{_labels(self._istio_labels(key))} {count}")
        out += ["# HELP istio_request_duration_milliseconds Request duration at the destination.",
                "# TYPE istio_request_duration_milliseconds histogram"]
        for key, (count, total_ms, buckets) in sorted(series.items()):
            out += self._histogram(self._istio_labels(key), count, total_ms, buckets)
        out += self._lab_gauges(table, applied_at, backends, unrouted)
        return "\n".join(out) + "\n"

    @staticmethod
    def _histogram(labels: list[tuple[str, str]], count: int, total_ms: float,
                   buckets: list[int]) -> list[str]:
        name = "istio_request_duration_milliseconds"
        lines, running = [], 0
        for bound, n in zip(BUCKETS_MS, buckets, strict=True):
            running += n
            # Envoy prints bucket bounds the way %g does: "0.5", "250", "1.8e+06".
            lines.append(f"{name}_bucket{_labels([*labels, ('le', f'{bound:g}')])} {running}")
        lines.append(f"{name}_bucket{_labels([*labels, ('le', '+Inf')])} {count}")
        lines.append(f"{name}_sum{_labels(labels)} {_number(round(total_ms, 3))}")
        lines.append(f"{name}_count{_labels(labels)} {count}")
        return lines

    def _lab_gauges(self, table: RoutingTable, applied_at: float,
                    backends: Mapping[str, tuple[str, int]],
                    unrouted: Mapping[tuple[str, str], int]) -> list[str]:
        out = ["# HELP lab_route_weight Weight of each destination on the weighted route.",
               "# TYPE lab_route_weight gauge"]
        for dest, weight in sorted(table.weights().items()):
            out.append(f"lab_route_weight{_labels([('destination', dest)])} {weight}")
        out += ["# HELP lab_route_generation metadata.generation of the applied route object.",
                "# TYPE lab_route_generation gauge",
                f"lab_route_generation {table.generation}",
                "# HELP lab_route_applied_timestamp_seconds When the data plane applied it.",
                "# TYPE lab_route_applied_timestamp_seconds gauge",
                f"lab_route_applied_timestamp_seconds {applied_at:.6f}",
                "# HELP lab_backend_info The demo app version serving each workload.",
                "# TYPE lab_backend_info gauge"]
        for dest, (version, port) in sorted(backends.items()):
            labels = [("destination", dest), ("version", version), ("port", str(port))]
            out.append(f"lab_backend_info{_labels(labels)} 1")
        out += ["# HELP lab_unrouted_requests_total Requests that had no route or no backend.",
                "# TYPE lab_unrouted_requests_total counter"]
        for (reason, dest), n in sorted(unrouted.items()):
            out.append(f"lab_unrouted_requests_total"
                       f"{_labels([('reason', reason), ('destination', dest)])} {n}")
        return out


# -- backends: one supervised demo app process per workload ----------------------------------


class Backend:
    """A running demo app and a keep-alive connection pool to it."""

    def __init__(self, workload: str, version: str, proc: subprocess.Popen[bytes],
                 port: int) -> None:
        self.workload = workload
        self.version = version
        self.proc = proc
        self.port = port
        self._pool: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def forward(self, method: str, path: str, headers: Mapping[str, str],
                body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes]:
        conn, reused = self._take()
        try:
            return self._exchange(conn, method, path, headers, body)
        except (http.client.HTTPException, OSError):
            conn.close()
            if not reused:
                raise
        # A pooled keep-alive connection may have been closed by the server meanwhile.
        conn, _ = self._take(fresh=True)
        try:
            return self._exchange(conn, method, path, headers, body)
        except (http.client.HTTPException, OSError):
            conn.close()
            raise

    def _exchange(self, conn: http.client.HTTPConnection, method: str, path: str,
                  headers: Mapping[str, str],
                  body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes]:
        conn.request(method, path, body=body, headers=dict(headers))
        resp = conn.getresponse()
        data = resp.read()
        result = resp.status, resp.getheaders(), data
        if resp.will_close:
            conn.close()
        else:
            with self._lock:
                self._pool.append(conn)
        return result

    def _take(self, fresh: bool = False) -> tuple[http.client.HTTPConnection, bool]:
        if not fresh:
            with self._lock:
                if self._pool:
                    return self._pool.pop(), True
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30), False

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, []
        for conn in pool:
            conn.close()
        _stop_process(self.proc)


def _stop_process(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def script_argv(module_file: str, python: str = sys.executable) -> list[str]:
    """Runs a lab script by path with -P: importing the `rollout` package would cost seconds."""
    return [python, "-P", str(Path(module_file).resolve())]


def start_demoapp(version: str, *, timeout: float = 15.0) -> tuple[subprocess.Popen[bytes], int]:
    """Starts a demo app on a free port it picks itself; returns it and its port."""
    argv = [*script_argv(str(Path(__file__).with_name("demoapp.py"))),
            "--port", "0", "--version", version, "--exit-with-parent"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline().decode() if ready else ""
        if not line.startswith("READY "):
            raise RuntimeError(f"demo app {version} did not start (said {line!r})")
        return proc, int(line.split()[1])
    except BaseException:
        _stop_process(proc)
        raise
    finally:
        proc.stdout.close()


class Backends:
    """Keeps one demo app per workload at the version its Deployment declares."""

    DRAIN_SECONDS = 2.0

    def __init__(
        self, on_change: Callable[[Mapping[str, tuple[str, int]]], None] | None = None
    ) -> None:
        self._current: dict[str, Backend] = {}
        self._retiring: set[Backend] = set()
        self._wanted: dict[str, str | None] = {}
        self._lock = threading.Lock()
        self._apply_locks: dict[str, threading.Lock] = {}
        self.on_change = on_change
        self._closed = False

    def current(self, workload: str) -> Backend | None:
        return self._current.get(workload)

    def summary(self) -> dict[str, tuple[str, int]]:
        return {w: (b.version, b.port) for w, b in list(self._current.items())}

    def want(self, workload: str, version: str | None) -> None:
        """Brings the workload to `version` (None: no backend); starts before it stops."""
        with self._lock:
            self._wanted[workload] = version
        self._reconcile(workload)

    def _reconcile(self, workload: str) -> None:
        with self._lock:
            apply_lock = self._apply_locks.setdefault(workload, threading.Lock())
        with apply_lock:
            version = self._wanted.get(workload)
            old = self._current.get(workload)
            dead = old is not None and old.proc.poll() is not None
            if self._closed or (old is None and version is None) or (
                    old is not None and old.version == version and not dead):
                return
            if dead and old is not None:
                log.warning("%s %s exited (%s); restarting it", workload, old.version,
                            old.proc.returncode)
            new = None
            if version is not None:
                try:
                    proc, port = start_demoapp(version)
                except (OSError, RuntimeError) as err:
                    log.error("cannot start %s %s: %s", workload, version, err)
                    return
                new = Backend(workload, version, proc, port)
                log.info("started %s %s on 127.0.0.1:%d", workload, version, port)
            with self._lock:
                if new is None:
                    self._current.pop(workload, None)
                    log.info("stopping %s: its Deployment declares no replicas", workload)
                else:
                    self._current[workload] = new
            self._changed()
            if old is not None:
                self._retire(old)

    def _retire(self, old: Backend) -> None:
        # In-flight requests (up to a second for a slow version) finish on the old process.
        def close() -> None:
            with self._lock:
                self._retiring.discard(old)
            old.close()

        with self._lock:
            self._retiring.add(old)
        timer = threading.Timer(self.DRAIN_SECONDS if old.proc.poll() is None else 0, close)
        timer.daemon = True
        timer.start()

    def revive(self) -> None:
        """Restarts dead backends and retries failed starts."""
        for workload in list(self._wanted):
            self._reconcile(workload)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.summary())

    def close(self) -> None:
        with self._lock:
            self._closed = True
            backends = [*self._current.values(), *self._retiring]
            self._current, self._retiring = {}, set()
        for backend in backends:
            backend.close()


# -- watches: the route object and the two Deployments ---------------------------------------


def _lines(resp: Any) -> Iterator[str]:
    """The lines of a streamed (chunked) response as they arrive."""
    buffer = b""
    for chunk in resp.stream(amt=None, decode_content=False):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield line.decode()


def _watch_forever(list_call: Callable[..., Any], kwargs: dict[str, Any],
                   on_list: Callable[[list[dict[str, Any]]], None],
                   on_event: Callable[[str, dict[str, Any]], None],
                   stop: threading.Event, what: str) -> None:
    """List, then watch from that resourceVersion; relist after any expiry or error.

    Events stay plain dicts: the client's typed models add nothing here and their validation
    would turn one odd object into a broken watch.
    """
    from kubernetes.client.exceptions import ApiException

    backoff = 0.2
    while not stop.is_set():
        try:
            resp = list_call(**kwargs, _preload_content=False, _request_timeout=10)
            listed = json.loads(resp.data)
            resp.release_conn()
            on_list(listed.get("items") or [])
            backoff = 0.2
            resp = list_call(**kwargs, watch=True, allow_watch_bookmarks=True,
                             resource_version=listed["metadata"]["resourceVersion"],
                             timeout_seconds=240, _preload_content=False,
                             _request_timeout=(10, 270))
            try:
                for line in _lines(resp):
                    event = json.loads(line)
                    if stop.is_set() or event.get("type") == "ERROR":
                        break  # ERROR is usually 410 Gone: relist
                    if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                        on_event(event["type"], event["object"])
            finally:
                # A watch left mid-stream must not go back to the pool.
                resp.close()
                resp.release_conn()
            continue
        except ApiException as err:
            level = logging.INFO if err.status in (404, 410) else logging.WARNING
            log.log(level, "%s watch: %s %s; relisting", what, err.status, err.reason)
        except Exception as err:
            log.warning("%s watch failed (%s: %s); retrying in %.1fs", what,
                        type(err).__name__, err, backoff)
        stop.wait(backoff)
        backoff = min(backoff * 2, 5.0)


class RouteWatch:
    """Feeds the data plane every version of the route object named after the app."""

    def __init__(self, api: Any, router: str, namespace: str, app: str,
                 apply: Callable[[dict[str, Any] | None], None]) -> None:
        from kubernetes import client

        group, version, plural = ROUTERS[router]
        self._list = client.CustomObjectsApi(api).list_namespaced_custom_object
        self._kwargs = {"group": group, "version": version, "namespace": namespace,
                        "plural": plural, "field_selector": f"metadata.name={app}"}
        self._apply = apply
        self.synced = threading.Event()

    def _listed(self, items: list[dict[str, Any]]) -> None:
        self._apply(items[0] if items else None)
        self.synced.set()

    def _event(self, kind: str, obj: dict[str, Any]) -> None:
        self._apply(None if kind == "DELETED" else obj)

    def run(self, stop: threading.Event) -> None:
        _watch_forever(self._list, self._kwargs, self._listed, self._event, stop, "route")


class DeploymentWatch:
    """Feeds the backends the version each of <app>-primary and <app>-canary declares."""

    def __init__(self, api: Any, namespace: str, app: str,
                 apply: Callable[[str, str | None], None]) -> None:
        from kubernetes import client

        self._list = client.AppsV1Api(api).list_namespaced_deployment
        self._kwargs = {"namespace": namespace}
        self.workloads = (f"{app}-primary", f"{app}-canary")
        self._apply = apply
        self.synced = threading.Event()

    def _listed(self, items: list[dict[str, Any]]) -> None:
        by_name = {d["metadata"]["name"]: d for d in items}
        for workload in self.workloads:
            self._apply(workload, declared_version(by_name.get(workload)))
        self.synced.set()

    def _event(self, kind: str, obj: dict[str, Any]) -> None:
        name = obj.get("metadata", {}).get("name")
        if name in self.workloads:
            self._apply(name, None if kind == "DELETED" else declared_version(obj))

    def run(self, stop: threading.Event) -> None:
        _watch_forever(self._list, self._kwargs, self._listed, self._event, stop, "deployments")


# -- the proxy --------------------------------------------------------------------------------


class DataPlane:
    """The routing table, the backends and the telemetry one proxy server shares."""

    def __init__(self, app: str, namespace: str, router: str = "istio",
                 backends: Backends | None = None) -> None:
        self.app = app
        self.namespace = namespace
        self.router = router
        self.telemetry = Telemetry(app, namespace)
        self.backends = backends or Backends()
        self.backends.on_change = self.telemetry.backends_changed
        self.table = default_table(app)
        self.synced = threading.Event()
        self._mirrors = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mirror")
        self._mirror_slots = threading.BoundedSemaphore(32)

    def apply_object(self, obj: Mapping[str, Any] | None) -> None:
        table = table_from_object(self.router, obj, self.app)
        self.set_table(table)

    def set_table(self, table: RoutingTable) -> None:
        changed = table.weights() != self.table.weights() or table.routes != self.table.routes
        self.table = table
        self.telemetry.route_applied(table)
        if changed:
            log.info("route %s generation %d: weights %s", table.source, table.generation,
                     table.weights())

    def handle(self, method: str, path: str, headers: Mapping[str, str],
               body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes]:
        started = time.perf_counter()
        route = self.table.select(headers, path)
        if route is None:
            self.telemetry.unrouted("no_route", "")
            return 404, [], b"no route matched\n"
        workload = route.pick(random.random())
        response = self._forward(workload, method, path, headers, body, started)
        if route.mirror and random.random() * 100 < route.mirror_percent:
            self._mirror(route.mirror, method, path, headers, body)
        return response

    def _forward(self, workload: str | None, method: str, path: str,
                 headers: Mapping[str, str], body: bytes | None,
                 started: float) -> tuple[int, list[tuple[str, str]], bytes]:
        backend = self.backends.current(workload) if workload else None
        if backend is None:
            self.telemetry.unrouted("no_backend", workload or "")
            return 503, [], b"no healthy upstream\n"
        upstream = {k: v for k, v in headers.items() if k not in HOP_BY_HOP}
        upstream["host"] = f"{workload}.{self.namespace}"
        try:
            status, resp_headers, data = backend.forward(method, path, upstream, body)
        except (http.client.HTTPException, OSError) as err:
            log.warning("%s %s: %s", workload, backend.version, err)
            status, resp_headers, data = 503, [], b"upstream connect error\n"
        duration_ms = (time.perf_counter() - started) * 1000
        source = "loadgen" if headers.get("user-agent", "").startswith("lab-loadgen") else "unknown"
        self.telemetry.record(backend.workload, backend.version, status, duration_ms, source)
        out = [(k, v) for k, v in resp_headers if k.lower() not in HOP_BY_HOP]
        out.append(("x-lab-destination", backend.workload))
        return status, out, data

    def _mirror(self, workload: str, method: str, path: str, headers: Mapping[str, str],
                body: bytes | None) -> None:
        # Shadow traffic is best effort: drop it rather than queue without bound.
        if not self._mirror_slots.acquire(blocking=False):
            return
        shadow = {**headers, "host": f"{workload}-shadow"}

        def send() -> None:
            try:
                self._forward(workload, method, path, shadow, body, time.perf_counter())
            finally:
                self._mirror_slots.release()

        self._mirrors.submit(send)

    def state(self) -> dict[str, Any]:
        return {
            "app": self.app, "namespace": self.namespace, "router": self.router,
            "synced": self.synced.is_set(), "route": self.table.as_dict(),
            "backends": {w: {"version": v, "port": p}
                         for w, (v, p) in self.backends.summary().items()},
        }

    def close(self) -> None:
        self._mirrors.shutdown(wait=False, cancel_futures=True)
        self.backends.close()


class _NoDelayHandler(BaseHTTPRequestHandler):
    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; Nagle would hold the body for a delayed ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _ProxyHandler(_NoDelayHandler):
    protocol_version = "HTTP/1.1"
    server: ProxyServer

    def _proxy(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, resp_headers, data = self.server.plane.handle(self.command, self.path, headers,
                                                              body)
        self.send_response(status)
        for key, value in resp_headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _proxy


class ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], plane: DataPlane) -> None:
        super().__init__(address, _ProxyHandler)
        self.plane = plane


class _MetricsHandler(_NoDelayHandler):
    server: MetricsServer

    def do_GET(self) -> None:
        plane = self.server.plane
        route = self.path.split("?", 1)[0]
        if route == "/metrics":
            self._send(200, plane.telemetry.render(), "text/plain; version=0.0.4")
        elif route == "/state":
            self._send(200, json.dumps(plane.state()), "application/json")
        elif route == "/ready":
            ready = plane.synced.is_set()
            self._send(200 if ready else 503, "ready\n" if ready else "syncing\n", "text/plain")
        else:
            self._send(404, "not found\n", "text/plain")

    def _send(self, status: int, text: str, content_type: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class MetricsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], plane: DataPlane) -> None:
        super().__init__(address, _MetricsHandler)
        self.plane = plane


# -- the command ------------------------------------------------------------------------------


def loopback_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        raise argparse.ArgumentTypeError(f"{text}: the lab binds 127.0.0.1 only")
    return "127.0.0.1", int(port)


def _serve(server: ThreadingHTTPServer, name: str) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name=name, daemon=True)
    thread.start()
    return thread


def _run_watches(plane: DataPlane, kubeconfig: Path, stop: threading.Event) -> None:
    from kubernetes import config

    def api() -> Any:
        return config.new_client_from_config(config_file=str(kubeconfig))

    route = RouteWatch(api(), plane.router, plane.namespace, plane.app, plane.apply_object)
    deployments = DeploymentWatch(api(), plane.namespace, plane.app, plane.backends.want)
    for name, watcher in (("route-watch", route), ("deployment-watch", deployments)):
        threading.Thread(target=watcher.run, args=(stop,), name=name, daemon=True).start()

    def mark_synced() -> None:
        route.synced.wait()
        deployments.synced.wait()
        plane.synced.set()

    threading.Thread(target=mark_synced, daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rollout.lab.dataplane", description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--app", required=True)
    parser.add_argument("--router", choices=sorted(ROUTERS), default="istio")
    parser.add_argument("--listen", type=loopback_address, required=True)
    parser.add_argument("--metrics", type=loopback_address, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()

    def _terminate(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    plane = DataPlane(args.app, args.namespace, args.router)
    proxy = ProxyServer(args.listen, plane)
    metrics = MetricsServer(args.metrics, plane)
    _serve(proxy, "proxy")
    _serve(metrics, "metrics")
    _run_watches(plane, args.kubeconfig, stop)
    log.info("routing %s/%s (%s) on %s:%d, metrics on %s:%d", args.namespace, args.app,
             args.router, *args.listen, *args.metrics)
    while not stop.wait(1.0):
        plane.backends.revive()
    log.info("stopping")
    proxy.shutdown()
    metrics.shutdown()
    plane.close()
    proxy.server_close()
    metrics.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
