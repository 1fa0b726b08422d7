"""`rollout demo`: the whole product on one machine - a good release promoted, a bad one
caught and reverted, with live traffic, real Prometheus and a report for each."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from rollout.adapters.browser import screenshot
from rollout.adapters.paths import install_root, project_root
from rollout.adapters.project import project_copy
from rollout.adapters.prometheus import prometheus_fetcher
from rollout.app.api import RolloutResult, Rollouts
from rollout.app.board import Board
from rollout.app.driver import Progress
from rollout.cli.report import write_report
from rollout.core.errors import LabError, RolloutError
from rollout.core.state import RolloutState
from rollout.lab.lab import Lab
from rollout.lab.traffic import Traffic
from rollout.web.server import Dashboard

STACK = "demo"
PREFIX = "demo"


@dataclass
class DemoRun:
    version: str
    expected: str
    result: RolloutResult
    seconds: float
    reports: dict[str, Path] = field(default_factory=dict)

    @property
    def as_expected(self) -> bool:
        # `rolled-back` is only ever a verdict from the metrics (or a hook): an unreachable
        # Prometheus ends `infrastructure-failed`, so the demo cannot pass for the wrong reason.
        return self.result.outcome == self.expected


def demo_project(lab: Lab, *, namespace: str = "demo", interval: str | None = None) -> Path:
    """A project folder in the lab's state: Pulumi.yaml and a stack made from the lab stack
    (with another analysis interval, for tests that need the demo faster)."""
    root = install_root()
    target = project_copy(lab.layout.root / "demo-project")
    config = yaml.safe_load((root / "stacks" / "Pulumi.lab.yaml").read_text())
    values = config["config"]
    values[f"{PREFIX}:namespace"] = namespace
    values[f"{PREFIX}:stableVersion"] = "v1"
    for key in ("canaryVersion", "canaryWeight", "canaryReplicas"):
        values.pop(f"{PREFIX}:{key}", None)
    if interval is not None:
        values[f"{PREFIX}:analysis"]["interval"] = interval
    (target / "stacks" / f"Pulumi.{STACK}.yaml").write_text(
        yaml.safe_dump(config, sort_keys=False))
    return target


def wait_for_series(prometheus: str, *, workload: str, namespace: str,
                    timeout: float = 60) -> None:
    query = (f'sum(rate(istio_requests_total{{reporter="destination",'
             f'destination_workload="{workload}",destination_workload_namespace="{namespace}"}}'
             f'[5s]))')
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = httpx.get(f"{prometheus}/api/v1/query", params={"query": query},
                             timeout=5).json()
            if data["data"]["result"]:
                return
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(1)
    raise LabError(f"Prometheus has no traffic series for {workload} after {timeout:.0f}s",
                   hint="check `rollout lab status` and the data plane log in .lab/logs")


class DashboardShot:
    """The demo's progress, and one screenshot of the dashboard's page of the demo service,
    taken by a thread (the rollout does not wait for it) once the first rollout has two
    analyses in."""

    def __init__(self, url: str, directory: Path, *, progress: Progress, say: Any) -> None:
        self.url, self.directory, self.progress, self.say = url, directory, progress, say
        self._thread: threading.Thread | None = None
        self.taken: Path | None = None

    def __call__(self, state: RolloutState, message: str) -> None:
        self.progress(state, message)
        if self._thread is None and len(state.analyses) >= 2 and not state.phase.terminal:
            path = self.directory / f"dashboard-{state.stack}-{state.rollout_id}.png"
            self._thread = threading.Thread(target=self._take, args=(path,), daemon=True)
            self._thread.start()

    def _take(self, path: Path) -> None:
        try:
            self.taken = screenshot(self.url, path)
        except RolloutError as err:
            self.say(f"no dashboard screenshot: {err.message} ({err.hint})")

    def wait(self) -> Path | None:
        if self._thread is not None:
            self._thread.join(120)
        return self.taken


def run_demo(*, progress: Progress, say: Any = print, rps: float = 20.0,
             reports_dir: Path | None = None, interval: str | None = None) -> list[DemoRun]:
    lab = Lab()
    lab.up(progress=lambda msg: say(f"lab: {msg}"))
    project = demo_project(lab, interval=interval)
    reports = reports_dir or project_root() / "reports"
    with Dashboard(Board(project, reports_dir=reports), every=0.5) as dashboard:
        say(f"dashboard: {dashboard.url} (live while the demo runs)")
        shot = DashboardShot(f"{dashboard.url}/stacks/{STACK}/{PREFIX}?once", reports,
                             progress=progress, say=say)
        runs = _run(lab, project, reports, say=say, rps=rps, progress=shot)
        taken = shot.wait()
    if taken is not None and runs:
        runs[0].reports["dashboard"] = taken
    return runs


def _run(lab: Lab, project: Path, reports: Path, *, say: Any, rps: float,
         progress: Progress) -> list[DemoRun]:
    # The lab stack's state lives in the lab cluster (stateStore: cluster, the default):
    # `kubectl get canaryrollouts -A` shows the demo while it runs.
    rollouts = Rollouts(stack=STACK, project_dir=project, on_progress=progress)
    settings, _ = rollouts.settings_and_policy()
    say(f"deploying {settings.app} {settings.stable_version} to namespace {settings.namespace}")
    rollouts.adapter.up()
    traffic = Traffic(lab.layout, lab.ports, app=settings.app, namespace=settings.namespace,
                      router=settings.router, rps=rps)
    traffic.start()
    say(f"traffic: {rps:g} requests/s through the lab data plane at {traffic.url}")
    wait_for_series(lab.prometheus_url, workload=f"{settings.app}-primary",
                    namespace=settings.namespace)
    orphan = rollouts.status()
    if orphan is not None and not orphan.phase.terminal:
        say(f"found the unfinished rollout of {orphan.candidate} from an interrupted demo "
            f"({orphan.phase}, canary at {orphan.weight}%); reverting it first, so this demo "
            "starts from the stable version")
        rollouts.abort("the demo started again")
    runs = []
    for version, expected in (("v2", "promoted"), ("v3", "rolled-back")):
        say(f"rolling out {version} (expected: {expected})")
        started = time.monotonic()
        result = rollouts.run(version)
        run = DemoRun(version, expected, result, time.monotonic() - started)
        run.reports = write_report(
            result.state, directory=reports,
            fetch=prometheus_fetcher(lab.prometheus_url), app=settings.app,
            namespace=settings.namespace)
        runs.append(run)
    return runs
