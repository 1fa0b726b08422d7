"""Starts lab processes detached, records them by PID, and stops exactly those processes.

A PID file holds the PID and the process's start time (from /proc), so a recycled PID is
never mistaken for ours and nothing is ever stopped by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Running:
    pid: int
    started: str


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime) comes after the parenthesised command name, which may hold spaces.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return fields[19]


class ProcessTable:
    """PID files of the lab's processes under one run directory."""

    def __init__(self, run_dir: Path, log_dir: Path) -> None:
        self.run_dir = run_dir
        self.log_dir = log_dir

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def running(self, name: str) -> Running | None:
        path = self.pid_file(name)
        try:
            pid_text, started = path.read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            return None
        if _start_time(pid) != started:
            return None
        return Running(pid, started)

    def start(self, name: str, argv: list[str], *, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> Running:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file(name).open("ab") as log:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, cwd=cwd, start_new_session=True,
            )
        started = _start_time(proc.pid) or "0"
        self.pid_file(name).write_text(f"{proc.pid} {started}\n")
        return Running(proc.pid, started)

    def stop(self, name: str, *, grace: float = 10.0) -> bool:
        """Stops the named process (and its session); returns whether it was running."""
        running = self.running(name)
        self.pid_file(name).unlink(missing_ok=True)
        if running is None:
            return False
        _signal_group(running.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if _start_time(running.pid) != running.started:
                _reap(running.pid)
                return True
            _reap(running.pid)
            time.sleep(0.1)
        _signal_group(running.pid, signal.SIGKILL)
        _reap(running.pid)
        return True

    def tail_log(self, name: str, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file(name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False
