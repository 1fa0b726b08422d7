"""The promises of every StateStore (file and cluster): journal, history, requests, the lock.

A backend's test module subclasses `StateStoreContract` and provides a `stores` fixture: a
`Stores` whose stores share one backend, as two drivers on two machines would.
"""

from __future__ import annotations

import math
import os
from typing import Protocol

import pytest

from rollout.core.errors import DriverBusy, InvalidInput, LockLost
from rollout.core.ports import StateStore
from rollout.core.state import Outcome, Phase, RolloutState

STACK = "lab"


class Stores(Protocol):
    def __call__(self, stack: str = STACK) -> StateStore:
        """A new store on the shared backend, as a second process or machine would open it."""
        ...

    def steal(self, holder: StateStore, thief: StateStore) -> None:
        """Makes `thief` the lock's holder while `holder` still believes it holds it (a lock
        file removed by hand; a driver cut off from the cluster past its lease)."""
        ...


def rollout(stack: str = STACK, candidate: str = "v2", **changes: object) -> RolloutState:
    """A state as the driver journals it mid-rollout: schedule, verdicts, events, evidence."""
    state = RolloutState(
        stack=stack, candidate=candidate, stable="v1",
        last_good={"demo:canaryWeight": {"value": "0", "secret": False},
                   "demo:apiKey": {"value": "", "secret": True}},
        canary_replicas=2, total_steps=3, interval_seconds=10.0,
        schedule=[{"weight": 20, "pause_seconds": 0.0}, {"weight": 40, "pause_seconds": 30.5},
                  {"weight": 60, "pause_seconds": 0.0}],
        judge_state={"sequential": {"log_e": [0.25, -1.5], "looks": 2}},
        up_in_flight="runner-7:4242",
    )
    state = state.moved(phase=Phase.PROGRESSING, step=1, weight=40, failed_checks=1,
                        inconclusive=0, step_applied=True, step_seconds=[3.25, 4.0])
    state = state.moved(analyses=[
        {"passed": True, "failed_checks": 0, "reason": "all metrics passed", "final": False,
         "metrics": [{"name": "request-success-rate", "value": 100.0, "primary": 99.5}],
         "step": 0, "weight": 20, "at": 1_790_000_000.125},
        {"passed": None, "failed_checks": 0, "reason": "no data: ünïcode ✓", "final": False,
         "metrics": [], "step": 1, "weight": 40, "at": 1_790_000_010.5},
    ])
    state = state.with_event("rollout of v2 started (stable v1)").with_event(
        "pulumi up: weight 40%", changes={"update": 1, "same": 10}, seconds=3.25)
    return state.moved(**changes) if changes else state


def finished(candidate: str, outcome: Outcome = Outcome.PROMOTED) -> RolloutState:
    phase = Phase.SUCCEEDED if outcome is Outcome.PROMOTED else Phase.FAILED
    return rollout(candidate=candidate).moved(phase=phase, outcome=outcome,
                                              reason=f"{candidate} {outcome}")


class StateStoreContract:
    """Every test gets fresh, empty backend state from the `stores` fixture."""

    # -- the journal ----------------------------------------------------------------

    def test_a_stack_without_rollouts_has_no_state_history_requests_or_holder(
        self, stores: Stores
    ) -> None:
        store = stores()
        assert store.load() is None
        assert store.history() == []
        assert store.requests() == []
        assert store.holder() is None and not store.driver_running()

    def test_a_saved_state_loads_back_equal_from_another_store(self, stores: Stores) -> None:
        state = rollout()
        stores().save(state)
        loaded = stores().load()
        assert loaded == state
        assert loaded is not None and loaded.phase is Phase.PROGRESSING
        assert loaded.analyses[1]["passed"] is None and loaded.outcome is None

    def test_a_save_replaces_the_whole_state(self, stores: Stores) -> None:
        store = stores()
        store.save(rollout())
        later = rollout().moved(phase=Phase.ROLLING_BACK, events=[], analyses=[],
                                reason="5xx", outcome=Outcome.ROLLED_BACK)
        store.save(later)
        assert stores().load() == later

    def test_numbers_that_json_cannot_spell_survive(self, stores: Stores) -> None:
        state = rollout(judge_state={"ratio": math.inf, "low": -math.inf, "mean": math.nan})
        stores().save(state)
        loaded = stores().load()
        assert loaded is not None
        assert loaded.judge_state["ratio"] == math.inf
        assert loaded.judge_state["low"] == -math.inf
        assert math.isnan(loaded.judge_state["mean"])

    # -- history --------------------------------------------------------------------

    def test_history_keeps_each_finished_rollout_once_and_in_order(
        self, stores: Stores
    ) -> None:
        store = stores()
        rollouts = [finished("v2"), finished("v3", Outcome.ROLLED_BACK), finished("v4")]
        assert [store.archive(state) for state in rollouts] == [True, True, True]
        assert not store.archive(rollouts[0]), "a rollout already in history is not added"
        assert not stores().archive(rollouts[1])
        read = stores().history()
        assert [(s.candidate, s.outcome) for s in read] == [
            ("v2", Outcome.PROMOTED), ("v3", Outcome.ROLLED_BACK), ("v4", Outcome.PROMOTED)]
        assert read == rollouts

    def test_a_finished_rollout_is_archived_once_by_any_store(self, stores: Stores) -> None:
        done = finished("v2", Outcome.ROLLED_BACK)
        stores().save(done)
        assert stores().archive(done) is True
        assert stores().archive(done) is False, "the same rollout id is history once"
        assert stores().history() == [done]

    # -- requests -------------------------------------------------------------------

    def test_requests_are_queued_for_the_unfinished_rollout_and_listed_in_order(
        self, stores: Stores
    ) -> None:
        state = rollout()
        stores().save(state)
        approver, driver = stores(), stores()
        sent = [approver.request("approve", by="ana"),
                approver.request("promote", by="bo", rollout_id=state.rollout_id),
                stores().request("abort", reason="p99 looks odd")]
        listed = driver.requests()
        assert [r["id"] for r in listed] == [r["id"] for r in sent]
        assert len({r["id"] for r in listed}) == 3
        assert [(r["action"], r["by"], r["rollout_id"]) for r in listed[:2]] == [
            ("approve", "ana", state.rollout_id), ("promote", "bo", state.rollout_id)]
        assert listed[2]["reason"] == "p99 looks odd" and listed[2]["by"]
        assert all(isinstance(r["at"], float | int) for r in listed)
        assert driver.requests() == listed, "listing again gives the same ids, in order"

    def test_a_request_for_another_rollout_is_kept_for_it(self, stores: Stores) -> None:
        stores().save(rollout())
        stores().request("abort", rollout_id="0123456789ab", by="ops")
        (listed,) = stores().requests()
        assert listed["rollout_id"] == "0123456789ab" and listed["action"] == "abort"

    def test_a_request_without_an_unfinished_rollout_is_refused(self, stores: Stores) -> None:
        with pytest.raises(InvalidInput, match="no unfinished rollout"):
            stores().request("approve")
        stores().save(finished("v2"))
        with pytest.raises(InvalidInput, match="no unfinished rollout"):
            stores().request("approve")
        assert stores().requests() == []

    # -- releases onto the stack ----------------------------------------------------

    def test_release_approvals_are_seen_by_any_store_the_latest_last(
        self, stores: Stores
    ) -> None:
        assert stores().release_approvals() == []
        holder = stores()
        holder.acquire()
        try:  # approving needs no lock: approvers are people, not drivers
            stores().approve_release("v2", by="alice")
            stores().approve_release("v3", by="bob")
            stores().approve_release("v2", by="carol")
        finally:
            holder.release()
        found = stores().release_approvals()
        assert [a["by"] for a in found if a["version"] == "v2"][-1] == "carol"
        assert [a["by"] for a in found if a["version"] == "v3"] == ["bob"]
        assert all(isinstance(a["at"], float) for a in found)
        assert [a["at"] for a in found] == sorted(a["at"] for a in found)

    def test_the_release_log_keeps_each_record_whole_and_in_order(
        self, stores: Stores
    ) -> None:
        assert stores().release_log() == []
        first = {"at": 1_790_000_000.25, "outcome": "promoted", "forced": False,
                 "version": "v2", "gates": [{"name": "soak", "passed": True, "detail": "1h"}]}
        second = {**first, "outcome": "error (exit 4): stopped ünïcode", "forced": True}
        stores().log_release(first)
        stores().log_release(second)
        assert stores().release_log() == [first, second]

    # -- the lock -------------------------------------------------------------------

    def test_the_lock_is_exclusive_across_stores_and_names_its_holder(
        self, stores: Stores
    ) -> None:
        first, second = stores(), stores()
        first.acquire()
        try:
            holder = first.holder()
            assert holder and str(os.getpid()) in holder
            assert second.holder() == holder
            with pytest.raises(DriverBusy) as busy:
                second.acquire()
            assert holder in busy.value.message and busy.value.hint
            with pytest.raises(DriverBusy, match="another rollout driver is running"):
                second.refuse_if_busy()
            assert second.driver_running() and first.driver_running()
            first.check_held()
            first.refuse_if_busy()  # its own lock does not refuse it
        finally:
            first.release()

    def test_release_frees_the_lock_for_the_next_driver(self, stores: Stores) -> None:
        first, second = stores(), stores()
        first.acquire()
        first.release()
        first.release()  # twice is harmless
        assert second.holder() is None and not second.driver_running()
        second.refuse_if_busy()
        second.acquire()
        try:
            second.check_held()
            with pytest.raises(DriverBusy):
                first.acquire()
        finally:
            second.release()
        with pytest.raises(LockLost):
            second.check_held()

    def test_asking_whether_a_driver_runs_leaves_the_lock_free(self, stores: Stores) -> None:
        asker = stores()
        assert not asker.driver_running()
        assert not asker.driver_running()
        taker = stores()
        taker.acquire()
        taker.release()

    def test_a_store_that_never_took_the_lock_does_not_hold_it(self, stores: Stores) -> None:
        with pytest.raises(LockLost):
            stores().check_held()
        stores().release()  # releasing a lock never taken is harmless

    def test_a_driver_whose_lock_was_taken_cannot_overwrite_the_new_holders_state(
        self, stores: Stores
    ) -> None:
        stale, current = stores(), stores()
        stale.acquire()
        try:
            stale.save(rollout())
            stores.steal(stale, current)
            try:
                newer = rollout().moved(phase=Phase.ROLLING_BACK, reason="taken over")
                current.save(newer)
                with pytest.raises(LockLost):
                    stale.check_held()
                with pytest.raises(LockLost):
                    stale.save(rollout().moved(phase=Phase.PROMOTING))
                with pytest.raises(LockLost):
                    stale.archive(finished("v2"))
                assert stores().load() == newer
                assert stores().history() == []
                current.check_held()
            finally:
                current.release()
        finally:
            stale.release()
        assert stores().holder() is None, "the stale driver's release frees nothing of another"

    # -- stacks ---------------------------------------------------------------------

    def test_stacks_with_similar_names_keep_separate_state_and_locks(
        self, stores: Stores
    ) -> None:
        names = ["org/shop/Prod.eu", "org-shop-prod-eu", "org/shop/prod.eu", "lab"]
        for number, name in enumerate(names):
            stores(name).save(rollout(stack=name, candidate=f"v{number + 2}"))
        for number, name in enumerate(names):
            loaded = stores(name).load()
            assert loaded is not None and (loaded.stack, loaded.candidate) == (
                name, f"v{number + 2}")
        held = stores(names[0])
        held.acquire()
        try:
            for name in names[1:]:
                stores(name).refuse_if_busy()
                assert stores(name).holder() is None
        finally:
            held.release()

