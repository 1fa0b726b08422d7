"""The stack adapter: the only module that touches `pulumi.automation`.

Everything it returns is plain data, so the rest of the driver can be tested without the CLI.

The stack's program is the project's own (`main` in Pulumi.yaml), run by the `pulumi` CLI
through its language host in a fresh process for every operation, exactly as a hand-run
`pulumi up` does. It is never run inline in this process: the Pulumi Python SDK keeps
per-program gRPC channels and coroutines that outlive a failed update, and gRPC shares
connections process-wide by address, so a later update whose engine reused one of those
ports failed at once with "Resource monitor has terminated" (issue 10).

Config is read through the CLI (Pulumi is the one reader that counts) but written straight
into the stack's settings file by `StackFile`: `pulumi config set` rewrites the whole file
(`replicas: 1` becomes `"1"`, comments move), and people commit that file after a release,
so the change they see must be only the lines the driver meant to change (#12 item 13).
"""

from __future__ import annotations

import json
import re
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pulumi import automation as auto

from rollout.adapters.processes import alive
from rollout.adapters.pulumi_command import SessionCommand
from rollout.adapters.stackfile import StackFile
from rollout.core import stack_resources
from rollout.core.errors import InvalidInput, StackError, StackLocked
from rollout.core.stack_data import ConfigEntry, UpSummary
from rollout.core.stackconfig import validate_stack_name

# Steps that change nothing: after an update that started only these, running it again is safe.
_NO_CHANGE_OPS = {"same", "read", "refresh"}
_ANSI = re.compile(r"\x1b\[[0-9;]*m|<\{%[a-z]+%\}>")
EventSink = Callable[[dict[str, Any]], None]


def stack_config_dir(project_dir: Path) -> tuple[Path, str]:
    """Where the `pulumi` CLI keeps the project's stack settings files, and their extension:
    next to the project file, or in its `stackConfigDir` (once called `config`)."""
    for ext in (".yaml", ".yml"):
        project = project_dir / f"Pulumi{ext}"
        if project.is_file():
            break
    else:
        if (project_dir / "Pulumi.json").is_file():
            raise InvalidInput(f"{project_dir / 'Pulumi.json'}: JSON projects are not supported",
                               hint="convert Pulumi.json and its stack files to YAML")
        raise InvalidInput(f"no Pulumi.yaml in {project_dir}",
                           hint="run from the project's directory or set CANARY_PROJECT_DIR")
    try:
        settings = yaml.safe_load(project.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise InvalidInput(f"cannot read {project}: {err}") from err
    folder = settings.get("stackConfigDir") if isinstance(settings, dict) else None
    if not folder and isinstance(settings, dict) and isinstance(settings.get("config"), str):
        folder = settings["config"]
    return project_dir / (folder or ""), ext


def settings_path(project_dir: Path, stack: str) -> Path:
    """A stack's settings file: `Pulumi.<last part of the stack name><ext>` in the project's
    stack config directory."""
    folder, ext = stack_config_dir(project_dir)
    return folder / f"Pulumi.{stack.split('/')[-1]}{ext}"


def stack_file_values(path: Path) -> dict[str, Any]:
    """The plain (not secret) config values of a stack settings file, read directly: for the
    few settings needed before the `pulumi` CLI is worth starting. A missing file has none."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return {}
    except (OSError, yaml.YAMLError) as err:
        raise InvalidInput(f"cannot read {path}: {err}",
                           hint="fix the file's YAML (pulumi config shows what it holds)") from err
    config = data.get("config") if isinstance(data, dict) else None
    if not isinstance(config, dict):
        return {}
    return {str(key): value for key, value in config.items() if not isinstance(value, dict)
            or "secure" not in value}


class StackAdapter:
    """One Pulumi stack of the project in `project_dir`, whose program the CLI runs."""

    def __init__(
        self,
        *,
        stack: str,
        project_dir: Path,
        env: dict[str, str],
        pulumi_bin: Path,
    ) -> None:
        self.stack_name = validate_stack_name(stack)
        self.project_dir = project_dir
        self._env = env
        self._pulumi_bin = pulumi_bin
        self._stack: auto.Stack | None = None
        self._command: SessionCommand | None = None
        self._exported: list[dict[str, Any]] | None = None

    # -- selection --------------------------------------------------------------------

    def _workspace(self) -> auto.LocalWorkspace:
        self._command = SessionCommand(root=str(self._pulumi_bin.parent.parent))
        return auto.LocalWorkspace(
            work_dir=str(self.project_dir), env_vars=self._env,
            pulumi_home=self._env.get("PULUMI_HOME"), pulumi_command=self._command,
        )

    def stack(self, *, create: bool = True) -> auto.Stack:
        if self._stack is None:
            workspace = self._workspace()
            with _translated(self.stack_name):
                if create:
                    self._stack = auto.Stack.create_or_select(self.stack_name, workspace)
                else:
                    self._stack = auto.Stack.select(self.stack_name, workspace)
        return self._stack

    @property
    def project_name(self) -> str:
        return self.stack().workspace.project_settings().name

    # -- config -----------------------------------------------------------------------

    def config(self) -> dict[str, ConfigEntry]:
        """The stack's config as plain data (keys with their project prefix)."""
        with _translated(self.stack_name):
            raw = self.stack().get_all_config()
        return {key: ConfigEntry(value.value, bool(value.secret)) for key, value in raw.items()}

    def set_config(self, values: dict[str, str]) -> None:
        """Sets plain keys in the stack's settings file, changing no other line of it."""
        if values:
            # Selected (or created) first, as before: `pulumi stack init` rewrites the file.
            self.stack()
            self.settings_file().set(values)

    def remove_config(self, keys: list[str]) -> None:
        if keys:
            self.stack()
            self.settings_file().remove(keys)

    def plain_values(self, keys: list[str]) -> dict[str, str | None]:
        """These plain keys' values (None: not set), from the settings file when it says so
        unambiguously (no CLI run: 0.3 s a step), else from `pulumi config`."""
        found = self.settings_file().plain_values(keys)
        if found is None:
            entries = self.config()
            found = {key: entries[key].value if key in entries and not entries[key].secret
                     else None for key in keys}
        return found

    def settings_file(self) -> StackFile:
        """The file the CLI reads this stack's config from."""
        return StackFile(settings_path(self.project_dir, self.stack_name))

    def restore_config(self, entries: dict[str, ConfigEntry | None]) -> None:
        """Puts these plain keys back as given (None: removed); every other key, and every
        secret, is left alone."""
        current = self.config()
        changed = {k: e.value for k, e in entries.items()
                   if e is not None and not e.secret and current.get(k) != ConfigEntry(e.value)}
        gone = [k for k, e in entries.items() if e is None and k in current
                and not current[k].secret]
        self.set_config(changed)
        self.remove_config(gone)

    # -- operations -------------------------------------------------------------------

    def up(self, *, targets: list[str] | None = None, message: str | None = None,
           on_event: EventSink | None = None, on_output: Callable[[str], None] | None = None,
           ) -> UpSummary:
        """`pulumi up` of the stack, as the Automation API runs it, but without the three CLI
        runs `Stack.up` adds after every update (`stack output` twice, `stack history`): about
        a second a step that the driver never uses. The change summary comes from the
        engine's own summary event; `on_event` gets the events once the update has ended."""
        stack = self.stack()
        workspace = stack.workspace
        self._exported = None
        steps = _StepRecorder(on_event)
        changes: dict[str, int] = {}
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="rollout-up-") as tmp, \
                _translated(self.stack_name, steps):
            log = Path(tmp) / "events.jsonl"
            args = ["up", "--yes", "--skip-preview", "--suppress-outputs", "--exec-kind",
                    "auto.local", "--event-log", str(log), "--stack", stack.name]
            if message:
                args += ["--message", message]
            for target in targets or []:
                args += ["--target", target]
            env = {"PULUMI_DEBUG_COMMANDS": "true", **workspace.env_vars}
            if workspace.pulumi_home is not None:
                env["PULUMI_HOME"] = workspace.pulumi_home
            try:
                workspace.pulumi_command.run(args, workspace.work_dir, env, on_output)
            finally:
                # Read before an error is translated: it says whether the update changed
                # anything, and which resource failed.
                for event in _events(log):
                    steps(event)
                    if event.summary_event is not None:
                        changes = {str(op.value if hasattr(op, "value") else op): n
                                   for op, n in (event.summary_event.resource_changes
                                                 or {}).items()}
        return UpSummary(result="succeeded", changes=changes,
                         seconds=time.monotonic() - started)

    def preview(self, *, on_output: Callable[[str], None] | None = None) -> dict[str, int]:
        with _translated(self.stack_name):
            result = self.stack().preview(on_output=on_output)
        return {str(k): v for k, v in result.change_summary.items()}

    def refresh(self) -> None:
        self._exported = None
        with _translated(self.stack_name):
            self.stack().refresh(suppress_outputs=True)

    def destroy(self, *, remove: bool = False) -> None:
        self._exported = None
        with _translated(self.stack_name):
            self.stack().destroy(suppress_outputs=True)
            if remove:
                self.stack().workspace.remove_stack(self.stack_name)

    def outputs(self) -> dict[str, Any]:
        with _translated(self.stack_name):
            return {k: v.value for k, v in self.stack().outputs().items()}

    def interrupt(self) -> bool:
        """Asks the running `pulumi` command, if any, to cancel cleanly (from any thread)."""
        return self._command.interrupt() if self._command is not None else False

    def cancel(self) -> None:
        """Clears a lock left by a killed update (file backend: removes the lock file)."""
        self._exported = None
        with _translated(self.stack_name):
            self.stack().cancel()

    def clear_stale_lock(self) -> bool:
        """Removes the stack's lock when every holder is a dead process on this host.

        Only file backends record the holder's PID; with other backends nothing is cleared.
        """
        url = self._env.get("PULUMI_BACKEND_URL", "")
        if not url.startswith("file://"):
            return False
        locks = (Path(url.removeprefix("file://")) / ".pulumi" / "locks" / "organization"
                 / self.project_name / self.stack_name.split("/")[-1])
        holders = []
        for path in locks.glob("*.json"):
            try:
                holders.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                return False
        if not holders:
            return False
        host = socket.gethostname()
        if any(h.get("hostname") != host or alive(int(h.get("pid", 0))) for h in holders):
            return False
        self.cancel()
        return True

    def _resources(self) -> list[dict[str, Any]]:
        """The state's resources, exported once until this adapter changes the stack (an
        export costs 0.5 s for a small stack, 1.4 s for 450 resources)."""
        if self._exported is None:
            with _translated(self.stack_name):
                deployment = self.stack().export_stack().deployment or {}
            self._exported = list(deployment.get("resources", []))
        return self._exported

    def service_targets(self, service: str, *, types: set[str] | None = None) -> list[str]:
        return stack_resources.service_targets(self._resources(), service, types)

    def deployed_services(self) -> dict[str, dict[str, Any]]:
        return stack_resources.deployed_services(self._resources())


class _StepRecorder:
    """Watches an update's engine events: which steps it started, and its error messages."""

    def __init__(self, forward: EventSink | None) -> None:
        self._forward = forward
        self.changed = False
        self.errors: list[str] = []

    def __call__(self, event: auto.EngineEvent) -> None:
        if event.resource_pre_event is not None:
            meta = event.resource_pre_event.metadata
            if meta.op.value not in _NO_CHANGE_OPS and not _state_only(meta.type):
                self.changed = True
        failed = event.res_op_failed_event
        if failed is not None and not _state_only(failed.metadata.type):
            self.changed = True
        if event.diagnostic_event is not None and event.diagnostic_event.severity == "error":
            self.errors.append(_plain(event.diagnostic_event.message))
            if self._forward:
                self._forward({"kind": "error", "message": event.diagnostic_event.message})
        if self._forward and event.resource_outputs_event is not None:
            meta = event.resource_outputs_event.metadata
            self._forward({"kind": "resource", "op": str(meta.op.value), "urn": meta.urn,
                           "type": meta.type})


def _events(log: Path) -> list[auto.EngineEvent]:
    """The engine events `pulumi --event-log` wrote, one JSON object a line; a line cut off by
    a killed engine is skipped."""
    events = []
    try:
        lines = log.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            events.append(auto.EngineEvent.from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            continue
    return events


def _state_only(resource_type: str) -> bool:
    """The stack itself and providers live only in Pulumi's state; steps on them touch no
    cluster object."""
    return resource_type.startswith("pulumi:")


class _translated:
    """Maps Automation API errors onto the project's error tree, once, at this boundary."""

    def __init__(self, stack: str, steps: _StepRecorder | None = None) -> None:
        self.stack = stack
        self.steps = steps

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: Any
    ) -> bool:
        if err is None or not isinstance(err, auto.errors.CommandError):
            return False
        if isinstance(err, auto.errors.ConcurrentUpdateError):
            raise StackLocked(
                f"stack {self.stack} is locked by another update",
                hint="wait for it to finish; if its driver was killed, run `rollout resume`",
            ) from err
        if isinstance(err, auto.errors.StackNotFoundError):
            raise InvalidInput(
                f"stack {self.stack} does not exist",
                hint=f"create it with `pulumi stack init {self.stack}` or check the name",
            ) from err
        lines = engine_errors(str(err)) or (self.steps.errors if self.steps else [])
        reason = "; ".join(lines) if lines else _tail(str(err), 3)
        # Without engine events nothing says the update changed nothing, so assume it did.
        changed = self.steps.changed if self.steps else True
        raise StackError(f"pulumi failed on stack {self.stack}: {reason}",
                         changed=changed) from err


_MONITOR_GONE = "Resource monitor has terminated, shutting down"
_GENERIC = {"update failed", "preview failed", "destroy failed", "refresh failed"}


def engine_errors(output: str, *, limit: int = 600) -> list[str]:
    """The engine's error lines from a failed command's output, each with its resource.

    Pulumi prints them under "Diagnostics:" as `  <type> (<name>):` then `    error: ...`,
    a message sometimes continuing on further lines; the summary lines around them and the
    generic "update failed" are left out.
    """
    found: list[str] = []
    resource = ""
    current: list[str] | None = None

    def close() -> None:
        if current:
            text = " ".join(part for part in current if part)
            if text not in _GENERIC:
                entry = f"{resource}: {text}" if resource else text
                if len(entry) > limit:
                    entry = entry[: limit - 1] + "…"
                if entry not in found:
                    found.append(entry)

    for raw in _plain(output).splitlines():
        line = raw.rstrip()
        header = re.match(r"^  (\S+) \((.+)\):$", line)
        error = re.match(r"^\s*error: (.*)$", line)
        if header or error or not line.strip():
            close()
            current = None
        if header:
            kind = header.group(1).rsplit(":", 1)[-1]
            resource = f"{kind} {header.group(2)}"
        elif error:
            current = [error.group(1).strip()]
        elif current is not None and raw.startswith("    "):
            current.append(line.strip())
        elif current is not None:
            close()
            current = None
    close()
    # The program's own follow-on once the engine has stopped; it says nothing by itself.
    causes = [entry for entry in found if not entry.endswith(_MONITOR_GONE)]
    return causes or found


def _plain(text: str) -> str:
    return _ANSI.sub("", text)


def _tail(text: str, lines: int = 25) -> str:
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])
