"""`rollout fleet run`: bad flags and plans exit 2 and start nothing (issue 16)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rollout.cli import app


def fleet(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["fleet", "run", *args])


@pytest.mark.parametrize(("args", "wanted"), [
    ([], "give either --stacks (with --version) or --file"),
    (["--stacks", "a"], "--stacks needs --version"),
    (["--stacks", "a,,b", "--version", "v2"], "empty stack name"),
    (["--stacks", "a", "--version", "v2", "--max-parallel", "0"], "--max-parallel"),
])
def test_bad_flags_exit_2(args: list[str], wanted: str) -> None:
    result = fleet(*args)
    assert result.exit_code == 2, result.output
    assert wanted in " ".join(result.output.split())


def test_a_plan_file_with_flags_or_bad_yaml_exits_2(tmp_path: Path) -> None:
    plan = tmp_path / "fleet.yaml"
    plan.write_text("rollouts:\n  - {stack: a, version: v2}\n")
    result = fleet("--file", str(plan), "--version", "v3")
    assert result.exit_code == 2
    assert "--version and --service go with --stacks" in " ".join(result.output.split())
    plan.write_text("rollouts: [\n")
    result = fleet("--file", str(plan))
    assert result.exit_code == 2 and "is not YAML" in " ".join(result.output.split())


def test_a_stack_of_two_services_without_service_exits_2_before_any_driver_starts(
        tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: shop\nruntime: python\n")
    (tmp_path / "Pulumi.eu.yaml").write_text("config:\n  checkout:stableVersion: v1\n"
                                             "  cart:stableVersion: v1\n")
    result = fleet("--stacks", "eu", "--version", "v2", "--project-dir", str(tmp_path))
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "the fleet cannot start: eu:" in text and "--service" in text
    assert "nothing was run" in text


def test_driver_events_stop_quietly_when_the_fleet_is_gone(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # A fleet killed with SIGKILL leaves its drivers running: their next event must not
    # end the rollout half way with a BrokenPipeError.
    import os
    import sys

    from rollout.cli.progress import JsonProgress
    from rollout.core.state import RolloutState

    read, write = os.pipe()
    os.close(read)
    broken = os.fdopen(write, "w")
    monkeypatch.setattr(sys, "stderr", broken)
    progress = JsonProgress()
    state = RolloutState(stack="eu", candidate="v2", stable="v1", last_good={})
    progress(state, "step 1")
    progress(state, "step 2")
    assert progress.reader_gone
    monkeypatch.undo()
    with contextlib.suppress(BrokenPipeError):
        broken.close()
