"""A deployed demo service with live traffic, for driver tests on the lab."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from rollout.api import Rollouts
from rollout.demo import wait_for_series
from rollout.lab import kube
from rollout.lab.lab import Lab
from rollout.lab.traffic import Traffic
from tests.lab.project import make_project

FAST_POLICY = {
    "interval": "5s",
    "threshold": 1,
    "stepWeights": [20, 50],
    "metrics": [
        {"name": "request-success-rate", "thresholdRange": {"min": 99}},
        {"name": "request-duration", "thresholdRange": {"max": 500}},
    ],
}


@dataclass
class Service:
    lab: Lab
    project: Path
    stack: str
    namespace: str
    journal_dir: Path
    rollouts: Rollouts

    def live(self) -> dict[str, Any]:
        api = kube.api_client(self.lab.layout.kubeconfig)
        route = client.CustomObjectsApi(api).get_namespaced_custom_object(
            "networking.istio.io", "v1", self.namespace, "virtualservices", "demo")
        apps = client.AppsV1Api(api)
        return {"route": route["spec"], **{
            name: api.sanitize_for_serialization(
                apps.read_namespaced_deployment(name, self.namespace).spec)
            for name in ("demo-primary", "demo-canary")}}

    def cli(self, *args: str) -> subprocess.Popen[str]:
        env = {**os.environ, "CANARY_PROJECT_DIR": str(self.project),
               "CANARY_JOURNAL_DIR": str(self.journal_dir)}
        return subprocess.Popen([sys.executable, "-m", "rollout.cli", *args, "-s", self.stack],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def journal(self) -> dict[str, Any] | None:
        path = self.journal_dir / f"{self.stack}.json"
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def wait_journal(self, predicate: Any, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.journal()
            if state and predicate(state):
                return state
            time.sleep(0.2)
        raise AssertionError(f"journal never reached the expected state: {self.journal()}")


@contextmanager
def deployed_service(lab: Lab, tmp: Path, *, rps: float = 50,
                     policy: dict[str, Any] | None = None) -> Iterator[Service]:
    project, stack, namespace = make_project(tmp, overrides={"analysis": policy or FAST_POLICY})
    journal_dir = tmp / "journal"
    rollouts = Rollouts(stack=stack, project_dir=project, journal_directory=journal_dir)
    rollouts.adapter.up()
    traffic = Traffic(lab.layout, lab.ports, app="demo", namespace=namespace, rps=rps)
    try:
        traffic.start()
        wait_for_series(lab.prometheus_url, workload="demo-primary", namespace=namespace)
        yield Service(lab, project, stack, namespace, journal_dir, rollouts)
    finally:
        traffic.stop()
        rollouts.adapter.destroy(remove=True)
