"""The lab's demo HTTP service: one process per version, behaving as its version dictates."""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType


@dataclass(frozen=True)
class Behaviour:
    """How a version answers: a lognormal latency, a share of 5xx and a share of slow requests."""

    median_ms: float = 5.0
    sigma: float = 0.3
    error_rate: float = 0.0
    slow_share: float = 0.0
    slow_ms: tuple[float, float] = (600.0, 1000.0)
    error_code: int = 500


GOOD = Behaviour()
# The one table of the versions the lab's demo app can be: v0, v1, v2: healthy (v0 is where
# the promotion tests' prod starts, before the v1 staging proved). v3: 8% of
# requests fail with 500. v4: 5% of requests take 0.6-1.0 s, so p99 is about 800 ms while
# the median stays at 5 ms. Another version is an error, never a silent copy of v1.
BEHAVIOURS: dict[str, Behaviour] = {
    "v0": GOOD,
    "v1": GOOD,
    "v2": GOOD,
    "v3": Behaviour(error_rate=0.08),
    "v4": Behaviour(slow_share=0.05),
}


class UnknownVersion(ValueError):
    pass


def behaviour_of(version: str) -> Behaviour:
    try:
        return BEHAVIOURS[version]
    except KeyError:
        raise UnknownVersion(
            f"the lab's demo app has no version {version!r}: it knows "
            f"{', '.join(BEHAVIOURS)}; add one to BEHAVIOURS in rollout/lab/demoapp.py, or "
            "roll out one of those") from None


def draw(behaviour: Behaviour, rng: random.Random) -> tuple[int, float]:
    """One request's (status code, latency in seconds)."""
    if rng.random() < behaviour.slow_share:
        latency_ms = rng.uniform(*behaviour.slow_ms)
    else:
        latency_ms = rng.lognormvariate(0.0, behaviour.sigma) * behaviour.median_ms
    status = behaviour.error_code if rng.random() < behaviour.error_rate else 200
    return status, latency_ms / 1000.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: DemoServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; Nagle would hold the body for a delayed ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path.split("?", 1)[0] == "/healthz":
            self._send(200, {"version": self.server.version, "healthy": True})
            return
        status, latency = self.server.next_answer()
        time.sleep(latency)
        body: dict[str, object] = {"version": self.server.version}
        if status >= 500:
            body["error"] = "injected failure"
        self._send(status, body)

    def _send(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Version", self.server.version)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True
    # Lets a dataplane restart a version on a port that a just-stopped process held.
    allow_reuse_address = True

    def __init__(self, port: int, version: str, seed: int | None = None) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.version = version
        self.behaviour = behaviour_of(version)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def next_answer(self) -> tuple[int, float]:
        with self._lock:
            return draw(self.behaviour, self._rng)


def _exit_with_parent(parent: int) -> None:
    # A SIGKILLed data plane cannot stop its children; they notice being reparented instead.
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rollout.lab.demoapp", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--version", required=True)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--exit-with-parent", action="store_true")
    args = parser.parse_args(argv)
    try:
        server = DemoServer(args.port, args.version, args.seed)
    except UnknownVersion as err:
        # The one line on stdout, read by whoever started us (as READY would be).
        print(f"ERROR {err}", flush=True)
        return 2

    def _terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _terminate)
    if args.exit_with_parent:
        threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    # The one line on stdout: whoever started us with --port 0 reads the port from it.
    print(f"READY {server.port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
