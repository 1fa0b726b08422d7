"""In-memory stand-ins for the driver's ports (plain data, no CLI): used by unit tests only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Any

from rollout.core import stack_resources
from rollout.core.errors import SettingsError, StackError
from rollout.core.ports import AnalysisContext, LiveView, StepVerdict
from rollout.core.stack_data import ConfigEntry, UpSummary
from tests.unit.fake_state import STACK_TYPE, after_up, program_state, stack_resource

PROJECT = "demo"
# What the fake stack's one secret config value holds: no credential, a marker that tests look
# for in journals and output (it must never appear there).
SECRET_MARKER = "marker-of-a-secret-value"


def base_config() -> dict[str, ConfigEntry]:
    return {
        f"{PROJECT}:app": ConfigEntry("demo"),
        f"{PROJECT}:image": ConfigEntry("registry.local/demo"),
        f"{PROJECT}:stableVersion": ConfigEntry("v1"),
        f"{PROJECT}:replicas": ConfigEntry("2"),
        # A secret the program takes (it reads every key of the service's namespace).
        f"{PROJECT}:env": ConfigEntry(f'{{"SESSION_SALT": "{SECRET_MARKER}"}}', secret=True),
    }


@dataclass
class FakeStack:
    """Config plus the 'cluster': the config as of the last successful up (`applied`), and
    Pulumi's state as the project's program leaves it (`resources`, as `pulumi stack export`
    lists them), read by the same functions as the real adapter's.

    Deployed at construction unless `deployed=False`: then the state holds only the stack
    until the first successful up. An up the program would refuse (bad settings) fails as
    the real one does, and an up with targets changes only the targeted resources."""

    entries: dict[str, ConfigEntry] = field(default_factory=base_config)
    applied: dict[str, str] = field(default_factory=dict)
    ups: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    fail_when: Callable[[dict[str, str], int], BaseException | None] | None = None
    stack_name: str = "lab"
    project: str = "canary-service"
    resources: list[dict[str, Any]] = field(default_factory=list)
    deployed: InitVar[bool] = True

    def __post_init__(self, deployed: bool) -> None:
        if deployed:
            self.applied = self.plain()
            self.resources = program_state(self.stack_name, self.project, self.entries)
        else:
            self.resources = [stack_resource(self.stack_name, self.project)]

    def plain(self) -> dict[str, str]:
        return {k.split(":", 1)[1]: e.value for k, e in self.entries.items()}

    def config(self) -> dict[str, ConfigEntry]:
        return dict(self.entries)

    def plain_values(self, keys: list[str]) -> dict[str, str | None]:
        return {key: self.entries[key].value if key in self.entries
                and not self.entries[key].secret else None for key in keys}

    def set_config(self, values: dict[str, str]) -> None:
        for key, value in values.items():
            self.entries[key] = ConfigEntry(value)

    def restore_config(self, entries: dict[str, ConfigEntry | None]) -> None:
        for key, entry in entries.items():
            if entry is None:
                self.entries.pop(key, None)
            elif not entry.secret:
                self.entries[key] = entry

    def refresh(self) -> None:
        self.refreshes = getattr(self, "refreshes", 0) + 1

    def interrupt(self) -> bool:
        self.interrupts = getattr(self, "interrupts", 0) + 1
        return self.interruptible

    def up(self, *, targets: list[str] | None = None, message: str | None = None,
           on_event: Any = None, on_output: Any = None) -> UpSummary:
        config = self.plain()
        self.attempts += 1
        if self.fail_when and (err := self.fail_when(config, self.attempts - 1)):
            raise err
        try:
            declared = program_state(self.stack_name, self.project, self.entries)
        except SettingsError as err:
            # The program refuses it before declaring anything: no step has started.
            raise StackError(f"pulumi failed on stack {self.stack_name}: {err}",
                             changed=False) from err
        self.resources = after_up(self.resources, declared, targets)
        self.ups.append({"config": config, "targets": targets, "message": message})
        self.applied = config
        return UpSummary("succeeded", {"update": 1}, 0.25 if targets else 1.0)

    def outputs(self) -> dict[str, Any]:
        top = next(r for r in self.resources if r["type"] == STACK_TYPE)
        return dict(top["outputs"])

    def service_targets(self, service: str, *, types: set[str] | None = None) -> list[str]:
        self.scope_reads = getattr(self, "scope_reads", 0) + 1
        return stack_resources.service_targets(self.resources, service, types)

    def deployed_services(self) -> dict[str, dict[str, Any]]:
        return stack_resources.deployed_services(self.resources)

    def cancel(self) -> None:
        self.cancelled = getattr(self, "cancelled", 0) + 1

    def clear_stale_lock(self) -> bool:
        self.cleared_locks = getattr(self, "cleared_locks", 0) + 1
        return self.stale_lock

    stale_lock: bool = False
    interruptible: bool = False

    def weights_seen(self) -> list[int]:
        return [int(u["config"].get("canaryWeight", "0")) for u in self.ups]

    def unsafe_ups(self) -> list[tuple[dict[str, str], dict[str, str]]]:
        """Ups that changed the canary's pods and its traffic at once, in the unsafe direction.

        Pulumi may apply one update's resource changes in any order, so an up that scales the
        canary to 0 while traffic still goes to it (or sends traffic to a canary it only now
        scales up) can route requests to no pods."""
        def pods(config: dict[str, str]) -> tuple[str, int]:
            return config.get("canaryVersion", ""), int(config.get("canaryReplicas", "0") or 0)

        def weight(config: dict[str, str]) -> int:
            return int(config.get("canaryWeight", "0") or 0)

        found = []
        before = self.plain() if not self.ups else None
        previous = self.ups[0]["config"] if self.ups else before
        for up in self.ups[1:]:
            config = up["config"]
            if pods(config) != pods(previous) and (weight(previous) or weight(config)):
                found.append((previous, config))
            previous = config
        return found


class FailingUp(StackError):
    def __init__(self, message: str = "the canary Deployment did not become available", *,
                 changed: bool = True) -> None:
        super().__init__(f"pulumi failed on stack lab: {message}", changed=changed)


@dataclass
class FakeReadback:
    stack: FakeStack

    def live(self) -> LiveView:
        if not self.stack.applied:  # never deployed: no objects, as the real readback finds
            return LiveView(None, None, None, None)
        weight = int(self.stack.applied.get("canaryWeight", "0"))
        return LiveView(100 - weight, weight, self.stack.applied["stableVersion"],
                        int(self.stack.applied.get("canaryReplicas", "0")))


@dataclass
class ScriptedAnalysis:
    """Answers verdicts in order (True pass, False fail, None inconclusive); then passes."""

    script: list[bool | None] = field(default_factory=list)
    calls: list[AnalysisContext] = field(default_factory=list)
    before: Callable[[int], None] | None = None
    invalid: Exception | None = None

    def validate(self, ctx: AnalysisContext) -> None:
        if self.invalid is not None:
            raise self.invalid

    def analyze(self, ctx: AnalysisContext, judge_state: dict[str, Any]) -> StepVerdict:
        if self.before:
            self.before(len(self.calls))
        self.calls.append(ctx)
        passed = self.script[len(self.calls) - 1] if len(self.calls) <= len(self.script) else True
        if passed is False:
            return StepVerdict(False, 1, "request-success-rate of demo-canary was 90% over 1m, "
                               "below the minimum 99%", [{"metric": "request-success-rate",
                                                          "value": 90.0, "min": 99}])
        if passed is None:
            return StepVerdict(None, 0, "no data for request-success-rate")
        return StepVerdict(True, 0, "all metrics within their ranges")


@dataclass
class FakeClock:
    t: float = 1_000_000.0
    slept: float = 0.0
    on_sleep: Callable[[float], None] | None = None

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds
        self.slept += seconds
        if self.on_sleep:
            self.on_sleep(self.t)


def file_store_project(root: Path, stack: str) -> Path:
    """A project folder whose stack keeps its rollout state in files (`stateStore: file`):
    what unit tests that go through the CLI or the API need, since the default is the
    cluster."""
    (root / "stacks").mkdir(parents=True, exist_ok=True)
    (root / "Pulumi.yaml").write_text("name: canary-service\nruntime: python\n"
                                      "stackConfigDir: stacks\n")
    (root / "stacks" / f"Pulumi.{stack}.yaml").write_text(
        f"config:\n  {PROJECT}:stableVersion: v1\n  {PROJECT}:stateStore: file\n")
    return root
