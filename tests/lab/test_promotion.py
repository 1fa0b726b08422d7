"""Release between two stacks of one project on the lab: staging proves, prod receives.

The tests share one pipeline and run in file order: v2 is proven on staging and released to
prod; v3 passes staging's lenient policy and is caught by prod's strict one. Both stacks keep
their rollout state in the cluster (stateStore: cluster), each in its own namespace: the
release gates read staging's history from staging's CanaryRollout, and prod's release
approvals and audit log are in prod's. CANARY_JOURNAL_DIR points at an empty folder that
must stay empty.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rollout.adapters.readback import ClusterReadback
from rollout.app.api import Rollouts
from rollout.app.promotion import release
from rollout.cli.demo import wait_for_series
from rollout.core.errors import GateNotMet
from rollout.lab.lab import Lab
from rollout.lab.traffic import Traffic
from tests.lab.support.project import PREFIX, discard, make_project
from tests.lab.support.service import FAST_POLICY

# One step at 50%: what these tests check is the release between stacks, not the steps.
ONE_STEP_POLICY = {**FAST_POLICY, "stepWeights": [50]}
# Lets v3 (8% errors) pass on staging, so that prod's own policy is what catches it.
LENIENT_POLICY = {**ONE_STEP_POLICY, "metrics": [
    {"name": "request-success-rate", "thresholdRange": {"min": 80}},
    {"name": "request-duration", "thresholdRange": {"max": 500}},
]}


@dataclass
class Pipeline:
    lab: Lab
    project: Path
    journal_dir: Path
    staging: Rollouts
    prod: Rollouts

    def gates(self, **promotion: Any) -> None:
        """Sets prod's demo:promotion (from staging, plus the given fields)."""
        value = {"from": self.staging.stack_name, **promotion}
        key = f"{PREFIX}:promotion"
        # The stack file may hold it as a YAML mapping, which set_config refuses to overwrite.
        self.prod.adapter.remove_config([key])
        self.prod.adapter.set_config({key: json.dumps(value)})

    def release(self, **kwargs: Any) -> Any:
        return release(self.staging.stack_name, self.prod.stack_name, project_dir=self.project,
                       **kwargs)

    def snapshot(self) -> dict[str, Any]:
        """Everything a blocked release must leave alone, on both stacks."""
        return {r.stack_name: (r.adapter.config(), r.adapter.outputs(), r.status(),
                               len(r.history())) for r in (self.staging, self.prod)}

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "CANARY_PROJECT_DIR": str(self.project),
               "CANARY_JOURNAL_DIR": str(self.journal_dir), "COLUMNS": "200"}
        return subprocess.run([sys.executable, "-m", "rollout.cli", *args], env=env,
                              capture_output=True, text=True, timeout=300, check=False)

    def primary_version(self, stack: Rollouts) -> str:
        outputs = stack.adapter.outputs()
        return ClusterReadback(app="demo", namespace=outputs["demo"]["namespace"], router="istio",
                               kubeconfig=str(self.lab.layout.kubeconfig)).live().primary_version


@pytest.fixture(scope="module")
def pipeline(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    tmp = tmp_path_factory.mktemp("promotion")
    tag = uuid.uuid4().hex[:6]
    stacks = {}
    files_before = os.environ.get("CANARY_JOURNAL_DIR")
    os.environ["CANARY_JOURNAL_DIR"] = str(tmp / "journal")
    try:
        for env, policy in (("staging", LENIENT_POLICY), ("prod", ONE_STEP_POLICY)):
            # prod starts on v0 (healthy, in the demo app's table), so staging's v1 is news to it.
            extra = ({"promotion": {"from": f"st-{tag}"}, "stableVersion": "v0"}
                     if env == "prod" else {})
            _, name, namespace = make_project(tmp, stack=f"{env[:2]}-{tag}", overrides={
                "analysis": policy, "stateStore": "cluster", **extra})
            stacks[env] = (Rollouts(stack=name, project_dir=tmp),
                           Traffic(lab.layout, lab.ports, app="demo", namespace=namespace,
                                   rps=40))
        # Two stacks, two engines: deploying them side by side saves one deploy's wait.
        with ThreadPoolExecutor(max_workers=2) as deploys:
            list(deploys.map(lambda pair: pair[0].adapter.up(), stacks.values()))
        for _, traffic in stacks.values():
            traffic.start()
        for _, traffic in stacks.values():
            wait_for_series(lab.prometheus_url, workload="demo-primary",
                            namespace=traffic.namespace)
        yield Pipeline(lab, tmp, tmp / "journal", stacks["staging"][0], stacks["prod"][0])
    finally:
        if files_before is None:
            os.environ.pop("CANARY_JOURNAL_DIR", None)
        else:
            os.environ["CANARY_JOURNAL_DIR"] = files_before
        for rollouts, traffic in stacks.values():
            traffic.stop()
            discard(rollouts.adapter, traffic.namespace, lab.layout.kubeconfig)


def stable(stack: Rollouts) -> str:
    return stack.adapter.config()[f"{PREFIX}:stableVersion"].value


def test_a_version_never_rolled_out_on_staging_is_not_released(pipeline: Pipeline) -> None:
    before = pipeline.snapshot()
    with pytest.raises(GateNotMet) as err:
        pipeline.release()
    assert [g.name for g in err.value.check.unmet] == ["source-succeeded", "soak"]
    assert err.value.check.version == "v1"
    assert pipeline.snapshot() == before


def test_a_version_proven_on_staging_is_released_to_prod(pipeline: Pipeline) -> None:
    script = Path(__file__).resolve().parents[2] / "examples" / "release-pipeline.sh"
    env = {**os.environ, "CANARY_PROJECT_DIR": str(pipeline.project),
           "CANARY_JOURNAL_DIR": str(pipeline.journal_dir), "PYTHON": sys.executable}
    done = subprocess.run([str(script), "v2", pipeline.staging.stack_name,
                           pipeline.prod.stack_name], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    assert f"{pipeline.prod.stack_name}: promoted" in done.stderr
    assert stable(pipeline.staging) == "v2" and stable(pipeline.prod) == "v2"
    assert pipeline.prod.adapter.outputs()["demo"]["stableImage"] == "registry.local/demo:v2"
    assert pipeline.primary_version(pipeline.prod) == "v2"
    again = pipeline.release()
    assert (again.outcome, again.exit_code) == ("nothing-to-do", 0)
    assert again.check.image == "registry.local/demo:v2"


def test_the_soak_gate_blocks_and_changes_nothing(pipeline: Pipeline) -> None:
    assert pipeline.staging.run("v3").outcome == "promoted"
    pipeline.gates(soak="1h")
    before = pipeline.snapshot()
    done = pipeline.cli("release", "--to", pipeline.prod.stack_name, "--output", "json")
    assert done.returncode == 5, done.stderr
    report = json.loads(done.stdout)
    assert report["version"] == "v3" and not report["ready"]
    assert [g["name"] for g in report["gates"] if not g["passed"]] == ["soak"]
    print(done.stderr)
    assert "soak" in done.stderr and "wait" in done.stderr
    assert pipeline.snapshot() == before


def test_the_approval_gate_blocks_without_an_approval(pipeline: Pipeline) -> None:
    pipeline.gates(soak="0s", requireApproval=True)
    before = pipeline.snapshot()
    with pytest.raises(GateNotMet) as err:
        pipeline.release()
    assert [g.name for g in err.value.check.unmet] == ["approval"]
    assert pipeline.snapshot() == before
    approved = pipeline.cli("approve-release", "--to", pipeline.prod.stack_name,
                            "--version", "v3", "--by", "tester")
    assert approved.returncode == 0, approved.stderr
    dry = pipeline.cli("release", "--to", pipeline.prod.stack_name, "--dry-run", "-o", "json")
    assert dry.returncode == 0, dry.stderr
    approval = json.loads(dry.stdout)["gates"][3]
    assert approval["passed"] and "approved by tester" in approval["detail"]


def test_a_version_prod_rolled_back_is_refused_unless_forced(pipeline: Pipeline) -> None:
    pipeline.gates(soak="0s")
    first = pipeline.release()
    assert (first.outcome, first.exit_code) == ("rolled-back", 1)
    assert stable(pipeline.prod) == "v2" and pipeline.primary_version(pipeline.prod) == "v2"
    before = pipeline.snapshot()
    with pytest.raises(GateNotMet) as err:
        pipeline.release()
    assert [g.name for g in err.value.check.unmet] == ["not-rolled-back-before"]
    assert pipeline.snapshot() == before
    forced = pipeline.release(force=True)
    assert (forced.outcome, forced.exit_code) == ("rolled-back", 1)
    assert "allowed by --force" in forced.check.gates[4].detail
    # The audit log is in prod's CanaryRollout, readable from any machine.
    assert [r["forced"] for r in pipeline.prod.journal.release_log()] == [False, False, True]
    assert not list(pipeline.journal_dir.glob("*")), "no local files"


def test_the_pipeline_view_shows_both_environments(pipeline: Pipeline) -> None:
    stacks = f"{pipeline.staging.stack_name},{pipeline.prod.stack_name}"
    envs = pipeline.cli("envs", "--stacks", stacks, "-o", "json")
    assert envs.returncode == 0, envs.stderr
    rows = [row["stack"] for row in json.loads(envs.stdout)]
    prod = json.loads(envs.stdout)[1]
    assert rows == [pipeline.staging.stack_name, pipeline.prod.stack_name]
    assert prod["stableVersion"] == "v2" and prod["lastRollout"]["outcome"] == "rolled-back"
    assert prod["release"]["version"] == "v3"
    assert [g["name"] for g in prod["release"]["gates"] if not g["passed"]] == [
        "not-rolled-back-before"]
    table = pipeline.cli("envs", "--stacks", stacks)
    print(table.stdout)
    assert "blocked by not-rolled-back-before" in table.stdout
