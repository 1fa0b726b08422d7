"""The routing table: VirtualService and HTTPRoute objects parsed into weighted routes."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

log = logging.getLogger("dataplane")


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


# The routers the lab's data plane can route by (their objects: rollout.core.routers).
PARSERS: dict[str, Callable[[Mapping[str, Any] | None, str], RoutingTable]] = {
    "istio": table_from_virtual_service,
    "gateway-api": table_from_http_route,
}


def table_from_object(router: str, obj: Mapping[str, Any] | None, app: str) -> RoutingTable:
    return PARSERS[router](obj, app)
