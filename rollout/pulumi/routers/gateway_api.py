"""Gateway API router: one HTTPRoute with weighted backendRefs to the primary and canary."""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi_kubernetes.apiextensions import CustomResource

from rollout.core.errors import Problem, SettingsError
from rollout.core.routers import ROUTERS
from rollout.core.service import MatchRule, ServiceSettings
from rollout.pulumi.meta import SERVICE_PORT, SKIP_AWAIT, cookie_regex, object_meta, regex_literal
from rollout.pulumi.routers import RouterOutputs

ROUTER = ROUTERS["gateway-api"]


class GatewayApiRouter:
    """Weights live on the last HTTPRoute rule; A/B rules, if any, come first."""

    kind = ROUTER.name

    def declare(
        self, settings: ServiceSettings, parent_opts: pulumi.ResourceOptions
    ) -> RouterOutputs:
        if settings.session_affinity is not None:
            # Validation rejects this too; this guards settings copied without validation.
            message = "sessionAffinity is not supported by the gateway-api router; use router=istio"
            key = "sessionAffinity"
            raise SettingsError(
                [Problem(key, message, settings.session_affinity.model_dump(by_alias=True))]
            )
        route = CustomResource(
            settings.app,
            api_version=ROUTER.api_version,
            kind=ROUTER.kind,
            metadata=object_meta(settings, settings.app, annotations=SKIP_AWAIT),
            spec=http_route_spec(settings),
            opts=parent_opts,
        )
        return RouterOutputs(settings.app, ROUTER.kind, (route,))


def http_route_spec(settings: ServiceSettings) -> dict[str, Any]:
    rules: list[dict[str, Any]] = []
    if settings.match:
        rules.append(
            {
                "matches": [_match(rule) for rule in settings.match],
                "backendRefs": [_backend(settings.canary_name, 100)],
            }
        )
    main: dict[str, Any] = {
        "backendRefs": [
            _backend(settings.primary_name, settings.primary_weight),
            _backend(settings.canary_name, settings.canary_weight),
        ]
    }
    if settings.mirror:
        mirror = {
            "backendRef": {"name": settings.canary_name, "port": SERVICE_PORT},
            "percent": settings.mirror_weight,
        }
        main["filters"] = [{"type": "RequestMirror", "requestMirror": mirror}]
    rules.append(main)
    spec: dict[str, Any] = {"hostnames": list(settings.hosts), "rules": rules}
    if settings.parent_refs:
        spec["parentRefs"] = [
            ref.model_dump(by_alias=True, exclude_none=True) for ref in settings.parent_refs
        ]
    return spec


def _backend(name: str, weight: int) -> dict[str, Any]:
    return {"name": name, "port": SERVICE_PORT, "weight": weight}


def _match(rule: MatchRule) -> dict[str, Any]:
    headers = []
    for name, m in (rule.headers or {}).items():
        if m.kind == "exact":
            headers.append({"type": "Exact", "name": name, "value": m.value})
        elif m.kind == "prefix":
            headers.append(
                {"type": "RegularExpression", "name": name, "value": f"^{regex_literal(m.value)}.*"}
            )
        else:
            headers.append({"type": "RegularExpression", "name": name, "value": m.value})
    if rule.cookie is not None:
        headers.append(
            {"type": "RegularExpression", "name": "cookie", "value": cookie_regex(rule.cookie)}
        )
    return {"headers": headers}
