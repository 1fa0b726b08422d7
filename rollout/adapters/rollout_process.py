"""One rollout of a fleet, run as its own `rollout run` process.

A process per rollout, not a thread: each driver keeps its own signal handling, locks and
memory, a crash or a leak in one never reaches the others, and its memory and CPU are its
own to measure. Each starts in a session of its own, so a Ctrl-C at the terminal reaches
only the fleet, which passes one signal on to each driver (a second Ctrl-C passes a second
one: the drivers then cancel their running `pulumi up`, as a driver run by hand does).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rollout.core.fleet import FleetEntry

# (kind, payload): ("event", progress dict) while it runs, then once ("exit", {...}).
Report = Callable[[str, dict[str, Any]], None]


def rollout_run_args(entry: FleetEntry, *, service: str, project_dir: Path,
                     program: str | None) -> list[str]:
    """The driver's command line: `rollout run` with its result and events as JSON."""
    args = [sys.executable, "-m", "rollout.cli", "run", "--stack", entry.stack,
            "--service", service, "--version", entry.version,
            "--project-dir", str(project_dir), "--output", "json", "--json-events"]
    return args + (["--program", program] if program else [])


class RolloutProcess:
    """A running driver process: its progress events and then its exit go to `report`
    (from reader threads)."""

    def __init__(self, args: list[str], *, report: Report,
                 env: dict[str, str] | None = None, name: str = "rollout") -> None:
        self._report = report
        self._errors: deque[str] = deque(maxlen=20)
        self._stdout = ""
        self._process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True, env=env)
        self.signalled = 0
        self._out = threading.Thread(target=self._read_stdout, daemon=True)
        self._out.start()
        threading.Thread(target=self._read_stderr, daemon=True, name=name).start()

    def signal(self, signum: int = signal.SIGTERM) -> None:
        """Passes a signal on to the driver (its own handling decides what it means)."""
        self.signalled += 1
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._process.pid, signum)

    def _read_stdout(self) -> None:
        assert self._process.stdout is not None
        self._stdout = self._process.stdout.read()

    def _read_stderr(self) -> None:
        assert self._process.stderr is not None
        for line in self._process.stderr:
            event = _event(line)
            if event is not None:
                self._report("event", event)
            elif line.strip():
                self._errors.append(line.rstrip())
        code = self._process.wait()
        self._out.join()
        self._report("exit", {"exit_code": code, "result": _result(self._stdout),
                              "error": _error_text(self._errors)})


def _event(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    return data if isinstance(data, dict) and "phase" in data else None


def _result(stdout: str) -> dict[str, Any] | None:
    try:
        data = json.loads(stdout)
    except ValueError:
        return None
    return data if isinstance(data, dict) and "outcome" in data else None


def _error_text(lines: deque[str]) -> str:
    """The driver's error and its fix, as the CLI printed them (without the rest)."""
    text = list(lines)
    for i, line in enumerate(text):
        if line.startswith("error:"):
            return " ".join(part.strip() for part in text[i:i + 4])
    return text[-1].strip() if text else ""
