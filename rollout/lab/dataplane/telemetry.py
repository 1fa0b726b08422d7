"""Telemetry: Istio's standard metrics and the lab's route gauges, in Prometheus text."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from rollout.lab.dataplane.routing import RoutingTable, default_table

# Istio's default buckets for istio_request_duration_milliseconds.
BUCKETS_MS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
              300000, 600000, 1800000, 3600000)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass
class _Series:
    count: int = 0
    total_ms: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS_MS))


# One series of Istio's metrics: reporter, destination service, workload and version,
# response code, source workload, response flags.
SeriesKey = tuple[str, str, str, str, str, str, str]

SOURCE, DESTINATION = "source", "destination"
UNKNOWN = "unknown"


class Telemetry:
    """Counts requests as Istio's two reporters do: the client's proxy ("source") counts each
    request once, with its final code and Envoy's response flags; the destination's proxy
    counts each attempt that reached a pod. Plus the lab's route gauges."""

    def __init__(self, app: str, namespace: str) -> None:
        self.app = app
        self.namespace = namespace
        self._lock = threading.Lock()
        self._series: dict[SeriesKey, _Series] = {}
        self._unrouted: dict[tuple[str, str], int] = {}
        self._table = default_table(app)
        self._applied_at = 0.0
        self._backends: dict[str, int] = {}

    def record(self, reporter: str, *, service: str, workload: str, version: str, code: int,
               duration_ms: float, source: str, flags: str = "-") -> None:
        """One request (source) or attempt (destination). `service` is the Service it was
        routed to (the app's own for a request no route took); `workload` and `version` are
        the pod's, or "unknown" when no pod answered."""
        key = (reporter, service, workload, version, str(code), source, flags)
        with self._lock:
            series = self._series.setdefault(key, _Series())
            series.count += 1
            series.total_ms += duration_ms
            for i, bound in enumerate(BUCKETS_MS):
                if duration_ms <= bound:
                    series.buckets[i] += 1
                    break

    def unrouted(self, reason: str, destination: str) -> None:
        with self._lock:
            key = (reason, destination)
            self._unrouted[key] = self._unrouted.get(key, 0) + 1

    def route_applied(self, table: RoutingTable) -> None:
        with self._lock:
            self._table = table
            self._applied_at = time.time()

    def backends_changed(self, backends: Mapping[str, int]) -> None:
        with self._lock:
            self._backends = dict(backends)

    def _istio_labels(self, key: SeriesKey) -> list[tuple[str, str]]:
        reporter, service, workload, version, code, source, flags = key
        ns = self.namespace
        known = workload != UNKNOWN
        app = self.app if known else UNKNOWN
        return [
            ("reporter", reporter), ("source_workload", source),
            ("source_workload_namespace", ns if source != "unknown" else "unknown"),
            ("destination_workload", workload),
            ("destination_workload_namespace", ns if known else "unknown"),
            ("destination_app", app), ("destination_version", version),
            ("destination_service", f"{service}.{ns}.svc.cluster.local"),
            ("destination_service_name", service), ("destination_service_namespace", ns),
            ("destination_canonical_service", app),
            ("destination_canonical_revision", version),
            ("request_protocol", "http"), ("response_code", code), ("response_flags", flags),
            # The destination proxy sees the client's certificate; the source never reports it.
            ("connection_security_policy",
             "mutual_tls" if reporter == DESTINATION else UNKNOWN),
        ]

    def render(self) -> str:
        with self._lock:
            series = {k: (s.count, s.total_ms, list(s.buckets)) for k, s in self._series.items()}
            unrouted = dict(self._unrouted)
            table, applied_at, backends = self._table, self._applied_at, dict(self._backends)
        out = ["# HELP istio_requests_total Requests, as Istio's reporters count them.",
               "# TYPE istio_requests_total counter"]
        for key, (count, _, _) in sorted(series.items()):
            out.append(f"istio_requests_total{_labels(self._istio_labels(key))} {count}")
        out += ["# HELP istio_request_duration_milliseconds Request duration at the destination.",
                "# TYPE istio_request_duration_milliseconds histogram"]
        for key, (count, total_ms, buckets) in sorted(series.items()):
            out += self._histogram(self._istio_labels(key), count, total_ms, buckets)
        out += self._lab_gauges(table, applied_at, backends, unrouted)
        return "\n".join(out) + "\n"

    @staticmethod
    def _histogram(labels: list[tuple[str, str]], count: int, total_ms: float,
                   buckets: list[int]) -> list[str]:
        name = "istio_request_duration_milliseconds"
        lines, running = [], 0
        for bound, n in zip(BUCKETS_MS, buckets, strict=True):
            running += n
            # Envoy prints bucket bounds the way %g does: "0.5", "250", "1.8e+06".
            lines.append(f"{name}_bucket{_labels([*labels, ('le', f'{bound:g}')])} {running}")
        lines.append(f"{name}_bucket{_labels([*labels, ('le', '+Inf')])} {count}")
        lines.append(f"{name}_sum{_labels(labels)} {_number(round(total_ms, 3))}")
        lines.append(f"{name}_count{_labels(labels)} {count}")
        return lines

    def _lab_gauges(self, table: RoutingTable, applied_at: float,
                    backends: Mapping[str, int],
                    unrouted: Mapping[tuple[str, str], int]) -> list[str]:
        out = ["# HELP lab_route_weight Weight of each destination on the weighted route.",
               "# TYPE lab_route_weight gauge"]
        for dest, weight in sorted(table.weights().items()):
            out.append(f"lab_route_weight{_labels([('destination', dest)])} {weight}")
        out += ["# HELP lab_route_generation metadata.generation of the applied route object.",
                "# TYPE lab_route_generation gauge",
                f"lab_route_generation {table.generation}",
                "# HELP lab_route_applied_timestamp_seconds When the data plane applied it.",
                "# TYPE lab_route_applied_timestamp_seconds gauge",
                f"lab_route_applied_timestamp_seconds {applied_at:.6f}",
                "# HELP lab_backend_info The demo app process serving each version.",
                "# TYPE lab_backend_info gauge"]
        for version, port in sorted(backends.items()):
            labels = [("version", version), ("port", str(port))]
            out.append(f"lab_backend_info{_labels(labels)} 1")
        out += ["# HELP lab_unrouted_requests_total Requests no pod answered, by why.",
                "# TYPE lab_unrouted_requests_total counter"]
        for (reason, dest), n in sorted(unrouted.items()):
            out.append(f"lab_unrouted_requests_total"
                       f"{_labels([('reason', reason), ('destination', dest)])} {n}")
        return out
