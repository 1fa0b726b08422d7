"""A fleet: rollouts of several stacks (one service each) driven at once from one machine.

The plan comes from flags (`--stacks a,b --version v2`) or a file:

    rollouts:
      - {stack: shop-eu, version: v2}
      - {stack: shop-us, service: cart, version: v2}

Each rollout is an ordinary one, with its own driver, state, lock and journal; this module
holds only what the fleet adds: the plan, each row's live view, and the fleet's exit code.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rollout.core.config_errors import validate_config
from rollout.core.errors import InvalidInput, SettingsError
from rollout.core.stackconfig import VERSION_TAG, validate_service_name, validate_stack_name

# Worst last: the fleet exits with its worst rollout's code. An infrastructure failure (3)
# may leave a stack needing a person; bad input (2) changed nothing but ran nothing either;
# an abort (4) was a person's or a signal's choice; a rollback (1) is the tool working.
SEVERITY = (0, 1, 4, 2, 3)


def worst_exit_code(codes: list[int]) -> int:
    """The most severe of the codes (3 for a code this tool never gives)."""
    rank = {code: i for i, code in enumerate(SEVERITY)}
    worst = max(codes, key=lambda c: rank.get(c, len(SEVERITY)), default=0)
    return worst if worst in rank else 3


@dataclass(frozen=True)
class FleetEntry:
    stack: str
    version: str
    service: str | None = None

    @property
    def label(self) -> str:
        return f"{self.stack}/{self.service}" if self.service else self.stack


class _EntryModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stack: str
    version: str
    service: str | None = None


class _PlanModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rollouts: list[_EntryModel] = Field(min_length=1)


def plan_from_flags(stacks: str, version: str, service: str | None = None) -> list[FleetEntry]:
    names = [name.strip() for name in stacks.split(",")]
    if not stacks.strip() or any(not name for name in names):
        raise InvalidInput(f"--stacks {stacks!r} has an empty stack name",
                           hint="give comma-separated stack names, e.g. --stacks dev-a,dev-b")
    return validate_plan([FleetEntry(stack=name, version=version, service=service)
                          for name in names], source="--stacks")


def plan_from_file(data: Any, *, source: str) -> list[FleetEntry]:
    try:
        plan = validate_config(_PlanModel, data if data is not None else {}, key="")
    except SettingsError as err:
        problems = "; ".join(_problem(str(problem)) for problem in err.problems)
        raise InvalidInput(f"{source} is not a fleet plan: {problems}",
                           hint="write `rollouts:` as a list of {stack, version, service?}"
                           ) from None
    return validate_plan([FleetEntry(stack=e.stack, version=e.version, service=e.service)
                          for e in plan.rollouts], source=source)


def _problem(text: str) -> str:
    text = text.lstrip(".")
    return f"the file{text}" if text.startswith(" ") else text


def validate_plan(entries: list[FleetEntry], *, source: str) -> list[FleetEntry]:
    """Every problem of the plan at once; nothing runs unless all of it is valid."""
    problems: list[str] = []
    seen: set[tuple[str, str | None]] = set()
    for entry in entries:
        for check, value in ((validate_stack_name, entry.stack),
                             (validate_service_name, entry.service)):
            if value is None:
                continue
            try:
                check(value)
            except InvalidInput as err:
                problems.append(f"{entry.label}: {err.message}")
        if not re.match(VERSION_TAG, entry.version):
            problems.append(f"{entry.label}: version {entry.version!r} is not a valid image tag")
        key = (entry.stack, entry.service)
        if key in seen:
            problems.append(f"{entry.label} is listed twice")
        seen.add(key)
    if problems:
        raise InvalidInput(f"{source}: " + "; ".join(problems),
                           hint="stack names are letters, digits, '-', '_', '.'; services DNS "
                           "labels; versions image tags; each stack and service once")
    return entries


class RowStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    SKIPPED = "skipped"


@dataclass
class FleetRow:
    """One rollout of the fleet as its driver last reported it."""

    entry: FleetEntry
    status: RowStatus = RowStatus.QUEUED
    service: str | None = None
    phase: str = ""
    step: int = -1
    total_steps: int = 0
    weight: int = 0
    verdict: str = ""
    exit_code: int | None = None
    outcome: str = ""
    reason: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    step_seconds: list[float] = field(default_factory=list)

    def started(self, now: float | None = None) -> None:
        self.status = RowStatus.RUNNING
        self.started_at = time.time() if now is None else now

    def progressed(self, event: dict[str, Any]) -> None:
        """A progress event of the row's driver (`rollout run --events json`)."""
        for name in ("phase", "verdict"):
            if isinstance(event.get(name), str) and event[name]:
                setattr(self, name, event[name])
        for name in ("step", "total_steps", "weight"):
            if isinstance(event.get(name), int):
                setattr(self, name, event[name])

    def finished(self, exit_code: int, result: dict[str, Any] | None, error: str,
                 now: float | None = None) -> None:
        self.status = RowStatus.DONE
        self.exit_code = exit_code
        self.finished_at = time.time() if now is None else now
        if result:
            self.outcome = str(result.get("outcome", ""))
            self.reason = str(result.get("reason", ""))
            rollout = result.get("rollout") or {}
            self.phase = str(rollout.get("phase", self.phase))
            self.weight = int(rollout.get("weight", self.weight))
            self.step_seconds = [float(s) for s in rollout.get("step_seconds", [])]
        else:
            # Refused before it started (bad input), or failed without a verdict.
            self.outcome = "invalid-input" if exit_code == 2 else "failed"
            ended = (f"was killed by signal {-exit_code}" if exit_code < 0
                     else f"exited {exit_code}")
            self.reason = error or f"the driver {ended} without a result"

    def skipped(self, why: str) -> None:
        self.status = RowStatus.SKIPPED
        self.outcome = "skipped"
        self.reason = why

    @property
    def seconds(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.finished_at or time.time()) - self.started_at

    def to_dict(self) -> dict[str, Any]:
        return {"stack": self.entry.stack, "service": self.service or self.entry.service,
                "version": self.entry.version, "status": str(self.status),
                "outcome": self.outcome, "exit_code": self.exit_code, "reason": self.reason,
                "phase": self.phase, "weight": self.weight, "verdict": self.verdict,
                "seconds": None if self.seconds is None else round(self.seconds, 1),
                "step_seconds": [round(s, 3) for s in self.step_seconds]}


@dataclass(frozen=True)
class FleetResult:
    rows: list[FleetRow]

    @property
    def exit_code(self) -> int:
        return worst_exit_code([row.exit_code for row in self.rows if row.exit_code is not None])

    def to_dict(self) -> dict[str, Any]:
        return {"exit_code": self.exit_code, "rollouts": [row.to_dict() for row in self.rows]}
