"""The routing table: VirtualService and HTTPRoute objects parsed into weighted routes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from rollout.lab.dataplane.matching import (
    DEFAULT_GATEWAY_MATCH,
    Match,
    Request,
    gateway_match,
    istio_match,
    split_target,
)


@dataclass(frozen=True)
class Destination:
    """Where a route sends its share: a Service (and an Istio subset of its endpoints)."""

    service: str
    weight: int
    namespace: str | None = None  # None: the route's own namespace
    subset: str | None = None  # a DestinationRule subset of the host (Istio)
    # Why no request can reach it (a reference the spec makes invalid): such a share is
    # answered with a 500, as the Gateway API requires for an invalid backendRef.
    invalid: str | None = None


@dataclass(frozen=True)
class Mirror:
    """A copy of some of a route's requests, sent to another destination without waiting."""

    destination: Destination
    percent: float = 100.0


# Envoy's retry_on conditions the lab can tell apart, and the codes each retries on.
_RETRY_ON_CODES = {"5xx": frozenset(range(500, 600)), "gateway-error": frozenset({502, 503, 504}),
                   "retriable-status-codes": frozenset({503})}
_RETRY_ON_CONNECT = frozenset({"connect-failure", "reset", "5xx", "gateway-error"})


@dataclass(frozen=True)
class RetryPolicy:
    """How many times a failed request is tried again, on which failures. Istio's default
    (networking/core/route/retry: 2 retries on connect-failure, refused-stream, unavailable,
    cancelled and retriable-status-codes, which are 503) applies when a route names none."""

    attempts: int = 2
    retry_on: frozenset[str] = frozenset({"connect-failure", "refused-stream", "unavailable",
                                          "cancelled", "retriable-status-codes"})

    def on_connect_failure(self) -> bool:
        return bool(self.retry_on & _RETRY_ON_CONNECT)

    def on_status(self, code: int) -> bool:
        return any(code in _RETRY_ON_CODES.get(cond, ()) for cond in self.retry_on) or (
            str(code) in self.retry_on)  # Istio takes bare codes in retryOn too


def istio_retries(spec: Any) -> RetryPolicy:
    """An Istio route's `retries`; none given: Istio's default policy."""
    if not isinstance(spec, Mapping):
        return RetryPolicy()
    attempts = int(spec.get("attempts", 0) or 0)
    on = spec.get("retryOn")
    retry_on = (frozenset(c.strip() for c in str(on).split(",") if c.strip()) if on
                else RetryPolicy().retry_on)
    return RetryPolicy(attempts, retry_on)


@dataclass(frozen=True)
class Route:
    """A route: any one of `matches` selects it (none: every request); its destinations by
    weight, and where copies of its requests go."""

    name: str
    matches: tuple[Match, ...]
    destinations: tuple[Destination, ...]
    mirrors: tuple[Mirror, ...] = ()
    retries: RetryPolicy = RetryPolicy()

    @property
    def catches_all(self) -> bool:
        return not self.matches or any(m.catches_all for m in self.matches)

    def pick(self, u: float) -> Destination | None:
        """The destination for a uniform draw u in [0, 1), by weight; None when no destination
        has a weight (the request then fails with a 500, as the Gateway API requires)."""
        weighted = [d for d in self.destinations if d.weight > 0]
        if not weighted:
            return None
        point = u * sum(d.weight for d in weighted)
        for destination in weighted:
            if point < destination.weight:
                return destination
            point -= destination.weight
        return weighted[-1]


# How a table picks among the routes that match a request.
FIRST_MATCH = "first-match"  # Istio: "The first rule matching an incoming request is used."
GATEWAY_PRECEDENCE = "gateway-api"  # the HTTPRouteRule.matches precedence, then rule order


@dataclass(frozen=True)
class RoutingTable:
    routes: tuple[Route, ...]
    source: str = "default"
    generation: int = 0
    precedence: str = FIRST_MATCH
    # What the lab cannot route as the object says (each names its route and clause), and
    # routes that can only fail: the data plane logs each once, when a table brings it.
    problems: tuple[str, ...] = ()

    def select(self, headers: Mapping[str, str], path: str, method: str = "GET",
               query: Mapping[str, str] | None = None) -> Route | None:
        """The route for a request; `path` without its query (one left on it is split off)."""
        if query is None:
            path, query = split_target(path)
        request = Request(method, path, query, {k.lower(): v for k, v in headers.items()})
        return next((route for match, route in self._order
                     if match is None or match.holds(request)), None)

    @cached_property
    def _order(self) -> tuple[tuple[Match | None, Route], ...]:
        """(match, route) in the order they are tried; a None match takes every request."""
        if self.precedence == FIRST_MATCH:
            return tuple((m, r) for r in self.routes for m in (r.matches or (None,)))
        ranked = sorted(
            ((tuple(-rank for rank in m.precedence), i, m, r)
             for i, r in enumerate(self.routes) for m in r.matches if m.never is None),
            key=lambda entry: (entry[0], entry[1]))
        return tuple((m, r) for _, _, m, r in ranked)

    def weighted_route(self) -> Route | None:
        """The route that carries the canary weight: "primary", else the last catch-all."""
        named = [r for r in self.routes if r.name == "primary"]
        catch_all = [r for r in self.routes if r.catches_all]
        candidates = named or catch_all or list(self.routes)
        return candidates[-1] if candidates else None

    def weights(self) -> dict[str, int]:
        """The weighted route's weight per destination Service (subset: "service/subset")."""
        route = self.weighted_route()
        return {_label(d): d.weight for d in route.destinations} if route else {}

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "generation": self.generation, "weights": self.weights(),
            "precedence": self.precedence, "problems": list(self.problems),
            "routes": [
                {"name": r.name, "destinations": {_label(d): d.weight for d in r.destinations},
                 "mirrors": [{"destination": _label(m.destination), "percent": m.percent}
                             for m in r.mirrors],
                 "matches": [m.as_dict() for m in r.matches]}
                for r in self.routes
            ],
        }


def _label(destination: Destination) -> str:
    return destination.service + (f"/{destination.subset}" if destination.subset else "")


def default_table(app: str) -> RoutingTable:
    """No route object: everything goes to the primary, as a plain Service would send it."""
    return RoutingTable((Route("default", (), (Destination(f"{app}-primary", 100),)),))


_CLUSTER_SUFFIXES = ("svc.cluster.local", "svc")


def istio_destination(spec: Mapping[str, Any], weight: int) -> Destination:
    """An Istio `destination`: its host is a Service as a short name ("web", resolved in the
    route's namespace), "web.shop", or a FQDN ("web.shop.svc.cluster.local")."""
    host = str(spec.get("host", ""))
    subset = spec.get("subset") or None
    name, _, rest = host.partition(".")
    for suffix in _CLUSTER_SUFFIXES:
        if rest.endswith("." + suffix):
            rest = rest[: -len(suffix) - 1]
            break
    if not name or "." in rest:
        return Destination(host, weight, subset=subset,
                           invalid=f"host {host!r} is no Service of this cluster")
    return Destination(name, weight, rest or None, subset)


def table_from_virtual_service(vs: Mapping[str, Any] | None, app: str) -> RoutingTable:
    if vs is None:
        return default_table(app)
    routes = []
    ignored_by_route = []
    for i, entry in enumerate(vs.get("spec", {}).get("http") or []):
        dests = entry.get("route") or []
        ignored = sorted(key for key in _ISTIO_NOT_APPLIED if entry.get(key))
        if ignored:
            ignored_by_route.append(_not_applied(
                "VirtualService", entry.get("name") or f"http-{i}", ignored))
        # A single destination takes all the traffic "irrespective of the weight"
        # (virtual_service.proto); pilot gives it the route's cluster and no weights at all.
        single = len(dests) == 1
        destinations = tuple(
            istio_destination(d.get("destination") or {},
                              100 if single else int(d.get("weight", 0)))
            for d in dests
        )
        routes.append(Route(
            name=entry.get("name") or f"http-{i}",
            matches=tuple(istio_match(m) for m in entry.get("match") or []),
            destinations=destinations,
            mirrors=_istio_mirrors(entry),
            retries=istio_retries(entry.get("retries")),
        ))
    return RoutingTable(tuple(routes), "VirtualService", _generation(vs), FIRST_MATCH,
                        (*_problems("VirtualService", routes), *ignored_by_route))


def table_from_http_route(route: Mapping[str, Any] | None, app: str) -> RoutingTable:
    if route is None:
        return default_table(app)
    routes = []
    not_applied = []
    for i, rule in enumerate(route.get("spec", {}).get("rules") or []):
        name = str(rule.get("name") or f"rule-{i}")
        destinations = tuple(backend_ref(ref) for ref in rule.get("backendRefs") or [])
        filters = rule.get("filters") or []
        ignored = sorted({f"filter {f.get('type')}" for f in filters
                          if f.get("type") != "RequestMirror"}
                         | {f"backendRef {ref.get('name')} filters"
                            for ref in rule.get("backendRefs") or [] if ref.get("filters")}
                         | {key for key in ("timeouts", "retry", "sessionPersistence")
                            if rule.get(key)})
        if ignored:
            not_applied.append(_not_applied("HTTPRoute", name, ignored))
        routes.append(Route(
            name=name,
            # A rule without matches has the CRD's default one, PathPrefix "/" (ranked with it).
            matches=tuple(gateway_match(m)
                          for m in rule.get("matches") or [DEFAULT_GATEWAY_MATCH]),
            destinations=destinations,
            # Each RequestMirror filter sends its own copy (HTTPRouteRequestMultipleMirrors).
            mirrors=tuple(_gateway_mirror(f) for f in filters
                          if f.get("type") == "RequestMirror"),
        ))
    return RoutingTable(tuple(routes), "HTTPRoute", _generation(route), GATEWAY_PRECEDENCE,
                        (*_problems("HTTPRoute", routes), *not_applied))


# What an Istio HTTP route can ask that the lab's proxy does not do (retries it does).
_ISTIO_NOT_APPLIED = ("redirect", "directResponse", "rewrite", "headers", "fault", "timeout",
                      "corsPolicy", "delegate")


def _not_applied(source: str, route: str, what: list[str]) -> str:
    return (f"{source} route {route!r}: the lab does not apply {', '.join(what)}; it forwards "
            "the requests the route takes as sent")


def _problems(source: str, routes: Iterable[Route]) -> tuple[str, ...]:
    problems = []
    for route in routes:
        for j, match in enumerate(route.matches):
            if match.never is not None:
                problems.append(f"{source} route {route.name!r} match {j}: {match.never}; "
                                "the lab never routes by that match")
        if not any(d.weight > 0 for d in route.destinations):
            what = "weighs every destination 0" if route.destinations else "has no destination"
            problems.append(f"{source} route {route.name!r} {what}: the requests it takes get "
                            "a 500")
    return tuple(problems)


def backend_ref(ref: Mapping[str, Any], weight: int | None = None) -> Destination:
    """A Gateway API backendRef: a Service by default (group "", kind Service)."""
    name = str(ref.get("name", ""))
    weight = int(ref.get("weight", 1)) if weight is None else weight
    namespace = ref.get("namespace") or None
    group, kind = ref.get("group", ""), ref.get("kind", "Service")
    if group not in ("", "core") or kind != "Service":
        return Destination(name, weight, namespace, invalid=f"backendRef kind {group or 'core'}/"
                           f"{kind} is not a Service: the lab routes to Services only")
    return Destination(name, weight, namespace)


def _istio_mirrors(entry: Mapping[str, Any]) -> tuple[Mirror, ...]:
    """`mirror` with `mirrorPercentage`, and each of `mirrors` (Istio 1.18+) with its own
    `percentage`; no percentage: every request."""
    found = []
    mirror = entry.get("mirror")
    if mirror and mirror.get("host"):
        percent = (entry.get("mirrorPercentage") or {}).get("value", 100.0)
        found.append(Mirror(istio_destination(mirror, 0), float(percent)))
    for policy in entry.get("mirrors") or []:
        target = policy.get("destination") or {}
        if target.get("host"):
            percent = (policy.get("percentage") or {}).get("value", 100.0)
            found.append(Mirror(istio_destination(target, 0), float(percent)))
    return tuple(found)


def _gateway_mirror(spec_filter: Mapping[str, Any]) -> Mirror:
    spec = spec_filter.get("requestMirror") or {}
    target = backend_ref(spec.get("backendRef") or {}, 0)
    if "percent" in spec:
        return Mirror(target, float(spec["percent"]))
    fraction = spec.get("fraction")
    if fraction:
        return Mirror(target, 100.0 * fraction["numerator"] / fraction.get("denominator", 100))
    return Mirror(target)


def _generation(obj: Mapping[str, Any]) -> int:
    return int(obj.get("metadata", {}).get("generation") or 0)


# The routers the lab's data plane can route by (their objects: rollout.core.routers).
PARSERS: dict[str, Callable[[Mapping[str, Any] | None, str], RoutingTable]] = {
    "istio": table_from_virtual_service,
    "gateway-api": table_from_http_route,
}


def table_from_object(router: str, obj: Mapping[str, Any] | None, app: str) -> RoutingTable:
    return PARSERS[router](obj, app)
