"""Runs the `pulumi` CLI for the Automation API in a session of its own, cancellable on request.

The SDK's `PulumiCommand` starts `pulumi` in the driver's process group, so a Ctrl-C at the
terminal or a CI cancel (a signal to the whole group) reached `pulumi` directly and cancelled
the update mid-step, before the driver could decide anything. Here `pulumi` and the program it
runs are in a new session: signals go to the driver alone, and the driver asks `pulumi` to
cancel (SIGINT, which the engine handles by stopping cleanly) only when it means to.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Mapping
from typing import IO

from pulumi import automation as auto
from pulumi.automation._cmd import CommandResult, OnOutput
from pulumi.automation.errors import create_command_error


class SessionCommand(auto.PulumiCommand):
    """`PulumiCommand` whose processes run in their own session; `interrupt()` cancels."""

    def __init__(self, root: str) -> None:
        super().__init__(root=root)
        self._running: set[subprocess.Popen[str]] = set()
        self._lock = threading.Lock()

    def run(self, args: list[str], cwd: str, additional_env: Mapping[str, str],
            on_output: OnOutput | None = None, on_error: OnOutput | None = None,
            ) -> CommandResult:
        separator = args.index("--") if "--" in args else len(args)
        if "--non-interactive" not in args[:separator]:
            args = ["--non-interactive", *args]
        env = {**os.environ, **additional_env, "PULUMI_AUTOMATION_API": "true"}
        if os.path.isabs(self.command):
            # Plugins next to the binary come first, as the SDK does.
            env["PATH"] = os.pathsep.join([os.path.dirname(self.command), env.get("PATH", "")])
        out: list[str] = []
        err: list[str] = []
        with subprocess.Popen([self.command, *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, cwd=cwd, env=env, encoding="utf-8",
                              start_new_session=True) as process:
            with self._lock:
                self._running.add(process)
            try:
                readers = [threading.Thread(target=_drain, args=(stream, callback, chunks),
                                            daemon=True)
                           for stream, callback, chunks in ((process.stdout, on_output, out),
                                                            (process.stderr, on_error, err))]
                for reader in readers:
                    reader.start()
                for reader in readers:
                    reader.join()
                code = process.wait()
            finally:
                with self._lock:
                    self._running.discard(process)
        result = CommandResult(stdout="\n".join(out), stderr="\n".join(err), code=code)
        if code != 0:
            raise create_command_error(result)
        return result

    def interrupt(self) -> bool:
        """Sends SIGINT to each running `pulumi` (not its plugins: the engine cancels them
        itself), which finishes the resource operations under way and stops. False when no
        command is running."""
        with self._lock:
            running = [p for p in self._running if p.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGINT)
        return bool(running)


def _drain(stream: IO[str] | None, callback: OnOutput | None, chunks: list[str]) -> None:
    if stream is None:
        return
    for line in iter(stream.readline, ""):
        stripped = line.rstrip()
        if callback:
            callback(stripped)
        chunks.append(stripped)
    stream.close()
