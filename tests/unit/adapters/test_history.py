"""Covers the history the release gates read: written first, once, durably, and readable."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from rollout.adapters.journal import Journal
from rollout.core.state import Outcome, Phase, RolloutState
from tests.unit.app.test_driver import make
from tests.unit.fakes import ScriptedAnalysis


class Killed(BaseException):
    """Stands for the driver being killed: nothing after it runs."""


class DiesWhilePosting:
    def post(self, *, title: str, text: str, ok: bool, fields: dict[str, Any]) -> None:
        raise Killed


@pytest.mark.parametrize(("script", "outcome"), [([True], Outcome.PROMOTED),
                                                  ([False], Outcome.ROLLED_BACK)])
def test_a_crash_while_notifying_leaves_the_rollout_in_history(
    tmp_path: Path, script: list[bool], outcome: Outcome
) -> None:
    driver, _, _, journal = make(tmp_path, analysis=ScriptedAnalysis(script))
    driver.notifiers = [DiesWhilePosting()]
    with pytest.raises(Killed):
        driver.run("v3")
    (recorded,) = journal.history()
    assert recorded.candidate == "v3" and recorded.outcome is outcome


def test_a_finished_journal_missing_from_history_is_archived_at_the_next_start(
    tmp_path: Path,
) -> None:
    driver, _, _, journal = make(tmp_path)
    finished = RolloutState(stack="lab", candidate="v3", stable="v1", last_good={},
                            total_steps=3, interval_seconds=10).moved(
        phase=Phase.FAILED, outcome=Outcome.ROLLED_BACK, reason="5xx")
    journal.save(finished)  # the crash came before the history line
    driver.run("v2")
    assert [(s.candidate, s.outcome) for s in journal.history()] == [
        ("v3", Outcome.ROLLED_BACK), ("v2", Outcome.PROMOTED)]


def test_archiving_twice_writes_one_line(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "lab")
    state = RolloutState(stack="lab", candidate="v2", stable="v1", last_good={},
                         total_steps=1, interval_seconds=10).moved(
        phase=Phase.SUCCEEDED, outcome=Outcome.PROMOTED)
    assert journal.archive(state) and not journal.archive(state)
    assert len(journal.history_path.read_text().splitlines()) == 1


def test_a_torn_last_line_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal(tmp_path, "lab")
    state = RolloutState(stack="lab", candidate="v2", stable="v1", last_good={},
                         total_steps=1, interval_seconds=10).moved(
        phase=Phase.FAILED, outcome=Outcome.ROLLED_BACK)
    journal.archive(state)
    with journal.history_path.open("a") as handle:
        handle.write('{"candidate": "v4", "sta')  # the crash cut the write short
    with caplog.at_level(logging.WARNING):
        assert [s.candidate for s in journal.history()] == ["v2"]
    assert "skipping unreadable line 2" in caplog.text


class Recording:
    def __init__(self) -> None:
        self.posts: list[str] = []

    def post(self, *, title: str, text: str, ok: bool, fields: dict[str, Any]) -> None:
        self.posts.append(title)


class Broken:
    def post(self, *, title: str, text: str, ok: bool, fields: dict[str, Any]) -> None:
        raise RuntimeError("https://hooks.example/secret-token refused")


def test_every_notifier_is_told_and_a_broken_one_stops_neither_the_rollout_nor_the_rest(
    tmp_path: Path,
) -> None:
    driver, *_ = make(tmp_path)
    said: list[str] = []
    driver._progress = lambda state, message: said.append(message)
    first, last = Recording(), Recording()
    driver.notifiers = [first, Broken(), last]
    assert driver.run("v3").outcome is Outcome.PROMOTED
    assert first.posts == last.posts == ["demo on lab: promoted"]
    assert "notifier Broken failed: RuntimeError" in said
    assert not any("secret-token" in message for message in said)
