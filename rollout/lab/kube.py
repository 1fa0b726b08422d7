"""Readies the lab cluster through the API: fake nodes, the real CRDs, the default namespace."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from rollout.core.errors import LabError

FAKE_NODES = ("lab-node-0", "lab-node-1")
NODE_CAPACITY = {"cpu": "32", "memory": "128Gi", "pods": "250"}


def api_client(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


def ensure_fake_nodes(api: client.ApiClient, names: Iterable[str] = FAKE_NODES) -> None:
    core = client.CoreV1Api(api)
    for name in names:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64", "type": "kwok",
                },
            },
            "status": {"capacity": NODE_CAPACITY, "allocatable": NODE_CAPACITY},
        }
        try:
            core.create_node(body)
        except ApiException as err:
            if err.status != 409:
                raise


def crd_documents(paths: Iterable[Path]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                docs.append(doc)
    return docs


def install_crds(api: client.ApiClient, docs: list[dict[str, Any]]) -> list[str]:
    ext = client.ApiextensionsV1Api(api)
    names = []
    for doc in docs:
        name = doc["metadata"]["name"]
        names.append(name)
        try:
            ext.create_custom_resource_definition(doc)
        except ApiException as err:
            if err.status != 409:
                raise LabError(
                    f"the API server refused CRD {name}: {err.reason} {err.body}"
                ) from err
            current = ext.read_custom_resource_definition(name)
            doc = {**doc, "metadata": {**doc["metadata"],
                                       "resourceVersion": current.metadata.resource_version}}
            ext.replace_custom_resource_definition(name, doc)
    return names


def wait_crds_established(api: client.ApiClient, names: list[str], timeout: float = 60) -> None:
    ext = client.ApiextensionsV1Api(api)
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending and time.monotonic() < deadline:
        for name in list(pending):
            crd = ext.read_custom_resource_definition(name)
            conditions = (crd.status and crd.status.conditions) or []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                pending.discard(name)
        if pending:
            time.sleep(0.3)
    if pending:
        raise LabError(f"CRDs not established after {timeout:.0f}s: {', '.join(sorted(pending))}")


def wait_default_service_account(api: client.ApiClient, timeout: float = 60) -> None:
    """Pods are refused until the namespace's default ServiceAccount exists."""
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            core.read_namespaced_service_account("default", "default")
            return
        except ApiException as err:
            if err.status != 404:
                raise
        time.sleep(0.3)
    raise LabError(
        "the default ServiceAccount never appeared (is kube-controller-manager running?)"
    )


def nodes_ready(api: client.ApiClient) -> list[str]:
    """Nodes that are Ready and schedulable (the not-ready taint is lifted)."""
    core = client.CoreV1Api(api)
    ready = []
    for node in core.list_node().items:
        conditions = (node.status and node.status.conditions) or []
        tainted = any(t.effect == "NoSchedule" for t in (node.spec.taints or []))
        if not tainted and any(c.type == "Ready" and c.status == "True" for c in conditions):
            ready.append(node.metadata.name)
    return ready
