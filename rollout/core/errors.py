"""The one error tree of the project; adapters translate library errors into it.

    RolloutError                  base; `exit_code` is what the CLI exits with
    ├── InvalidInput              bad config, flags, stack names, queries (nothing changed)   2
    │   ├── SettingsError         stack config (any config model), every bad key listed
    │   └── InvalidQuery          Prometheus could not parse a query (rollout.analysis.errors)
    ├── InfrastructureError       Pulumi, the cluster, Prometheus or the lab failed            3
    │   ├── ToolchainError        a pinned tool is missing or could not be built
    │   ├── LabError              a lab component could not start or is unhealthy
    │   ├── MetricQueryError      a query could not be answered (rollout.analysis.errors)
    │   ├── StackError            a Pulumi operation failed
    │   │   └── StackLocked       another update holds the stack's lock
    │   └── LockLost              this driver no longer holds the stack's rollout lock
    ├── Busy                      someone else is at work on the stack (nothing changed)    3
    │   ├── DriverBusy            another driver holds the stack's rollout lock
    │   └── TargetBusy            a release's target stack has an unfinished rollout
    ├── Aborted                   stopped by a person or a signal                           4
    └── GateNotMet                a release gate is not met (nothing changed)               5

The analysis's two errors live with it; every other error of the project is here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rollout.core.redaction import MASK


class RolloutError(Exception):
    exit_code = 3

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.hint}" if self.hint else self.message


class InvalidInput(RolloutError):
    exit_code = 2


class InfrastructureError(RolloutError):
    exit_code = 3


class ToolchainError(InfrastructureError):
    pass


class LabError(InfrastructureError):
    pass


class StackError(InfrastructureError):
    """A Pulumi operation failed. `changed` is False only when the engine reported that it
    started no create, update or delete step, so running the same operation again is safe."""

    def __init__(self, message: str, *, hint: str | None = None, changed: bool = True) -> None:
        super().__init__(message, hint=hint)
        self.changed = changed


class StackLocked(StackError):
    pass


class LockLost(InfrastructureError):
    """The driver's hold on the stack's rollout lock ended (taken over, or not renewed within
    the renew deadline): it must stop before its next action and write nothing more."""


class Aborted(RolloutError):
    exit_code = 4


@dataclass(frozen=True)
class Problem:
    """One bad config key: `key` as the user types it, e.g. demo:canaryWeight.

    Shown as `key = value: message`; without a value, `key is not set...` or `key: message`.
    `value` is what may be shown, already redacted (rollout.core.config_errors); a masked
    secret is the text `***`, shown bare.
    """

    key: str
    message: str
    value: Any = None
    has_value: bool = True

    def __str__(self) -> str:
        if not self.has_value:
            joint = " " if self.message.startswith("is ") else ": "
            return f"{self.key}{joint}{self.message}"
        masked = isinstance(self.value, str) and self.value == MASK
        text = MASK if masked else json.dumps(self.value, default=str)
        shown = text if len(text) <= 120 else text[:117] + "..."
        return f"{self.key} = {shown}: {self.message}"


class SettingsError(InvalidInput):
    """Invalid stack configuration; the message lists every problem, one per line."""

    def __init__(self, problems: list[Problem], *, hint: str | None = None) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"invalid stack configuration ({len(problems)} problem(s)):\n{lines}", hint=hint)


class Busy(RolloutError):
    """Another driver or rollout is at work on the stack: not a verdict on any version."""

    exit_code = 3


class DriverBusy(Busy):
    pass


class GateNotMet(RolloutError):
    """A release gate is not met; nothing was changed on either stack. `check` is the
    rollout.core.gates.ReleaseCheck with every gate, met or not."""

    exit_code = 5

    def __init__(self, message: str, *, hint: str | None = None, check: Any = None) -> None:
        super().__init__(message, hint=hint)
        self.check = check


class TargetBusy(GateNotMet, Busy):
    """The release's target has an unfinished rollout: the infrastructure state of a busy
    stack (exit 3, as a second driver is), reported with the gates like any blocked release."""

    exit_code = 3
