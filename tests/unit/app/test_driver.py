"""Covers the rollout state machine with fake ports: every success and failure path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollout.adapters.journal import Journal
from rollout.adapters.webhooks import WebhookCaller
from rollout.app.api import RolloutResult
from rollout.app.driver import Driver, Target
from rollout.core.errors import Aborted, DriverBusy, InfrastructureError, InvalidInput
from rollout.core.policy import Policy, load_policy
from rollout.core.stack_data import ConfigEntry
from rollout.core.stackconfig import Keys
from rollout.core.state import Outcome, Phase
from tests.unit.fakes import (
    PROJECT,
    SECRET_MARKER,
    FailingUp,
    FakeClock,
    FakeReadback,
    FakeStack,
    ScriptedAnalysis,
    base_config,
)

STACK = "lab"
SUCCESS_RATE = [{"name": "request-success-rate", "thresholdRange": {"min": 99}}]


def make(tmp_path: Path, *, policy: dict[str, Any] | None = None,
         analysis: ScriptedAnalysis | None = None, stack: FakeStack | None = None,
         hooks: WebhookCaller | None = None, clock: FakeClock | None = None,
         leave_paused: bool = False) -> tuple[Driver, FakeStack, ScriptedAnalysis, Journal]:
    stack = stack or FakeStack()
    analysis = analysis or ScriptedAnalysis()
    journal = Journal(tmp_path / "journal", STACK, "demo")
    raw = {"metrics": SUCCESS_RATE, **(policy or {"interval": "10s", "stepWeight": 20,
                                                  "maxWeight": 60})}
    pol: Policy = load_policy(raw)
    driver = Driver(
        stack=stack, analysis=analysis, readback=FakeReadback(stack), journal=journal,
        webhooks=hooks or WebhookCaller([]), notifiers=[], clock=clock or FakeClock(),
        policy=pol, target=Target(app="demo", namespace="lab", stable_version="v1",
                                  canary_replicas=1),
        keys=Keys(PROJECT), stack_name=STACK, leave_paused=leave_paused,
    )
    return driver, stack, analysis, journal


def test_a_good_release_walks_every_step_and_is_promoted(tmp_path: Path) -> None:
    driver, stack, analysis, journal = make(tmp_path)
    state = driver.run("v2")
    assert state.outcome is Outcome.PROMOTED and state.phase is Phase.SUCCEEDED
    assert stack.weights_seen() == [0, 20, 40, 60, 60, 0, 0]
    assert stack.unsafe_ups() == []
    assert [c.weight for c in analysis.calls] == [20, 40, 60]
    # The stack's config ends as it began but for the promotion: nothing else left behind.
    assert stack.entries == {**base_config(), f"{PROJECT}:stableVersion": ConfigEntry("v2")}
    assert stack.ups[1]["targets"], "weight steps are targeted at the routing objects"
    assert all(target.endswith("VirtualService::demo") for target in stack.ups[1]["targets"])
    # Every other update is scoped to the service's component (children included): another
    # service or resource of the stack is never part of the rollout.
    component = "urn:pulumi:lab::canary-service::canary:index:CanaryService"
    assert stack.ups[0]["targets"][0] == f"{component}::demo"
    assert sorted(t.removeprefix(f"{component}$") for t in stack.ups[0]["targets"][1:]) == [
        "kubernetes:apps/v1:Deployment::demo-canary", "kubernetes:apps/v1:Deployment::demo-primary",
        "kubernetes:core/v1:Service::demo", "kubernetes:core/v1:Service::demo-canary",
        "kubernetes:core/v1:Service::demo-primary",
        "kubernetes:networking.istio.io/v1:DestinationRule::demo-canary",
        "kubernetes:networking.istio.io/v1:DestinationRule::demo-primary",
        "kubernetes:networking.istio.io/v1:VirtualService::demo"]
    assert all(up["targets"] for up in stack.ups)
    assert stack.scope_reads == 2, "the state is read once per kind of step, not per update"
    assert journal.history()[-1].outcome is Outcome.PROMOTED


def test_a_service_not_deployed_yet_gets_a_whole_up_first_then_targeted_ones(
        tmp_path: Path) -> None:
    # Nothing in the state to scope the first update to; once it has run, there is.
    driver, stack, _, _ = make(tmp_path, stack=FakeStack(deployed=False))
    assert stack.service_targets("demo") == [] and stack.deployed_services() == {}
    state = driver.run("v2")
    assert state.outcome is Outcome.PROMOTED
    assert stack.ups[0]["targets"] is None
    assert all(up["targets"] for up in stack.ups[1:])
    assert stack.ups[-1]["targets"] == stack.service_targets("demo")
    assert stack.deployed_services()["demo"]["stableImage"] == "registry.local/demo:v2"


def test_a_failing_metric_reverts_the_stack_exactly(tmp_path: Path) -> None:
    before = base_config()
    driver, stack, _, _ = make(tmp_path, analysis=ScriptedAnalysis([True, False]))
    state = driver.run("v3")
    assert state.outcome is Outcome.ROLLED_BACK
    assert "below the minimum 99%" in state.reason
    assert stack.entries == before
    assert stack.applied == {k.split(":", 1)[1]: e.value for k, e in before.items()}
    assert stack.unsafe_ups() == [], "traffic leaves the canary before its pods do"


def test_failed_checks_accumulate_to_the_threshold(tmp_path: Path) -> None:
    driver, _stack, analysis, _ = make(
        tmp_path, policy={"interval": "10s", "stepWeight": 20, "maxWeight": 40, "threshold": 2},
        analysis=ScriptedAnalysis([False, True, False]))
    state = driver.run("v3")
    assert state.outcome is Outcome.ROLLED_BACK
    assert state.failed_checks == 2
    assert [c.weight for c in analysis.calls] == [20, 20, 40]


def test_one_failed_check_under_the_threshold_still_promotes(tmp_path: Path) -> None:
    driver, _, _, _ = make(
        tmp_path, policy={"interval": "10s", "stepWeights": [10, 50], "threshold": 2},
        analysis=ScriptedAnalysis([False]))
    assert driver.run("v2").outcome is Outcome.PROMOTED


def test_a_failed_up_is_reverted_as_an_infrastructure_failure_not_a_verdict(
        tmp_path: Path) -> None:
    stack = FakeStack(fail_when=lambda cfg, n: FailingUp() if n == 0 else None)
    driver, stack, analysis, journal = make(tmp_path, stack=stack)
    state = driver.run("v2")
    assert state.outcome is Outcome.INFRASTRUCTURE_FAILED and state.phase is Phase.FAILED
    assert RolloutResult(state.outcome, state.phase, state.reason, state).exit_code == 3
    assert state.reason.startswith("infrastructure failure: ")
    assert "did not become available" in state.reason
    assert analysis.calls == []
    assert stack.entries == base_config() and stack.applied == stack.plain()
    assert journal.history()[-1].outcome is Outcome.INFRASTRUCTURE_FAILED


@pytest.mark.parametrize("failing_up", [1, 2, 3])
def test_an_engine_failure_mid_rollout_reverts_with_an_infrastructure_outcome(
        tmp_path: Path, failing_up: int) -> None:
    """Weight steps and the analyses between them: none of these failures is a verdict."""
    stack = FakeStack(fail_when=lambda cfg, n: FailingUp("error: connection refused")
                      if n == failing_up else None)
    driver, stack, _, _ = make(tmp_path, stack=stack)
    state = driver.run("v2")
    assert state.outcome is Outcome.INFRASTRUCTURE_FAILED
    assert "connection refused" in state.reason
    assert stack.entries == base_config()


def test_a_failure_that_changed_nothing_is_retried_once_and_the_rollout_goes_on(
        tmp_path: Path) -> None:
    stack = FakeStack(fail_when=lambda cfg, n: FailingUp("monitor gone", changed=False)
                      if n == 2 else None)
    driver, stack, _, _ = make(tmp_path, stack=stack)
    seen: list[str] = []
    driver._progress = lambda state, message: seen.append(message)
    state = driver.run("v2")
    assert state.outcome is Outcome.PROMOTED
    assert stack.attempts == len(stack.ups) + 1
    assert any("retrying once: pulumi failed on stack lab: monitor gone" in m for m in seen)


def test_a_failure_that_changed_nothing_twice_is_not_retried_again(tmp_path: Path) -> None:
    stack = FakeStack(fail_when=lambda cfg, n: FailingUp("monitor gone", changed=False)
                      if n in (2, 3) else None)
    driver, stack, _, _ = make(tmp_path, stack=stack)
    state = driver.run("v2")
    assert state.outcome is Outcome.INFRASTRUCTURE_FAILED
    assert "monitor gone" in state.reason
    assert stack.entries == base_config()


def test_a_failure_that_changed_something_is_never_retried(tmp_path: Path) -> None:
    stack = FakeStack(fail_when=lambda cfg, n: FailingUp("half applied") if n == 2 else None)
    driver, stack, _, _ = make(tmp_path, stack=stack)
    state = driver.run("v2")
    assert state.outcome is Outcome.INFRASTRUCTURE_FAILED
    assert [u["config"].get("canaryWeight") for u in stack.ups][-1] is None  # the revert
    assert stack.attempts == len(stack.ups) + 1


def test_a_failed_revert_is_kept_in_the_journal_and_resumable(tmp_path: Path) -> None:
    broken = {"on": True}
    stack = FakeStack(fail_when=lambda cfg, n: FailingUp() if broken["on"] and n >= 2 else None)
    driver, stack, _, journal = make(tmp_path, stack=stack, analysis=ScriptedAnalysis([False]))
    with pytest.raises(FailingUp):
        driver.run("v3")
    assert journal.load().phase is Phase.ROLLING_BACK
    broken["on"] = False
    state = make(tmp_path, stack=stack)[0].resume()
    assert state.outcome is Outcome.ROLLED_BACK
    assert stack.entries == base_config()


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs."""


@pytest.mark.parametrize("kill_at_up", [1, 2, 4, 5])
def test_a_driver_killed_anywhere_resumes_to_the_right_end(tmp_path: Path, kill_at_up: int) -> None:
    armed = {"on": True}

    def kill(cfg: dict[str, str], n: int) -> BaseException | None:
        return Killed() if armed["on"] and n == kill_at_up else None

    stack = FakeStack(fail_when=kill)
    driver, stack, _, journal = make(tmp_path, stack=stack)
    with pytest.raises(Killed):
        driver.run("v2")
    driver.journal.release()
    assert not journal.load().phase.terminal
    armed["on"] = False
    state = make(tmp_path, stack=stack)[0].run("v2")
    assert state.outcome is Outcome.PROMOTED
    assert stack.entries == {**base_config(), f"{PROJECT}:stableVersion": ConfigEntry("v2")}
    assert stack.applied["stableVersion"] == "v2"


def test_a_second_driver_on_the_same_stack_is_refused(tmp_path: Path) -> None:
    first, *_ = make(tmp_path)
    first.journal.acquire()
    try:
        second, *_ = make(tmp_path)
        with pytest.raises(DriverBusy) as err:
            second.run("v2")
        assert "another rollout driver" in str(err.value)
    finally:
        first.journal.release()


def test_an_unfinished_rollout_of_another_version_blocks_run(tmp_path: Path) -> None:
    driver, stack, _, _journal = make(tmp_path)
    stack.fail_when = lambda cfg, n: Killed() if n == 2 else None
    with pytest.raises(Killed):
        driver.run("v2")
    driver.journal.release()
    with pytest.raises(InvalidInput) as err:
        make(tmp_path, stack=stack)[0].run("v9")
    assert "rollout resume" in str(err.value)


def test_nothing_to_do_when_the_candidate_is_already_stable(tmp_path: Path) -> None:
    driver, stack, _, _ = make(tmp_path)
    state = driver.run("v1")
    assert state.outcome is Outcome.NOTHING_TO_DO
    assert stack.ups == []


def test_abort_request_reverts_and_names_the_person(tmp_path: Path) -> None:
    holder: dict[str, Journal] = {}
    analysis = ScriptedAnalysis(before=lambda n: holder["j"].request("abort", reason="bad smell")
                                if n == 1 else None)
    driver, stack, _, journal = make(tmp_path, analysis=analysis)
    holder["j"] = journal
    state = driver.run("v2")
    assert state.outcome is Outcome.ABORTED and state.reason == "bad smell"
    assert stack.entries == base_config()


def test_a_signal_reverts_by_default(tmp_path: Path) -> None:
    holder: dict[str, Driver] = {}
    analysis = ScriptedAnalysis(before=lambda n: setattr(holder["d"], "_signal", 15))
    driver, stack, _, _ = make(tmp_path, analysis=analysis)
    holder["d"] = driver
    state = driver.run("v2")
    assert state.outcome is Outcome.ABORTED and "SIGTERM" in state.reason
    assert stack.entries == base_config()


def test_a_signal_can_leave_the_rollout_paused_for_resume(tmp_path: Path) -> None:
    holder: dict[str, Driver] = {}
    analysis = ScriptedAnalysis(before=lambda n: setattr(holder["d"], "_signal", 2))
    driver, stack, _, journal = make(tmp_path, analysis=analysis, leave_paused=True)
    holder["d"] = driver
    with pytest.raises(Aborted):
        driver.run("v2")
    assert journal.load().phase is Phase.PROGRESSING
    assert make(tmp_path, stack=stack)[0].resume().outcome is Outcome.PROMOTED


def test_inconclusive_analysis_holds_the_step_until_max_inconclusive(tmp_path: Path) -> None:
    policy = {"interval": "10s", "stepWeight": 20, "maxWeight": 40, "maxInconclusive": 2}
    driver, stack, analysis, _ = make(tmp_path, policy=policy,
                                      analysis=ScriptedAnalysis([None, None, None]))
    state = driver.run("v2")
    assert state.outcome is Outcome.ROLLED_BACK
    assert "more than maxInconclusive 2" in state.reason
    assert len(analysis.calls) == 3 and max(stack.weights_seen()) == 20


def test_a_step_that_waited_then_passed_goes_on(tmp_path: Path) -> None:
    driver, _, analysis, _ = make(tmp_path, analysis=ScriptedAnalysis([None, None, True]))
    assert driver.run("v2").outcome is Outcome.PROMOTED
    assert len(analysis.calls) == 2 + len(driver.schedule)


def test_a_manual_pause_waits_for_approve(tmp_path: Path) -> None:
    holder: dict[str, Journal] = {}
    clock = FakeClock()
    clock.on_sleep = lambda t: holder["j"].request("approve") if clock.slept > 100 else None
    driver, _, _analysis, journal = make(
        tmp_path, clock=clock,
        policy={"interval": "10s", "stepWeights": [10, 50], "pauses": [{"weight": 10}]})
    holder["j"] = journal
    state = driver.run("v2")
    assert state.outcome is Outcome.PROMOTED
    assert clock.slept > 100
    assert any(e["message"] == "approved" for e in state.events)


def test_promote_now_skips_the_remaining_steps(tmp_path: Path) -> None:
    holder: dict[str, Journal] = {}
    analysis = ScriptedAnalysis(before=lambda n: holder["j"].request("promote") if n == 0 else None)
    driver, stack, analysis, journal = make(tmp_path, analysis=analysis)
    holder["j"] = journal
    state = driver.run("v2")
    assert state.outcome is Outcome.PROMOTED
    assert stack.applied["stableVersion"] == "v2"
    assert len(analysis.calls) <= 2


def _hooks(handler: Any, hooks: list[dict[str, Any]]) -> WebhookCaller:
    policy = load_policy({"webhooks": hooks, "metrics": SUCCESS_RATE})
    return WebhookCaller(policy.webhooks, transport=httpx.MockTransport(handler), backoff=0)


def test_confirm_promotion_gate_holds_until_it_answers_2xx(tmp_path: Path) -> None:
    answers = iter([403, 403, 200])
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(next(answers))

    hooks = _hooks(handler, [{"name": "gate", "type": "confirm-promotion",
                              "url": "http://127.0.0.1:9/gate"}])
    driver, _, _, _ = make(tmp_path, hooks=hooks)
    state = driver.run("v2")
    assert state.outcome is Outcome.PROMOTED
    assert len(seen) == 3 and seen[0]["type"] == "confirm-promotion"
    assert seen[0]["phase"] == "WaitingPromotion"


def test_a_rollback_hook_answering_2xx_rolls_back_now(tmp_path: Path) -> None:
    hooks = _hooks(lambda request: httpx.Response(200),
                   [{"name": "stop", "type": "rollback", "url": "http://127.0.0.1:9/stop"}])
    driver, _stack, analysis, _ = make(tmp_path, hooks=hooks)
    state = driver.run("v2")
    assert state.outcome is Outcome.ROLLED_BACK
    assert "rollback hook" in state.reason
    assert analysis.calls == []


def test_a_failing_rollout_hook_counts_as_a_failed_check(tmp_path: Path) -> None:
    hooks = _hooks(lambda request: httpx.Response(500, text="load test failed"),
                   [{"name": "load", "type": "rollout", "url": "http://127.0.0.1:9/load",
                     "retries": 1}])
    driver, _, _, _ = make(tmp_path, hooks=hooks)
    state = driver.run("v2")
    assert state.outcome is Outcome.ROLLED_BACK
    assert "load test failed" in state.reason


def test_a_revert_that_does_not_restore_live_weights_is_an_error(tmp_path: Path) -> None:
    driver, stack, _, journal = make(tmp_path, analysis=ScriptedAnalysis([False]))

    class StuckReadback(FakeReadback):
        """Idle when the rollout starts; then someone pins the live route at 80/20."""

        reads = 0

        def live(self):  # type: ignore[no-untyped-def]
            self.reads += 1
            view = super().live()
            if self.reads == 1:
                return view
            return type(view)(80, 20, view.primary_version, view.canary_replicas)

    driver.readback = StuckReadback(stack)
    with pytest.raises(InfrastructureError) as err:
        driver.run("v3")
    assert "live weights are 80/20" in str(err.value)
    assert journal.load().phase is Phase.ROLLING_BACK
    assert stack.refreshes == 1, "drift is refreshed and applied again once before giving up"


def test_the_journal_never_holds_secret_values(tmp_path: Path) -> None:
    driver, _, _, journal = make(tmp_path)
    driver.run("v2")
    assert SECRET_MARKER not in journal.path.read_text()
    assert SECRET_MARKER not in journal.history_path.read_text()


def test_a_stale_pulumi_lock_is_cleared_and_the_step_retried(tmp_path: Path) -> None:
    from rollout.core.errors import StackLocked

    locked = {"times": 1}

    def lock_once(cfg: dict[str, str], n: int) -> BaseException | None:
        if n == 1 and locked["times"]:
            locked["times"] -= 1
            return StackLocked("stack lab is locked by another update")
        return None

    stack = FakeStack(fail_when=lock_once)
    stack.stale_lock = True
    driver, stack, _, _ = make(tmp_path, stack=stack)
    assert driver.run("v2").outcome is Outcome.PROMOTED
    assert stack.cleared_locks == 1


def test_a_live_lock_that_never_clears_fails_the_step(tmp_path: Path) -> None:
    from rollout.core.errors import StackLocked

    stack = FakeStack(fail_when=lambda cfg, n: StackLocked("locked") if n in (1, *range(2, 1000))
                      and cfg.get("canaryWeight") == "20" else None)
    driver, stack, _, _ = make(tmp_path, stack=stack)
    state = driver.run("v2")
    assert state.outcome is Outcome.INFRASTRUCTURE_FAILED
    assert "locked" in state.reason


def _killed_mid_step(journal: Journal) -> None:
    """The journal of a driver SIGKILLed while stepping v2 to 40%, before its `up`."""
    from rollout.core.stackconfig import captured
    from rollout.core.state import RolloutState

    journal.save(RolloutState(stack=STACK, candidate="v2", stable="v1",
                              last_good=captured(base_config()), canary_replicas=1,
                              phase=Phase.PROGRESSING, step=1, weight=40, step_applied=False,
                              total_steps=3, interval_seconds=10))


def test_a_resume_from_a_fresh_checkout_applies_the_whole_canary_state(tmp_path: Path) -> None:
    # Issue 12 item 1: the fresh stack file has canaryReplicas back at 0; only the weight was
    # set, so 40% of the traffic went to a canary without pods.
    driver, stack, _, journal = make(tmp_path)
    _killed_mid_step(journal)
    state = driver.resume()
    assert state.outcome is Outcome.PROMOTED
    pods, step = stack.ups[0]["config"], stack.ups[1]["config"]
    assert (pods.get("canaryWeight", "0"), pods["canaryReplicas"], pods["canaryVersion"]) == (
        "0", "1", "v2"), "the canary's pods come back before it takes traffic"
    assert (step["canaryWeight"], step["canaryReplicas"]) == ("40", "1")
    assert stack.unsafe_ups() == []


def test_a_resume_refuses_config_the_journal_cannot_explain(tmp_path: Path) -> None:
    driver, stack, _, journal = make(tmp_path)
    _killed_mid_step(journal)
    stack.set_config({f"{PROJECT}:canaryVersion": "v9", f"{PROJECT}:stableVersion": "v0"})
    with pytest.raises(InvalidInput, match="canaryVersion is 'v9'") as refused:
        driver.resume()
    assert "stableVersion is 'v0'" in refused.value.message and stack.ups == []


def test_an_abort_during_a_revert_keeps_the_original_outcome(tmp_path: Path) -> None:
    # Issue 12 item 4: the hint after a failed revert says to run `rollout abort`, which then
    # turned `rolled-back` into `aborted` (exit 4), and gates ignore aborts.
    failures = iter([FailingUp("the API server went away")])
    stack = FakeStack(fail_when=lambda config, attempt: next(failures, None)
                      if config.get("canaryVersion") is None and attempt >= 3 else None)
    driver, stack, _, journal = make(tmp_path, stack=stack,
                                     analysis=ScriptedAnalysis([True, False]))
    with pytest.raises(FailingUp):
        driver.run("v3")
    assert journal.load() is not None and journal.load().phase is Phase.ROLLING_BACK
    state = driver.abort()
    assert state.outcome is Outcome.ROLLED_BACK and "below the minimum" in state.reason
    assert journal.history()[-1].outcome is Outcome.ROLLED_BACK


def test_a_pause_at_a_weight_the_schedule_never_sets_is_refused() -> None:
    # Issue 12 item 7: the pause was silently ignored, so there was no human gate at all.
    with pytest.raises(InvalidInput, match="never sets weight 15") as refused:
        load_policy({"metrics": SUCCESS_RATE, "stepWeight": 10, "maxWeight": 50,
                     "pauses": [{"weight": 15}]})
    assert "10, 20, 30, 40, 50" in refused.value.message


def test_promote_now_still_passes_the_confirm_promotion_gate(tmp_path: Path) -> None:
    answers = iter([403, 200])
    asked: list[str] = []

    def gate(request: httpx.Request) -> httpx.Response:
        asked.append(json.loads(request.content)["phase"])
        return httpx.Response(next(answers, 200))

    holder: dict[str, Journal] = {}
    hooks = _hooks(gate, [{"name": "gate", "type": "confirm-promotion", "url": "http://gate/"}])
    analysis = ScriptedAnalysis(before=lambda n: holder["j"].request("promote") if n == 0 else None)
    driver, _, _, journal = make(tmp_path, analysis=analysis, hooks=hooks)
    holder["j"] = journal
    assert driver.run("v2").outcome is Outcome.PROMOTED
    assert asked == ["WaitingPromotion", "WaitingPromotion"]


def test_a_resume_walks_the_journaled_steps_after_the_policy_was_edited(tmp_path: Path) -> None:
    # Issue 12 item 9: resume rebuilt the schedule from today's config; fewer steps crashed
    # with IndexError.
    holder: dict[str, Driver] = {}
    analysis = ScriptedAnalysis(before=lambda n: setattr(holder["d"], "_signal", 2)
                                if n == 2 else None)
    driver, stack, _, journal = make(tmp_path, analysis=analysis, leave_paused=True,
                                     policy={"interval": "10s", "stepWeights": [10, 20, 30, 40]})
    holder["d"] = driver
    with pytest.raises(Aborted):
        driver.run("v2")
    assert journal.load().step == 3
    edited, _, _, _ = make(tmp_path, stack=stack, policy={"interval": "10s", "stepWeights": [50]})
    messages: list[str] = []
    edited._progress = lambda state, message: messages.append(message)
    state = edited.resume()
    assert state.outcome is Outcome.PROMOTED
    assert max(stack.weights_seen()) == 40
    assert any("continues with the steps it began with: 10%, 20%, 30%, 40%" in m
               for m in messages)


def test_a_query_prometheus_rejects_stops_the_rollout_before_any_change(tmp_path: Path) -> None:
    # Issue 12 item 14: an unbalanced parenthesis deployed the canary, failed and rolled back.
    from rollout.analysis import InvalidQuery

    bad = ScriptedAnalysis(invalid=InvalidQuery("metric 'x': parse error", query="sum(x"))
    driver, stack, _, journal = make(tmp_path, analysis=bad)
    with pytest.raises(InvalidInput, match="parse error"):
        driver.run("v2")
    assert stack.ups == [] and journal.load() is None and stack.entries == base_config()


def test_metrics_that_cannot_be_read_are_an_infrastructure_failure_not_a_verdict(
    tmp_path: Path,
) -> None:
    # Issue 12 item 5: Prometheus unreachable during a step ended `rolled-back` (exit 1) and
    # blocked the version on that stack.
    def unreachable(n: int) -> None:
        if n == 1:
            raise InfrastructureError("the metrics could not be read: could not reach Prometheus")

    driver, stack, _, journal = make(tmp_path, analysis=ScriptedAnalysis(before=unreachable))
    state = driver.run("v2")
    assert state.outcome is Outcome.INFRASTRUCTURE_FAILED
    assert RolloutResult(outcome=str(state.outcome), phase=str(state.phase),
                         reason=state.reason, state=state).exit_code == 3
    assert stack.entries == base_config()
    assert journal.history()[-1].outcome is Outcome.INFRASTRUCTURE_FAILED


def test_a_revert_whose_live_weights_cannot_be_read_is_not_called_done(tmp_path: Path) -> None:
    # Issue 12 item 11: the post-revert check accepted unknown weights.
    from rollout.core.ports import LiveView

    class NoRoute(FakeReadback):
        def live(self) -> LiveView:
            return LiveView(None, None, "v1", 0)

    driver, stack, _, journal = make(tmp_path, analysis=ScriptedAnalysis([False]))
    driver.readback = NoRoute(stack)
    with pytest.raises(InfrastructureError, match="live weights are None/None"):
        driver.run("v3")
    assert journal.load().phase is Phase.ROLLING_BACK


def test_a_manual_pause_nobody_approves_reverts_at_its_deadline(tmp_path: Path) -> None:
    # Issue 12 item 11: gates and manual pauses could wait forever.
    clock = FakeClock()
    driver, stack, _, _ = make(tmp_path, clock=clock, policy={
        "interval": "10s", "stepWeights": [10, 50], "pauses": [{"weight": 10}],
        "pauseTimeout": "2h"})
    state = driver.run("v2")
    assert state.outcome is Outcome.ABORTED and "within pauseTimeout 2h" in state.reason
    assert 7200 <= clock.slept < 7300 and stack.entries == base_config()


def test_a_gate_that_keeps_saying_no_reverts_at_its_deadline(tmp_path: Path) -> None:
    clock = FakeClock()
    hooks = _hooks(lambda request: httpx.Response(403),
                   [{"name": "gate", "type": "confirm-promotion", "url": "http://gate/"}])
    driver, stack, _, _ = make(tmp_path, clock=clock, hooks=hooks, policy={
        "interval": "10s", "stepWeight": 50, "maxWeight": 50, "gateTimeout": "5m"})
    state = driver.run("v2")
    assert state.outcome is Outcome.ABORTED
    assert "confirm-promotion gate did not pass within gateTimeout 5m" in state.reason
    assert stack.entries == base_config()


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize(("owner", "cancelled"), [("this-host", True), ("other-host", False)])
def test_a_lock_left_by_this_rollouts_killed_driver_is_cancelled_on_any_backend(
    tmp_path: Path, owner: str, cancelled: bool
) -> None:
    # Issue 12 item 12: only file backends had their stale locks cleared; elsewhere a resume
    # waited 120 s and reverted. Only a lock the journal shows is ours, held for a dead driver
    # on this host, is cancelled; never one of unknown origin.
    import dataclasses
    import socket

    from rollout.core.errors import StackLocked

    stack = FakeStack(fail_when=lambda cfg, n: None if getattr(stack, "cancelled", 0)
                      else StackLocked("stack lab is locked by another update"))
    driver, stack, _, journal = make(tmp_path, stack=stack)
    _killed_mid_step(journal)
    host = socket.gethostname() if owner == "this-host" else "ci-runner-7"
    journal.save(dataclasses.replace(journal.load(), up_in_flight=f"{host}:{_dead_pid()}"))
    if cancelled:
        assert driver.resume().outcome is Outcome.PROMOTED
        assert stack.cancelled == 1
    else:
        with pytest.raises(StackLocked):
            driver.resume()
        assert getattr(stack, "cancelled", 0) == 0


def test_the_journal_records_the_policys_threshold(tmp_path: Path) -> None:
    driver, _, _, journal = make(tmp_path, policy={"interval": "10s", "stepWeights": [20],
                                                   "threshold": 4})
    assert driver.run("v2").threshold == 4
    assert journal.history()[-1].threshold == 4
