"""The driver under faults and hand edits (issue 12 items 6, 8, 11, 13): fakes, real signals."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from rollout.core.errors import Aborted, InvalidInput, LockLost
from rollout.core.stack_data import ConfigEntry
from rollout.core.state import Outcome, Phase, RolloutState
from tests.unit.app.test_driver import Killed, make
from tests.unit.fakes import (
    PROJECT,
    FailingUp,
    FakeClock,
    FakeReadback,
    FakeStack,
    ScriptedAnalysis,
    base_config,
)

REPLICAS = f"{PROJECT}:replicas"


def _key(name: str) -> str:
    return f"{PROJECT}:{name}"


# -- item 8: a rollout starts only from an idle stack -------------------------------------

@pytest.mark.parametrize(("key", "value"), [("canaryWeight", "20"), ("canaryReplicas", "1")])
def test_a_stack_left_half_way_by_hand_is_refused_and_left_alone(
        tmp_path: Path, key: str, value: str) -> None:
    # After a hand step to 20% the captured "last good" config held the 20%, and the revert
    # failed with "live weights are 80/20".
    stack = FakeStack()
    stack.set_config({_key(key): value})
    before = dict(stack.entries)
    driver, stack, _, journal = make(tmp_path, stack=stack)
    with pytest.raises(InvalidInput) as err:
        driver.run("v2")
    assert f"{_key(key)} is '{value}', not 0" in str(err.value)
    assert "not idle" in str(err.value) and "pulumi up" in str(err.value.hint)
    assert stack.ups == [] and stack.entries == before and journal.load() is None


def test_live_weights_that_are_not_100_0_are_refused(tmp_path: Path) -> None:
    # The config says idle, but the live route was edited with kubectl.
    class Drifted(FakeReadback):
        def live(self):  # type: ignore[no-untyped-def]
            view = super().live()
            return type(view)(70, 30, view.primary_version, 2)

    driver, stack, _, journal = make(tmp_path)
    driver.readback = Drifted(stack)
    with pytest.raises(InvalidInput) as err:
        driver.run("v2")
    assert "live weights are 70/30" in str(err.value)
    assert "live canary Deployment has 2 replicas" in str(err.value)
    assert stack.ups == [] and journal.load() is None


def test_a_stack_never_deployed_counts_as_idle(tmp_path: Path) -> None:
    class Nothing(FakeReadback):
        reads = 0

        def live(self):  # type: ignore[no-untyped-def]
            self.reads += 1
            view = super().live()
            return type(view)(None, None, None, None) if self.reads == 1 else view

    driver, stack, _, _ = make(tmp_path)
    driver.readback = Nothing(stack)
    assert driver.run("v2").outcome is Outcome.PROMOTED


# -- item 8: edits people make during a rollout are kept on revert ------------------------

def test_a_revert_keeps_config_people_changed_during_the_rollout_and_says_so(
        tmp_path: Path) -> None:
    holder: dict[str, FakeStack] = {}

    def edit(n: int) -> None:
        if n == 0:  # a person scales the primary and adds a setting while the canary is at 20%
            holder["s"].set_config({REPLICAS: "3", _key("readinessPath"): "/ready"})

    analysis = ScriptedAnalysis([False, False], before=edit)
    driver, stack, _, journal = make(tmp_path, analysis=analysis)
    holder["s"] = stack
    messages: list[str] = []
    driver._progress = lambda state, message: messages.append(message)
    state = driver.run("v3")
    assert state.outcome is Outcome.ROLLED_BACK
    assert stack.entries == {**base_config(), REPLICAS: ConfigEntry("3"),
                             _key("readinessPath"): ConfigEntry("/ready")}
    assert stack.applied.get("canaryWeight", "0") == "0" and stack.applied["stableVersion"] == "v1"
    kept = [e for e in journal.history()[-1].events if "kept config" in e["message"]]
    assert kept and kept[0]["kept"] == [_key("readinessPath"), REPLICAS]
    assert any("kept config changed during the rollout" in m for m in messages)


def test_a_secret_is_never_named_as_an_edit_nor_rewritten(tmp_path: Path) -> None:
    driver, stack, _, journal = make(tmp_path, analysis=ScriptedAnalysis([False, False]))
    state = driver.run("v3")
    assert state.outcome is Outcome.ROLLED_BACK
    assert stack.entries == base_config()
    assert not [e for e in journal.history()[-1].events if "kept config" in e["message"]]


# -- item 13: a promotion leaves only the stableVersion change behind --------------------

def test_a_promotion_puts_explicit_idle_canary_keys_back_as_they_were(tmp_path: Path) -> None:
    stack = FakeStack()
    stack.set_config({_key("canaryVersion"): "v1", _key("canaryWeight"): "0",
                      _key("canaryReplicas"): "0"})
    before = dict(stack.entries)
    driver, stack, _, _ = make(tmp_path, stack=stack)
    assert driver.run("v2").outcome is Outcome.PROMOTED
    assert stack.entries == {**before, _key("stableVersion"): ConfigEntry("v2")}
    assert stack.unsafe_ups() == []


# -- item 11: waits keep their deadline across a resume; readyTimeout is enforced --------

def test_a_resumed_manual_pause_keeps_its_original_deadline(tmp_path: Path) -> None:
    clock = FakeClock()
    policy = {"interval": "10s", "stepWeights": [10, 50], "pauses": [{"weight": 10}],
              "pauseTimeout": "1h"}
    started = clock.t

    def killed_in_the_pause(t: float) -> None:
        if t - started > 40 * 60 and not holder.get("resumed"):
            raise Killed()

    holder: dict[str, bool] = {}
    clock.on_sleep = killed_in_the_pause
    driver, stack, _, journal = make(tmp_path, clock=clock, policy=policy)
    with pytest.raises(Killed):
        driver.run("v2")
    driver.journal.release()
    assert journal.load().phase is Phase.WAITING
    holder["resumed"] = True
    state = make(tmp_path, stack=stack, clock=clock, policy=policy)[0].resume()
    assert state.outcome is Outcome.ABORTED and "within pauseTimeout 1h" in state.reason
    # Measured from when the pause began, not from the resume 40 minutes in.
    assert clock.t - started < 3600 + 120


def test_a_canary_whose_pods_never_get_ready_is_cancelled_at_ready_timeout(
        tmp_path: Path) -> None:
    stack = FakeStack(interruptible=True)

    def await_pods(config: dict[str, str], n: int) -> BaseException | None:
        if config.get("canaryReplicas") == "1" and config.get("canaryWeight", "0") == "0":
            deadline = time.monotonic() + 10
            while not getattr(stack, "interrupts", 0) and time.monotonic() < deadline:
                time.sleep(0.02)
            return FailingUp("update canceled")
        return None

    stack.fail_when = await_pods
    driver, stack, _, _journal = make(tmp_path, stack=stack, policy={
        "interval": "10s", "stepWeight": 50, "maxWeight": 50, "readyTimeout": "1s"})
    state = driver.run("v2")
    assert stack.interrupts == 1
    assert state.outcome is Outcome.ROLLED_BACK
    assert "not ready within readyTimeout 1s" in state.reason
    assert stack.entries == base_config()


# -- item 6: signals are the driver's to handle -------------------------------------------

def _signal_during_up(stack: FakeStack, at_up: int, signals: int) -> None:
    def send(config: dict[str, str], n: int) -> BaseException | None:
        if n != at_up:
            return None
        for _ in range(signals):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs in the main thread between bytecodes
        return FailingUp("update canceled") if getattr(stack, "interrupts", 0) else None

    stack.fail_when = send


def test_a_first_sigint_during_an_up_lets_it_finish_then_reverts(tmp_path: Path) -> None:
    stack = FakeStack(interruptible=True)
    _signal_during_up(stack, at_up=1, signals=1)
    driver, stack, _, _journal = make(tmp_path, stack=stack)
    before = signal.getsignal(signal.SIGINT)
    state = driver.run("v2")
    assert not getattr(stack, "interrupts", 0), "the running up was not cancelled"
    assert stack.ups[1]["config"]["canaryWeight"] == "20", "the step's up completed"
    assert state.outcome is Outcome.ABORTED and "SIGINT" in state.reason
    assert stack.entries == base_config() and stack.unsafe_ups() == []
    assert signal.getsignal(signal.SIGINT) is before, "the driver's handler is taken down"


def test_a_second_sigint_cancels_the_running_up_and_still_reverts(tmp_path: Path) -> None:
    stack = FakeStack(interruptible=True)
    _signal_during_up(stack, at_up=1, signals=2)
    driver, stack, _, journal = make(tmp_path, stack=stack)
    state = driver.run("v2")
    assert stack.interrupts == 1
    assert state.outcome is Outcome.ABORTED and "SIGINT" in state.reason
    assert stack.entries == base_config()
    steps = [e["message"] for e in journal.history()[-1].events]
    assert not any(m.startswith("pulumi up: weight 20%") for m in steps), \
        "the cancelled step's up is not journaled as done"


def test_a_cancelled_up_with_leave_paused_stays_paused_for_resume(tmp_path: Path) -> None:
    stack = FakeStack(interruptible=True)
    _signal_during_up(stack, at_up=1, signals=2)
    driver, stack, _, journal = make(tmp_path, stack=stack, leave_paused=True)
    with pytest.raises(Aborted):
        driver.run("v2")
    assert stack.interrupts == 1 and journal.load().phase is Phase.PROGRESSING
    stack.fail_when = None
    assert make(tmp_path, stack=stack)[0].resume().outcome is Outcome.PROMOTED


def test_signals_during_a_revert_never_cancel_it(tmp_path: Path) -> None:
    stack = FakeStack(interruptible=True)
    driver, stack, _, _ = make(tmp_path, stack=stack, analysis=ScriptedAnalysis([False, False]))

    def during_revert(config: dict[str, str], n: int) -> BaseException | None:
        if driver._reverting and not getattr(stack, "sent", False):
            stack.sent = True  # type: ignore[attr-defined]
            for _ in range(3):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
        return None

    stack.fail_when = during_revert
    state = driver.run("v3")
    assert state.outcome is Outcome.ROLLED_BACK and not getattr(stack, "interrupts", 0)
    assert stack.entries == base_config()


# -- each up's change summary is journaled ------------------------------------------------

def test_every_up_journals_its_change_summary(tmp_path: Path) -> None:
    driver, _, _, journal = make(tmp_path)
    driver.run("v2")
    ups = [e for e in journal.history()[-1].events if e["message"].startswith("pulumi up:")]
    assert len(ups) == 7
    assert all(e["changes"] == {"update": 1} and "1 update" in e["message"] for e in ups)


def test_a_revert_resumed_from_a_fresh_checkout_moves_traffic_before_pods(
        tmp_path: Path) -> None:
    # Found by the lab's fault suite: killed during a revert, then resumed with the stack file
    # checked out fresh (canaryWeight unset), the revert read the file, skipped its
    # traffic-first up, and one up scaled the canary to 0 while the route still sent it 20%.
    armed = {"on": True}

    def kill(config: dict[str, str], n: int) -> BaseException | None:
        reverting = config.get("canaryWeight") == "0" and config.get("canaryReplicas") == "1"
        return Killed() if armed["on"] and n > 1 and reverting else None

    stack = FakeStack(fail_when=kill)
    driver, stack, _, journal = make(tmp_path, stack=stack,
                                     analysis=ScriptedAnalysis([False, False]))
    with pytest.raises(Killed):
        driver.run("v3")
    driver.journal.release()
    assert journal.load().phase is Phase.ROLLING_BACK
    assert stack.applied["canaryWeight"] == "20", "the route still sends the canary traffic"
    stack.entries = base_config()  # a fresh checkout of the stack file
    armed["on"] = False
    state = make(tmp_path, stack=stack)[0].resume()
    assert state.outcome is Outcome.ROLLED_BACK
    assert stack.unsafe_ups() == [], "traffic left the canary before its pods did"
    assert stack.entries == base_config()


def test_a_driver_whose_lock_is_taken_stops_before_its_next_action_and_writes_nothing(
    tmp_path: Path,
) -> None:
    # Issue 14: another driver took the stack over (its lease expired here, or a person
    # edited it). This one must neither step on nor revert what the new holder now drives.
    driver, stack, _, journal = make(tmp_path)
    lost = {"yes": False}
    tried_after: list[str] = []
    held, save, archive = journal.check_held, journal.save, journal.archive

    def taken_after_the_first_step() -> None:
        if len(stack.ups) >= 2:  # the canary scaled up and the first weight step applied
            lost["yes"] = True
        if lost["yes"]:
            raise LockLost("the lease of stack lab is held by other@host:1",
                           hint="let the holder finish")
        held()

    def saving(state: RolloutState) -> None:
        # A store that does not check the lock itself: the driver alone must stop.
        if lost["yes"]:  # fail at once: a driver that writes on would loop here forever
            tried_after.append(f"save {state.phase}")
            raise AssertionError(f"saved {state.phase} after the lock was lost")
        save(state)

    def archiving(state: RolloutState) -> bool:
        if lost["yes"]:
            tried_after.append(f"archive {state.phase}")
            return False
        return archive(state)

    journal.check_held = taken_after_the_first_step  # type: ignore[method-assign]
    journal.save = saving  # type: ignore[method-assign]
    journal.archive = archiving  # type: ignore[method-assign]
    with pytest.raises(LockLost):
        driver.run("v2")
    saved = journal.load()
    assert len(stack.ups) == 2, "no up after the lock was lost"
    assert tried_after == [], "nothing written after the lock was lost"
    assert saved is not None and saved.phase is Phase.PROGRESSING, "no revert was started"
    assert journal.history() == []
    assert stack.weights_seen()[-1] > 0, "the new holder's traffic was left alone"


def test_a_step_whose_route_does_not_read_back_at_its_weight_is_reverted(
        tmp_path: Path) -> None:
    # Someone pins the route with kubectl while the first step's update runs: the analysis
    # would judge traffic the canary does not get. The step fails and the stack is reverted.
    class PinnedAfterFirstStep(FakeReadback):
        def live(self):  # type: ignore[no-untyped-def]
            view = super().live()
            if view.canary_weight and not self.stack.applied.get("pinned"):
                self.stack.applied["pinned"] = "yes"
                return type(view)(95, 5, view.primary_version, view.canary_replicas)
            return view

    analysis = ScriptedAnalysis()
    driver, stack, _, journal = make(tmp_path, analysis=analysis)
    driver.readback = PinnedAfterFirstStep(stack)
    state = driver.run("v2")
    assert state.outcome is Outcome.ROLLED_BACK
    assert "live route carries 95/5 (primary/canary), not" in state.reason
    assert analysis.calls == []  # nothing was judged on the wrong traffic
    assert stack.applied.get("canaryWeight", "0") == "0"
    assert journal.load().outcome is Outcome.ROLLED_BACK
