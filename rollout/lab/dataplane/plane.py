"""The data plane's core: routes each request to a Service's ready pod, mirrors it and counts
it as Istio's two proxies would."""

from __future__ import annotations

import http.client
import logging
import random
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from rollout.lab.dataplane.backends import Backends
from rollout.lab.dataplane.destination_rules import (
    DEFAULT_BALANCER,
    DestinationRules,
    HashPolicy,
)
from rollout.lab.dataplane.endpoints import Endpoints, Pod, hash_pick
from rollout.lab.dataplane.matching import Request, split_target
from rollout.lab.dataplane.routing import (
    Destination,
    RetryPolicy,
    RoutingTable,
    default_table,
    table_from_object,
)
from rollout.lab.dataplane.telemetry import DESTINATION, SOURCE, UNKNOWN, Telemetry

log = logging.getLogger("dataplane")

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "te", "trailer", "trailers", "transfer-encoding", "upgrade", "host",
                        "content-length"})


Response = tuple[int, list[tuple[str, str]], bytes]


@dataclass
class _Outcome:
    """How a request to one destination ended: its response, Envoy's response flags, and the
    pod that answered last (None when none did)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    flags: str = "-"
    pod: Pod | None = None
    service: str = ""
    extra_headers: list[tuple[str, str]] = field(default_factory=list)


class DataPlane:
    """The routing table, endpoints, backends and telemetry one proxy server shares."""

    def __init__(self, app: str, namespace: str, router: str = "istio",
                 backends: Backends | None = None) -> None:
        self.app = app
        self.namespace = namespace
        self.router = router
        self.telemetry = Telemetry(app, namespace)
        self.backends = backends or Backends()
        self.backends.on_change = self.telemetry.backends_changed
        self.endpoints = Endpoints(on_versions=self.backends.want)
        self.rules = DestinationRules(namespace)
        self.table = default_table(app)
        self.synced = threading.Event()
        self._mirrors = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mirror")
        self._mirror_slots = threading.BoundedSemaphore(32)
        self._said: set[str] = set()
        self._active: dict[str, int] = {}  # requests in flight per pod, for LEAST_REQUEST
        self._turns: dict[str, int] = {}  # per Service, for ROUND_ROBIN
        self._balance_lock = threading.Lock()

    def apply_object(self, obj: Mapping[str, Any] | None) -> None:
        try:
            table = table_from_object(self.router, obj, self.app)
        except (AttributeError, TypeError, ValueError, KeyError) as err:
            log.error("the route object cannot be read (%s: %s): the data plane keeps routing "
                      "by the one before", type(err).__name__, err)
            return
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
               body: bytes | None, client: str = "127.0.0.1") -> Response:
        """Routes one request; `target` is the request line's, query string and all."""
        started = time.perf_counter()
        path, query = split_target(target)
        request = Request(method, path, query, headers)
        source = _source(headers)
        route = self.table.select(headers, path, method=method, query=query)
        if route is None:
            # No route: the client's proxy answers 404 with Envoy's NR ("no route configured").
            outcome = _Outcome(404, [], b"no route matched\n", "NR", service=self.app)
            self.telemetry.unrouted("no_route", "")
        else:
            destination = route.pick(random.random())
            if destination is None:
                # A route that weighs every destination 0: a 500, and Envoy's UH ("no healthy
                # upstream hosts"), not NR: a route matched, the upstream is missing.
                outcome = _Outcome(500, [], f"route {route.name} gives no destination a "
                                   "weight\n".encode(), "UH", service=self.app)
                self.telemetry.unrouted("no_upstream", route.name)
            else:
                outcome = self._send(destination, route.retries, request, target, body,
                                     client, source)
            for mirror in route.mirrors:
                if random.random() * 100 < mirror.percent:
                    self._mirror(mirror.destination, request, target, body, client)
        pod = outcome.pod
        self.telemetry.record(
            SOURCE, service=outcome.service, workload=pod.workload if pod else UNKNOWN,
            version=(pod.version or UNKNOWN) if pod else UNKNOWN, code=outcome.status,
            duration_ms=(time.perf_counter() - started) * 1000, source=source,
            flags=outcome.flags)
        out = [(k, v) for k, v in outcome.headers if k.lower() not in HOP_BY_HOP]
        out += outcome.extra_headers
        if pod is not None:
            out += [("x-lab-destination", pod.workload), ("x-lab-pod", pod.name)]
        return outcome.status, out, outcome.body

    def _send(self, destination: Destination, retries: RetryPolicy, request: Request,
              target: str, body: bytes | None, client: str, source: str, *,
              shadow: bool = False) -> _Outcome:
        """Sends a request to a destination's ready pods, retrying as the route says."""
        service = destination.service
        failed = self._unreachable(destination)
        if failed is not None:
            return failed
        policy = self.rules.policy(service) if self.router == "istio" else None
        labels: Mapping[str, str] | None = None
        hashing: HashPolicy | None = policy.hash if policy else None
        balancer = policy.balancer if policy else DEFAULT_BALANCER
        if destination.subset:
            subset = policy.subsets.get(destination.subset) if policy else None
            if subset is None:
                # Istio builds no cluster for a subset no DestinationRule defines: Envoy's NC.
                self._say(f"{service} has no subset {destination.subset!r} (no "
                          "DestinationRule defines it): its requests get a 503")
                self.telemetry.unrouted("no_subset", f"{service}/{destination.subset}")
                return _Outcome(503, [], b"no cluster for the subset\n", "NC", service=service)
            labels, hashing, balancer = subset.labels, subset.hash, subset.balancer
        # A ready pod with no demo app listening for it (its version's process is starting, or
        # is one the demo app refuses) is what a failing readiness probe would keep out.
        pods = [p for p in self.endpoints.ready(service, labels) if self._serves(p)]
        if not pods:
            self.telemetry.unrouted("no_endpoint", service)
            return _Outcome(503, [], b"no healthy upstream\n", "UH", service=service)
        key, set_cookie = hashing.key(request, client) if hashing else (None, None)
        extra = [("set-cookie", set_cookie)] if set_cookie else []
        tries = 1 if shadow else 1 + max(retries.attempts, 0)
        tried: list[str] = []
        outcome = _Outcome(503, [], b"", "UF", service=service)
        for _ in range(tries):
            # Istio's retries prefer hosts not tried yet (the previous_hosts predicate).
            fresh = [p for p in pods if p.name not in tried] or pods
            pod = hash_pick(fresh, key) if key is not None else self._balance(
                fresh, service, balancer)
            tried.append(pod.name)
            outcome = self._attempt(pod, service, request, target, body, source, shadow)
            connect_failed = outcome.flags == "UF"
            if not (retries.on_connect_failure() if connect_failed
                    else retries.on_status(outcome.status)):
                break
        else:
            if tries > 1:  # every try failed as the policy retries: the retry limit was reached
                outcome.flags = "UF,URX" if outcome.flags == "UF" else "URX"
        outcome.extra_headers = extra
        return outcome

    def _balance(self, pods: list[Pod], service: str, balancer: str) -> Pod:
        """Envoy's pick among a cluster's hosts: LEAST_REQUEST takes the one of two random
        hosts with fewer requests in flight (choice_count 2), ROUND_ROBIN the next in turn."""
        if len(pods) == 1 or balancer == "RANDOM":
            return random.choice(pods)
        with self._balance_lock:
            if balancer == "ROUND_ROBIN":
                turn = self._turns.get(service, 0)
                self._turns[service] = turn + 1
                return pods[turn % len(pods)]
            first, second = random.sample(pods, 2)
            active = self._active
            return second if active.get(second.name, 0) < active.get(first.name, 0) else first

    def _serves(self, pod: Pod) -> bool:
        return pod.version is not None and self.backends.current(pod.version) is not None

    def _unreachable(self, destination: Destination) -> _Outcome | None:
        """The answer for a destination no request can reach, else None."""
        service = destination.service
        if destination.invalid:
            why = destination.invalid
        elif (destination.namespace or self.namespace) != self.namespace:
            why = (f"{service} is in namespace {destination.namespace}: the lab routes within "
                   f"{self.namespace} only")
        elif not self.endpoints.knows(service):
            why = f"there is no Service {service} in {self.namespace}"
        else:
            return None
        self._say(f"{why}: its requests get a {'500' if self.router != 'istio' else '503'}")
        self.telemetry.unrouted("no_service", service)
        # The Gateway API requires a 500 for an invalid backendRef; Istio's sidecar has no
        # cluster for the host, Envoy's NC.
        code = 503 if self.router == "istio" else 500
        return _Outcome(code, [], f"{why}\n".encode(), "NC", service=service)

    def _attempt(self, pod: Pod, service: str, request: Request, target: str,
                 body: bytes | None, source: str, shadow: bool) -> _Outcome:
        """One try on one pod; the destination's proxy counts it if the pod answers."""
        backend = self.backends.current(pod.version) if pod.version else None
        if backend is None:  # its process went away since the pod was picked
            self.telemetry.unrouted("no_backend", pod.workload)
            return _Outcome(503, [], b"upstream connect error\n", "UF", service=service)
        upstream = {k: v for k, v in request.headers.items() if k not in HOP_BY_HOP}
        # Envoy suffixes a mirrored request's Host/Authority with "-shadow", so the mirror
        # target can tell shadow traffic from its own.
        upstream["host"] = f"{service}.{self.namespace}" + ("-shadow" if shadow else "")
        # Istio's destination proxy times a request from its arrival there: routing on the
        # way (the client side) is not in the destination's latency.
        started = time.perf_counter()
        with self._balance_lock:
            self._active[pod.name] = self._active.get(pod.name, 0) + 1
        try:
            status, headers, data = backend.forward(request.method, target, upstream, body)
        except (http.client.HTTPException, OSError) as err:
            log.warning("%s (%s %s): %s", pod.name, pod.workload, pod.version, err)
            return _Outcome(503, [], b"upstream connect error\n", "UF", service=service)
        finally:
            with self._balance_lock:
                if self._active[pod.name] > 1:
                    self._active[pod.name] -= 1
                else:
                    del self._active[pod.name]  # pods come and go: keep only busy ones
        self.telemetry.record(
            DESTINATION, service=service, workload=pod.workload, version=backend.version,
            code=status, duration_ms=(time.perf_counter() - started) * 1000, source=source)
        return _Outcome(status, headers, data, "-", pod, service)

    def _mirror(self, destination: Destination, request: Request, target: str,
                body: bytes | None, client: str) -> None:
        # Shadow traffic is best effort: drop it rather than queue without bound.
        if not self._mirror_slots.acquire(blocking=False):
            return
        source = _source(request.headers)

        def send() -> None:
            try:
                self._send(destination, RetryPolicy(0), request, target, body, client, source,
                           shadow=True)
            finally:
                self._mirror_slots.release()

        self._mirrors.submit(send)

    def _say(self, message: str) -> None:
        """Logs a routing problem once, not per request."""
        if message not in self._said:
            self._said.add(message)
            log.warning("%s", message)

    def state(self) -> dict[str, Any]:
        return {
            "app": self.app, "namespace": self.namespace, "router": self.router,
            "synced": self.synced.is_set(), "route": self.table.as_dict(),
            "endpoints": {service: [{**e, "serving": bool(e["ready"] and e["version"] and
                                                         self.backends.current(e["version"]))}
                                    for e in endpoints]
                          for service, endpoints in self.endpoints.summary().items()},
            "processes": self.backends.summary(),
        }

    def close(self) -> None:
        self._mirrors.shutdown(wait=False, cancel_futures=True)
        self.backends.close()


def _source(headers: Mapping[str, str]) -> str:
    return "loadgen" if headers.get("user-agent", "").startswith("lab-loadgen") else "unknown"
