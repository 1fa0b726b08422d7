"""The real engine on the real lab: Automation API up/update/destroy, and schema rejection."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rollout.errors import StackError
from rollout.lab import kube
from rollout.lab.lab import Lab
from tests.lab.engine import PROJECT, smoke_stack


def _weights(api: client.ApiClient, namespace: str) -> list[int]:
    vs = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "networking.istio.io", "v1", namespace, "virtualservices", "web")
    return [d["weight"] for d in vs["spec"]["http"][0]["route"]]


def test_deploy_update_destroy_through_automation_api(lab: Lab, tmp_path: Path) -> None:
    stack, namespace = smoke_stack(lab, tmp_path)
    api = kube.api_client(lab.layout.kubeconfig)
    try:
        first = stack.up()
        assert first.result == "succeeded"
        deployment = client.AppsV1Api(api).read_namespaced_deployment("web", namespace)
        available = {c.type: c.status for c in deployment.status.conditions or []}
        assert available.get("Available") == "True"
        assert deployment.status.ready_replicas == 2
        assert _weights(api, namespace) == [90, 10]

        stack.set_config({f"{PROJECT}:canaryWeight": "50"})
        second = stack.up()
        assert second.changes.get("update") == 1
        assert _weights(api, namespace) == [50, 50]
    finally:
        stack.destroy(remove=True)
    with pytest.raises(ApiException) as gone:
        client.AppsV1Api(api).read_namespaced_deployment("web", namespace)
    assert gone.value.status == 404
    namespaces = [n.metadata.name for n in client.CoreV1Api(api).list_namespace().items]
    assert namespace not in namespaces


def test_weights_invalid_for_istio_schema_are_rejected(lab: Lab, tmp_path: Path) -> None:
    stack, namespace = smoke_stack(lab, tmp_path)
    stack.set_config({f"{PROJECT}:canaryWeight": "ten percent"})
    try:
        with pytest.raises(StackError) as failed:
            stack.up()
        message = str(failed.value)
        assert "VirtualService" in message or "virtualservices" in message
        assert "weight" in message
        api = kube.api_client(lab.layout.kubeconfig)
        with pytest.raises(ApiException):
            client.CustomObjectsApi(api).get_namespaced_custom_object(
                "networking.istio.io", "v1", namespace, "virtualservices", "web")
    finally:
        stack.destroy(remove=True)
