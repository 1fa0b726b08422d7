"""Pods and EndpointSlices shaped as the API server returns them (what kube-controller-manager,
the ReplicaSet and EndpointSlice controllers, and kwok write on the lab), for unit tests that
feed the data plane without a cluster. The lab tests feed it the real ones."""

from __future__ import annotations

import hashlib
from typing import Any


def _hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def pod(workload: str, version: str | None, index: int = 0, *,
        labels: dict[str, str] | None = None, ready: bool = True) -> dict[str, Any]:
    """A pod of Deployment `workload`'s ReplicaSet for `version`."""
    template_hash = _hash(f"{workload}/{version}")
    pod_labels = {"app.kubernetes.io/instance": workload, "pod-template-hash": template_hash,
                  **({"app.kubernetes.io/version": version} if version else {}),
                  **(labels or {})}
    replica_set = f"{workload}-{template_hash}"
    condition = "True" if ready else "False"
    return {
        "metadata": {
            "name": f"{replica_set}-{_hash(str(index))[:5]}", "namespace": "shop",
            "labels": pod_labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                 "name": replica_set, "controller": True}],
        },
        "spec": {"containers": [{"name": "app", "image": "demo:latest",
                                 "env": [{"name": "VERSION", "value": version or ""}]}]},
        "status": {"phase": "Running", "podIP": f"10.244.0.{index + 10}",
                   "conditions": [{"type": "Ready", "status": condition}]},
    }


def endpoint_slice(service: str, pods: list[dict[str, Any]], *,
                   terminating: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The slice the EndpointSlice controller keeps for `service` selecting `pods`."""
    endpoints = []
    for p in pods:
        name = p["metadata"]["name"]
        ready = p["status"]["conditions"][0]["status"] == "True" and name not in terminating
        endpoints.append({
            "addresses": [p["status"]["podIP"]],
            "conditions": {"ready": ready, "serving": ready or name in terminating,
                           "terminating": name in terminating},
            "nodeName": "lab-node-0",
            "targetRef": {"kind": "Pod", "namespace": "shop", "name": name},
        })
    return {
        "addressType": "IPv4",
        "metadata": {"name": f"{service}-{_hash(service)[:5]}", "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": service,
                                "endpointslice.kubernetes.io/managed-by":
                                    "endpointslice-controller.k8s.io"}},
        "endpoints": endpoints or None,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


def service(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "shop"},
            "spec": {"selector": {"app.kubernetes.io/instance": name},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def feed(plane: Any, pods: dict[str, list[dict[str, Any]]],
         terminating: frozenset[str] = frozenset()) -> None:
    """What the Service, Pod and EndpointSlice watches hand the data plane: each Service's
    pods (a Service with none has an empty slice, as the controller keeps it)."""
    plane.endpoints.set_services([service(name) for name in pods])
    plane.endpoints.set_pods([p for group in pods.values() for p in group])
    plane.endpoints.set_slices([endpoint_slice(name, group, terminating=terminating)
                                for name, group in pods.items()])


def services(plane: Any, *workloads: tuple[str, str | None]) -> None:
    """Services named like their Deployments, one ready pod each at `version`."""
    feed(plane, {workload: [pod(workload, version)] for workload, version in workloads})
