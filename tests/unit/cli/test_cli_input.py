"""Covers bad command-line input: a clear error, exit code 2, and no stack touched."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rollout.cli import app


@pytest.mark.parametrize(("args", "needle"), [
    (["run", "--stack", "bad name!", "--version", "v2"], "not a valid stack name"),
    (["run", "--stack", "lab", "--version", "v2; rm -rf /"], "not a valid image tag"),
    (["status", "--stack", "../../etc"], "not a valid stack name"),
])
def test_bad_input_exits_2_with_the_fix(args: list[str], needle: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert "fix:" in result.output


def test_an_unknown_output_format_is_refused() -> None:
    result = CliRunner().invoke(app, ["status", "--stack", "lab", "--output", "yaml"])
    assert result.exit_code == 2


def test_an_unexpected_error_exits_3_with_its_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 12 item 5: errors outside the project's types (a cluster connection, a missing
    # kubeconfig) left with exit 1 and a traceback.
    import rollout.cli.commands as cli

    def broken(*args: object, **kwargs: object) -> object:
        raise ConnectionResetError("the API server closed the connection")

    monkeypatch.setattr(cli, "_rollouts", broken)
    monkeypatch.setattr(sys, "argv", ["rollout", "status", "--stack", "lab"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 3
    err = capsys.readouterr().err
    assert "unexpected ConnectionResetError: the API server closed" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", [["run", "--version", "v2"], ["resume"]])
def test_a_busy_stack_is_refused_before_its_settings_are_loaded(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The refusal used to come after loading the stack's config through the CLI and
    # importing scipy: seconds in which the other driver moved on.
    from rollout.adapters.journal import Journal
    from tests.unit.fakes import file_store_project

    monkeypatch.setenv("CANARY_JOURNAL_DIR", str(tmp_path))
    # A project whose stack says only where its state is: nothing else for the CLI to load.
    project = file_store_project(tmp_path / "project", "busy")
    monkeypatch.setenv("CANARY_PROJECT_DIR", str(project))
    holder = Journal(tmp_path, "busy", "demo")
    holder.acquire()
    try:
        result = CliRunner().invoke(app, [*command, "--stack", "busy"])
    finally:
        holder.release()
    assert result.exit_code == 3, result.output
    assert "another rollout driver is running on service demo of stack busy" in result.output
    assert "fix:" in result.output
