"""Stack-per-environment promotion: release the version one stack proved onto the next one."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollout.app.api import RolloutResult, Rollouts
from rollout.app.driver import Progress
from rollout.core.errors import InvalidInput, RolloutError
from rollout.core.gates import (
    Environment,
    PromotionPolicy,
    ReleaseCheck,
    blocked,
    evaluate,
    load_promotion,
    promotion_key,
    when,
)
from rollout.core.ports import StateStore
from rollout.core.stackconfig import VERSION_TAG, plain_config

# -- approvals and the release log (in the target stack's state store) ------------------------


def approval_of(store: StateStore, version: str | None) -> str | None:
    """How the latest recorded approval of releasing `version` reads, if there is one."""
    found = [a for a in store.release_approvals() if a.get("version") == version]
    if not found:
        return None
    latest = found[-1]
    return f"approved by {latest.get('by')} at {when(float(latest.get('at') or 0))}"


def log_release(store: StateStore, check: ReleaseCheck, outcome: str, *, force: bool) -> None:
    """An audit record per release (who forced what is otherwise lost)."""
    store.log_release({"at": time.time(), "outcome": outcome, "forced": force,
                       **check.to_dict()})


# -- reading stacks and running a release ---------------------------------------------------


def read_environment(rollouts: Rollouts) -> Environment:
    """The service's config, deployed outputs and journal on one stack; never creates it."""
    name = rollouts.stack_name
    try:
        rollouts.adapter.stack(create=False)
    except InvalidInput:
        return Environment(stack=name, service=rollouts.service_name, exists=False)
    service = rollouts.service
    journal = {"current": rollouts.status(), "history": tuple(rollouts.history())}
    raw = plain_config(rollouts.adapter.config(), service)
    outputs = rollouts.deployed()
    image = raw.get("image", rollouts.code_settings().get("image"))
    return Environment(
        stack=name, service=service, image=_text(image),
        stable_version=_text(raw.get("stableVersion")),
        deployed_image=_text(outputs.get("stableImage")),
        promotion=load_promotion(raw.get("promotion"), stack=name, service=service), **journal)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def resolve_source(given: str | None, policy: PromotionPolicy, target: str,
                   service: str = "<service>") -> str:
    source = given or policy.source
    key = promotion_key(service)
    if source is None:
        raise InvalidInput(f"no source stack to release onto {target} from",
                           hint=f"pass --from <stack>, or set {key}.from on {target}")
    if policy.source is not None and source != policy.source:
        raise InvalidInput(f"{target} accepts releases from {policy.source}, not from {source}",
                           hint=f"use --from {policy.source}, or change {key}.from "
                           f"on {target}")
    if source == target:
        raise InvalidInput(f"cannot release {target} onto itself", hint="pass another --from")
    return source


@dataclass(frozen=True)
class ReleaseResult:
    check: ReleaseCheck
    rollout: RolloutResult | None

    @property
    def outcome(self) -> str:
        return self.rollout.outcome if self.rollout else "nothing-to-do"

    @property
    def reason(self) -> str:
        if self.rollout:
            return self.rollout.reason
        return f"{self.check.target} already runs {self.check.image}"

    @property
    def exit_code(self) -> int:
        return self.rollout.exit_code if self.rollout else 0

    def to_dict(self) -> dict[str, Any]:
        return {**self.check.to_dict(), "outcome": self.outcome, "reason": self.reason,
                "exit_code": self.exit_code,
                "rollout": self.rollout.state.to_dict() if self.rollout else None}


class Release:
    """Releasing what one stack proved onto another stack of the same project."""

    def __init__(self, *, target: str, source: str | None = None, service: str | None = None,
                 project_dir: Path | None = None, journal_directory: Path | None = None,
                 on_progress: Progress | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._options: dict[str, Any] = {"project_dir": project_dir,
                                         "journal_directory": journal_directory}
        self.target = Rollouts(stack=target, service=service, on_progress=on_progress,
                               **self._options)
        self.source_name = source
        self.clock = clock

    def check(self, *, approve: bool = False, force: bool = False) -> ReleaseCheck:
        target = read_environment(self.target)
        if not target.exists:
            raise InvalidInput(f"stack {target.stack} does not exist",
                               hint=f"deploy it first: pulumi up -s {target.stack}")
        policy = target.promotion or PromotionPolicy()
        name = resolve_source(self.source_name, policy, target.stack, target.service)
        # The same service, one environment earlier.
        source = read_environment(Rollouts(stack=name, service=target.service, **self._options))
        approval = "--approve given" if approve else approval_of(
            self.target.journal, source.stable_version)
        return evaluate(source, target, policy, now=self.clock(), approval=approval,
                        force=force)

    def run(self, *, approve: bool = False, force: bool = False) -> ReleaseResult:
        """Checks every gate, then rolls the version out with the target's own policy."""
        return self.apply(self.check(approve=approve, force=force), force=force)

    def apply(self, check: ReleaseCheck, *, force: bool = False) -> ReleaseResult:
        """Runs a checked release; `force` only goes into the release log."""
        if check.up_to_date:
            return ReleaseResult(check, None)
        if not check.ready:
            raise blocked(check)
        assert check.version is not None  # source-succeeded passed
        try:
            result = self.target.run(check.version)
        except RolloutError as err:
            # The audit line is written however the release ends.
            log_release(self.target.journal, check,
                        f"error (exit {err.exit_code}): {err.message}", force=force)
            raise
        log_release(self.target.journal, check, result.outcome, force=force)
        return ReleaseResult(check, result)


def release(source: str | None, target: str, *, service: str | None = None,
            approve: bool = False, force: bool = False,
            project_dir: Path | None = None, journal_directory: Path | None = None,
            on_progress: Progress | None = None) -> ReleaseResult:
    """Releases the version `source` proved onto `target`; raises GateNotMet when blocked."""
    return Release(target=target, source=source, service=service, project_dir=project_dir,
                   journal_directory=journal_directory,
                   on_progress=on_progress).run(approve=approve, force=force)


def approve_release(target: str, version: str, *, by: str, service: str | None = None,
                    project_dir: Path | None = None,
                    journal_directory: Path | None = None) -> None:
    """Records a person's approval of releasing `version` onto `target`."""
    if not re.match(VERSION_TAG, version):
        raise InvalidInput(f"{version!r} is not a valid image tag",
                           hint="use letters, digits, '_', '.', '-' (at most 128)")
    Rollouts(stack=target, service=service, project_dir=project_dir,
             journal_directory=journal_directory).journal.approve_release(version, by=by)
