"""This repository's own Pulumi program: every canary service its stack config declares."""

from __future__ import annotations

import pulumi

from rollout.pulumi.component import CanaryService
from rollout.pulumi.config import config_services


def main() -> None:
    """Declare every canary service of the stack config, each exported under its name."""
    for service in config_services():
        component = CanaryService(service)
        pulumi.export(service, component.outputs)
