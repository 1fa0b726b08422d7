"""What the dashboard shows, read and never written: each stack's canary services with their
versions, live weights and rollouts (stack files, state stores, the cluster, Prometheus), and
the dashboard's actions, which go through the same requests as `rollout approve|promote|abort`.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollout.adapters.lab_layout import default_kubeconfig
from rollout.adapters.prometheus import default_prometheus, prometheus_fetcher
from rollout.adapters.readback import ClusterReadback
from rollout.adapters.stack import settings_path, stack_file_values
from rollout.app.api import Rollouts
from rollout.app.environments import stack_files
from rollout.app.snapshot import Snapshot, snapshot
from rollout.app.timeline import Fetcher, build_report, report_name, series_for
from rollout.core.errors import InvalidInput, RolloutError
from rollout.core.policy import analysis_spec, load_policy
from rollout.core.ports import LiveView
from rollout.core.service import ServiceSettings, service_settings
from rollout.core.stackconfig import (
    decode,
    services_in,
    validate_service_name,
    validate_stack_name,
)
from rollout.core.state import RolloutState

LiveReader = Callable[[ServiceSettings, str | None], LiveView]
"""(the service's settings, the stack's kubernetes:context) -> its live weights and version."""

ACTIONS = ("approve", "promote", "abort")


class UnknownService(InvalidInput):
    """A stack or service the project does not have (a web page answers 404)."""


def cluster_live(settings: ServiceSettings, context: str | None) -> LiveView:
    return _readback(settings.app, settings.namespace, settings.router, default_kubeconfig(),
                     context).live()


@functools.lru_cache(maxsize=256)
def _readback(app: str, namespace: str, router: str, kubeconfig: str, context: str | None
              ) -> ClusterReadback:
    # One client per service and cluster, not one per read (a read is every second).
    return ClusterReadback(app=app, namespace=namespace, router=router, kubeconfig=kubeconfig,
                           context=context, timeout=3.0)


@dataclass(frozen=True)
class ServiceView:
    """One canary service of one stack, as the overview row and the page header show it."""

    stack: str
    service: str
    stable_version: str | None = None
    running_version: str | None = None
    live_primary: int | None = None
    live_canary: int | None = None
    rollout: Snapshot | None = None
    last_outcome: str | None = None
    problems: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "service": self.service,
                "stableVersion": self.stable_version, "runningVersion": self.running_version,
                "live": None if self.live_primary is None else
                {"primary": self.live_primary, "canary": self.live_canary},
                "rollout": self.rollout.to_dict() if self.rollout else None,
                "lastOutcome": self.last_outcome, "problems": list(self.problems)}


@dataclass
class _Cached:
    stamp: float
    settings: ServiceSettings | None
    problem: str | None
    context: str | None
    rollouts: Rollouts


class Board:
    """The dashboard's reads of one Pulumi project (its `stacks/`), and its actions."""

    def __init__(self, project_dir: Path, *, journal_directory: Path | None = None,
                 reports_dir: Path | None = None, live: LiveReader = cluster_live,
                 fetcher: Callable[[str], Fetcher] = prometheus_fetcher,
                 clock: Callable[[], float] = time.time) -> None:
        self.project_dir = project_dir
        self.reports_dir = reports_dir or project_dir / "reports"
        self._journal_directory = journal_directory
        self._live = live
        self._fetcher = fetcher
        self._clock = clock
        self._cache: dict[tuple[str, str], _Cached] = {}
        self._lock = threading.Lock()

    # -- reads ----------------------------------------------------------------------------

    def services(self) -> list[tuple[str, str]]:
        """(stack, service) of every canary service of every stack file, in pipeline order."""
        return [(stack, service) for stack, services in self._stacks() for service in services]

    def overview(self) -> list[ServiceView]:
        """Every service of every stack; a stack file that cannot be read is a row that says
        why (service "-"), and the others are still shown."""
        views = []
        for stack, services in self._stacks(keep_broken=True):
            if isinstance(services, RolloutError):
                views.append(ServiceView(stack=stack, service="-",
                                         problems=(_problem("stack file", services),)))
                continue
            views += [self.service_view(stack, service) for service in services]
        return views

    def _stacks(self, *, keep_broken: bool = False) -> list[tuple[str, Any]]:
        found: list[tuple[str, Any]] = []
        for stack in stack_files(self.project_dir):
            try:
                found.append((stack, services_in(
                    stack_file_values(settings_path(self.project_dir, stack)))))
            except RolloutError as err:
                if not keep_broken:
                    raise
                found.append((stack, err))
        return found

    def service_view(self, stack: str, service: str) -> ServiceView:
        entry = self._entry(stack, service)
        values = stack_file_values(settings_path(self.project_dir, stack))
        problems = [entry.problem] if entry.problem else []
        current, last = self._rollouts_of(entry, problems)
        live = self._read_live(entry, problems)
        shown = current if current is not None else last
        return ServiceView(
            stack=stack, service=service,
            stable_version=_text(values.get(f"{service}:stableVersion")),
            running_version=live.primary_version if live else None,
            live_primary=live.primary_weight if live else None,
            live_canary=live.canary_weight if live else None,
            rollout=snapshot(shown, now=self._clock()) if shown else None,
            last_outcome=str(last.outcome) if last and last.outcome else None,
            problems=tuple(problems))

    def history(self, stack: str, service: str, limit: int = 20) -> list[dict[str, Any]]:
        entry = self._entry(stack, service)
        past = entry.rollouts.history()[-limit:]
        return [{**snapshot(state, now=self._clock()).to_dict(),
                 "report": self.report_path(state)} for state in reversed(past)]

    def report_path(self, state: RolloutState) -> str | None:
        """The report file's name under `reports_dir`, when one was written."""
        name = report_name(state, "html")
        return name if (self.reports_dir / name).is_file() else None

    def timeline(self, stack: str, service: str) -> dict[str, Any] | None:
        """The current (else the last) rollout's report data with live metric series."""
        entry = self._entry(stack, service)
        problems: list[str] = []
        current, last = self._rollouts_of(entry, problems)
        state = current if current is not None else last
        if state is None or entry.settings is None:
            return None
        fetch = self._fetcher(self._prometheus(entry.settings))
        end = None if state.phase.terminal else self._clock()
        series, notes = series_for(state, fetch=fetch, app=entry.settings.app,
                                   namespace=entry.settings.namespace, end=end)
        return build_report(state, series=series, app=entry.settings.app,
                            namespace=entry.settings.namespace, notes=notes)

    # -- actions (the CLI's own requests) --------------------------------------------------

    def act(self, stack: str, service: str, action: str, *, reason: str = "") -> str:
        """Queues approve/promote/abort for the running rollout; returns its id. An abort
        only asks a running driver: with none running, `rollout abort` reverts (it runs
        `pulumi up`, which a web request does not)."""
        if action not in ACTIONS:
            raise InvalidInput(f"unknown action {action!r}", hint="one of " + ", ".join(ACTIONS))
        rollouts = self._entry(stack, service).rollouts
        by = "dashboard"
        if action == "approve":
            return rollouts.approve(by=by)
        if action == "promote":
            return rollouts.promote_now(by=by)
        if not rollouts.journal.driver_running():
            raise InvalidInput(
                f"no driver is running the rollout on {stack} ({service}), so nothing would "
                "act on an abort request",
                hint=f"run `rollout abort --stack {stack} --service {service}`, which reverts "
                "it itself")
        return rollouts.abort_running(reason or "aborted from the dashboard", by=by)

    # -- the pieces ------------------------------------------------------------------------

    def _entry(self, stack: str, service: str) -> _Cached:
        try:
            validate_stack_name(stack)
            validate_service_name(service)
        except InvalidInput as err:
            raise UnknownService(err.message, hint=err.hint) from None
        path = settings_path(self.project_dir, stack)
        try:
            stamp = path.stat().st_mtime
        except FileNotFoundError:
            raise UnknownService(f"no stack {stack} in {self.project_dir}",
                               hint="pick one of the stacks the overview lists") from None
        if service not in services_in(stack_file_values(path)):
            raise UnknownService(f"stack {stack} has no canary service {service}",
                               hint="pick one of the services the overview lists")
        with self._lock:
            cached = self._cache.get((stack, service))
            if cached is None or cached.stamp != stamp:
                cached = self._load(stack, service, stamp)
                self._cache[(stack, service)] = cached
            return cached

    def _load(self, stack: str, service: str, stamp: float) -> _Cached:
        rollouts = Rollouts(stack=stack, service=service, project_dir=self.project_dir,
                            journal_directory=self._journal_directory)
        values = stack_file_values(settings_path(self.project_dir, stack))
        prefix = f"{service}:"
        # As the program reads them: structured values may be JSON text (`pulumi config set`).
        plain = {k[len(prefix):]: decode(v) if isinstance(v, str) else v
                 for k, v in values.items() if k.startswith(prefix)}
        context = values.get("kubernetes:context")
        try:
            code = rollouts.code_settings() if _needs_code(plain) else {}
            settings: ServiceSettings | None = service_settings(service, plain, code)
            problem = None
        except (RolloutError, ValueError) as err:
            settings, problem = None, (_problem("settings", err) if isinstance(err, RolloutError)
                                       else f"settings: {err}")
        return _Cached(stamp, settings, problem, str(context) if context else None, rollouts)

    def _rollouts_of(self, entry: _Cached, problems: list[str]
                     ) -> tuple[RolloutState | None, RolloutState | None]:
        try:
            current = entry.rollouts.status()
            past = entry.rollouts.history()
        except RolloutError as err:
            problems.append(_problem("rollout state", err))
            return None, None
        last = past[-1] if past else None
        if current is not None and current.phase.terminal:
            last = current if last is None or last.rollout_id != current.rollout_id else last
            current = None
        return current, last

    def _read_live(self, entry: _Cached, problems: list[str]) -> LiveView | None:
        if entry.settings is None:
            return None
        try:
            live = self._live(entry.settings, entry.context)
        except RolloutError as err:
            problems.append(_problem("live objects", err))
            return None
        return None if live.primary_weight is None else live

    def _prometheus(self, settings: ServiceSettings) -> str:
        try:
            policy = load_policy(settings.analysis)
            return analysis_spec(policy, default_address=default_prometheus()).provider.address
        except (RolloutError, ValueError):
            return default_prometheus()


def _problem(what: str, err: RolloutError) -> str:
    return f"{what}: {err.message}" + (f" (fix: {err.hint})" if err.hint else "")


def _needs_code(plain: dict[str, Any]) -> bool:
    """The program may set what the stack file leaves out; then its last update says what."""
    return not {"app", "namespace", "router"} <= set(plain)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
