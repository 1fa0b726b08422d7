"""Canary releases for Kubernetes driven by the Pulumi Automation API.

    from rollout import Rollouts
    Rollouts(stack="staging").run("v2")
"""

from __future__ import annotations

from typing import Any

__all__ = ["RolloutResult", "Rollouts"]


def __getattr__(name: str) -> Any:
    # Lazy, so `python -m rollout.lab.*` helpers start without importing Pulumi.
    if name in __all__:
        from rollout.app import api

        return getattr(api, name)
    raise AttributeError(name)
