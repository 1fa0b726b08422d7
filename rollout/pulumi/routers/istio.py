"""Istio router: a DestinationRule per backend and a VirtualService with a weighted route."""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi_kubernetes.apiextensions import CustomResource

from rollout.core.routers import ROUTERS
from rollout.core.service import MatchRule, ServiceSettings
from rollout.pulumi.meta import SERVICE_PORT, SKIP_AWAIT, cookie_regex, object_meta
from rollout.pulumi.routers import RouterOutputs

ROUTER = ROUTERS["istio"]


class IstioRouter:
    """Weights live on the VirtualService route named "primary"; A/B rules on route "ab"."""

    kind = ROUTER.name

    def declare(
        self, settings: ServiceSettings, parent_opts: pulumi.ResourceOptions
    ) -> RouterOutputs:
        rules = [
            CustomResource(
                name,
                api_version=ROUTER.api_version,
                kind="DestinationRule",
                metadata=object_meta(settings, name, annotations=SKIP_AWAIT),
                spec=destination_rule_spec(settings, host=name),
                opts=parent_opts,
            )
            for name in (settings.primary_name, settings.canary_name)
        ]
        service = CustomResource(
            settings.app,
            api_version=ROUTER.api_version,
            kind=ROUTER.kind,
            metadata=object_meta(settings, settings.app, annotations=SKIP_AWAIT),
            spec=virtual_service_spec(settings),
            opts=parent_opts,
        )
        return RouterOutputs(settings.app, ROUTER.kind, (*rules, service))


def destination_rule_spec(settings: ServiceSettings, *, host: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"host": host}
    affinity = settings.session_affinity
    if affinity is not None:
        cookie = {"name": affinity.cookie_name, "ttl": f"{affinity.max_age_seconds}s"}
        spec["trafficPolicy"] = {"loadBalancer": {"consistentHash": {"httpCookie": cookie}}}
    return spec


def virtual_service_spec(settings: ServiceSettings) -> dict[str, Any]:
    http: list[dict[str, Any]] = []
    if settings.match:
        http.append(
            {
                "name": "ab",
                "match": [_match(rule) for rule in settings.match],
                "route": [{"destination": _destination(settings.canary_name), "weight": 100}],
            }
        )
    http.append(_primary_route(settings))
    spec: dict[str, Any] = {"hosts": list(settings.hosts), "http": http}
    if settings.gateways:
        spec["gateways"] = list(settings.gateways)
    return spec


def _primary_route(settings: ServiceSettings) -> dict[str, Any]:
    route: dict[str, Any] = {
        "name": "primary",
        "route": [
            {"destination": _destination(settings.primary_name), "weight": settings.primary_weight},
            {"destination": _destination(settings.canary_name), "weight": settings.canary_weight},
        ],
    }
    if settings.mirror:
        route["mirror"] = _destination(settings.canary_name)
        route["mirrorPercentage"] = {"value": float(settings.mirror_weight)}
    return route


def _destination(host: str) -> dict[str, Any]:
    return {"host": host, "port": {"number": SERVICE_PORT}}


def _match(rule: MatchRule) -> dict[str, Any]:
    headers = {name: {m.kind: m.value} for name, m in (rule.headers or {}).items()}
    if rule.cookie is not None:
        headers["cookie"] = {"regex": cookie_regex(rule.cookie)}
    return {"headers": headers}
