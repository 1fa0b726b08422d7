"""`rollout status --watch` and `rollout history`: read from the stack's state store, as any
machine with access to it would."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rollout.adapters.journal import Journal
from rollout.cli import app
from rollout.core.state import Outcome
from tests.contract.state_store import finished, rollout
from tests.unit.fakes import file_store_project

STACK = "shop"


@pytest.fixture
def journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Journal:
    monkeypatch.setenv("CANARY_PROJECT_DIR", str(file_store_project(tmp_path / "p", STACK)))
    monkeypatch.setenv("CANARY_JOURNAL_DIR", str(tmp_path / "journal"))
    monkeypatch.setenv("COLUMNS", "200")
    return Journal(tmp_path / "journal", STACK, "demo")


def test_watch_redraws_until_the_rollout_ends_and_exits_with_its_code(journal: Journal) -> None:
    journal.save(rollout(stack=STACK))
    ending = finished("v2", Outcome.ROLLED_BACK)

    def finish_later() -> None:
        time.sleep(0.6)
        journal.save(ending)

    writer = threading.Thread(target=finish_later)
    writer.start()
    started = time.monotonic()
    result = CliRunner().invoke(app, ["status", "--stack", STACK, "--watch", "--every", "0.2"])
    writer.join()
    assert result.exit_code == 1, result.output
    assert time.monotonic() - started >= 0.5, "it waited for the end"
    # Off a terminal, rich prints the last frame only: the end, with the weights it left.
    assert "primary 60% / canary 40%" in result.output and "step 2/3" in result.output
    assert "Failed" in result.output and "files in" in result.output


def test_watch_of_a_finished_rollout_shows_it_and_exits_with_its_code(journal: Journal) -> None:
    journal.save(finished("v2"))
    result = CliRunner().invoke(app, ["status", "--stack", STACK, "-w", "--output", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["current"]["outcome"] == "promoted"


def test_history_lists_finished_rollouts_oldest_first_with_outcome_and_duration(
        journal: Journal) -> None:
    for version, outcome in (("v2", Outcome.PROMOTED), ("v3", Outcome.ROLLED_BACK)):
        journal.archive(finished(version, outcome))
    result = CliRunner().invoke(app, ["history", "--stack", STACK, "--output", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["version"], r["outcome"]) for r in rows] == [("v2", "promoted"),
                                                            ("v3", "rolled-back")]
    assert rows[0]["reason"] == "v2 promoted" and rows[0]["duration_seconds"] >= 0
    assert rows[0]["started"].endswith("Z")
    table = CliRunner().invoke(app, ["history", "--stack", STACK, "--limit", "1"])
    assert table.exit_code == 0 and "v3" in table.output and "v2 promoted" not in table.output


def test_history_of_a_stack_without_rollouts_says_so(journal: Journal) -> None:
    result = CliRunner().invoke(app, ["history", "--stack", STACK])
    assert result.exit_code == 0 and "no finished rollout on stack shop" in result.output


def test_a_bad_limit_or_interval_is_refused_with_exit_2(journal: Journal) -> None:
    assert CliRunner().invoke(app, ["history", "--stack", STACK, "--limit", "0"]).exit_code == 2
    watch = CliRunner().invoke(app, ["status", "--stack", STACK, "-w", "--every", "0"])
    assert watch.exit_code == 2
