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
class Route:
    """A route: any one of `matches` selects it (none: every request); its destinations by
    weight, and the workload its traffic is mirrored to."""

    name: str
    matches: tuple[Match, ...]
    destinations: tuple[tuple[str, int], ...]
    mirror: str | None = None
    mirror_percent: float = 0.0

    @property
    def catches_all(self) -> bool:
        return not self.matches or any(m.catches_all for m in self.matches)

    def pick(self, u: float) -> str | None:
        """The destination for a uniform draw u in [0, 1), by weight; None when no destination
        has a weight (the request then fails with a 500, as the Gateway API requires)."""
        weighted = [(name, weight) for name, weight in self.destinations if weight > 0]
        if not weighted:
            return None
        point = u * sum(weight for _, weight in weighted)
        for name, weight in weighted:
            if point < weight:
                return name
            point -= weight
        return weighted[-1][0]


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
        route = self.weighted_route()
        return dict(route.destinations) if route else {}

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "generation": self.generation, "weights": self.weights(),
            "precedence": self.precedence, "problems": list(self.problems),
            "routes": [
                {"name": r.name, "destinations": dict(r.destinations), "mirror": r.mirror,
                 "mirror_percent": r.mirror_percent,
                 "matches": [m.as_dict() for m in r.matches]}
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
        # A single destination takes all the traffic "irrespective of the weight"
        # (virtual_service.proto); pilot gives it the route's cluster and no weights at all.
        single = len(dests) == 1
        destinations = tuple(
            (_workload(d.get("destination", {}).get("host", "")),
             100 if single else int(d.get("weight", 0)))
            for d in dests
        )
        mirror = entry.get("mirror")
        percent = float((entry.get("mirrorPercentage") or {}).get("value", 100.0))
        routes.append(Route(
            name=entry.get("name") or f"http-{i}",
            matches=tuple(istio_match(m) for m in entry.get("match") or []),
            destinations=destinations,
            mirror=_workload(mirror["host"]) if mirror and mirror.get("host") else None,
            mirror_percent=percent if mirror else 0.0,
        ))
    return RoutingTable(tuple(routes), "VirtualService", _generation(vs), FIRST_MATCH,
                        _problems("VirtualService", routes))


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
            # A rule without matches has the CRD's default one, PathPrefix "/" (ranked with it).
            matches=tuple(gateway_match(m)
                          for m in rule.get("matches") or [DEFAULT_GATEWAY_MATCH]),
            destinations=destinations,
            mirror=mirror,
            mirror_percent=percent,
        ))
    return RoutingTable(tuple(routes), "HTTPRoute", _generation(route), GATEWAY_PRECEDENCE,
                        _problems("HTTPRoute", routes))


def _problems(source: str, routes: Iterable[Route]) -> tuple[str, ...]:
    problems = []
    for route in routes:
        for j, match in enumerate(route.matches):
            if match.never is not None:
                problems.append(f"{source} route {route.name!r} match {j}: {match.never}; "
                                "the lab never routes by that match")
        if not any(weight > 0 for _, weight in route.destinations):
            what = "weighs every destination 0" if route.destinations else "has no destination"
            problems.append(f"{source} route {route.name!r} {what}: the requests it takes get "
                            "a 500")
    return tuple(problems)


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


# The routers the lab's data plane can route by (their objects: rollout.core.routers).
PARSERS: dict[str, Callable[[Mapping[str, Any] | None, str], RoutingTable]] = {
    "istio": table_from_virtual_service,
    "gateway-api": table_from_http_route,
}


def table_from_object(router: str, obj: Mapping[str, Any] | None, app: str) -> RoutingTable:
    return PARSERS[router](obj, app)
