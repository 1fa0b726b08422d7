"""The Python API: the same rollout the CLI runs, for a team's own automation scripts.

    from rollout import Rollouts
    result = Rollouts(stack="staging", service="checkout").run("v2")
    if result.outcome != "promoted": ...

`service` may be left out on a stack with one canary service; `project_dir` is the Pulumi
project (default: CANARY_PROJECT_DIR, else the current directory's project).
"""

from __future__ import annotations

import importlib.util
import os
import re
import time
from pathlib import Path
from typing import Any

from rollout.adapters.cluster_store import ClusterStore
from rollout.adapters.journal import Journal
from rollout.adapters.lab_layout import Layout, default_kubeconfig
from rollout.adapters.notify import notifiers_for
from rollout.adapters.paths import journal_dir, project_root
from rollout.adapters.prometheus import default_prometheus
from rollout.adapters.providers import provider_for
from rollout.adapters.readback import ClusterReadback
from rollout.adapters.stack import StackAdapter, settings_path, stack_file_values
from rollout.adapters.toolchain import install_provider_plugin, locate, pulumi_environment
from rollout.adapters.webhooks import WebhookCaller
from rollout.app.analyzing import MetricAnalysis
from rollout.app.driver import Driver, Progress, Target
from rollout.app.results import RolloutResult
from rollout.core.errors import InvalidInput, SettingsError
from rollout.core.policy import Policy, analysis_spec, load_policy
from rollout.core.ports import StateStore
from rollout.core.service import ServiceSettings, owned_objects, service_settings
from rollout.core.stack_data import ConfigEntry
from rollout.core.stackconfig import (
    VERSION_TAG,
    Keys,
    choose_service,
    plain_config,
    services_in,
    validate_program,
    validate_stack_name,
)
from rollout.core.state import RolloutState, unfinished_rollout_id


class SystemClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def engine_environment() -> dict[str, str]:
    """The user's Pulumi/Kubernetes settings where given, else the lab's."""
    layout = Layout.default()
    home = Path(os.environ.get("PULUMI_HOME", layout.pulumi_home))
    tools = locate()
    install_provider_plugin(tools, home)
    env = pulumi_environment(tools, pulumi_home=home, backend_dir=layout.pulumi_backend)
    env["KUBECONFIG"] = default_kubeconfig()
    return env


class Rollouts:
    """Everything a person or pipeline does with the rollouts of one service of one stack."""

    def __init__(self, *, stack: str, service: str | None = None,
                 project_dir: Path | None = None, on_progress: Progress | None = None,
                 journal_directory: Path | None = None, program: str | None = None) -> None:
        self.stack_name = validate_stack_name(stack)
        self.project_dir = project_dir or project_root()
        # Run instead of the project's `main` by the language host, in a fresh process per
        # update as `pulumi up` runs a program (never inline in this one: issue 10).
        self.program = program if program is None else _program(program, self.project_dir)
        self.on_progress = on_progress
        self._requested_service = service
        self._service: str | None = None
        self._journal_directory = journal_directory
        self._store: StateStore | None = None
        self._adapter: StackAdapter | None = None
        self._deployed: dict[str, dict[str, Any]] | None = None

    @property
    def settings_file(self) -> Path:
        return settings_path(self.project_dir, self.stack_name)

    @property
    def service_name(self) -> str:
        """The service asked for, or `<service>` before the stack is read."""
        return self._service or self._requested_service or "<service>"

    @property
    def service(self) -> str:
        """The canary service this acts on: the one asked for, or the stack's only one (read
        from the stack file, so a wrong name fails before the CLI starts)."""
        if self._service is None:
            path = self.settings_file
            if not path.is_file():
                self.adapter.stack(create=False)  # a mistyped stack: Pulumi's own message
            self._service = choose_service(services_in(stack_file_values(path)),
                                           self._requested_service, stack=self.stack_name)
        return self._service

    @property
    def journal(self) -> StateStore:
        """The service's rollout state: its `stateStore` setting says where (read from the
        stack file itself, so a busy stack is refused before the CLI loads anything); an
        explicit `journal_directory` always means files there."""
        if self._store is None:
            self._store = self._state_store()
        return self._store

    @property
    def files_directory(self) -> Path:
        """Where the file store keeps this stack's state."""
        return self._journal_directory or journal_dir()

    def _state_store(self) -> StateStore:
        service = self.service
        if self._journal_directory is not None:
            return Journal(self.files_directory, self.stack_name, service)
        plain = stack_file_values(self.settings_file)
        defaults = ServiceSettings.model_fields
        kind = plain.get(f"{service}:stateStore", defaults["state_store"].default)
        if kind == "file":
            return Journal(self.files_directory, self.stack_name, service)
        if kind != "cluster":
            raise InvalidInput(
                f"{service}:stateStore = {kind!r}: must be file or cluster",
                hint=f"fix {self.settings_file}")
        namespace = plain.get(f"{service}:namespace")
        if namespace is None:
            # Set in code, if anywhere: the deployed component says which.
            namespace = self.code_settings().get("namespace", defaults["namespace"].default)
        context = plain.get("kubernetes:context")
        return ClusterStore.from_kubeconfig(
            stack=self.stack_name, namespace=str(namespace), service=service,
            kubeconfig=default_kubeconfig(),
            context=str(context) if context else None)

    @property
    def adapter(self) -> StackAdapter:
        if self._adapter is None:
            env = engine_environment()
            if self.program is not None:
                env["CANARY_PROGRAM"] = self.program
            self._adapter = StackAdapter(stack=self.stack_name, project_dir=self.project_dir,
                                         env=env, pulumi_bin=locate().pulumi)
        return self._adapter

    def deployed_services(self) -> dict[str, dict[str, Any]]:
        """Every service's component outputs at the last update, read from the state once."""
        if self._deployed is None:
            self._deployed = self.adapter.deployed_services()
        return self._deployed

    def deployed(self) -> dict[str, Any]:
        """This service's component outputs at the last update; {} when not deployed."""
        return self.deployed_services().get(self.service) or {}

    def code_settings(self) -> dict[str, Any]:
        """The settings the program gave the service in code, as its last update recorded."""
        return _code_settings(self.deployed())

    def settings(self, config: dict[str, ConfigEntry] | None = None) -> ServiceSettings:
        """The service's settings as the program sees them: stack config plus code."""
        service = self.service
        raw = plain_config(self.adapter.config() if config is None else config, service)
        try:
            return service_settings(service, raw, self.code_settings())
        except SettingsError as err:
            raise InvalidInput(str(err), hint=f"fix {self.settings_file} or use "
                               "`pulumi config set`") from err

    def settings_and_policy(self, config: dict[str, ConfigEntry] | None = None
                            ) -> tuple[ServiceSettings, Policy]:
        settings = self.settings(config)
        return settings, load_policy(settings.analysis, key=f"{self.service}:analysis")

    def check_services(self, config: dict[str, ConfigEntry]) -> None:
        """Refuses a stack where two services would own the same Kubernetes objects."""
        owners: dict[tuple[str, str], str] = {}
        deployed = self.deployed_services()
        for service in services_in(config):
            raw = {**_code_settings(deployed.get(service)), **plain_config(config, service)}
            namespace, app = owned_objects(service, raw)
            other = owners.setdefault((namespace, app), service)
            if other != service:
                raise InvalidInput(
                    f"services {other} and {service} of stack {self.stack_name} both declare "
                    f"app {app} in namespace {namespace}: both would own {app}, {app}-primary "
                    f"and {app}-canary",
                    hint=f"give one of them another {service}:app or namespace in "
                    f"{self.settings_file}")

    def driver(self, *, leave_paused: bool = False) -> Driver:
        # A rollout never creates a stack: a mistyped name must fail and change nothing.
        self.adapter.stack(create=False)
        config = self.adapter.config()
        self.check_services(config)
        settings, policy = self.settings_and_policy(config)
        metric = None
        if not policy.skip_analysis:
            spec = analysis_spec(policy, default_address=default_prometheus())
            metric = MetricAnalysis(spec=spec, provider=provider_for(spec.provider))
        env = engine_environment()
        context = config.get("kubernetes:context")
        return Driver(
            stack=self.adapter,
            analysis=metric,  # type: ignore[arg-type]  # unused when skipAnalysis
            readback=ClusterReadback(app=settings.app, namespace=settings.namespace,
                                     router=settings.router, kubeconfig=env["KUBECONFIG"],
                                     context=context.value if context else None),
            journal=self.journal,
            webhooks=WebhookCaller(policy.webhooks),
            notifiers=notifiers_for(policy),
            clock=SystemClock(),
            policy=policy,
            target=Target(app=settings.app, namespace=settings.namespace,
                          stable_version=settings.stable_version,
                          canary_replicas=policy.canary_replicas or max(settings.replicas, 1)),
            keys=Keys(self.service), stack_name=self.stack_name,
            on_progress=self.on_progress, leave_paused=leave_paused,
        )

    # -- actions ----------------------------------------------------------------------

    def run(self, version: str, *, leave_paused: bool = False) -> RolloutResult:
        if not re.match(VERSION_TAG, version):
            raise InvalidInput(f"{version!r} is not a valid image tag",
                               hint="use letters, digits, '_', '.', '-' (at most 128)")
        self.journal.refuse_if_busy()
        return _result(self.driver(leave_paused=leave_paused).run(version))

    def resume(self) -> RolloutResult:
        self.journal.refuse_if_busy()
        return _result(self.driver().resume())

    def abort(self, reason: str = "aborted by a person") -> RolloutResult | None:
        """Asks a running driver to revert, or reverts an orphaned rollout itself."""
        if self.journal.driver_running():
            self.abort_running(reason)
            return None
        return _result(self.driver().abort(reason))

    def abort_running(self, reason: str, *, by: str = "") -> str:
        """Queues an abort for the running driver to act on; returns the rollout's id."""
        rollout_id = self._require_running("abort")
        self.journal.request("abort", rollout_id=rollout_id, reason=reason, by=by)
        return rollout_id

    def approve(self, *, by: str = "") -> str:
        """Queues an approval for the unfinished rollout; returns its id."""
        rollout_id = self._require_running("approve")
        self.journal.request("approve", rollout_id=rollout_id, by=by)
        return rollout_id

    def promote_now(self, *, by: str = "") -> str:
        rollout_id = self._require_running("promote")
        self.journal.request("promote", rollout_id=rollout_id, by=by)
        return rollout_id

    def status(self) -> RolloutState | None:
        return self.journal.load()

    def history(self) -> list[RolloutState]:
        return self.journal.history()

    def _require_running(self, action: str) -> str:
        return unfinished_rollout_id(self.journal.load(), stack=self.stack_name, action=action)


def _program(entry: str, project_dir: Path) -> str:
    """The entry point, once its module is known to exist (nothing of it is run here)."""
    validate_program(entry)
    top = entry.partition(":")[0].split(".")[0]
    local = (project_dir / f"{top}.py").is_file() or (project_dir / top / "__init__.py").is_file()
    if not local and importlib.util.find_spec(top) is None:
        raise InvalidInput(f"--program {entry}: no module {top} in {project_dir} or installed",
                           hint="name a module of the project (its folder is on the path)")
    return entry


def _code_settings(outputs: dict[str, Any] | None) -> dict[str, Any]:
    code = (outputs or {}).get("codeSettings")
    return dict(code) if isinstance(code, dict) else {}


def _result(state: RolloutState) -> RolloutResult:
    return RolloutResult.of(state)
