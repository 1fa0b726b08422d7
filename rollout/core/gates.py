"""The release gates, pure: what a target stack asks of a version before it is released onto
it, evaluated on plain data of the two stacks (no I/O, the time passed in)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from rollout.core.config_errors import validate_config
from rollout.core.config_model import ConfigModel, Duration
from rollout.core.durations import format_duration, parse_duration
from rollout.core.errors import GateNotMet, TargetBusy
from rollout.core.stackconfig import STACK_NAME
from rollout.core.state import Outcome, RolloutState


def promotion_key(service: str) -> str:
    """Where a service's gate policy sits in its stack config."""
    return f"{service}:promotion"

GATES = ("source-succeeded", "soak", "same-image", "approval", "not-rolled-back-before",
         "target-idle")


def blocked(check: ReleaseCheck) -> GateNotMet:
    """The error of a release the gates refuse, naming every unmet gate and its fix."""
    unmet = check.unmet
    lines = "\n".join(f"  - {g.name}: {g.detail}" for g in unmet)
    busy = any(gate.name == "target-idle" for gate in unmet)
    return (TargetBusy if busy else GateNotMet)(
        f"release of {check.version or '?'} from {check.source} to {check.target} blocked "
        f"by {', '.join(g.name for g in unmet)} (nothing was changed):\n{lines}",
        hint="; ".join(g.fix for g in unmet if g.fix) or None,
        check=check,
    )


# -- the gate policy: `<service>:promotion` of the target stack -------------------------------


class PromotionPolicy(ConfigModel):
    """How a stack accepts releases: from which stack, after what soak, with what approval."""

    source: str | None = Field(default=None, alias="from", pattern=STACK_NAME.pattern)
    soak: Duration = "0s"
    require_approval: bool = False
    allow_previously_rolled_back: bool = False

    @property
    def soak_seconds(self) -> float:
        return parse_duration(self.soak)


PROMOTION_RULES = {"from": "must be a stack name, e.g. staging"}


def load_promotion(raw: Any, *, stack: str = "<stack>", service: str = "<service>"
                   ) -> PromotionPolicy | None:
    """The validated gate policy, or None when the stack sets none; a SettingsError lists
    every problem."""
    if raw is None:
        return None
    key = promotion_key(service)
    return validate_config(
        PromotionPolicy, raw, key=key, rules=PROMOTION_RULES,
        hint=f"fix {key} in stacks/Pulumi.{stack}.yaml, e.g. "
        "{from: staging, soak: 1h, requireApproval: true}")


# -- what promotion knows of one stack (plain data) -----------------------------------------


@dataclass(frozen=True)
class Environment:
    """One service of one stack as promotion sees it: config, what it runs (outputs) and its
    journal."""

    stack: str
    service: str = "<service>"
    image: str | None = None
    stable_version: str | None = None
    deployed_image: str | None = None
    current: RolloutState | None = None
    history: tuple[RolloutState, ...] = ()
    promotion: PromotionPolicy | None = None
    exists: bool = True

    @property
    def reference(self) -> str | None:
        if self.image is None or self.stable_version is None:
            return None
        return f"{self.image}:{self.stable_version}"

    @property
    def in_progress(self) -> RolloutState | None:
        current = self.current
        return current if current is not None and not current.phase.terminal else None

    @property
    def last_rollout(self) -> RolloutState | None:
        return self.in_progress or (self.history[-1] if self.history else None)


def proven(env: Environment) -> RolloutState | None:
    """The finished rollout that made the stack's current stable version stable, if any."""
    for state in reversed(env.history):
        if state.outcome is Outcome.PROMOTED and state.candidate == env.stable_version:
            return state
    return None


# -- the gates (pure) ------------------------------------------------------------------------


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail,
                "fix": self.fix}


@dataclass(frozen=True)
class ReleaseCheck:
    """Every gate of one release, evaluated without side effects."""

    source: str
    target: str
    version: str | None
    image: str | None
    gates: tuple[Gate, ...]
    up_to_date: bool = False

    @property
    def unmet(self) -> list[Gate]:
        return [g for g in self.gates if not g.passed]

    @property
    def ready(self) -> bool:
        return not self.unmet

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "version": self.version,
                "image": self.image, "ready": self.ready, "upToDate": self.up_to_date,
                "gates": [g.to_dict() for g in self.gates]}


def evaluate(source: Environment, target: Environment, policy: PromotionPolicy, *,
             now: float, approval: str | None = None, force: bool = False) -> ReleaseCheck:
    """The gates of releasing the source's stable version onto the target."""
    version = source.stable_version
    proof = proven(source)
    gates = (
        _source_succeeded(source, proof),
        _soak(source, target, policy, proof, now),
        _same_image(source, target),
        _approval(target, policy, version, approval),
        _not_rolled_back(target, policy, version, force),
        _target_idle(target),
    )
    up_to_date = (version is not None and target.stable_version == version
                  and target.deployed_image == target.reference and target.in_progress is None)
    return ReleaseCheck(source=source.stack, target=target.stack, version=version,
                 image=source.reference, gates=gates, up_to_date=up_to_date)


def _source_succeeded(source: Environment, proof: RolloutState | None) -> Gate:
    name, stack, version = "source-succeeded", source.stack, source.stable_version
    if not source.exists or version is None:
        return Gate(name, False, f"stack {stack} does not exist or has no stableVersion",
                    f"create and deploy {stack} first")
    run_it = f"roll it out there first: rollout run -s {stack} -v <version>"
    if proof is None:
        failed = [s for s in source.history if s.candidate == version]
        detail = (f"the last rollout of {version} on {stack} ended {failed[-1].outcome}"
                  if failed else
                  f"{version} is stable on {stack} but no rollout of it succeeded there")
        return Gate(name, False, detail, run_it)
    if source.deployed_image != source.reference:
        return Gate(name, False, f"{stack} declares {source.reference} but runs "
                    f"{source.deployed_image or 'nothing'}",
                    f"finish {stack}: rollout resume -s {stack}, or pulumi up -s {stack}")
    return Gate(name, True, f"{version} was promoted on {stack} at {when(proof.updated_at)} "
                f"(rollout {proof.rollout_id})")


def _soak(source: Environment, target: Environment, policy: PromotionPolicy,
          proof: RolloutState | None, now: float) -> Gate:
    need = policy.soak_seconds
    if proof is None:
        return Gate("soak", False, f"no successful rollout on {source.stack} to measure "
                    f"(soak {policy.soak})", "see source-succeeded")
    live = max(now - proof.updated_at, 0.0)
    detail = f"{proof.candidate} live on {source.stack} for {span(live)} " \
             f"(soak {policy.soak})"
    if live >= need:
        return Gate("soak", True, detail)
    return Gate("soak", False, detail,
                f"wait {span(need - live)} (until {when(proof.updated_at + need)}) "
                f"or lower {promotion_key(target.service)}.soak on {target.stack}")


def _same_image(source: Environment, target: Environment) -> Gate:
    if source.image is not None and source.image == target.image:
        return Gate("same-image", True, f"{target.stack} gets {source.reference}, the image "
                    f"{source.stack} runs")
    return Gate("same-image", False, f"{source.stack} runs {source.image} but {target.stack} "
                f"deploys {target.image}",
                f"set {target.service}:image on {target.stack} to {source.image} "
                "(same repository)")


def _approval(target: Environment, policy: PromotionPolicy, version: str | None,
              approval: str | None) -> Gate:
    if not policy.require_approval:
        return Gate("approval", True, "not required")
    if approval:
        return Gate("approval", True, approval)
    return Gate("approval", False, f"{target.stack} requires a manual approval of {version}",
                f"pass --approve, or record one: rollout approve-release --to {target.stack} "
                f"--version {version}")


def _not_rolled_back(target: Environment, policy: PromotionPolicy, version: str | None,
                     force: bool) -> Gate:
    name = "not-rolled-back-before"
    reverts = [s for s in target.history
               if s.candidate == version and s.outcome is Outcome.ROLLED_BACK]
    if not reverts:
        return Gate(name, True, f"{target.stack} never rolled {version} back")
    last = reverts[-1]
    detail = f"{target.stack} rolled {version} back at {when(last.updated_at)}: {last.reason}"
    if force or policy.allow_previously_rolled_back:
        by = "--force" if force else \
            f"{promotion_key(target.service)}.allowPreviouslyRolledBack"
        return Gate(name, True, f"{detail} (allowed by {by})")
    return Gate(name, False, detail,
                f"release a fixed version, or pass --force to try {version} again")


def _target_idle(target: Environment) -> Gate:
    running = target.in_progress
    if running is None:
        return Gate("target-idle", True, f"no rollout in progress on {target.stack}")
    return Gate("target-idle", False, f"the rollout of {running.candidate} on {target.stack} is "
                f"unfinished ({running.phase}, canary {running.weight}%)",
                f"let it finish, or run rollout resume / rollout abort -s {target.stack}")


def span(seconds: float) -> str:
    """A soak-sized duration: whole seconds under an hour, whole minutes above (45s, 2m5s,
    1h30m, 22h), in the one duration grammar."""
    return format_duration(seconds if seconds < 3600 else round(seconds / 60) * 60)


def is_release_approval(entry: Any) -> bool:
    """Whether a recorded (or hand-edited) release approval has what the approval gate reads:
    `version` and `at` (seconds); both stores skip any other entry."""
    return (isinstance(entry, dict) and isinstance(entry.get("version"), str)
            and isinstance(entry.get("at"), int | float) and not isinstance(entry["at"], bool))


def when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


