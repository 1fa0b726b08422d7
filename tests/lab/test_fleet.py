"""`rollout fleet run` on the lab (issue 16): three stacks of one project, each in its own
namespace with live traffic, rolled out at once by real drivers. The bad one is reverted;
the other two are promoted; no stack touches another's objects or config."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from rollout.adapters.readback import ClusterReadback
from rollout.app.api import Rollouts
from rollout.cli.demo import wait_for_series
from rollout.lab import kube
from rollout.lab.lab import Lab
from rollout.lab.traffic import Traffic
from tests.lab.support.project import discard, make_project
from tests.lab.support.service import FAST_POLICY

pytestmark = pytest.mark.lab

ONE_STEP = {**FAST_POLICY, "stepWeights": [50]}


@pytest.fixture(scope="module")
def fleet_project(lab: Lab, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[tuple[Path, list[str]]]:
    """Three deployed stacks with traffic; the one that gets v3 checks twice, so that one lucky
    window cannot promote it."""
    tmp = tmp_path_factory.mktemp("fleet")
    stacks = []
    for policy in (ONE_STEP, FAST_POLICY, ONE_STEP):
        project, stack, _ = make_project(tmp, overrides={"analysis": policy})
        stacks.append(stack)
    with ExitStack() as cleanup:
        rollouts = [Rollouts(stack=s, project_dir=project) for s in stacks]
        for r in rollouts:
            cleanup.callback(discard, r.adapter, f"{r.stack_name}-ns", lab.layout.kubeconfig)
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda r: r.adapter.up(), rollouts))
        for stack in stacks:
            traffic = Traffic(lab.layout, lab.ports, app="demo", namespace=f"{stack}-ns",
                              rps=40)
            cleanup.callback(traffic.stop)
            traffic.start()
        for stack in stacks:
            wait_for_series(lab.prometheus_url, workload="demo-primary",
                            namespace=f"{stack}-ns")
        yield project, stacks


def _live(lab: Lab, stack: str) -> tuple[Any, ...]:
    view = ClusterReadback(app="demo", namespace=f"{stack}-ns", router="istio",
                           kubeconfig=str(lab.layout.kubeconfig)).live()
    api = kube.api_client(lab.layout.kubeconfig)
    try:
        image = client.AppsV1Api(api).read_namespaced_deployment(
            "demo-primary", f"{stack}-ns").spec.template.spec.containers[0].image
    finally:
        api.close()
    return view.primary_weight, view.canary_weight, view.canary_replicas, image


def test_a_fleet_promotes_two_stacks_and_reverts_the_bad_one(
        lab: Lab, fleet_project: tuple[Path, list[str]], tmp_path: Path) -> None:
    project, (good_a, bad, good_b) = fleet_project
    stack_files = {s: project / "stacks" / f"Pulumi.{s}.yaml" for s in (good_a, bad, good_b)}
    bad_before = stack_files[bad].read_bytes()
    plan = tmp_path / "fleet.yaml"
    plan.write_text(yaml.safe_dump({"rollouts": [
        {"stack": good_a, "version": "v2"}, {"stack": bad, "version": "v3"},
        {"stack": good_b, "version": "v2", "service": "demo"}]}))
    env = {**os.environ, "CANARY_JOURNAL_DIR": str(tmp_path / "journals")}
    done = subprocess.run(
        [sys.executable, "-m", "rollout.cli", "fleet", "run", "--file", str(plan),
         "--max-parallel", "3", "--project-dir", str(project), "--output", "json"],
        env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr  # the worst: one rollback
    summary = json.loads(done.stdout)
    rows = {row["stack"]: row for row in summary["rollouts"]}
    assert [rows[s]["outcome"] for s in (good_a, bad, good_b)] == \
        ["promoted", "rolled-back", "promoted"], done.stderr
    assert [rows[s]["exit_code"] for s in (good_a, bad, good_b)] == [0, 1, 0]
    assert all(rows[s]["step_seconds"] for s in (good_a, bad, good_b))
    assert "request-success-rate" in rows[bad]["reason"]
    # Three drivers ran at once: the live log shows each stack at its canary step.
    for stack in (good_a, bad, good_b):
        assert re.search(rf"^{stack}(/demo)?: Progressing step 1/", done.stderr, re.M), \
            done.stderr
    # Each stack ended where its own rollout put it, with its own journal.
    assert _live(lab, good_a) == (100, 0, 0, "registry.local/demo:v2")
    assert _live(lab, good_b) == (100, 0, 0, "registry.local/demo:v2")
    assert _live(lab, bad) == (100, 0, 0, "registry.local/demo:v1")
    for stack in (good_a, good_b):
        config = yaml.safe_load(stack_files[stack].read_text())["config"]
        assert config["demo:stableVersion"] == "v2"
    assert stack_files[bad].read_bytes() == bad_before
    journals = sorted(p.name for p in (tmp_path / "journals").glob("*.json"))
    assert journals == sorted(f"{s}.demo.json" for s in (good_a, bad, good_b))
