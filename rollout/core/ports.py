"""The seams of the driver: small protocols its adapters implement, with plain data across."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from rollout.core.stack_data import ConfigEntry, UpSummary


class StackPort(Protocol):
    def config(self) -> dict[str, ConfigEntry]: ...
    def set_config(self, values: dict[str, str]) -> None: ...
    def restore_config(self, entries: dict[str, ConfigEntry | None]) -> None:
        """Puts these plain keys back as given (None: removed); leaves every other key alone."""
        ...
    def up(self, *, targets: list[str] | None = None, message: str | None = None,
           on_event: Callable[[dict[str, Any]], None] | None = None,
           on_output: Callable[[str], None] | None = None) -> UpSummary: ...
    def outputs(self) -> dict[str, Any]: ...
    def resource_urns(self, *, types: set[str]) -> list[str]: ...
    def clear_stale_lock(self) -> bool: ...
    def cancel(self) -> None: ...
    def refresh(self) -> None: ...
    def interrupt(self) -> bool:
        """Asks a running `pulumi` command to cancel cleanly; False when none is running."""
        ...


@dataclass(frozen=True)
class AnalysisContext:
    app: str
    namespace: str
    canary_workload: str
    primary_workload: str
    weight: int
    step: int
    interval_seconds: float
    canary_share: float


@dataclass(frozen=True)
class StepVerdict:
    """PASS (passed=True), FAIL (False) or INCONCLUSIVE (None), with the evidence."""

    passed: bool | None
    failed_checks: int
    reason: str
    metrics: list[dict[str, Any]] = field(default_factory=list)
    judge_state: dict[str, Any] = field(default_factory=dict)
    final: bool = False  # the evidence is conclusive: roll back without waiting for more

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "failed_checks": self.failed_checks,
                "reason": self.reason, "metrics": self.metrics, "final": self.final}


class AnalysisPort(Protocol):
    def validate(self, ctx: AnalysisContext) -> None:
        """Raise InvalidInput for a query the provider rejects, InfrastructureError when it
        cannot be asked: before the rollout changes anything."""
        ...

    def analyze(self, ctx: AnalysisContext, judge_state: dict[str, Any]) -> StepVerdict: ...


@dataclass(frozen=True)
class LiveView:
    primary_weight: int | None
    canary_weight: int | None
    primary_version: str | None
    canary_replicas: int | None


class ReadbackPort(Protocol):
    def live(self) -> LiveView: ...


class Clock(Protocol):
    def now(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class Notifier(Protocol):
    """Announces a finished rollout somewhere people look (chat, paging). A notifier handles
    its own delivery failures; the driver posts to each of its notifiers in turn."""

    def post(self, *, title: str, text: str, ok: bool, fields: dict[str, Any]) -> None: ...
