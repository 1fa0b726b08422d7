"""Backends: one supervised demo app process per version the pods run, and forwarding to it."""

from __future__ import annotations

import http.client
import logging
import select
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

log = logging.getLogger("dataplane")


class Backend:
    """A running demo app and a keep-alive connection pool to it."""

    def __init__(self, version: str, proc: subprocess.Popen[bytes], port: int) -> None:
        self.version = version
        self.proc = proc
        self.port = port
        self._pool: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def forward(self, method: str, path: str, headers: Mapping[str, str],
                body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes]:
        conn, reused = self._take()
        try:
            return self._exchange(conn, method, path, headers, body)
        except (http.client.HTTPException, OSError):
            conn.close()
            if not reused:
                raise
        # A pooled keep-alive connection may have been closed by the server meanwhile.
        conn, _ = self._take(fresh=True)
        try:
            return self._exchange(conn, method, path, headers, body)
        except (http.client.HTTPException, OSError):
            conn.close()
            raise

    def _exchange(self, conn: http.client.HTTPConnection, method: str, path: str,
                  headers: Mapping[str, str],
                  body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes]:
        conn.request(method, path, body=body, headers=dict(headers))
        resp = conn.getresponse()
        data = resp.read()
        result = resp.status, resp.getheaders(), data
        if resp.will_close:
            conn.close()
        else:
            with self._lock:
                self._pool.append(conn)
        return result

    def _take(self, fresh: bool = False) -> tuple[http.client.HTTPConnection, bool]:
        if not fresh:
            with self._lock:
                if self._pool:
                    return self._pool.pop(), True
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30), False

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, []
        for conn in pool:
            conn.close()
        _stop_process(self.proc)


def _stop_process(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def script_argv(module_file: str, python: str = sys.executable) -> list[str]:
    """Runs a lab script by path; -P keeps the script's own directory off sys.path."""
    return [python, "-P", str(Path(module_file).resolve())]


def start_demoapp(version: str, *, timeout: float = 15.0) -> tuple[subprocess.Popen[bytes], int]:
    """Starts a demo app on a free port it picks itself; returns it and its port."""
    argv = [*script_argv(str(Path(__file__).parents[1] / "demoapp.py")),
            "--port", "0", "--version", version, "--exit-with-parent"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline().decode() if ready else ""
        if not line.startswith("READY "):
            raise RuntimeError(f"demo app {version} did not start (said {line!r})")
        return proc, int(line.split()[1])
    except BaseException:
        _stop_process(proc)
        raise
    finally:
        proc.stdout.close()


class Backends:
    """Keeps one demo app process per version that some pod declares.

    Every pod of a version shares its process: pods differ in name, workload and readiness
    (the data plane's endpoints), not in how their version answers.
    """

    DRAIN_SECONDS = 2.0

    def __init__(self) -> None:
        self._current: dict[str, Backend] = {}
        self._retiring: set[Backend] = set()
        self._wanted: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._apply_lock = threading.Lock()
        self.on_change: Callable[[Mapping[str, int]], None] | None = None
        self._closed = False

    def current(self, version: str) -> Backend | None:
        return self._current.get(version)

    def summary(self) -> dict[str, int]:
        """The port of each version's process."""
        return {v: b.port for v, b in list(self._current.items())}

    def want(self, versions: frozenset[str]) -> None:
        """Runs a process for each of `versions` and retires the others (after a drain)."""
        with self._lock:
            self._wanted = frozenset(versions)
        self._reconcile()

    def _reconcile(self) -> None:
        with self._apply_lock:
            with self._lock:
                if self._closed:
                    return
                wanted = self._wanted
                dead = {v for v, b in self._current.items() if b.proc.poll() is not None}
                stale = set(self._current) - wanted
            for version in sorted(dead):
                old = self._current[version]
                log.warning("demo app %s exited (%s); restarting it", version,
                            old.proc.returncode)
            started = {}
            for version in sorted(wanted - (set(self._current) - dead)):
                try:
                    proc, port = start_demoapp(version)
                except (OSError, RuntimeError) as err:
                    log.error("cannot start the demo app %s: %s", version, err)
                    continue
                started[version] = Backend(version, proc, port)
                log.info("started demo app %s on 127.0.0.1:%d", version, port)
            retire = []
            with self._lock:
                for version in stale | set(started):
                    old = self._current.pop(version) if version in self._current else None
                    if old is not None:
                        retire.append(old)
                self._current.update(started)
            for old in retire:
                if old.version in stale:
                    log.info("stopping demo app %s: no pod runs it", old.version)
            if started or retire:
                self._changed()
            for old in retire:
                self._retire(old)

    def _retire(self, old: Backend) -> None:
        # In-flight requests (up to a second for a slow version) finish on the old process.
        def close() -> None:
            with self._lock:
                self._retiring.discard(old)
            old.close()

        with self._lock:
            self._retiring.add(old)
        timer = threading.Timer(self.DRAIN_SECONDS if old.proc.poll() is None else 0, close)
        timer.daemon = True
        timer.start()

    def revive(self) -> None:
        """Restarts dead processes and retries failed starts."""
        self._reconcile()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.summary())

    def close(self) -> None:
        with self._lock:
            self._closed = True
            backends = [*self._current.values(), *self._retiring]
            self._current, self._retiring = {}, set()
        for backend in backends:
            backend.close()
