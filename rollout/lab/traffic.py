"""Starts, checks and stops one app's lab traffic: its data plane, demo apps and load generator."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from rollout.adapters.lab_layout import Layout, Ports
from rollout.core.errors import InvalidInput, LabError
from rollout.lab.dataplane import script_argv
from rollout.lab.dataplane.routing import PARSERS
from rollout.lab.processes import ProcessTable, port_in_use

PORT_OFFSET = 500
PORT_SLOTS = 100
READY_TIMEOUT = 30.0
_LAB_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class TrafficPorts:
    listen: int
    metrics: int


@dataclass(frozen=True)
class TrafficStatus:
    name: str
    dataplane_pid: int | None
    loadgen_pid: int | None
    url: str | None
    metrics_url: str | None
    ready: bool
    weights: dict[str, int] = field(default_factory=dict)
    backends: dict[str, str] = field(default_factory=dict)

    @property
    def state(self) -> str:
        if self.dataplane_pid is None:
            return "stopped"
        return "ready" if self.ready else "unhealthy"


def _script(name: str) -> list[str]:
    return script_argv(str(_LAB_DIR / name))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pick_ports(ports: Ports, namespace: str, app: str) -> TrafficPorts:
    """base+500+2k and base+501+2k for a slot k fixed by namespace/app, else free ports."""
    slot = zlib.crc32(f"{namespace}/{app}".encode()) % PORT_SLOTS
    listen = ports.base + PORT_OFFSET + 2 * slot
    metrics = listen + 1
    if metrics <= 65535 and not port_in_use(listen) and not port_in_use(metrics):
        return TrafficPorts(listen, metrics)
    listen = _free_port()
    metrics = _free_port()
    while metrics == listen:
        metrics = _free_port()
    return TrafficPorts(listen, metrics)


class Traffic:
    """One app's lab traffic; processes are detached and tracked by PID files, like the lab's."""

    def __init__(self, layout: Layout, ports: Ports | TrafficPorts, *, app: str, namespace: str,
                 router: str = "istio", kubeconfig: Path | None = None, rps: float = 20.0,
                 headers: dict[str, str] | None = None, header_share: float = 1.0) -> None:
        if router not in PARSERS:
            raise InvalidInput(f"the lab cannot route by router {router!r}",
                               hint=f"use one of: {', '.join(PARSERS)}")
        if rps < 0:
            raise InvalidInput(f"rps must be 0 (no load) or positive, not {rps}")
        self.layout = layout
        self.ports = ports
        self.app = app
        self.namespace = namespace
        self.router = router
        self.kubeconfig = kubeconfig or layout.kubeconfig
        self.rps = rps
        self.headers = dict(headers or {})
        self.header_share = header_share
        self.processes = ProcessTable(layout.run, layout.logs)

    # -- names and places -----------------------------------------------------------------

    @property
    def key(self) -> str:
        return f"{self.namespace}-{self.app}"

    @property
    def dataplane_name(self) -> str:
        return f"dataplane-{self.key}"

    @property
    def loadgen_name(self) -> str:
        return f"loadgen-{self.key}"

    @property
    def state_file(self) -> Path:
        return self.layout.run / f"traffic-{self.key}.json"

    @property
    def scrape_file(self) -> Path:
        return self.layout.scrape_targets / f"{self.key}.json"

    def _saved_ports(self) -> TrafficPorts | None:
        try:
            saved = json.loads(self.state_file.read_text())
            return TrafficPorts(int(saved["listen"]), int(saved["metrics"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _ports_in_use(self) -> TrafficPorts:
        ports = self._saved_ports()
        if ports is None:
            raise LabError(f"traffic for {self.namespace}/{self.app} is not started",
                           hint="call Traffic.start() first")
        return ports

    @property
    def url(self) -> str:
        """Where to send requests: the data plane's proxy (the mesh's ingress, in the lab)."""
        return f"http://127.0.0.1:{self._ports_in_use().listen}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self._ports_in_use().metrics}/metrics"

    # -- start, stop, status --------------------------------------------------------------

    def start(self) -> TrafficStatus:
        """Starts whatever is not running; a second call changes nothing."""
        if self.processes.running(self.dataplane_name) is None:
            # A load generator left from an earlier data plane may aim at other ports.
            self.processes.stop(self.loadgen_name)
            ports = (self.ports if isinstance(self.ports, TrafficPorts)
                     else pick_ports(self.ports, self.namespace, self.app))
            self._start_dataplane(ports)
        ports = self._ports_in_use()
        self._write_scrape_file(ports)
        if self.rps > 0 and self.processes.running(self.loadgen_name) is None:
            self._start_loadgen(ports)
        return self.status()

    def _start_dataplane(self, ports: TrafficPorts) -> None:
        for port in (ports.listen, ports.metrics):
            if port_in_use(port):
                raise LabError(f"cannot start the data plane: 127.0.0.1:{port} is taken",
                               hint="stop whatever listens there, or pass other TrafficPorts")
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps({
            "app": self.app, "namespace": self.namespace, "router": self.router,
            "listen": ports.listen, "metrics": ports.metrics, "rps": self.rps,
        }) + "\n")
        argv = [sys.executable, "-m", "rollout.lab.dataplane", f"--kubeconfig={self.kubeconfig}",
                f"--namespace={self.namespace}", f"--app={self.app}", f"--router={self.router}",
                f"--listen=127.0.0.1:{ports.listen}", f"--metrics=127.0.0.1:{ports.metrics}"]
        self.processes.start(self.dataplane_name, argv, env=_child_env())
        try:
            self._wait_ready(ports)
        except BaseException:
            self.processes.stop(self.dataplane_name)
            self.state_file.unlink(missing_ok=True)
            raise

    def _wait_ready(self, ports: TrafficPorts) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        ready_url = f"http://127.0.0.1:{ports.metrics}/ready"
        with httpx.Client(timeout=1.0) as http:
            while time.monotonic() < deadline:
                if self.processes.running(self.dataplane_name) is None:
                    raise LabError(
                        "the data plane exited during start; last log lines:\n"
                        + self.processes.tail_log(self.dataplane_name),
                        hint=f"see {self.processes.log_file(self.dataplane_name)}",
                    )
                try:
                    if http.get(ready_url).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        raise LabError(
            f"the data plane did not list its route and Deployments in {READY_TIMEOUT:.0f}s; "
            "last log lines:\n" + self.processes.tail_log(self.dataplane_name),
            hint="is the lab up? (rollout lab status)",
        )

    def _write_scrape_file(self, ports: TrafficPorts) -> None:
        targets = [{"targets": [f"127.0.0.1:{ports.metrics}"], "labels": {"job": "lab-dataplane"}}]
        self.scrape_file.parent.mkdir(parents=True, exist_ok=True)
        # Prometheus rereads the directory every second: never let it see half a file.
        partial = self.scrape_file.with_suffix(".json.tmp")
        partial.write_text(json.dumps(targets) + "\n")
        os.replace(partial, self.scrape_file)

    def _start_loadgen(self, ports: TrafficPorts) -> None:
        argv = [*_script("loadgen.py"), f"--target=http://127.0.0.1:{ports.listen}/",
                f"--rps={self.rps}", f"--header-share={self.header_share}"]
        argv += [f"--header={name}={value}" for name, value in self.headers.items()]
        self.processes.start(self.loadgen_name, argv, env=_child_env())

    def stop(self) -> bool:
        """Stops the load generator, then the data plane; returns whether either was running."""
        stopped = self.processes.stop(self.loadgen_name)
        stopped = self.processes.stop(self.dataplane_name) or stopped
        self.scrape_file.unlink(missing_ok=True)
        self.state_file.unlink(missing_ok=True)
        return stopped

    def status(self) -> TrafficStatus:
        dataplane = self.processes.running(self.dataplane_name)
        loadgen = self.processes.running(self.loadgen_name)
        ports = self._saved_ports()
        state = self._state(ports) if dataplane and ports else None
        return TrafficStatus(
            name=self.key,
            dataplane_pid=dataplane.pid if dataplane else None,
            loadgen_pid=loadgen.pid if loadgen else None,
            url=f"http://127.0.0.1:{ports.listen}" if ports else None,
            metrics_url=f"http://127.0.0.1:{ports.metrics}/metrics" if ports else None,
            ready=bool(state and state.get("synced")),
            weights=dict((state or {}).get("route", {}).get("weights", {})),
            backends=serving_versions(state),
        )

    def state(self) -> dict[str, Any] | None:
        """The data plane's own view: applied route table and backend versions."""
        return self._state(self._saved_ports())

    @staticmethod
    def _state(ports: TrafficPorts | None) -> dict[str, Any] | None:
        if ports is None:
            return None
        try:
            resp = httpx.get(f"http://127.0.0.1:{ports.metrics}/state", timeout=1.0)
            return resp.json() if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None


def serving_versions(state: dict[str, Any] | None) -> dict[str, str]:
    """The versions each workload's serving pods run ("v1", or "v1+v2" mid rolling update),
    from the data plane's state: ready, with a demo app process for their version."""
    versions: dict[str, set[str]] = {}
    for endpoints in ((state or {}).get("endpoints") or {}).values():
        for endpoint in endpoints:
            if endpoint.get("serving") and endpoint.get("workload"):
                versions.setdefault(endpoint["workload"], set()).add(
                    endpoint.get("version") or "unknown")
    return {w: "+".join(sorted(v)) for w, v in sorted(versions.items())}


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def running_traffic(layout: Layout) -> list[Traffic]:
    """Every app's traffic started under this lab state directory (running or not)."""
    found = []
    for path in sorted(layout.run.glob("traffic-*.json")):
        try:
            saved = json.loads(path.read_text())
            ports = TrafficPorts(int(saved["listen"]), int(saved["metrics"]))
            found.append(Traffic(layout, ports, app=saved["app"], namespace=saved["namespace"],
                                 router=saved["router"], rps=float(saved["rps"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def stop_all(layout: Layout) -> list[str]:
    """Stops every app's traffic (for `rollout lab down`); returns the names it stopped."""
    return [t.key for t in running_traffic(layout) if t.stop()]
