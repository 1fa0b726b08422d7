"""The Pulumi program on the real lab: real schemas accept it, config alone moves weights,
and going back to an earlier config restores the earlier live objects exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from rollout.lab import kube
from rollout.lab.lab import Lab
from tests.lab.support.project import PREFIX, discard, make_project, rollouts


def _live(api: client.ApiClient, namespace: str, router: str) -> dict[str, Any]:
    custom = client.CustomObjectsApi(api)
    if router == "istio":
        route = custom.get_namespaced_custom_object(
            "networking.istio.io", "v1", namespace, "virtualservices", "demo")
    else:
        route = custom.get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", namespace, "httproutes", "demo")
    apps = client.AppsV1Api(api)
    deployments = {
        name: api.sanitize_for_serialization(apps.read_namespaced_deployment(name, namespace).spec)
        for name in ("demo-primary", "demo-canary")
    }
    return {"route": route["spec"], "deployments": deployments}


# The gateway-api router's objects, weights and revert are covered by the cart service of
# examples/shop (tests/lab/test_user_project.py).
@pytest.mark.parametrize("router", ["istio"])
def test_weights_follow_config_and_revert_restores_objects(lab: Lab, tmp_path: Path,
                                                           router: str) -> None:
    overrides: dict[str, Any] = {"router": router}
    if router == "gateway-api":
        overrides["parentRefs"] = [{"name": "mesh-gateway"}]
    project, stack_name, namespace = make_project(tmp_path, overrides=overrides)
    stack = rollouts(project, stack_name).adapter
    api = kube.api_client(lab.layout.kubeconfig)
    try:
        first = stack.up()
        assert first.changes.get("create", 0) >= 5, first.changes
        assert first.result == "succeeded"
        outputs = stack.outputs()
        assert outputs["demo"]["primaryWeight"] == 100 and outputs["demo"]["canaryWeight"] == 0
        before = _live(api, namespace, router)
        captured = stack.config()

        stack.set_config({f"{PREFIX}:canaryVersion": "v2", f"{PREFIX}:canaryReplicas": "1",
                          f"{PREFIX}:canaryWeight": "30"})
        second = stack.up()
        assert second.changes.get("update", 0) >= 1, second.changes
        assert stack.outputs()["demo"]["canaryWeight"] == 30
        during = _live(api, namespace, router)
        assert during != before
        weights = _weights(during["route"], router)
        assert weights == {"demo-primary": 70, "demo-canary": 30}
        canary = client.AppsV1Api(api).read_namespaced_deployment("demo-canary", namespace)
        assert canary.status.ready_replicas == 1

        stack.restore_config({**{key: None for key in stack.config() if key not in captured},
                              **captured})
        stack.up()
        assert stack.config() == captured
        assert _live(api, namespace, router) == before
    finally:
        discard(stack, namespace, lab.layout.kubeconfig)


def _weights(route: dict[str, Any], router: str) -> dict[str, int]:
    if router == "istio":
        primary = next(h for h in route["http"] if h.get("name") == "primary")
        return {d["destination"]["host"]: d["weight"] for d in primary["route"]}
    rule = next(r for r in route["rules"] if not r.get("matches") or len(r["backendRefs"]) == 2)
    return {b["name"]: b["weight"] for b in rule["backendRefs"]}


def test_invalid_config_fails_the_preview_and_creates_nothing(lab: Lab, tmp_path: Path) -> None:
    project, stack_name, namespace = make_project(tmp_path, overrides={"canaryWeight": 150})
    stack = rollouts(project, stack_name).adapter
    try:
        with pytest.raises(Exception) as failed:
            stack.preview()
        assert "canaryWeight" in str(failed.value) and "0 to 100" in str(failed.value)
        names = [n.metadata.name for n in
                 client.CoreV1Api(kube.api_client(lab.layout.kubeconfig)).list_namespace().items]
        assert namespace not in names
    finally:
        discard(stack, namespace, lab.layout.kubeconfig)
