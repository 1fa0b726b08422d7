"""A project with two stacks, file state stores and one running rollout, for the dashboard."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from rollout.adapters.journal import Journal
from rollout.app.board import Board
from rollout.core.errors import InfrastructureError
from rollout.core.ports import LiveView
from rollout.core.service import ServiceSettings
from rollout.core.state import Outcome, Phase, RolloutState
from tests.browser import chromium

STACK_FILE = """config:
  demo:app: demo
  demo:namespace: {namespace}
  demo:router: istio
  demo:image: registry.local/demo
  demo:stableVersion: {stable}
  demo:stateStore: file
  demo:analysis: '{analysis}'
"""
# As `pulumi config set demo:analysis '<json>'` writes it: structured config as JSON text.
ANALYSIS = json.dumps({"interval": "10s", "threshold": 2, "metrics": [
    {"name": "request-success-rate", "thresholdRange": {"min": 99}}]})

VERDICT = {
    "passed": True, "failed_checks": 0, "weight": 20, "step": 0, "at": 0.0,
    "reason": "1 of 1 metrics passed",
    "metrics": [{"metric": "request-success-rate", "result": "PASS", "failed": False,
                 "canary": 99.5, "primary": 99.9, "minimum": 99.0, "maximum": None,
                 "reason": "ok", "query": "q", "window": "10s"}],
}


@dataclass
class Project:
    root: Path
    journals: Path
    reports: Path
    running: RolloutState
    promoted: RolloutState
    live_reads: list[tuple[str, str | None]]

    def journal(self, stack: str) -> Journal:
        return Journal(self.journals, stack, "demo")

    def board(self) -> Board:
        return Board(self.root, journal_directory=self.journals, reports_dir=self.reports,
                     live=self.live, fetcher=lambda url: _fetch)

    def live(self, settings: ServiceSettings, context: str | None) -> LiveView:
        self.live_reads.append((settings.namespace, context))
        if settings.namespace == "prod":
            raise InfrastructureError("could not reach the cluster to read demo's live "
                                      "objects: connection refused")
        state = self.journal("dev").load()
        weight = state.weight if state and not state.phase.terminal else 0
        return LiveView(100 - weight, weight, "v1", 1)


def _fetch(promql: str, start: float, end: float, step: float) -> list[tuple[float, float]]:
    value = 250.0 if promql.startswith("histogram_quantile") else 99.9
    return [(start + i * step, value) for i in range(int((end - start) // step))]


@pytest.fixture()
def project(tmp_path: Path) -> Project:
    root = tmp_path / "project"
    (root / "stacks").mkdir(parents=True)
    (root / "Pulumi.yaml").write_text("name: shop\nruntime: python\nstackConfigDir: stacks\n")
    for stack, stable in (("dev", "v1"), ("prod", "v2")):
        (root / "stacks" / f"Pulumi.{stack}.yaml").write_text(
            STACK_FILE.format(namespace=stack, stable=stable, analysis=ANALYSIS))
    now = time.time()
    running = RolloutState(
        stack="dev", candidate="v2", stable="v1", last_good={}, phase=Phase.PROGRESSING,
        step=0, weight=20, step_applied=True, total_steps=2, interval_seconds=10.0,
        threshold=2, schedule=[{"weight": 20, "pause_seconds": 0},
                               {"weight": 50, "pause_seconds": None}],
        analyses=[{**VERDICT, "at": now - 5}], started_at=now - 30, updated_at=now - 5)
    promoted = RolloutState(
        stack="prod", candidate="v2", stable="v1", last_good={}, phase=Phase.SUCCEEDED,
        outcome=Outcome.PROMOTED, reason="v2 passed every step", step=1, weight=0,
        total_steps=2, started_at=now - 3600, updated_at=now - 3500)
    journals = tmp_path / "journals"
    Journal(journals, "dev", "demo").save(running)
    Journal(journals, "prod", "demo").archive(promoted)
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / f"prod-{promoted.rollout_id}.html").write_text("<html>report</html>")
    return Project(root, journals, reports, running, promoted, [])


@pytest.fixture()
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver
