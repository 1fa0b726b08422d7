"""A throwaway inline Pulumi project for engine-level lab tests (not the product's program)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s

from rollout.adapters.paths import install_root
from rollout.adapters.stack import StackAdapter
from rollout.adapters.toolchain import locate
from rollout.lab.lab import Lab

PROJECT = "lab-smoke"


def smoke_program() -> None:
    config = pulumi.Config()
    namespace = config.require("namespace")
    canary_weight = config.get("canaryWeight") or "10"
    weight: object = int(canary_weight) if canary_weight.lstrip("-").isdigit() else canary_weight
    ns = k8s.core.v1.Namespace("ns", metadata={"name": namespace})
    opts = pulumi.ResourceOptions(depends_on=[ns])
    labels = {"app": "web"}
    k8s.apps.v1.Deployment(
        "web",
        metadata={"name": "web", "namespace": namespace},
        spec={
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": "registry.local/web:v1",
                                         "ports": [{"containerPort": 8080}]}]},
            },
        },
        opts=opts,
    )
    k8s.core.v1.Service(
        "web", metadata={"name": "web", "namespace": namespace},
        spec={"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}, opts=opts,
    )
    other = 100 - weight if isinstance(weight, int) else 90
    k8s.apiextensions.CustomResource(
        "web-vs",
        api_version="networking.istio.io/v1",
        kind="VirtualService",
        metadata={"name": "web", "namespace": namespace},
        spec={"hosts": ["web"], "http": [{"name": "primary", "route": [
            {"destination": {"host": "web-primary"}, "weight": other},
            {"destination": {"host": "web-canary"}, "weight": weight},
        ]}]},
        opts=opts,
    )


def smoke_project(tmp: Path) -> Path:
    """A project whose program is `smoke_program`, run by the CLI like any user's project."""
    (tmp / "Pulumi.yaml").write_text(f"name: {PROJECT}\nruntime: python\nmain: smoke/\n")
    (tmp / "smoke").mkdir(exist_ok=True)
    (tmp / "smoke" / "__main__.py").write_text(
        f"import sys\nsys.path.insert(0, {str(install_root())!r})\n"
        "from tests.lab.support.engine import smoke_program\nsmoke_program()\n")
    return tmp


def smoke_stack(lab: Lab, tmp: Path) -> tuple[StackAdapter, str]:
    namespace = f"smoke-{uuid.uuid4().hex[:8]}"
    adapter = StackAdapter(stack=f"smoke-{uuid.uuid4().hex[:6]}", project_dir=smoke_project(tmp),
                           env=lab.environment(), pulumi_bin=locate().pulumi)
    adapter.set_config({f"{PROJECT}:namespace": namespace})
    return adapter, namespace
