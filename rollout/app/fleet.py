"""Rollouts of many stacks at once from one machine: `rollout fleet run`, and `Fleet` in Python.

    from rollout import Fleet, FleetEntry
    result = Fleet([FleetEntry("shop-eu", "v2"), FleetEntry("shop-us", "v2")],
                   max_parallel=4).run()
    result.exit_code  # the worst of its rollouts' (rollout.core.fleet.SEVERITY)

Every rollout is an ordinary `rollout run` of its own stack, in a process of its own, with
its own state, lock and journal; a failure on one never touches another. The whole plan is
checked before anything starts: one bad entry and nothing runs.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rollout.adapters.paths import project_root
from rollout.adapters.rollout_process import Report, RolloutProcess, rollout_run_args
from rollout.app.api import Rollouts
from rollout.core.errors import InvalidInput, RolloutError
from rollout.core.fleet import FleetEntry, FleetResult, FleetRow

OnUpdate = Callable[[list[FleetRow]], None]
# Starts one rollout's driver: (entry, its service, where to report) -> the running process.
Launcher = Callable[[FleetEntry, str, Report], RolloutProcess]
# How often the live view is redrawn when no driver reports anything.
TICK_SECONDS = 1.0


class Fleet:
    def __init__(self, entries: list[FleetEntry], *, project_dir: Path | None = None,
                 program: str | None = None, max_parallel: int = 4,
                 stop_on_failure: bool = False, on_update: OnUpdate | None = None,
                 launcher: Launcher | None = None) -> None:
        if max_parallel < 1:
            raise InvalidInput(f"max_parallel is {max_parallel}",
                               hint="run at least one rollout at a time (--max-parallel 1)")
        if not entries:
            raise InvalidInput("the fleet has no rollouts", hint="name at least one stack")
        self.entries = entries
        self.project_dir = project_dir or project_root()
        self.program = program
        self.max_parallel = max_parallel
        self.stop_on_failure = stop_on_failure
        self.on_update = on_update
        self.launcher = launcher or self._launch
        self.rows = [FleetRow(entry=entry) for entry in entries]
        self._signals = 0

    def check(self) -> None:
        """Each entry names an existing stack and one service of it, each once, and the
        program exists; every problem at once, before anything runs."""
        problems: list[str] = []
        seen: dict[tuple[str, str], str] = {}
        for row in self.rows:
            entry = row.entry
            try:
                rollouts = Rollouts(stack=entry.stack, service=entry.service,
                                    project_dir=self.project_dir, program=self.program)
                row.service = rollouts.service
            except RolloutError as err:
                fix = f" (fix: {err.hint})" if err.hint else ""
                problems.append(f"{entry.label}: {err.message}{fix}")
                continue
            key = (entry.stack, row.service)
            if key in seen:
                problems.append(f"{entry.label} and {seen[key]} are the same rollout "
                                f"(service {row.service} of stack {entry.stack})")
            seen.setdefault(key, entry.label)
        if problems:
            raise InvalidInput("the fleet cannot start: " + "; ".join(problems),
                               hint="fix these entries (or leave them out); nothing was run")

    def run(self) -> FleetResult:
        self.check()
        events: queue.Queue[tuple[int, str, dict[str, Any]]] = queue.Queue()
        running: dict[int, RolloutProcess] = {}
        waiting = list(range(len(self.rows)))
        stopping = ""
        previous = self._trap_signals(running)
        try:
            self._update()
            while waiting or running:
                while waiting and len(running) < self.max_parallel and not stopping:
                    index = waiting.pop(0)
                    running[index] = self._start(index, events)
                    if self._signals and not running[index].signalled:
                        # A signal that came while it started never reached it.
                        running[index].signal(signal.SIGTERM)
                    self._update()
                if self._signals:
                    stopping = stopping or "the fleet was interrupted"
                if stopping and waiting:
                    for index in waiting:
                        self.rows[index].skipped(f"not started: {stopping}")
                    waiting = []
                    self._update()
                if not running:
                    break
                try:
                    index, kind, payload = events.get(timeout=TICK_SECONDS)
                except queue.Empty:
                    self._update()
                    continue
                row = self.rows[index]
                if kind == "event":
                    row.progressed(payload)
                else:
                    row.finished(payload["exit_code"], payload["result"], payload["error"])
                    running.pop(index, None)
                    if row.exit_code and self.stop_on_failure and not stopping:
                        stopping = f"{row.entry.label} ended {row.outcome} (--stop-on-failure)"
                self._update()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return FleetResult(self.rows)

    def _start(self, index: int, events: queue.Queue[tuple[int, str, dict[str, Any]]]
               ) -> RolloutProcess:
        row = self.rows[index]
        process = self.launcher(row.entry, row.service or "",
                                lambda kind, payload: events.put((index, kind, payload)))
        row.started()
        return process

    def _launch(self, entry: FleetEntry, service: str, report: Report) -> RolloutProcess:
        args = rollout_run_args(entry, service=service, project_dir=self.project_dir,
                                program=self.program)
        # Wide enough that no error line of the driver is wrapped.
        env = {**os.environ, "COLUMNS": "1000"}
        return RolloutProcess(args, report=report, env=env, name=f"rollout-{entry.label}")

    def _trap_signals(self, running: dict[int, RolloutProcess]) -> dict[int, Any]:
        """SIGINT and SIGTERM stop new rollouts and are passed on, once each, to every
        running driver, whose own handling then reverts (or, the second time, cancels)."""
        if threading.current_thread() is not threading.main_thread():
            return {}

        def passed_on(signum: int, frame: object) -> None:
            self._signals += 1
            for process in list(running.values()):
                process.signal(signum)

        return {sig: signal.signal(sig, passed_on) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _update(self) -> None:
        if self.on_update is not None:
            self.on_update(self.rows)

