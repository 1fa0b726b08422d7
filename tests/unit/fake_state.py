"""The state the project's program leaves after `pulumi up`, as `pulumi stack export` writes its
resources, built in memory from a stack's config: the fake stack's state (tests/unit/fakes.py).

What it declares follows rollout/pulumi: the stack, the default Kubernetes provider, and per
CanaryService its component (the outputs it registers) with, under it, its Namespace when it
creates one, the two Deployments, the HPA when configured, the three Services and the
router's objects. tests/unit/pulumi/test_fake_state.py checks it against the program under
Pulumi mocks, tests/lab/test_rollout.py against a real export.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from rollout.core.errors import Problem, SettingsError
from rollout.core.routers import ROUTERS
from rollout.core.service import ServiceSettings, config_keys, service_settings
from rollout.core.stack_data import ConfigEntry
from rollout.core.stackconfig import COMPONENT_TYPE, services_in
from rollout.pulumi.component import IDENTITY_OUTPUTS, label_value, stack_outputs
from rollout.pulumi.config import decode
from rollout.pulumi.meta import PORT_NAME, SERVICE_PORT, TRACK_LABEL, common_labels
from rollout.pulumi.routers import RouterOutputs
from rollout.pulumi.routers.gateway_api import http_route_spec
from rollout.pulumi.routers.istio import destination_rule_spec, virtual_service_spec

Resource = dict[str, Any]

STACK_TYPE = "pulumi:pulumi:Stack"
PROVIDER_TYPE = "pulumi:providers:kubernetes"
NAMESPACE = "kubernetes:core/v1:Namespace"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
PROVIDER_ID = "00000000-0000-0000-0000-000000000000"


def urn(stack: str, project: str, types: str, name: str) -> str:
    """`types` is the type chain: the parents' types then the resource's, joined by '$'."""
    return f"urn:pulumi:{stack.split('/')[-1]}::{project}::{types}::{name}"


def stack_resource(stack: str, project: str, outputs: dict[str, Any] | None = None) -> Resource:
    name = f"{project}-{stack.split('/')[-1]}"
    return {"urn": urn(stack, project, STACK_TYPE, name), "custom": False, "type": STACK_TYPE,
            "outputs": outputs or {}}


def program_state(stack: str, project: str, entries: dict[str, ConfigEntry]) -> list[Resource]:
    """Every resource an update of the whole program leaves in the state; a SettingsError when
    the program would refuse the config."""
    settings = _settings(entries)
    top = stack_resource(stack, project, {
        service: stack_outputs(s, route=_route(s)) for service, s in settings.items()})
    provider_name = f"default_{version('pulumi_kubernetes').replace('.', '_')}"
    provider = {"urn": urn(stack, project, PROVIDER_TYPE, provider_name), "custom": True,
                "id": PROVIDER_ID, "type": PROVIDER_TYPE,
                "outputs": {"version": version("pulumi_kubernetes")}}
    resources = [top, provider]
    for service, declared in settings.items():
        resources += _service(stack, project, service, declared, top["urn"],
                              f"{provider['urn']}::{PROVIDER_ID}")
    return resources


def after_up(old: list[Resource], new: list[Resource], targets: list[str] | None
             ) -> list[Resource]:
    """The state after an update to `new`: all of it, or with `--target`, only the targeted
    resources created, updated or deleted; every other one stays as it was, but for the
    outputs of components (the stack's included), which every update records."""
    if not targets:  # `pulumi up` without --target (the adapter passes none for [])
        return new
    targeted = set(targets)
    declared = {resource["urn"]: resource for resource in new}
    state = []
    for resource in old:
        now = declared.get(resource["urn"])
        if resource["urn"] in targeted:
            if now is not None:  # else: no longer declared, so deleted
                state.append(now)
        elif now is not None and not resource["custom"]:
            state.append({**resource, "outputs": now["outputs"]})
        else:
            state.append(resource)
    existing = {resource["urn"] for resource in old}
    return state + [r for r in new if r["urn"] in targeted and r["urn"] not in existing]


def _settings(entries: dict[str, ConfigEntry]) -> dict[str, ServiceSettings]:
    """Each service's settings as the program reads them (rollout.pulumi.config.read_config):
    every key of its namespace, secrets decrypted, non-text values decoded."""
    text = config_keys()
    found: dict[str, ServiceSettings] = {}
    owners: dict[tuple[str, str], str] = {}
    for service in services_in(entries):
        prefix = f"{service}:"
        raw = {key.removeprefix(prefix): entry.value if text.get(key.removeprefix(prefix))
               else decode(entry.value) for key, entry in entries.items()
               if key.startswith(prefix)}
        settings = service_settings(service, raw)
        other = owners.setdefault((settings.namespace, settings.app), service)
        if other != service:
            raise SettingsError([Problem(f"{service}:app", f"is {settings.app!r} in namespace "
                                         f"{settings.namespace}, like service {other}'s",
                                         has_value=False)])
        found[service] = settings
    return found


def _route(settings: ServiceSettings) -> RouterOutputs:
    return RouterOutputs(settings.app, ROUTERS[settings.router].kind, ())


def _service(stack: str, project: str, service: str, settings: ServiceSettings, parent: str,
             provider: str) -> list[Resource]:
    outputs = stack_outputs(settings, route=_route(settings))
    component = {"urn": urn(stack, project, COMPONENT_TYPE, service), "custom": False,
                 "type": COMPONENT_TYPE, "parent": parent,
                 "outputs": {**{key: outputs[key] for key in IDENTITY_OUTPUTS},
                             "codeSettings": {}}}

    def child(type_: str, name: str, api_version: str, spec: dict[str, Any] | None
              ) -> Resource:
        kind = type_.rsplit(":", 1)[-1]
        metadata = {"name": name} if kind == "Namespace" else {
            "name": name, "namespace": settings.namespace, "labels": common_labels(settings)}
        body = {"apiVersion": api_version, "kind": kind, "metadata": metadata}
        return {"urn": urn(stack, project, f"{COMPONENT_TYPE}${type_}", name), "custom": True,
                "type": type_, "parent": component["urn"], "provider": provider,
                "outputs": body if spec is None else {**body, "spec": spec}}

    resources = [component]
    if settings.create_namespace:
        resources.append(child(NAMESPACE, settings.namespace, "v1", None))
    for track in ("primary", "canary"):
        name = settings.primary_name if track == "primary" else settings.canary_name
        resources.append(child(DEPLOYMENT, name, "apps/v1", _deployment_spec(settings, track)))
    if settings.hpa is not None:
        resources.append(child(HPA, settings.primary_name, "autoscaling/v2", {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                               "name": settings.primary_name},
            "minReplicas": settings.hpa.min_replicas, "maxReplicas": settings.hpa.max_replicas}))
    for name, selector in ((settings.app, {"app.kubernetes.io/name": settings.app}),
                           (settings.primary_name, _instance(settings.primary_name)),
                           (settings.canary_name, _instance(settings.canary_name))):
        resources.append(child(SERVICE, name, "v1", {"selector": selector, "ports": [
            {"name": PORT_NAME, "port": SERVICE_PORT, "targetPort": settings.port}]}))
    router = ROUTERS[settings.router]
    route_type = router.pulumi_type
    if settings.router == "istio":
        rule_type = route_type.rsplit(":", 1)[0] + ":DestinationRule"
        for host in (settings.primary_name, settings.canary_name):
            resources.append(child(rule_type, host, router.api_version,
                                   destination_rule_spec(settings, host=host)))
        spec = virtual_service_spec(settings)
    else:
        spec = http_route_spec(settings)
    resources.append(child(route_type, settings.app, router.api_version, spec))
    return resources


def _instance(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/instance": name}


def _deployment_spec(settings: ServiceSettings, track: str) -> dict[str, Any]:
    primary = track == "primary"
    name = settings.primary_name if primary else settings.canary_name
    version_ = settings.stable_version if primary else settings.effective_canary_version
    selector = {"app.kubernetes.io/name": settings.app, **_instance(name)}
    labels = {**common_labels(settings), **selector, TRACK_LABEL: track,
              "app.kubernetes.io/version": label_value(version_)}
    container = {"name": "app", "image": settings.stable_image if primary
                 else settings.canary_image,
                 "env": [*({"name": k, "value": v} for k, v in settings.env.items()),
                         {"name": "VERSION", "value": version_}],
                 "ports": [{"name": PORT_NAME, "containerPort": settings.port}]}
    spec: dict[str, Any] = {"selector": {"matchLabels": selector},
                            "template": {"metadata": {"labels": labels},
                                         "spec": {"containers": [container]}}}
    if not (primary and settings.hpa is not None):  # the HPA owns the primary's replicas
        spec["replicas"] = settings.replicas if primary else settings.canary_replicas
    return spec
