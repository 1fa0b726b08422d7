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
