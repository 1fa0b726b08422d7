"""A fleet's plan and exit code (issue 16): every bad entry named at once, nothing run."""

from __future__ import annotations

import pytest

from rollout.core.errors import InvalidInput
from rollout.core.fleet import (
    FleetEntry,
    FleetResult,
    FleetRow,
    plan_from_file,
    plan_from_flags,
    worst_exit_code,
)


def test_flags_give_one_entry_per_stack() -> None:
    assert plan_from_flags("eu, us", "v2", "cart") == [
        FleetEntry("eu", "v2", "cart"), FleetEntry("us", "v2", "cart")]


@pytest.mark.parametrize(("stacks", "version", "wanted"), [
    ("a,,b", "v2", "empty stack name"),
    ("", "v2", "empty stack name"),
    ("a b", "v2", "'a b' is not a valid stack name"),
    ("a", "v 2", "version 'v 2' is not a valid image tag"),
    ("a,a", "v2", "a is listed twice"),
])
def test_bad_flags_are_refused(stacks: str, version: str, wanted: str) -> None:
    with pytest.raises(InvalidInput, match=wanted):
        plan_from_flags(stacks, version)


def test_a_file_lists_stack_version_and_service() -> None:
    data = {"rollouts": [{"stack": "eu", "version": "v2"},
                         {"stack": "us", "version": "v3", "service": "cart"}]}
    assert plan_from_file(data, source="f.yaml") == [
        FleetEntry("eu", "v2"), FleetEntry("us", "v3", "cart")]


@pytest.mark.parametrize(("data", "wanted"), [
    (None, "rollouts is not set"),
    ([1], "the file = [1]: must be a map"),
    ({"rollouts": []}, "rollouts = []: must be a non-empty list"),
    ({"rollouts": [{"stack": "a", "version": "v2", "servce": "x"}]},
     "rollouts[0].servce = ***: is not a known setting; did you mean service?"),
    ({"rollouts": [{"stack": "a"}]}, "rollouts[0].version is not set"),
    ({"rollouts": [{"stack": "a", "version": "v2", "service": "Cart"}]},
     "a/Cart: 'Cart' is not a valid service name"),
    ({"rollouts": [{"stack": "a", "version": "v2"}, {"stack": "b", "version": "v 3"},
                   {"stack": "a", "version": "v4"}]},
     "f.yaml: b: version 'v 3' is not a valid image tag; a is listed twice"),
])
def test_a_bad_file_names_every_problem(data: object, wanted: str) -> None:
    with pytest.raises(InvalidInput) as err:
        plan_from_file(data, source="f.yaml")
    assert wanted in str(err.value)


@pytest.mark.parametrize(("codes", "worst"), [
    ([], 0), ([0, 0], 0), ([0, 1], 1), ([1, 4], 4), ([4, 2, 1], 2), ([2, 3, 0], 3),
    ([0, -9], 3), ([0, 7], 3),
])
def test_the_fleet_exits_with_its_worst_code(codes: list[int], worst: int) -> None:
    assert worst_exit_code(codes) == worst


def test_a_driver_killed_without_a_result_says_so() -> None:
    row = FleetRow(entry=FleetEntry("a", "v2"))
    row.started(now=10.0)
    row.finished(-9, None, "", now=12.5)
    assert row.outcome == "failed" and row.seconds == 2.5
    assert row.reason == "the driver was killed by signal 9 without a result"
    assert FleetResult([row]).exit_code == 3
