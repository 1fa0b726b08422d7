"""The view model of a rollout: step, weights, failed checks of the threshold, the last verdict
metric by metric, the time left and the next stop, in every phase the driver journals."""

from __future__ import annotations

import json
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from rollout.adapters.journal import Journal
from rollout.adapters.webhooks import WebhookCaller
from rollout.app.driver import Driver, Target
from rollout.app.snapshot import MetricRow, Snapshot, metric_row, snapshot, time_left, words
from rollout.core.policy import load_policy
from rollout.core.stackconfig import Keys
from rollout.core.state import Outcome, Phase, RolloutState
from tests.unit.fakes import PROJECT, FakeClock, FakeReadback, FakeStack, ScriptedAnalysis

NOW = 1_790_000_000.0
INTERVAL = 30.0
# 10% no pause, 20% a 60s pause, 50% a manual pause, 80% no pause.
SCHEDULE = [{"weight": 10, "pause_seconds": None}, {"weight": 20, "pause_seconds": 60.0},
            {"weight": 50, "pause_seconds": 0.0}, {"weight": 80, "pause_seconds": None}]
TIMED_ONLY = [{"weight": 20, "pause_seconds": None}, {"weight": 40, "pause_seconds": 30.0},
              {"weight": 60, "pause_seconds": None}]

SUCCESS_RATE_LOW = {"metric": "request-success-rate", "result": "LOW", "failed": True,
                    "reason": "below", "canary": 97.25, "primary": 99.9, "minimum": 99.0,
                    "maximum": None, "query": "q", "window": "30s"}
DURATION_OK = {"metric": "request-duration", "result": "PASS", "failed": False, "reason": "ok",
               "canary": 212.5, "primary": 198.0, "minimum": None, "maximum": 500.0}
STATISTICAL = {"metric": "latency-shift", "result": "PASS", "failed": False, "reason": "ok",
               "canary": 0.25, "primary": 0.24, "minimum": None, "maximum": None,
               "statistic": 0.01, "interval": [-0.1, 0.1], "p_value": 0.4}


def state(phase: Phase = Phase.PROGRESSING, *, step: int = 0, weight: int = 10,
          schedule: list[dict[str, Any]] | None = None, **changes: Any) -> RolloutState:
    steps = SCHEDULE if schedule is None else schedule
    base = RolloutState(stack="shop", candidate="v2", stable="v1", last_good={},
                        rollout_id="abc123", total_steps=len(steps), schedule=steps,
                        interval_seconds=INTERVAL, threshold=3, started_at=NOW - 300,
                        updated_at=NOW)
    return replace(base, phase=phase, step=step, weight=weight, **{"updated_at": NOW, **changes})


def analysis(passed: bool | None, weight: int, *metrics: dict[str, Any],
             reason: str = "") -> dict[str, Any]:
    return {"passed": passed, "failed_checks": int(passed is False), "final": False,
            "reason": reason or f"verdict at {weight}%", "metrics": list(metrics),
            "step": 0, "weight": weight, "at": NOW - 5}


# -- where the rollout is -----------------------------------------------------------------


def test_before_the_first_step_everything_is_ahead() -> None:
    snap = snapshot(state(Phase.INITIALIZING, step=-1, weight=0), now=NOW)
    assert (snap.step, snap.total_steps) == (0, 4)
    assert (snap.canary_weight, snap.primary_weight) == (0, 100)
    # Four analyses and the one timed pause; the manual pause has no known length.
    assert snap.seconds_left == 4 * INTERVAL + 60 and snap.open_ended
    assert snap.next_stop == "pause 1m at 20%"
    assert snap.waiting == "" and snap.running and snap.verdict is None


def test_at_the_confirm_rollout_gate_it_says_what_it_waits_for() -> None:
    snap = snapshot(state(Phase.INITIALIZING, step=-1, weight=0, wait_deadline=NOW + 3590),
                    now=NOW)
    assert snap.waiting == "the confirm-rollout gate, times out in 59m 50s"
    assert snap.open_ended


def test_a_step_being_applied_has_its_whole_interval_ahead() -> None:
    snap = snapshot(state(step=0, weight=0, step_applied=False, updated_at=NOW - 20), now=NOW)
    assert snap.step == 1 and snap.canary_weight == 0
    assert snap.seconds_left == 4 * INTERVAL + 60
    assert snap.next_stop == "pause 1m at 20%" and snap.waiting == ""


def test_at_the_traffic_increase_gate_it_says_so() -> None:
    snap = snapshot(state(step=1, weight=10, step_applied=False, wait_deadline=NOW + 70),
                    now=NOW)
    assert snap.waiting == "the confirm-traffic-increase gate, times out in 1m 10s"
    assert snap.step == 2 and snap.canary_weight == 10, "the weight is still the last step's"


def test_mid_step_the_interval_already_waited_is_not_counted_again() -> None:
    snap = snapshot(state(step=1, weight=20, step_applied=True, updated_at=NOW - 12), now=NOW)
    # Steps 2, 3 and 4 need an analysis each (12s of this one have passed), and step 2's pause.
    assert snap.seconds_left == 3 * INTERVAL - 12 + 60
    assert snap.next_stop == "pause 1m at 20%"
    assert (snap.canary_weight, snap.primary_weight) == (20, 80)


def test_an_interval_overdue_counts_as_nothing_left_of_it() -> None:
    snap = snapshot(state(step=3, weight=80, step_applied=True, updated_at=NOW - 500), now=NOW)
    assert snap.seconds_left == 0.0
    assert snap.next_stop == "promotion after step 4 of 4" and not snap.open_ended


def test_at_a_manual_pause_it_waits_for_approval_and_the_time_is_open_ended() -> None:
    snap = snapshot(state(Phase.WAITING, step=2, weight=50, step_applied=True,
                          wait_deadline=NOW + 250), now=NOW)
    assert snap.waiting == "approval (rollout approve), times out in 4m 10s"
    assert snap.seconds_left == INTERVAL, "the known part: step 4's analysis"
    assert snap.open_ended
    assert snap.next_stop == "promotion after step 4 of 4"


def test_a_manual_pause_just_entered_has_no_timeout_journaled_yet() -> None:
    snap = snapshot(state(Phase.WAITING, step=2, weight=50, step_applied=True), now=NOW)
    assert snap.waiting == "approval (rollout approve)"


def test_the_manual_pause_ahead_is_the_next_stop() -> None:
    snap = snapshot(state(step=2, weight=50, step_applied=True, updated_at=NOW), now=NOW)
    assert snap.next_stop == "manual pause at 50% (rollout approve)"
    assert snap.seconds_left == 2 * INTERVAL and snap.open_ended


def test_at_a_timed_pause_the_rest_of_it_is_counted() -> None:
    snap = snapshot(state(Phase.WAITING, step=1, weight=20, step_applied=True,
                          wait_deadline=NOW + 12), now=NOW)
    assert snap.waiting == "pause, 12s left"
    assert snap.seconds_left == 12 + 2 * INTERVAL
    assert snap.next_stop == "manual pause at 50% (rollout approve)"


def test_a_timed_pause_just_entered_counts_whole() -> None:
    snap = snapshot(state(Phase.WAITING, step=1, weight=20, step_applied=True), now=NOW)
    assert snap.waiting == "pause, 1m left" and snap.seconds_left == 60 + 2 * INTERVAL


def test_the_last_step_leads_to_promotion() -> None:
    snap = snapshot(state(step=2, weight=60, step_applied=True, updated_at=NOW - 10,
                          schedule=TIMED_ONLY), now=NOW)
    assert snap.step == 3 and snap.total_steps == 3
    assert snap.seconds_left == INTERVAL - 10 and not snap.open_ended
    assert snap.next_stop == "promotion after step 3 of 3"


def test_waiting_for_promotion_has_no_estimate_and_names_the_gate() -> None:
    snap = snapshot(state(Phase.WAITING_PROMOTION, step=3, weight=80, step_applied=True),
                    now=NOW)
    assert snap.seconds_left is None and snap.next_stop == "promotion" and snap.waiting == ""
    gated = snapshot(state(Phase.WAITING_PROMOTION, step=3, weight=80, step_applied=True,
                           wait_deadline=NOW + 30), now=NOW)
    assert gated.waiting == "the confirm-promotion gate, times out in 30s"
    assert gated.next_stop == "promotion once the confirm-promotion gate passes"


@pytest.mark.parametrize("phase", [Phase.PROMOTING, Phase.FINALISING])
def test_a_promotion_under_way_is_running_without_an_estimate(phase: Phase) -> None:
    snap = snapshot(state(phase, step=3, weight=80), now=NOW)
    assert snap.running and snap.seconds_left is None
    assert snap.next_stop == "promotion of v2 under way" and snap.waiting == ""


def test_a_revert_under_way_says_where_it_goes() -> None:
    snap = snapshot(state(Phase.ROLLING_BACK, step=1, weight=20, failed_checks=3,
                          outcome=Outcome.ROLLED_BACK, reason="3 failed checks"), now=NOW)
    assert snap.running and snap.seconds_left is None
    assert snap.next_stop == "revert to v1" and snap.outcome == "rolled-back"
    assert (snap.failed_checks, snap.threshold) == (3, 3)


def test_a_promoted_rollout_is_over() -> None:
    snap = snapshot(state(Phase.SUCCEEDED, step=3, weight=0, outcome=Outcome.PROMOTED,
                          reason="v2 passed every step"), now=NOW)
    assert not snap.running and snap.outcome == "promoted"
    assert (snap.seconds_left, snap.next_stop, snap.waiting) == (None, "", "")
    assert snap.step == 4 and snap.reason == "v2 passed every step"


def test_a_rolled_back_rollout_is_over_with_its_failed_checks() -> None:
    snap = snapshot(state(Phase.FAILED, step=1, weight=0, outcome=Outcome.ROLLED_BACK,
                          failed_checks=3, reason="3 failed checks reached the threshold 3",
                          analyses=[analysis(False, 20, SUCCESS_RATE_LOW)]), now=NOW)
    assert not snap.running and snap.outcome == "rolled-back"
    assert (snap.seconds_left, snap.next_stop, snap.waiting) == (None, "", "")
    assert (snap.failed_checks, snap.threshold) == (3, 3)
    assert snap.verdict == "FAIL" and snap.verdict_weight == 20


@pytest.mark.parametrize("phase", list(Phase))
def test_every_phase_has_a_snapshot_whose_words_match_whether_it_runs(phase: Phase) -> None:
    snap = snapshot(state(phase, step=1, weight=20, step_applied=True), now=NOW)
    assert snap.phase == str(phase) and snap.running is not phase.terminal
    assert (snap.next_stop == "") is phase.terminal
    if phase.terminal:
        assert snap.seconds_left is None and snap.waiting == ""
    json.dumps(snap.to_dict())


# -- the last verdict ---------------------------------------------------------------------


def test_no_analysis_yet_means_no_verdict() -> None:
    snap = snapshot(state(step=0, weight=10, step_applied=True), now=NOW)
    assert (snap.verdict, snap.verdict_weight, snap.verdict_reason, snap.metrics) == (
        None, None, "", ())


def test_the_last_verdict_shows_each_metric_against_its_threshold() -> None:
    snap = snapshot(state(step=1, weight=20, step_applied=True, failed_checks=1, analyses=[
        analysis(True, 10, DURATION_OK),
        analysis(False, 20, SUCCESS_RATE_LOW, DURATION_OK, STATISTICAL,
                 reason="1 of 3 metrics failed")]), now=NOW)
    assert (snap.verdict, snap.verdict_weight, snap.verdict_reason) == (
        "FAIL", 20, "1 of 3 metrics failed")
    assert snap.metrics == (
        MetricRow("request-success-rate", "fail", True, "97.25%", "99.9%", "at least 99%"),
        MetricRow("request-duration", "pass", False, "212.5 ms", "198 ms", "at most 500 ms"),
        MetricRow("latency-shift", "pass", False, "0.25", "0.24", ""),
    )
    assert (snap.failed_checks, snap.threshold) == (1, 3)


def test_a_metric_with_both_bounds_and_one_without_data() -> None:
    both = metric_row({"metric": "queue-depth", "result": "HIGH", "failed": True,
                       "canary": 12.0, "primary": None, "minimum": 1.0, "maximum": 10.0})
    assert both == MetricRow("queue-depth", "fail", True, "12", "", "between 1 and 10")
    waits = metric_row({"metric": "request-success-rate", "result": "NO_DATA", "failed": False,
                        "canary": None, "primary": None, "minimum": 99.0, "maximum": None})
    assert waits == MetricRow("request-success-rate", "inconclusive", False, "", "",
                              "at least 99%")
    counted = metric_row({"metric": "request-success-rate", "result": "NO_DATA",
                          "failed": True})
    assert (counted.result, counted.canary, counted.threshold) == ("fail", "", "")
    broken = metric_row({"metric": "x", "result": "ERROR", "failed": True})
    assert broken.result == "fail"


def test_an_inconclusive_verdict_and_a_hook_only_one() -> None:
    waits = snapshot(state(step=0, weight=10, step_applied=True,
                           analyses=[analysis(None, 10, reason="no data")]), now=NOW)
    assert waits.verdict == "INCONCLUSIVE" and waits.metrics == ()
    skipped = snapshot(state(step=0, weight=10, step_applied=True,
                             analyses=[analysis(True, 10, reason="analysis skipped")]), now=NOW)
    assert (skipped.verdict, skipped.verdict_reason) == ("PASS", "analysis skipped")


# -- older journals -----------------------------------------------------------------------


def test_a_journal_without_threshold_or_schedule_still_has_a_snapshot() -> None:
    old = state(step=1, weight=20, step_applied=False, schedule=[]).to_dict()
    del old["threshold"], old["schedule"], old["wait_deadline"]
    old["total_steps"] = 3
    snap = snapshot(RolloutState.from_dict(old), now=NOW)
    assert snap.threshold is None and snap.failed_checks == 0
    assert (snap.step, snap.total_steps) == (2, 3)
    assert snap.seconds_left == 2 * INTERVAL and not snap.open_ended
    assert snap.next_stop == "promotion after step 3 of 3 (pauses not journaled)"


def test_a_journal_without_steps_or_interval_has_no_estimate() -> None:
    old = state(Phase.INITIALIZING, step=-1, weight=0, schedule=[], total_steps=0,
                interval_seconds=0.0, threshold=0)
    snap = snapshot(old, now=NOW)
    assert snap.seconds_left is None and snap.next_stop == "" and snap.total_steps == 0
    assert snap.threshold is None


def test_a_pause_of_a_journal_without_its_schedule() -> None:
    old = state(Phase.WAITING, step=1, weight=20, schedule=[], wait_deadline=NOW + 90,
                total_steps=3)
    assert snapshot(old, now=NOW).waiting == "pause, ends in 1m 30s"


# -- the shape ----------------------------------------------------------------------------


def test_to_dict_is_json_ready_with_metrics_as_a_list() -> None:
    snap = snapshot(state(step=1, weight=20, step_applied=True,
                          analyses=[analysis(False, 20, SUCCESS_RATE_LOW)]), now=NOW)
    data = json.loads(json.dumps(snap.to_dict()))
    assert data["metrics"] == [{"metric": "request-success-rate", "result": "fail",
                                "failed": True, "canary": "97.25%", "primary": "99.9%",
                                "threshold": "at least 99%"}]
    assert data["threshold"] == 3 and data["phase"] == "Progressing"
    assert set(data) == {*Snapshot.__dataclass_fields__, "time_left", "took"}
    assert (data["time_left"], data["took"]) == (words(snap.seconds_left or 0),
                                                 words(snap.updated_at - snap.started_at))


@pytest.mark.parametrize(("seconds", "said"), [
    (0, "0s"), (12.4, "12s"), (60, "1m"), (250, "4m 10s"), (3600, "1h"), (3750, "1h 2m"),
    (86400, "1d"), (90000, "1d 1h"), (-5, "0s")])
def test_durations_in_words(seconds: float, said: str) -> None:
    assert words(seconds) == said


# -- against the driver -------------------------------------------------------------------


def test_the_estimate_falls_as_the_driver_walks_a_passing_rollout(tmp_path: Path) -> None:
    """Every state the driver reports on its way: the estimate never grows, starts at every
    analysis and timed pause, and the next stop is the driver's next pause, then promotion."""
    clock = FakeClock()
    seen: list[tuple[RolloutState, str, float]] = []
    policy = load_policy({"metrics": [{"name": "request-success-rate",
                                       "thresholdRange": {"min": 99}}],
                          "interval": "10s", "stepWeights": [20, 40, 60], "threshold": 2,
                          "pauses": [{"weight": 40, "duration": "30s"}]})
    stack = FakeStack()
    driver = Driver(
        stack=stack, analysis=ScriptedAnalysis(), readback=FakeReadback(stack),
        journal=Journal(tmp_path / "journal", "lab", "demo"), webhooks=WebhookCaller([]),
        notifiers=[], clock=clock, policy=policy,
        target=Target(app="demo", namespace="lab", stable_version="v1", canary_replicas=1),
        keys=Keys(PROJECT), stack_name="lab",
        on_progress=lambda s, message: seen.append((s, message, clock.now())))
    final = driver.run("v2")
    assert final.outcome is Outcome.PROMOTED and final.threshold == 2
    walked = [(s, m, snapshot(s, now=t)) for s, m, t in seen
              if s.phase in (Phase.INITIALIZING, Phase.PROGRESSING, Phase.WAITING)]
    estimates = [snap.seconds_left for _, _, snap in walked]
    assert estimates[0] == 3 * 10 + 30
    assert all(a is not None and b is not None and b <= a
               for a, b in pairwise(estimates))
    paused = next(snap for _, m, snap in walked if m == "paused at 40% for 30s")
    assert paused.waiting == "pause, 30s left" and paused.next_stop == (
        "promotion after step 3 of 3")
    assert walked[0][2].next_stop == "pause 30s at 40%"
    assert all(snap.threshold == 2 for _, _, snap in walked)
    assert time_left(final, now=clock.now()) == (None, False)
