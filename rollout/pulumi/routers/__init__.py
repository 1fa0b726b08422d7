"""The pluggable traffic-router interface and the factory that picks a router by config name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pulumi

from rollout.core.errors import Problem, SettingsError
from rollout.core.service import ROUTER_KINDS, ServiceSettings


@dataclass(frozen=True)
class RouterOutputs:
    """What a router declared: the weighted route object and every resource it created."""

    route_name: str
    route_kind: str
    resources: tuple[pulumi.Resource, ...]


class Router(Protocol):
    """Declares the objects that split traffic between <app>-primary and <app>-canary."""

    kind: str

    def declare(
        self, settings: ServiceSettings, parent_opts: pulumi.ResourceOptions
    ) -> RouterOutputs: ...


def router_for(kind: str) -> Router:
    """The router for a config `router` value; unknown kinds are an error, never a default."""
    # Imported here: the router modules import RouterOutputs from this package.
    from rollout.pulumi.routers.gateway_api import GatewayApiRouter
    from rollout.pulumi.routers.istio import IstioRouter

    routers: dict[str, type[Router]] = {
        IstioRouter.kind: IstioRouter,
        GatewayApiRouter.kind: GatewayApiRouter,
    }
    if kind not in routers:
        message = "must be one of: " + ", ".join(ROUTER_KINDS)
        raise SettingsError([Problem("router", message, kind)])
    return routers[kind]()
