"""Covers bad command-line input: a clear error, exit code 2, and no stack touched."""

from __future__ import annotations

import sys

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
    import rollout.cli as cli

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
