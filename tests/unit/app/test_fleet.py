"""The fleet (issue 16): its plan checks, scheduling, exit code and signals, with real
processes that speak the driver's JSON (tests/unit/app/fleet_driver.py). The real drivers on
the lab: tests/lab/test_fleet.py."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from rollout.adapters.rollout_process import Report, RolloutProcess
from rollout.app.fleet import Fleet
from rollout.core.errors import InvalidInput
from rollout.core.fleet import FleetEntry, FleetRow, RowStatus

DRIVER = Path(__file__).with_name("fleet_driver.py")
ROOT = Path(__file__).resolve().parents[3]


def project(tmp: Path, stacks: dict[str, list[str]]) -> Path:
    (tmp / "Pulumi.yaml").write_text("name: shop\nruntime: python\n")
    for stack, services in stacks.items():
        lines = "".join(f"  {service}:stableVersion: v1\n" for service in services)
        (tmp / f"Pulumi.{stack}.yaml").write_text(f"config:\n{lines}")
    return tmp


def launcher(started: list[tuple[str, float]]):
    def launch(entry: FleetEntry, service: str, report: Report) -> RolloutProcess:
        started.append((entry.stack, time.monotonic()))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return RolloutProcess([sys.executable, str(DRIVER), entry.stack, entry.version],
                              report=report, env=env)
    return launch


def fleet(tmp: Path, stacks: list[str], started: list[tuple[str, float]] | None = None,
          **kwargs) -> Fleet:  # type: ignore[no-untyped-def]
    directory = project(tmp, {stack: ["checkout"] for stack in stacks})
    return Fleet([FleetEntry(stack, "v2") for stack in stacks], project_dir=directory,
                 launcher=launcher([] if started is None else started), **kwargs)


def test_each_rollout_ends_on_its_own_and_the_fleet_exits_with_the_worst(tmp_path: Path) -> None:
    updates: list[list[tuple[str, str, int]]] = []
    run = fleet(tmp_path, ["good-a", "bad-b", "good-c", "broken-d"],
                on_update=lambda rows: updates.append(
                    [(r.entry.stack, r.phase, r.weight) for r in rows]))
    result = run.run()
    rows = {row.entry.stack: row for row in result.rows}
    assert [rows[s].exit_code for s in ("good-a", "bad-b", "good-c", "broken-d")] == [0, 1, 0, 2]
    assert rows["good-a"].outcome == "promoted" and rows["good-c"].outcome == "promoted"
    assert rows["good-a"].step_seconds == [0.5, 0.7, 0.6]
    assert rows["bad-b"].outcome == "rolled-back"
    assert "below 99%" in rows["bad-b"].reason and rows["bad-b"].verdict == "FAIL at 10%"
    # Exit 2 prints no result: the row says what the driver said, with its fix.
    assert rows["broken-d"].outcome == "invalid-input"
    assert "is not what the test wants" in rows["broken-d"].reason
    assert "fix: nothing" in rows["broken-d"].reason
    assert result.exit_code == 2  # bad input is worse than a rollback
    assert all(row.service == "checkout" for row in result.rows)
    # The live view saw the drivers' steps while they ran.
    assert any(("good-a", "Progressing", 20) in update for update in updates)


def test_at_most_max_parallel_run_at_once(tmp_path: Path) -> None:
    started: list[tuple[str, float]] = []
    running_at_once: list[int] = []
    run = fleet(tmp_path, ["good-a", "good-b", "good-c"], started, max_parallel=1,
                on_update=lambda rows: running_at_once.append(
                    sum(r.status is RowStatus.RUNNING for r in rows)))
    result = run.run()
    assert result.exit_code == 0 and max(running_at_once) == 1
    assert [stack for stack, _ in started] == ["good-a", "good-b", "good-c"]
    ends = [row.finished_at for row in result.rows]
    starts = [row.started_at for row in result.rows]
    assert starts[1] >= ends[0] and starts[2] >= ends[1]  # type: ignore[operator]


def test_all_run_together_when_allowed(tmp_path: Path) -> None:
    running_at_once: list[int] = []
    os.environ["FLEET_STEP_SECONDS"] = "0.3"
    try:
        run = fleet(tmp_path, ["good-a", "bad-b", "good-c"], max_parallel=3,
                    on_update=lambda rows: running_at_once.append(
                        sum(r.status is RowStatus.RUNNING for r in rows)))
        result = run.run()
    finally:
        del os.environ["FLEET_STEP_SECONDS"]
    assert max(running_at_once) == 3
    assert [row.exit_code for row in result.rows] == [0, 1, 0]


def test_stop_on_failure_starts_nothing_new(tmp_path: Path) -> None:
    started: list[tuple[str, float]] = []
    run = fleet(tmp_path, ["bad-a", "good-b", "good-c"], started, max_parallel=1,
                stop_on_failure=True)
    result = run.run()
    assert [stack for stack, _ in started] == ["bad-a"]
    assert [row.outcome for row in result.rows] == ["rolled-back", "skipped", "skipped"]
    assert "bad-a ended rolled-back (--stop-on-failure)" in result.rows[1].reason
    assert result.exit_code == 1
    assert result.to_dict()["rollouts"][1] == {
        "stack": "good-b", "service": "checkout", "version": "v2", "status": "skipped",
        "outcome": "skipped", "exit_code": None, "reason": result.rows[1].reason,
        "phase": "", "weight": 0, "verdict": "", "seconds": None, "step_seconds": []}


def test_without_stop_on_failure_the_others_still_run(tmp_path: Path) -> None:
    result = fleet(tmp_path, ["bad-a", "good-b"], max_parallel=1).run()
    assert [row.outcome for row in result.rows] == ["rolled-back", "promoted"]


def test_a_driver_that_dies_without_a_result_is_a_failed_row(tmp_path: Path) -> None:
    result = fleet(tmp_path, ["crash-a", "good-b"]).run()
    crashed = result.rows[0]
    assert crashed.exit_code == -signal.SIGKILL and crashed.outcome == "failed"
    assert "without a result" in crashed.reason
    assert result.rows[1].outcome == "promoted"
    assert result.exit_code == 3  # an unknown code counts as the worst


def test_a_signal_stops_new_rollouts_and_reaches_every_running_driver(tmp_path: Path) -> None:
    sent: list[bool] = []

    def interrupt_once_both_run(rows: list[FleetRow]) -> None:
        if not sent and sum(r.phase == "Progressing" for r in rows) == 2:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)

    result = fleet(tmp_path, ["slow-a", "slow-b", "good-c"], max_parallel=2,
                   on_update=interrupt_once_both_run).run()
    assert sent
    assert [row.outcome for row in result.rows] == ["aborted", "aborted", "skipped"]
    assert all(f"signal {signal.SIGTERM.value}" in r.reason for r in result.rows[:2])
    assert result.rows[2].reason == "not started: the fleet was interrupted"
    assert result.exit_code == 4
    # The fleet's handlers are gone: the test process has its own back.
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_the_whole_plan_is_checked_before_anything_starts(tmp_path: Path) -> None:
    started: list[tuple[str, float]] = []
    directory = project(tmp_path, {"good-a": ["checkout"], "two": ["checkout", "cart"]})
    run = Fleet([FleetEntry("good-a", "v2"), FleetEntry("missing", "v2"),
                 FleetEntry("two", "v2"), FleetEntry("good-a", "v3", service="checkout"),
                 FleetEntry("two", "v2", service="basket")],
                project_dir=directory, launcher=launcher(started))
    with pytest.raises(InvalidInput) as err:
        run.run()
    message = str(err.value)
    assert started == []
    assert "missing:" in message
    assert "two: stack two has 2 canary services: cart, checkout (fix: pick one with " \
        "--service <name>)" in message
    assert "good-a/checkout and good-a are the same rollout" in message
    assert "two/basket:" in message and "nothing was run" in message


@pytest.mark.parametrize("kwargs", [{"max_parallel": 0}])
def test_a_fleet_needs_one_rollout_at_a_time_at_least(tmp_path: Path, kwargs) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match="max_parallel is 0"):
        Fleet([FleetEntry("a", "v2")], project_dir=tmp_path, **kwargs)
    with pytest.raises(InvalidInput, match="no rollouts"):
        Fleet([], project_dir=tmp_path)


def test_the_real_driver_command_reports_its_error_and_fix(tmp_path: Path) -> None:
    # The contract the stand-in imitates, on the real `rollout run` (refused before Pulumi).
    from queue import Queue

    from rollout.adapters.rollout_process import rollout_run_args

    reports: Queue[tuple[str, dict]] = Queue()  # type: ignore[type-arg]
    args = rollout_run_args(FleetEntry("eu", "v 2"), service="checkout",
                            project_dir=project(tmp_path, {"eu": ["checkout"]}), program=None)
    RolloutProcess(args, report=lambda kind, payload: reports.put((kind, payload)),
                   env={**os.environ, "COLUMNS": "1000"})
    kind, payload = reports.get(timeout=60)
    assert kind == "exit" and payload["exit_code"] == 2 and payload["result"] is None
    assert payload["error"] == ("error: 'v 2' is not a valid image tag fix: use letters, "
                                "digits, '_', '.', '-' (at most 128)")
