"""Covers the request queue: approve, promote and abort act once, and only on their rollout."""

from __future__ import annotations

from pathlib import Path

from rollout.adapters.journal import Journal
from rollout.core.state import Outcome
from tests.unit.app.test_driver import make
from tests.unit.fakes import FakeClock, ScriptedAnalysis

PAUSED = {"interval": "10s", "stepWeights": [10, 30, 50],
          "pauses": [{"weight": 10}, {"weight": 50}]}


def test_an_abort_left_over_from_a_finished_rollout_never_aborts_the_next(
    tmp_path: Path,
) -> None:
    # Issue 12 item 2: an abort sent while the driver was already reverting aborted the next run.
    holder: dict[str, Journal] = {}
    analysis = ScriptedAnalysis([False])
    driver, _, _, journal = make(tmp_path, analysis=analysis)
    holder["j"] = journal
    first = driver.run("v3")
    assert first.outcome is Outcome.ROLLED_BACK
    journal.request("abort", rollout_id=first.rollout_id, reason="too late")
    messages: list[str] = []
    driver, _, _, _ = make(tmp_path)
    driver._progress = lambda state, message: messages.append(message)
    assert driver.run("v2").outcome is Outcome.PROMOTED
    assert any("ignored a stale abort request" in m for m in messages)


def test_approvals_sent_before_the_pauses_are_kept_and_each_passes_one(tmp_path: Path) -> None:
    # An approve sent before the pause was reached used to be overwritten by older state,
    # and a second request replaced the first.
    holder: dict[str, Journal] = {}
    clock = FakeClock()
    analysis = ScriptedAnalysis(before=lambda n: [holder["j"].request("approve", by="ana"),
                                                  holder["j"].request("approve", by="bo")]
                                if n == 0 else None)
    driver, _, _, journal = make(tmp_path, analysis=analysis, clock=clock, policy=PAUSED)
    holder["j"] = journal
    state = driver.run("v2")
    assert state.outcome is Outcome.PROMOTED
    assert clock.slept < 100, "neither pause waited: both approvals were already queued"
    passed = [e["message"] for e in state.events if "requested by" in e["message"]]
    assert passed == ["approve requested by ana", "approve requested by bo"]


def test_one_approval_passes_one_pause_only(tmp_path: Path) -> None:
    holder: dict[str, Journal] = {}
    clock = FakeClock()
    clock.on_sleep = lambda t: (holder["j"].request("approve", by="late")
                                if clock.slept > 300 and not holder.get("sent") and
                                holder.setdefault("sent", True) else None)
    analysis = ScriptedAnalysis(before=lambda n: holder["j"].request("approve", by="early")
                                if n == 0 else None)
    driver, _, _, journal = make(tmp_path, analysis=analysis, clock=clock, policy=PAUSED)
    holder["j"] = journal
    assert driver.run("v2").outcome is Outcome.PROMOTED
    assert clock.slept > 300, "the second pause waited for its own approval"


def test_each_request_names_who_sent_it_and_why(tmp_path: Path) -> None:
    holder: dict[str, Journal] = {}
    analysis = ScriptedAnalysis(before=lambda n: holder["j"].request(
        "abort", by="oncall@laptop", reason="customer reports") if n == 1 else None)
    driver, _, _, journal = make(tmp_path, analysis=analysis)
    holder["j"] = journal
    state = driver.run("v2")
    assert state.outcome is Outcome.ABORTED and state.reason == "customer reports"
    assert any(e["message"] == "abort requested by oncall@laptop: customer reports"
               for e in state.events)
    (sent,) = journal.requests()
    assert sent["rollout_id"] == state.rollout_id and sent["id"] in state.handled_requests
