"""Canary releases for Kubernetes driven by the Pulumi Automation API.

    from rollout import Rollouts, release
    Rollouts(stack="staging").run("v2")
    release("staging", "prod")

The public Python API is what this package exports; the layers below it (core, analysis,
adapters, app, cli) are the implementation.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# name -> the module that defines it; imported on first use, so `python -m rollout.lab.*`
# helpers and the CLI start without importing Pulumi.
_EXPORTS = {
    "Rollouts": "rollout.app.api",
    "Fleet": "rollout.app.fleet",
    "FleetEntry": "rollout.core.fleet",
    "FleetResult": "rollout.core.fleet",
    "RolloutResult": "rollout.app.results",
    "release": "rollout.app.promotion",
    "RolloutError": "rollout.core.errors",
    "GateNotMet": "rollout.core.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(name)
