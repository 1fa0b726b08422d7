"""The seams of the driver: small protocols its adapters implement, with plain data across."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from rollout.core.stack_data import ConfigEntry, UpSummary
from rollout.core.state import RolloutState


class StackPort(Protocol):
    def config(self) -> dict[str, ConfigEntry]: ...
    def plain_values(self, keys: list[str]) -> dict[str, str | None]:
        """These plain keys' values as Pulumi reads them (None: not set), cheaply."""
        ...
    def set_config(self, values: dict[str, str]) -> None: ...
    def restore_config(self, entries: dict[str, ConfigEntry | None]) -> None:
        """Puts these plain keys back as given (None: removed); leaves every other key alone."""
        ...
    def up(self, *, targets: list[str] | None = None, message: str | None = None,
           on_event: Callable[[dict[str, Any]], None] | None = None,
           on_output: Callable[[str], None] | None = None) -> UpSummary: ...
    def outputs(self) -> dict[str, Any]: ...
    def service_targets(self, service: str, *, types: set[str] | None = None) -> list[str]:
        """URNs that scope an update to one service: its component and every resource under
        it, or only those of `types`; [] when it is not deployed."""
        ...

    def deployed_services(self) -> dict[str, dict[str, Any]]:
        """Every deployed service's registered outputs, by service name."""
        ...
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


class StateStore(Protocol):
    """Where one stack's rollout state lives: the journal (the unfinished or last rollout),
    the history of finished rollouts, the requests people queue, and the one-driver lock.

    `rollout.adapters.journal.Journal` keeps it in files (offline use, tests);
    `rollout.adapters.cluster_store.ClusterStore` in the cluster the stack deploys to.
    tests/contract/state_store.py states these promises and runs against both.
    """

    @property
    def where(self) -> str:
        """Where the state lives, as people read it: `CanaryRollout shop/prod`."""
        ...

    def load(self) -> RolloutState | None:
        """The journaled state, or None when the stack never had a rollout."""
        ...

    def save(self, state: RolloutState) -> None:
        """Replaces the journal, whole or not at all. While this store holds the lock, raises
        `LockLost` instead of writing once the lock was taken over or not renewed."""
        ...

    def archive(self, state: RolloutState) -> bool:
        """Appends a finished rollout to history, once (by rollout id); whether it was new."""
        ...

    def history(self) -> list[RolloutState]:
        """Finished rollouts, oldest first."""
        ...


    def request(self, action: str, *, rollout_id: str | None = None, by: str = "",
                reason: str = "") -> dict[str, Any]:
        """Queues approve / promote / abort for one rollout (by default the unfinished one;
        `InvalidInput` when there is none); returns the entry with its unique `id`."""
        ...

    def requests(self) -> list[dict[str, Any]]:
        """Every queued request, oldest first, each with `id`, `rollout_id`, `action`, `by`,
        `at` and `reason`; an id never changes, so the driver handles each request once."""
        ...

    def approve_release(self, version: str, *, by: str = "") -> dict[str, Any]:
        """Records that `by` approved releasing `version` onto this stack (the `approval`
        release gate reads it); works without the lock, from any machine."""
        ...

    def release_approvals(self) -> list[dict[str, Any]]:
        """Recorded release approvals, oldest first, each with `version`, `by` and `at`."""
        ...

    def log_release(self, record: dict[str, Any]) -> None:
        """Appends one release's audit record (its gates, outcome, whether it was forced)."""
        ...

    def release_log(self) -> list[dict[str, Any]]:
        """The release audit records, oldest first (the cluster keeps the latest 100)."""
        ...

    def acquire(self) -> None:
        """Takes the stack's one-driver lock, or raises `DriverBusy` naming the holder."""
        ...

    def release(self) -> None:
        """Frees the lock if this store holds it; never raises."""
        ...

    def refuse_if_busy(self) -> None:
        """Raises `DriverBusy`, naming the holder, when another driver holds the lock; quick,
        and it creates nothing."""
        ...

    def driver_running(self) -> bool:
        """Whether some driver (this one included) holds the lock now."""
        ...

    def holder(self) -> str | None:
        """Who holds the lock now (this store included), or None when nobody does."""
        ...

    def check_held(self) -> None:
        """Raises `LockLost` unless this store still holds the lock: call it before each
        action, and stop on it."""
        ...
