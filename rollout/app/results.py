"""What a finished rollout answers: its outcome, reason and exit code (README "Exit codes").
Light on purpose: the fleet and scripts read it without loading Pulumi or a cluster client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rollout.core.state import RolloutState


@dataclass(frozen=True)
class RolloutResult:
    outcome: str
    phase: str
    reason: str
    state: RolloutState

    @property
    def exit_code(self) -> int:
        return {"promoted": 0, "nothing-to-do": 0, "rolled-back": 1,
                "infrastructure-failed": 3, "aborted": 4}.get(self.outcome, 3)

    @classmethod
    def of(cls, state: RolloutState) -> RolloutResult:
        """The result of a finished rollout, as its journal says."""
        outcome = str(state.outcome) if state.outcome else "unknown"
        return cls(outcome=outcome, phase=str(state.phase), reason=state.reason, state=state)

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "phase": self.phase, "reason": self.reason,
                "exit_code": self.exit_code, "rollout": self.state.to_dict()}
