"""The one record of a rollout, journaled before every action so a killed driver can resume."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from rollout.core.errors import InvalidInput


class Phase(StrEnum):
    INITIALIZING = "Initializing"
    PROGRESSING = "Progressing"
    WAITING = "Waiting"
    WAITING_PROMOTION = "WaitingPromotion"
    PROMOTING = "Promoting"
    FINALISING = "Finalising"
    SUCCEEDED = "Succeeded"
    ROLLING_BACK = "RollingBack"
    FAILED = "Failed"

    @property
    def terminal(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)


class Outcome(StrEnum):
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled-back"
    ABORTED = "aborted"
    # Pulumi, the cluster or Prometheus failed: reverted, but no verdict on the version.
    INFRASTRUCTURE_FAILED = "infrastructure-failed"
    NOTHING_TO_DO = "nothing-to-do"


@dataclass(frozen=True)
class RolloutState:
    stack: str
    candidate: str
    stable: str
    last_good: dict[str, dict[str, Any]]
    rollout_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    phase: Phase = Phase.INITIALIZING
    step: int = -1
    weight: int = 0
    # Canary pods while the canary takes traffic: the desired state is the journal's, never
    # the stack file's (a fresh checkout has canaryReplicas back at 0).
    canary_replicas: int = 0
    step_applied: bool = False
    total_steps: int = 0
    interval_seconds: float = 0.0
    # The policy's failed-check threshold when the rollout began; 0: not known (older
    # journals).
    threshold: int = 0
    approved: bool = False  # unused since approvals are queued requests; older journals have it
    handled_requests: list[str] = field(default_factory=list)
    # The steps as resolved when the rollout began: [{"weight": w, "pause_seconds": p}, ...].
    schedule: list[dict[str, Any]] = field(default_factory=list)
    failed_checks: int = 0
    inconclusive: int = 0
    outcome: Outcome | None = None
    reason: str = ""
    analyses: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    judge_state: dict[str, Any] = field(default_factory=dict)
    step_seconds: list[float] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    driver_pid: int | None = None
    # "<host>:<pid>" of the driver whose `pulumi up` is running, "" when none is.
    up_in_flight: str = ""
    # When the current pause or gate wait ends (clock time), so a resume does not restart it.
    wait_deadline: float = 0.0

    def moved(self, **changes: Any) -> RolloutState:
        return replace(self, updated_at=time.time(), **changes)

    def with_event(self, message: str, **data: Any) -> RolloutState:
        event = {"at": time.time(), "phase": str(self.phase), "step": self.step,
                 "weight": self.weight, "message": message, **data}
        return self.moved(events=[*self.events, event])

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["phase"] = str(self.phase)
        data["outcome"] = str(self.outcome) if self.outcome else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RolloutState:
        data = dict(data)
        data["phase"] = Phase(data["phase"])
        data["outcome"] = Outcome(data["outcome"]) if data.get("outcome") else None
        return cls(**data)


def unfinished_rollout_id(state: RolloutState | None, *, stack: str, action: str) -> str:
    """The id of the stack's unfinished rollout, which a request without one is for; there
    being none is the person's mistake (nothing is queued)."""
    if state is None or state.phase.terminal:
        raise InvalidInput(f"no unfinished rollout on stack {stack} to {action}",
                           hint="start one with `rollout run`")
    return state.rollout_id
