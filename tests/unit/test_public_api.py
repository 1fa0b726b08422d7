"""The package's public Python API: what the README and the examples import from `rollout`."""

from __future__ import annotations

import subprocess
import sys

import rollout


def test_every_exported_name_resolves_and_unknown_names_do_not() -> None:
    for name in rollout.__all__:
        assert getattr(rollout, name) is not None
    from rollout.core.errors import GateNotMet, RolloutError

    assert rollout.GateNotMet is GateNotMet and issubclass(rollout.GateNotMet, RolloutError)
    try:
        rollout.Nonexistent  # noqa: B018
    except AttributeError:
        pass
    else:
        raise AssertionError("an unknown name resolved")


def test_importing_the_package_loads_no_pulumi() -> None:
    # The lab's helper processes and the CLI import `rollout` first; Pulumi costs seconds.
    code = "import sys, rollout; print('pulumi' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


def test_the_distribution_ships_rollout_only_never_a_top_level_infra() -> None:
    # An `infra` package in site-packages shadowed every user project's own infra/ folder.
    import tomllib
    from pathlib import Path

    from setuptools import find_packages

    root = Path(__file__).resolve().parents[2]
    found = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = find_packages(str(root), include=found["packages"]["find"]["include"])
    assert {p.split(".")[0] for p in packages} == {"rollout"}
    assert "rollout.pulumi" in packages and "rollout.pulumi.routers" in packages


def test_the_component_is_importable_as_a_user_program_imports_it() -> None:
    code = "from rollout.pulumi import CanaryService; print(CanaryService.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "CanaryService"
