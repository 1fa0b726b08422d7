"""A deployed demo service with live traffic, for driver tests on the lab."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client

from rollout.adapters.stackfile import StackFile
from rollout.app.api import Rollouts
from rollout.cli.demo import wait_for_series
from rollout.lab import kube
from rollout.lab.lab import Lab
from rollout.lab.traffic import Traffic
from tests.lab.support.project import discard, make_project

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
    traffic: Traffic | None = None

    def with_journal(self, journal_dir: Path) -> Service:
        """The same deployed service, driven with a journal of its own (one per test)."""
        return dataclasses.replace(self, journal_dir=journal_dir, rollouts=Rollouts(
            stack=self.stack, project_dir=self.project, journal_directory=journal_dir))

    @property
    def stack_file(self) -> Path:
        return self.project / "stacks" / f"Pulumi.{self.stack}.yaml"

    @contextmanager
    def policy(self, policy: dict[str, Any]) -> Iterator[None]:
        """Runs the block with another analysis policy in the stack file, then puts the file
        back as it was (the policy is the driver's to read: nothing to deploy)."""
        text = self.stack_file.read_text()
        key = "demo:analysis"
        stack_file = StackFile(self.stack_file)
        stack_file.remove([key])
        stack_file.set({key: json.dumps(policy)})
        try:
            yield
        finally:
            self.stack_file.write_text(text)

    def stable(self) -> str:
        return self.rollouts.adapter.config()["demo:stableVersion"].value

    def healthy_candidate(self) -> str:
        """A version the demo app serves without errors that is not the stable one."""
        return "v1" if self.stable() == "v2" else "v2"

    def responses(self) -> dict[tuple[str, str], int]:
        """(destination workload, response code) -> requests, as the client's proxy (Istio's
        source reporter) counted them: each request once, "unknown" when no pod answered it.
        Requests the data plane could not route also count under ("unrouted", reason)."""
        assert self.traffic is not None
        text = httpx.get(self.traffic.metrics_url, timeout=5).text
        counts: dict[tuple[str, str], int] = {}
        for line in text.splitlines():
            name, _, rest = line.partition("{")
            if name not in ("istio_requests_total", "lab_unrouted_requests_total"):
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', rest.rpartition("}")[0]))
            if labels.get("reporter", "source") != "source":
                continue  # the destination reporter counts the same requests again
            key = ((labels["destination_workload"], labels["response_code"])
                   if name == "istio_requests_total" else ("unrouted", labels["reason"]))
            counts[key] = counts.get(key, 0) + int(float(rest.rpartition(" ")[2]))
        return counts

    def live(self) -> dict[str, Any]:
        api = kube.api_client(self.lab.layout.kubeconfig)
        route = client.CustomObjectsApi(api).get_namespaced_custom_object(
            "networking.istio.io", "v1", self.namespace, "virtualservices", "demo")
        apps = client.AppsV1Api(api)
        return {"route": route["spec"], **{
            name: api.sanitize_for_serialization(
                apps.read_namespaced_deployment(name, self.namespace).spec)
            for name in ("demo-primary", "demo-canary")}}

    def cli(self, *args: str, own_group: bool = False) -> subprocess.Popen[str]:
        """`rollout <args> -s <stack>` as a user runs it; `own_group` makes it the leader of
        a process group, as a terminal or a CI runner does, so the group can be signalled."""
        env = {**os.environ, "CANARY_PROJECT_DIR": str(self.project),
               "CANARY_JOURNAL_DIR": str(self.journal_dir)}
        return subprocess.Popen([sys.executable, "-m", "rollout.cli", *args, "-s", self.stack],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, process_group=0 if own_group else None)

    def journal(self) -> dict[str, Any] | None:
        path = self.journal_dir / f"{self.stack}.demo.json"
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
        yield Service(lab, project, stack, namespace, journal_dir, rollouts, traffic)
    finally:
        traffic.stop()
        discard(rollouts.adapter, namespace, lab.layout.kubeconfig)
