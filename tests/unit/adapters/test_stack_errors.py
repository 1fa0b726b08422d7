"""The stack adapter's reading of a failed `pulumi up`: the engine's error lines, nothing else."""

from __future__ import annotations

from pathlib import Path

from rollout.adapters.stack import engine_errors

DATA = Path(__file__).parents[1] / "data"


def test_a_rejected_resource_is_named_with_the_api_servers_reason() -> None:
    # Real output of `pulumi up` on the lab: the VirtualService weight was a string.
    output = (DATA / "pulumi_up_schema_rejected.txt").read_text()
    errors = engine_errors(output)
    assert len(errors) == 1
    assert errors[0].startswith("VirtualService web-vs: resource ")
    assert "expected numeric (int or float), got string" in errors[0]
    assert not any("update failed" in e or "Resource monitor" in e for e in errors)
    assert not any("warning" in e or "Retry #0" in e for e in errors)


def test_a_program_that_lost_its_engine_is_reported_when_it_is_the_only_error() -> None:
    output = """Updating (it-1):

Diagnostics:
  pulumi:pulumi:Stack (canary-service-it-1):
    error: update failed

    error: Resource monitor has terminated, shutting down

Resources:
    1 errored

Duration: 1s
"""
    assert engine_errors(output) == [
        "Stack canary-service-it-1: Resource monitor has terminated, shutting down"]


def test_a_message_on_several_lines_is_kept_whole_and_bounded() -> None:
    output = ("Diagnostics:\n  kubernetes:apps/v1:Deployment (demo-canary):\n"
              "    error: 1 error occurred:\n    \t* the Kubernetes API server reported that "
              "\"demo/demo-canary\" failed to fully initialize or become live: "
              + "x" * 900 + "\n\nResources:\n    1 errored\n")
    [error] = engine_errors(output)
    assert error.startswith("Deployment demo-canary: 1 error occurred: * the Kubernetes API")
    assert len(error) <= 600 and error.endswith("…")


def test_colour_codes_and_repeats_are_dropped() -> None:
    output = ("Diagnostics:\n  pulumi:pulumi:Stack (p-s):\n"
              "    \x1b[31merror: \x1b[0mboom\n    error: boom\n")
    assert engine_errors(output) == ["Stack p-s: boom"]


def test_output_without_diagnostics_gives_nothing() -> None:
    assert engine_errors("error: update failed\nsomething else\n") == []


def test_a_project_without_a_program_folder_cannot_be_copied(tmp_path: Path,
                                                             monkeypatch: object) -> None:
    import pytest

    from rollout.adapters.project import project_copy
    from rollout.core.errors import InvalidInput

    source = tmp_path / "src"
    source.mkdir()
    (source / "Pulumi.yaml").write_text("name: p\nruntime: python\n")
    with pytest.raises(InvalidInput) as err:
        project_copy(tmp_path / "copy", source=source)
    assert "main" in str(err.value)
    assert not (tmp_path / "copy").exists(), "nothing is written"
