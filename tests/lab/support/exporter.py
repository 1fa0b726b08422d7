"""A stdlib HTTP exporter of Istio-named metrics at known rates, scraped by the lab's Prometheus."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

# Istio's default bounds for istio_request_duration_milliseconds, trimmed.
BUCKETS = (5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0)
# Real Istio also reports each request from the client side; the queries must ignore these.
SOURCE_FACTOR = 3.0


@dataclass(frozen=True)
class Phase:
    """How a workload serves from `since` seconds after the exporter started.

    `latency` maps a bucket bound (ms) to the share of requests at or under it; a bound not
    listed has the share of the nearest listed bound below it (0 when there is none).
    """

    rps: float
    error_share: float
    latency: Mapping[float, float] = field(default_factory=lambda: {100.0: 1.0})
    since: float = 0.0

    def share_under(self, bound: float) -> float:
        listed = [share for le, share in self.latency.items() if le <= bound]
        return max(listed, default=0.0)


@dataclass(frozen=True)
class Workload:
    """One workload's counters. `restart_at` restarts them from zero (a restarted proxy);
    `bounds` and `le` set the histogram's buckets and how their bounds are spelled ("100" as
    Prometheus 2 clients write it, or "100.0"); `broken` exports NaN counters."""

    namespace: str
    name: str
    phases: tuple[Phase, ...]
    restart_at: float | None = None
    bounds: tuple[float, ...] = BUCKETS
    le: str = "{:g}"
    broken: bool = False

    def totals(self, elapsed: float) -> tuple[float, float, list[float]]:
        """Requests, 5xx and requests per bucket bound counted after `elapsed` seconds."""
        requests = errors = 0.0
        buckets = [0.0] * len(self.bounds)
        since = self.restart_at if self.restart_at is not None and elapsed >= self.restart_at \
            else 0.0
        for phase, seconds in self._durations(since, elapsed):
            served = phase.rps * seconds
            requests += served
            errors += served * phase.error_share
            for i, bound in enumerate(self.bounds):
                buckets[i] += served * phase.share_under(bound)
        return requests, errors, buckets

    def _durations(self, since: float, elapsed: float) -> Iterator[tuple[Phase, float]]:
        ordered = sorted(self.phases, key=lambda phase: phase.since)
        for phase, following in zip(ordered, [*ordered[1:], None], strict=True):
            until = elapsed if following is None else min(following.since, elapsed)
            begin = max(phase.since, since)
            if until > begin:
                yield phase, until - begin


def steady(namespace: str, name: str, rps: float, error_share: float,
           latency: Mapping[float, float] | None = None) -> Workload:
    phase = Phase(rps, error_share) if latency is None else Phase(rps, error_share, latency)
    return Workload(namespace, name, (phase,))


def exposition(workloads: Sequence[Workload], elapsed: float) -> str:
    """The text exposition format of every workload's counters after `elapsed` seconds."""
    requests = ["# TYPE istio_requests_total counter"]
    durations = ["# TYPE istio_request_duration_milliseconds histogram"]
    for workload in workloads:
        total, errors, buckets = workload.totals(elapsed)
        for reporter, factor in (("destination", 1.0), ("source", SOURCE_FACTOR)):
            labels = (f'reporter="{reporter}",destination_workload="{workload.name}",'
                      f'destination_workload_namespace="{workload.namespace}"')
            # As in Envoy, a series appears with its first request, not before.
            for code, count in (("200", total - errors), ("503", errors)):
                if count > 0:
                    value = "NaN" if workload.broken else f"{factor * count:.6f}"
                    requests.append(f'istio_requests_total{{{labels},response_code="{code}"}} '
                                    f"{value}")
            if total == 0:
                continue
            name = "istio_request_duration_milliseconds"
            for bound, count in zip(workload.bounds, buckets, strict=True):
                le = workload.le.format(bound)
                durations.append(f'{name}_bucket{{{labels},le="{le}"}} {factor * count:.6f}')
            durations.append(f'{name}_bucket{{{labels},le="+Inf"}} {factor * total:.6f}')
            durations.append(f"{name}_sum{{{labels}}} {factor * total * 50:.6f}")
            durations.append(f"{name}_count{{{labels}}} {factor * total:.6f}")
    return "\n".join([*requests, *durations]) + "\n"


class Exporter:
    """Serves /metrics on 127.0.0.1 from a thread; counters grow with wall-clock time."""

    def __init__(self, workloads: Sequence[Workload]) -> None:
        self.workloads = tuple(workloads)
        self.name = f"pytest-{uuid.uuid4().hex[:8]}"
        self.started_at = datetime.now(UTC)
        self._started = time.monotonic()
        self.seen_at: datetime | None = None
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                # One instant for the whole answer keeps every ratio between series exact.
                body = exposition(exporter.workloads, exporter.elapsed()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def at(self, seconds: float) -> datetime:
        """The wall-clock time `seconds` after the counters started."""
        return self.started_at + timedelta(seconds=seconds)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def wait_scraped(self, prometheus: str, timeout: float = 30) -> None:
        """Until Prometheus has scraped this exporter successfully at least once."""
        deadline = time.monotonic() + timeout
        query = f'up{{exporter="{self.name}"}} == 1'
        while time.monotonic() < deadline:
            try:
                answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": query},
                                   timeout=5).json()
                if answer["data"]["result"]:
                    self.seen_at = datetime.now(UTC)
                    return
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            time.sleep(0.25)
        raise AssertionError(f"Prometheus did not scrape {self.address} in {timeout:.0f}s")

    def wait_history(self, seconds: float) -> None:
        """Until Prometheus holds `seconds` of this exporter's samples."""
        assert self.seen_at is not None, "call wait_scraped first"
        remaining = (self.seen_at + timedelta(seconds=seconds) - datetime.now(UTC))
        time.sleep(max(remaining.total_seconds(), 0.0))


def register(targets_dir: Path, exporter: Exporter) -> Path:
    """Drops a file_sd target list for the exporter where the lab's Prometheus looks."""
    path = targets_dir / f"{exporter.name}.json"
    partial = path.with_suffix(".partial")
    # Written aside and renamed, so Prometheus never reads half a file.
    partial.write_text(json.dumps([{"targets": [exporter.address],
                                    "labels": {"exporter": exporter.name}}]))
    os.replace(partial, path)
    return path


@contextmanager
def serving(targets_dir: Path, prometheus: str, workloads: Sequence[Workload]
            ) -> Iterator[Exporter]:
    """An exporter Prometheus scrapes until the block ends; its target file is removed after."""
    exporter = Exporter(workloads)
    path = register(targets_dir, exporter)
    try:
        exporter.wait_scraped(prometheus)
        yield exporter
    finally:
        path.unlink(missing_ok=True)
        exporter.close()
