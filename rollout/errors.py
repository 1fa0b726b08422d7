"""The one error tree of the project; adapters translate library errors into it.

    RolloutError                  base; `exit_code` is what the CLI exits with
    ├── InvalidInput              bad config, flags, stack names, queries (nothing changed)
    ├── InfrastructureError       Pulumi, the cluster, Prometheus or the lab failed
    │   ├── ToolchainError        a pinned tool is missing or could not be built
    │   ├── LabError              a lab component could not start or is unhealthy
    │   └── StackError            a Pulumi operation failed
    │       └── StackLocked       another update holds the stack's lock
    └── Aborted                   stopped by a person or a signal
"""

from __future__ import annotations


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


class Aborted(RolloutError):
    exit_code = 4
