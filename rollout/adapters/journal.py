"""Durable per-stack journal of rollout state, and the one-driver-per-stack lock."""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import IO, Any

from rollout.core.errors import DriverBusy, InvalidInput, LockLost
from rollout.core.gates import is_release_approval
from rollout.core.state import RolloutState, unfinished_rollout_id

_log = logging.getLogger(__name__)


def _fsync_directory(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _safe(stack: str) -> str:
    return stack.replace("/", "__")


def _json_lines(path: Path) -> list[dict[str, Any]]:
    """The objects of a JSON-lines file, in order; a torn or foreign line is skipped."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    found = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            found.append(entry)
    return found


class Journal:
    """`<dir>/<stack>.<service>.json` holds the state of one service's rollouts (without a
    service, `<stack>.json`); `.lock` next to it is held while a driver runs."""

    def __init__(self, directory: Path, stack: str, service: str | None = None) -> None:
        self.directory = directory
        self.stack = stack
        self.service = service
        self.subject = f"service {service} of stack {stack}" if service else f"stack {stack}"
        # Service names are DNS labels, so `<stack>.<service>` never collides with a stack.
        base = _safe(stack) + (f".{service}" if service else "")
        self.path = directory / f"{base}.json"
        self.lock_path = directory / f"{base}.lock"
        self.requests_path = directory / f"{base}.requests.jsonl"
        self.history_path = directory / f"{base}.history.jsonl"
        self.approvals_path = directory / f"{base}.release-approvals.json"
        self.release_log_path = directory / f"{base}.releases.jsonl"
        self._lock: IO[str] | None = None

    @property
    def where(self) -> str:
        return f"files in {self.directory}"

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
        if self._lock is not None:
            self.check_held()
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
        if self._lock is not None:
            self.check_held()
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

    # -- requests from people (approve / promote / abort) -----------------------------

    def request(self, action: str, *, rollout_id: str | None = None, by: str = "",
                reason: str = "") -> dict[str, Any]:
        """Queues a request for one rollout (by default the unfinished one), durably.

        The queue is append-only: a request is never overwritten by another, and the driver
        records which ones it handled, so each acts once and only on its own rollout."""
        if rollout_id is None:
            rollout_id = unfinished_rollout_id(self.load(), stack=self.stack, action=action)
        entry = {"id": uuid.uuid4().hex[:12], "rollout_id": rollout_id, "action": action,
                 "by": by or _who(), "at": time.time(), "reason": reason}
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.requests_path.open("a") as handle:
            handle.write(json.dumps(entry, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return entry

    def requests(self) -> list[dict[str, Any]]:
        """Every queued request, oldest first; a torn line is skipped."""
        return [entry for entry in _json_lines(self.requests_path)
                if {"id", "rollout_id", "action"} <= set(entry)]

    # -- releases onto this stack ------------------------------------------------------

    def approve_release(self, version: str, *, by: str = "") -> dict[str, Any]:
        entry = {"by": by or _who(), "at": time.time()}
        data = {**self._approvals(), version: entry}
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.approvals_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, self.approvals_path)
        return {"version": version, **entry}

    def _approvals(self) -> dict[str, dict[str, Any]]:
        """version -> {"by", "at"}; an unreadable file or entry counts as no approval."""
        try:
            data = json.loads(self.approvals_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {version: entry for version, entry in data.items()
                if is_release_approval({"version": version, **entry}
                                       if isinstance(entry, dict) else None)}

    def release_approvals(self) -> list[dict[str, Any]]:
        found = [{"version": version, **entry} for version, entry in self._approvals().items()]
        return sorted(found, key=lambda entry: float(entry["at"]))

    def log_release(self, record: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.release_log_path.open("a") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def release_log(self) -> list[dict[str, Any]]:
        return _json_lines(self.release_log_path)

    # -- the driver lock --------------------------------------------------------------

    def acquire(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        handle = self.lock_path.open("a+")
        try:
            self._take(handle)
        except DriverBusy:
            handle.close()
            raise
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

    def _take(self, handle: IO[str]) -> None:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise DriverBusy(
                f"another rollout driver is running on {self.subject} ({holder})",
                hint="watch it with `rollout status`, or stop it with `rollout abort`",
            ) from None

    def refuse_if_busy(self) -> None:
        """Raises `DriverBusy`, naming the holder, when another driver holds the lock: an
        answer in milliseconds, before the seconds it takes to load a stack's settings. The
        driver still takes the lock itself; this is only the early, common-case refusal,
        and it creates nothing."""
        if self._lock is not None or not self.lock_path.exists():
            return
        with self.lock_path.open() as handle:
            self._take(handle)

    def holder(self) -> str | None:
        """What the holder wrote in the lock file ("pid N since T"), or None when no process
        holds the lock."""
        if self._lock is not None:
            return self.lock_path.read_text().strip() or f"pid {os.getpid()}"
        if not self.lock_path.exists():
            return None
        with self.lock_path.open() as handle:
            try:
                self._take(handle)
            except DriverBusy:
                handle.seek(0)
                return handle.read().strip() or "another process"
        return None

    def check_held(self) -> None:
        """Raises `LockLost` unless this journal holds the lock on the stack's lock file as it
        is now: a lock file removed by hand lets a second driver lock a new one."""
        if self._lock is None:
            raise LockLost(f"this driver does not hold the rollout lock of {self.subject}",
                           hint="take it first (`acquire`)")
        mine = os.fstat(self._lock.fileno())
        try:
            now = os.stat(self.lock_path)
        except FileNotFoundError:
            now = None
        if now is None or (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
            raise LockLost(
                f"the lock file {self.lock_path} of {self.subject} was removed or replaced "
                "while this driver held it, so another driver may be running on the stack",
                hint="check `rollout status`; resume with `rollout resume` once only one "
                     "driver runs",
            )

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
