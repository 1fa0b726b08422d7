"""Durable per-stack journal of rollout state, and the one-driver-per-stack lock."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from pathlib import Path
from typing import IO, Any

from rollout.errors import InvalidInput, RolloutError
from rollout.state import RolloutState

_log = logging.getLogger(__name__)


class DriverBusy(RolloutError):
    exit_code = 3


def _fsync_directory(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _safe(stack: str) -> str:
    return stack.replace("/", "__")


class Journal:
    """`<dir>/<stack>.json` holds the state; `<stack>.lock` is held while a driver runs."""

    def __init__(self, directory: Path, stack: str) -> None:
        self.directory = directory
        self.stack = stack
        self.path = directory / f"{_safe(stack)}.json"
        self.lock_path = directory / f"{_safe(stack)}.lock"
        self.control_path = directory / f"{_safe(stack)}.control.json"
        self.history_path = directory / f"{_safe(stack)}.history.jsonl"
        self._lock: IO[str] | None = None

    # -- state ------------------------------------------------------------------------

    def load(self) -> RolloutState | None:
        try:
            return RolloutState.from_dict(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError, KeyError) as err:
            raise InvalidInput(
                f"the rollout journal {self.path} is unreadable: {err}",
                hint="inspect it; remove it only if the stack is known to be as before the rollout",
            ) from err

    def save(self, state: RolloutState) -> None:
        """Atomic and durable: a crash leaves either the old or the new record, never half."""
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        with tmp.open("w") as handle:
            json.dump(state.to_dict(), handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        _fsync_directory(self.directory)

    def archive(self, state: RolloutState) -> bool:
        """Appends a finished rollout to the stack's history (read by status and the release
        gates), durably, once: a rollout already there is not written again. Returns whether
        it was written."""
        if any(past.rollout_id == state.rollout_id for past in self.history()):
            return False
        self.directory.mkdir(parents=True, exist_ok=True)
        created = not self.history_path.exists()
        with self.history_path.open("a") as handle:
            handle.write(json.dumps(state.to_dict(), sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if created:
            _fsync_directory(self.directory)
        return True

    def history(self) -> list[RolloutState]:
        """Finished rollouts, oldest first. A line that cannot be read (a write torn by a crash)
        is skipped with a warning rather than hiding every other rollout."""
        try:
            lines = self.history_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        found = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                found.append(RolloutState.from_dict(json.loads(line)))
            except (ValueError, TypeError, KeyError) as err:
                _log.warning("skipping unreadable line %d of %s (%s)", number,
                             self.history_path, err)
        return found

    def archive_if_missing(self) -> RolloutState | None:
        """Archives a finished journal that never reached history (a crash between the two);
        returns it if it did."""
        state = self.load()
        if state is not None and state.phase.terminal and self.archive(state):
            return state
        return None

    # -- requests from people (approve / promote / abort) -----------------------------

    def request(self, action: str, **data: Any) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.control_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"action": action, "at": time.time(), **data}))
        os.replace(tmp, self.control_path)

    def take_request(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.control_path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        self.control_path.unlink(missing_ok=True)
        return data

    # -- the driver lock --------------------------------------------------------------

    def acquire(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        handle = self.lock_path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise DriverBusy(
                f"another rollout driver is running on stack {self.stack} ({holder})",
                hint="watch it with `rollout status`, or stop it with `rollout abort`",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}")
        handle.flush()
        self._lock = handle

    def release(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def driver_running(self) -> bool:
        """Whether some process holds the lock (without taking it for long)."""
        if self._lock is not None:
            return True
        try:
            self.acquire()
        except DriverBusy:
            return True
        self.release()
        return False
