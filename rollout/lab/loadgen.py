"""The lab's load generator: a steady open-loop request rate against a loopback URL."""

from __future__ import annotations

import argparse
import contextlib
import http.client
import ipaddress
import json
import random
import signal
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from types import FrameType
from urllib.parse import urlsplit

USER_AGENT = "lab-loadgen/1"


def check_target(url: str) -> tuple[str, int, str]:
    """(host, port, path) of an http URL on the loopback interface; anything else is refused."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "http" or not host:
        raise ValueError(f"{url}: only http://127.0.0.1:<port>/... targets are allowed")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"{url}: the lab's load generator only sends to loopback addresses")
    path = parts.path or "/"
    return host, parts.port or 80, f"{path}?{parts.query}" if parts.query else path


@dataclass
class Stats:
    sent: int = 0
    ok: int = 0
    server_errors: int = 0
    other_status: int = 0
    failed: int = 0
    dropped: int = 0


class LoadGenerator:
    """Sends at fixed instants start + k/rps whatever the responses do, with bounded threads."""

    def __init__(self, target: str, rps: float, *, headers: Mapping[str, str] | None = None,
                 header_share: float = 1.0, workers: int = 16, max_in_flight: int = 64) -> None:
        if rps <= 0:
            raise ValueError("rps must be positive")
        self.host, self.port, self.path = check_target(target)
        self.rps = rps
        self.headers = dict(headers or {})
        self.header_share = header_share
        self.stats = Stats()
        self._workers = workers
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._lock = threading.Lock()
        self._local = threading.local()

    def run(self, duration: float | None = None, stop: threading.Event | None = None,
            report_every: float = 0.0) -> Stats:
        stop = stop or threading.Event()
        interval = 1.0 / self.rps
        start = time.monotonic()
        end = start + duration if duration is not None else float("inf")
        next_report = start + report_every if report_every else float("inf")
        k = 0
        with ThreadPoolExecutor(self._workers, thread_name_prefix="loadgen") as pool:
            while True:
                due = start + k * interval
                if due >= end or stop.wait(max(0.0, due - time.monotonic())):
                    break
                now = time.monotonic()
                if now - due > 1.0:
                    # Paused (e.g. stopped by a debugger): skip what was missed, don't burst.
                    skipped = int((now - due) / interval)
                    self._count("dropped", skipped)
                    k += skipped
                    continue
                if self._slots.acquire(blocking=False):
                    pool.submit(self._send)
                else:
                    self._count("dropped")
                k += 1
                if now >= next_report:
                    print(json.dumps(asdict(self.stats)), flush=True)
                    next_report += report_every
        return self.stats

    def _send(self) -> None:
        try:
            headers = {"User-Agent": USER_AGENT}
            if self.headers and random.random() < self.header_share:
                headers.update(self.headers)
            self._count("sent")
            status = self._request(headers)
            if 200 <= status < 400:
                self._count("ok")
            elif status >= 500:
                self._count("server_errors")
            else:
                self._count("other_status")
        except (http.client.HTTPException, OSError):
            self._count("failed")
        finally:
            self._slots.release()

    def _request(self, headers: dict[str, str]) -> int:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            self._local.conn = conn
        try:
            conn.request("GET", self.path, headers=headers)
            resp = conn.getresponse()
            resp.read()
        except (http.client.HTTPException, OSError):
            conn.close()
            self._local.conn = None
            raise
        if resp.will_close:
            conn.close()
            self._local.conn = None
        return resp.status

    def _count(self, field: str, n: int = 1) -> None:
        with self._lock:
            setattr(self.stats, field, getattr(self.stats, field) + n)


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: use name=value")
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rollout.lab.loadgen", description=__doc__)
    parser.add_argument("--target", required=True, help="http://127.0.0.1:<port>/path")
    parser.add_argument("--rps", type=float, default=20.0)
    parser.add_argument("--duration", type=float, default=None, help="seconds; default forever")
    parser.add_argument("--header", type=_header, action="append", default=[],
                        help="name=value, repeatable (e.g. cookie=canary=always)")
    parser.add_argument("--header-share", type=float, default=1.0,
                        help="share of requests that carry the --header values")
    parser.add_argument("--report-every", type=float, default=10.0)
    args = parser.parse_args(argv)
    try:
        generator = LoadGenerator(args.target, args.rps, headers=dict(args.header),
                                  header_share=args.header_share)
    except ValueError as err:
        parser.error(str(err))
    stop = threading.Event()

    def _terminate(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    stats = generator.run(args.duration, stop, report_every=args.report_every)
    with contextlib.suppress(BrokenPipeError):
        print(json.dumps({"final": True, **asdict(stats)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
