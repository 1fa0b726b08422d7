"""The proxy and metrics HTTP servers, and the command that runs the data plane."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType

from rollout.lab import dataplane
from rollout.lab.dataplane.kubewatch import run_watches
from rollout.lab.dataplane.plane import DataPlane
from rollout.lab.dataplane.routing import PARSERS

log = logging.getLogger("dataplane")


class _NoDelayHandler(BaseHTTPRequestHandler):
    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; Nagle would hold the body for a delayed ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _ProxyHandler(_NoDelayHandler):
    protocol_version = "HTTP/1.1"
    server: ProxyServer

    def _proxy(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, resp_headers, data = self.server.plane.handle(
            self.command, self.path, headers, body, self.client_address[0])
        self.send_response(status)
        for key, value in resp_headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _proxy


class ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], plane: DataPlane) -> None:
        super().__init__(address, _ProxyHandler)
        self.plane = plane


class _MetricsHandler(_NoDelayHandler):
    server: MetricsServer

    def do_GET(self) -> None:
        plane = self.server.plane
        route = self.path.split("?", 1)[0]
        if route == "/metrics":
            self._send(200, plane.telemetry.render(), "text/plain; version=0.0.4")
        elif route == "/state":
            self._send(200, json.dumps(plane.state()), "application/json")
        elif route == "/ready":
            ready = plane.synced.is_set()
            self._send(200 if ready else 503, "ready\n" if ready else "syncing\n", "text/plain")
        else:
            self._send(404, "not found\n", "text/plain")

    def _send(self, status: int, text: str, content_type: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class MetricsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], plane: DataPlane) -> None:
        super().__init__(address, _MetricsHandler)
        self.plane = plane


# -- the command ------------------------------------------------------------------------------


def loopback_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        raise argparse.ArgumentTypeError(f"{text}: the lab binds 127.0.0.1 only")
    return "127.0.0.1", int(port)


def _serve(server: ThreadingHTTPServer, name: str) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name=name, daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rollout.lab.dataplane",
                                     description=dataplane.__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--app", required=True)
    parser.add_argument("--router", choices=sorted(PARSERS), default="istio")
    parser.add_argument("--listen", type=loopback_address, required=True)
    parser.add_argument("--metrics", type=loopback_address, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()

    def _terminate(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    plane = DataPlane(args.app, args.namespace, args.router)
    proxy = ProxyServer(args.listen, plane)
    metrics = MetricsServer(args.metrics, plane)
    _serve(proxy, "proxy")
    _serve(metrics, "metrics")
    run_watches(plane, args.kubeconfig, stop)
    log.info("routing %s/%s (%s) on %s:%d, metrics on %s:%d", args.namespace, args.app,
             args.router, *args.listen, *args.metrics)
    while not stop.wait(1.0):
        plane.backends.revive()
    log.info("stopping")
    proxy.shutdown()
    metrics.shutdown()
    plane.close()
    proxy.server_close()
    metrics.server_close()
    return 0
