"""The journaled state of a rollout: what it records and that older journals still load."""

from __future__ import annotations

import json
from dataclasses import replace

from rollout.core.state import Outcome, Phase, RolloutState


def _state(**changes: object) -> RolloutState:
    return RolloutState(stack="shop", candidate="v2", stable="v1", last_good={},
                        total_steps=3, interval_seconds=10.0, threshold=2,
                        schedule=[{"weight": 20, "pause_seconds": None},
                                  {"weight": 40, "pause_seconds": 0.0},
                                  {"weight": 60, "pause_seconds": 30.0}]).moved(**changes)


def test_a_state_round_trips_through_json_with_its_threshold() -> None:
    state = _state(phase=Phase.FAILED, outcome=Outcome.ROLLED_BACK, failed_checks=2)
    back = RolloutState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert back == state and back.threshold == 2
    assert back.phase is Phase.FAILED and back.outcome is Outcome.ROLLED_BACK


def test_a_journal_written_before_the_threshold_was_recorded_loads_with_it_unknown() -> None:
    state = _state()
    data = state.to_dict()
    del data["threshold"]
    back = RolloutState.from_dict(data)
    assert back.threshold == 0, "0: not known"
    assert back == replace(state, threshold=0)


def test_a_new_state_does_not_know_the_threshold_until_the_driver_sets_it() -> None:
    assert RolloutState(stack="s", candidate="v2", stable="v1", last_good={}).threshold == 0
