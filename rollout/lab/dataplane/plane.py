"""The data plane's core: routes each request to a backend, mirrors it and counts it."""

from __future__ import annotations

import http.client
import logging
import random
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rollout.lab.dataplane.backends import Backends
from rollout.lab.dataplane.matching import split_target
from rollout.lab.dataplane.routing import RoutingTable, default_table, table_from_object
from rollout.lab.dataplane.telemetry import Telemetry

log = logging.getLogger("dataplane")

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "te", "trailer", "trailers", "transfer-encoding", "upgrade", "host",
                        "content-length"})


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
        for problem in table.problems:
            if problem not in self.table.problems:  # once, not per request nor per re-apply
                log.warning("%s", problem)
        self.table = table
        self.telemetry.route_applied(table)
        if changed:
            log.info("route %s generation %d: weights %s", table.source, table.generation,
                     table.weights())

    def handle(self, method: str, target: str, headers: Mapping[str, str],
               body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes]:
        """Routes one request; `target` is the request line's, query string and all."""
        started = time.perf_counter()
        path, query = split_target(target)
        route = self.table.select(headers, path, method=method, query=query)
        if route is None:
            self.telemetry.unrouted("no_route", "")
            return 404, [], b"no route matched\n"
        workload = route.pick(random.random())
        if workload is None:
            source = _source(headers)
            self.telemetry.no_upstream(route.name, (time.perf_counter() - started) * 1000,
                                       source)
            return 500, [], f"route {route.name} gives no destination a weight\n".encode()
        response = self._forward(workload, method, target, headers, body)
        if route.mirror and random.random() * 100 < route.mirror_percent:
            self._mirror(route.mirror, method, target, headers, body)
        return response

    def _forward(self, workload: str, method: str, path: str,
                 headers: Mapping[str, str], body: bytes | None, *,
                 shadow: bool = False) -> tuple[int, list[tuple[str, str]], bytes]:
        backend = self.backends.current(workload)
        if backend is None:
            self.telemetry.unrouted("no_backend", workload)
            return 503, [], b"no healthy upstream\n"
        upstream = {k: v for k, v in headers.items() if k not in HOP_BY_HOP}
        # Envoy suffixes a mirrored request's Host/Authority with "-shadow", so the mirror
        # target can tell shadow traffic from its own.
        upstream["host"] = f"{workload}.{self.namespace}" + ("-shadow" if shadow else "")
        # Istio's destination proxy times a request from its arrival there: routing on the
        # way (the client side) is not in the destination's latency.
        started = time.perf_counter()
        try:
            status, resp_headers, data = backend.forward(method, path, upstream, body)
        except (http.client.HTTPException, OSError) as err:
            log.warning("%s %s: %s", workload, backend.version, err)
            status, resp_headers, data = 503, [], b"upstream connect error\n"
        duration_ms = (time.perf_counter() - started) * 1000
        self.telemetry.record(backend.workload, backend.version, status, duration_ms,
                              _source(headers))
        out = [(k, v) for k, v in resp_headers if k.lower() not in HOP_BY_HOP]
        out.append(("x-lab-destination", backend.workload))
        return status, out, data

    def _mirror(self, workload: str, method: str, path: str, headers: Mapping[str, str],
                body: bytes | None) -> None:
        # Shadow traffic is best effort: drop it rather than queue without bound.
        if not self._mirror_slots.acquire(blocking=False):
            return
        def send() -> None:
            try:
                self._forward(workload, method, path, headers, body, shadow=True)
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


def _source(headers: Mapping[str, str]) -> str:
    return "loadgen" if headers.get("user-agent", "").startswith("lab-loadgen") else "unknown"
