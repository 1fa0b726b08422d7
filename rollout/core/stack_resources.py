"""A stack's canary services as its state records them: the resources of `pulumi stack export`.

Plain data in, plain data out: the stack adapter reads the real state through these, and the
unit tests' fake stack reads its own, so the two cannot read it differently.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from rollout.core.stackconfig import COMPONENT_TYPE

Resource = dict[str, Any]
DEPLOYMENT_TYPE = "kubernetes:apps/v1:Deployment"


def service_targets(resources: Sequence[Resource], service: str,
                    types: AbstractSet[str] | None = None) -> list[str]:
    """URNs that scope an update to one service: its component and every resource under it,
    or only those of `types`; [] when it is not deployed."""
    component = _component(resources, service)
    if component is None:
        return []
    # Every resource under the component: a target of a component alone leaves out its
    # children, so they are named one by one.
    children: dict[str, list[Resource]] = {}
    for resource in resources:
        children.setdefault(str(resource.get("parent", "")), []).append(resource)
    found = [] if types is not None else [str(component["urn"])]
    pending = [str(component["urn"])]
    while pending:
        for child in children.get(pending.pop(), []):
            pending.append(str(child["urn"]))
            if types is None or child.get("type") in types:
                found.append(str(child["urn"]))
    return found


def deployed_services(resources: Sequence[Resource]) -> dict[str, dict[str, Any]]:
    """Each deployed canary service's registered outputs, by service name, with the image its
    primary Deployment runs according to the state (`stableImage`)."""
    found = {}
    for component in (r for r in resources if r.get("type") == COMPONENT_TYPE):
        outputs = dict(component.get("outputs") or {})
        primary = f"::{outputs.get('primaryDeployment')}"
        for child in resources:
            if (child.get("parent") == component["urn"]
                    and child.get("type") == DEPLOYMENT_TYPE
                    and str(child.get("urn", "")).endswith(primary)):
                outputs["stableImage"] = _image(child)
        found[_name(component)] = outputs
    return found


def _name(resource: Resource) -> str:
    return str(resource.get("urn", "")).rsplit("::", 1)[-1]


def _image(deployment: Resource) -> str | None:
    try:
        return str(deployment["outputs"]["spec"]["template"]["spec"]["containers"][0]["image"])
    except (KeyError, IndexError, TypeError):
        return None


def _component(resources: Sequence[Resource], service: str) -> Resource | None:
    for resource in resources:
        if resource.get("type") == COMPONENT_TYPE and _name(resource) == service:
            return resource
    return None
