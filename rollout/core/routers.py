"""The traffic routers, each written once: where its route object lives and how to read weights.

Every part that deals with routes uses this registry: the Pulumi program (the object's API
version and kind), the driver (the Pulumi types its weight steps target), the cluster readback
(the object's coordinates and weights) and the lab (what it watches). No Pulumi import here.

A new router is an entry below, its program module in `rollout/pulumi/routers/`, and one line in
`rollout/pulumi/routers/__init__.py` (CONTRIBUTING.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rollout.core.errors import InvalidInput

Weights = tuple[int | None, int | None]


def _istio_weights(route: dict[str, Any], app: str) -> Weights:
    """The weights of the http route named "primary" (or the one with no match)."""
    weights: dict[str, int] = {}
    for http in route.get("spec", {}).get("http", []):
        if http.get("name") == "primary" or not http.get("match"):
            for destination in http.get("route", []):
                weights[destination["destination"]["host"]] = int(destination.get("weight", 0))
    return weights.get(f"{app}-primary"), weights.get(f"{app}-canary")


# What the API server stores for a rule declared without matches (the HTTPRoute CRD's default).
_DEFAULT_MATCH = {"path": {"type": "PathPrefix", "value": "/"}}


def _matches_everything(matches: Any) -> bool:
    return not matches or matches == [_DEFAULT_MATCH]


def _gateway_api_weights(route: dict[str, Any], app: str) -> Weights:
    """The weights of the rule named "primary" (or the one with no matches); a backendRef
    without a weight weighs 1, as the Gateway API says."""
    weights: dict[str, int] = {}
    for rule in route.get("spec", {}).get("rules", []):
        if _matches_everything(rule.get("matches")) or rule.get("name") == "primary":
            for ref in rule.get("backendRefs", []):
                weights[ref["name"]] = int(ref.get("weight", 1))
    return weights.get(f"{app}-primary"), weights.get(f"{app}-canary")


@dataclass(frozen=True)
class Router:
    """One router: the `router` config value, its route object's coordinates, its weights."""

    name: str
    group: str
    version: str
    kind: str
    plural: str
    weights: Callable[[dict[str, Any], str], Weights]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def pulumi_type(self) -> str:
        """The route object's Pulumi resource type, as `pulumi up --target` URNs carry it."""
        return f"kubernetes:{self.group}/{self.version}:{self.kind}"


ROUTERS: dict[str, Router] = {
    router.name: router
    for router in (
        Router("istio", "networking.istio.io", "v1", "VirtualService", "virtualservices",
               _istio_weights),
        Router("gateway-api", "gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes",
               _gateway_api_weights),
    )
}

ROUTER_NAMES: tuple[str, ...] = tuple(ROUTERS)

# What a weight step's targeted `pulumi up` updates under the service's component: its route
# objects. The stack's outputs (which report the weights) need no target: every update,
# targeted or not, records them (checked on the lab by tests/lab/test_rollout.py).
WEIGHT_STEP_TYPES: frozenset[str] = frozenset(router.pulumi_type for router in ROUTERS.values())


def router_named(name: str) -> Router:
    """The router for a `router` config value; an unknown name is an error, never a default."""
    try:
        return ROUTERS[name]
    except KeyError:
        raise InvalidInput(f"unknown router {name!r}",
                           hint=f"set router to one of: {', '.join(ROUTER_NAMES)}") from None
