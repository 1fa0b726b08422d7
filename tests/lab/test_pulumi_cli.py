"""A person's path: the built `pulumi` CLI (and our language host) on the project, by hand."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from kubernetes import client

from rollout.lab import kube
from rollout.lab.lab import Lab
from tests.lab.support.project import make_project


def test_a_weight_step_by_hand_is_config_set_plus_up(lab: Lab, tmp_path: Path) -> None:
    project, stack, namespace = make_project(tmp_path)
    env = {**os.environ, **lab.environment()}

    def pulumi(*args: str) -> str:
        done = subprocess.run(["pulumi", *args, "-s", stack, "--non-interactive"], cwd=project,
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done.stdout

    subprocess.run(["pulumi", "stack", "init", stack, "--non-interactive"], cwd=project,
                   env=env, check=True, capture_output=True, timeout=60)
    try:
        assert "+ 11 to create" in pulumi("preview")
        pulumi("up", "--yes")
        pulumi("config", "set", "demo:canaryVersion", "v2")
        pulumi("config", "set", "demo:canaryReplicas", "1")
        pulumi("config", "set", "demo:canaryWeight", "30")
        out = pulumi("up", "--yes")
        assert "canaryWeight" in out and "30" in out
        vs = client.CustomObjectsApi(kube.api_client(lab.layout.kubeconfig)) \
            .get_namespaced_custom_object("networking.istio.io", "v1", namespace,
                                          "virtualservices", "demo")
        route = next(h for h in vs["spec"]["http"] if h["name"] == "primary")
        assert [d["weight"] for d in route["route"]] == [70, 30]
    finally:
        # `pulumi destroy` waits for every object to go; its own test is in test_engine.
        pulumi("stack", "rm", "--yes", "--force")
        client.CoreV1Api(kube.api_client(lab.layout.kubeconfig)).delete_namespace(
            namespace, _request_timeout=30)
