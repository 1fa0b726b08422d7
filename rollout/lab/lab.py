"""`rollout lab up | down | status | env`: start, check and stop the local lab."""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from rollout.adapters.cluster_store import install_crd
from rollout.adapters.lab_layout import Layout, Ports, ports_from_env
from rollout.adapters.toolchain import (
    Toolchain,
    ensure_built,
    install_provider_plugin,
    locate,
    pulumi_environment,
)
from rollout.core.errors import LabError
from rollout.lab import components, kube
from rollout.lab.certs import PKI, create_pki, private_directory, write_kubeconfig, write_private
from rollout.lab.components import Component
from rollout.lab.processes import ProcessTable, port_in_use

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    healthy: bool
    endpoint: str

    @property
    def state(self) -> str:
        if self.pid is None:
            return "stopped"
        return "healthy" if self.healthy else "unhealthy"


class Lab:
    def __init__(self, layout: Layout | None = None, ports: Ports | None = None) -> None:
        self.layout = layout or Layout.default()
        self.ports = ports or ports_from_env()
        self.processes = ProcessTable(self.layout.run, self.layout.logs)

    # -- what the lab is made of ----------------------------------------------------------

    def components(self, tools: Toolchain, pki: PKI) -> list[Component]:
        layout, ports = self.layout, self.ports
        prometheus = tools.prometheus
        if prometheus is None:
            raise LabError(
                "prometheus is not installed",
                hint="apt-get install -y prometheus (make bootstrap does this for you)",
            )
        components.check_prometheus(prometheus)
        return [
            components.etcd(tools, layout, ports, pki),
            components.kube_apiserver(tools, layout, ports, pki),
            components.kube_controller_manager(tools, layout, ports, pki),
            components.kube_scheduler(tools, layout, ports),
            components.kwok(tools, layout, ports),
            components.prometheus(prometheus, layout, ports),
        ]

    def component_names(self) -> list[str]:
        return ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok",
                "prometheus"]

    @property
    def api_server_url(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.prometheus}"

    # -- up -------------------------------------------------------------------------------

    def up(self, progress: Progress = print,
           pod_ready_delay: float | None = None) -> list[ComponentStatus]:
        """Starts whatever is not running; a second call on a healthy lab changes nothing,
        unless it brings another pod readiness delay (kwok then restarts with it)."""
        tools = ensure_built()
        pki = create_pki(self.layout.pki)
        write_kubeconfig(self.layout.kubeconfig, pki=pki, server=self.api_server_url)
        self._prepare_state(tools)
        if self._write_kwok_stages(tools, pod_ready_delay) and self.processes.running("kwok"):
            progress(f"restarting kwok: pods now become Ready after {self.pod_ready_delay()}s")
            self.processes.stop("kwok")
        started: list[str] = []
        try:
            for component in self.components(tools, pki):
                if self.processes.running(component.name):
                    if self._healthy(component, pki):
                        continue
                    raise LabError(
                        f"{component.name} is running but unhealthy "
                        f"(log: {self.processes.log_file(component.name)})",
                        hint="run `rollout lab down` and `rollout lab up` again",
                    )
                self._start(component, pki, progress)
                started.append(component.name)
            self._ready_cluster(tools, progress)
        except BaseException:
            for name in reversed(started):
                self.processes.stop(name)
            raise
        return self.status()

    def _prepare_state(self, tools: Toolchain) -> None:
        layout = self.layout
        for path in (layout.run, layout.logs, layout.scrape_targets, layout.pulumi_backend,
                     layout.pulumi_home):
            path.mkdir(parents=True, exist_ok=True)
        private_directory(layout.certs)
        (layout.prometheus / "prometheus.yml").write_text(
            components.prometheus_config(layout, self.ports)
        )
        if not layout.passphrase.exists():
            write_private(layout.passphrase, secrets.token_urlsafe(24).encode())
        install_provider_plugin(tools, layout.pulumi_home)

    def _write_kwok_stages(self, tools: Toolchain, delay: float | None) -> bool:
        """Writes the lab's kwok stages with `delay` (None: the one already there, else the
        default); says whether the file changed."""
        path = self.layout.kwok_stages
        if delay is None:
            delay = self.pod_ready_delay()
        if not 0 <= delay <= 300:
            raise LabError(f"--pod-ready-delay {delay}: a pod readiness delay is 0 to 300 "
                           "seconds", hint="e.g. rollout lab up --pod-ready-delay 2")
        text = (f"# rollout lab: pod-ready-delay={delay}\n"
                + components.kwok_stages(tools.kwok_stages.read_text(), delay))
        if path.exists() and path.read_text() == text:
            return False
        path.write_text(text)
        return True

    def pod_ready_delay(self) -> float:
        """The readiness delay the lab's kwok stages give new pods (seconds, before jitter)."""
        try:
            first = self.layout.kwok_stages.read_text().split("\n", 1)[0]
            return float(first.rsplit("=", 1)[1])
        except (OSError, IndexError, ValueError):
            return components.POD_READY_DELAY_SECONDS

    def _start(self, component: Component, pki: PKI, progress: Progress) -> None:
        if port_in_use(component.port):
            raise LabError(
                f"cannot start {component.name}: port 127.0.0.1:{component.port} is taken",
                hint="stop whatever listens there, or set CANARY_LAB_PORT_BASE to another base",
            )
        progress(f"starting {component.name} on 127.0.0.1:{component.port}")
        running = self.processes.start(component.name, component.argv,
                                       env=component.env or None)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.processes.running(component.name) is None:
                raise LabError(
                    f"{component.name} (pid {running.pid}) exited during start; last log lines:\n"
                    + self.processes.tail_log(component.name),
                    hint=f"see {self.processes.log_file(component.name)}",
                )
            if self._healthy(component, pki):
                return
            time.sleep(0.2)
        raise LabError(
            f"{component.name} did not become healthy at {component.health_url} in 90s; "
            "last log lines:\n" + self.processes.tail_log(component.name),
            hint=f"see {self.processes.log_file(component.name)}",
        )

    def _ready_cluster(self, tools: Toolchain, progress: Progress) -> None:
        api = kube.api_client(self.layout.kubeconfig)
        with api:
            kube.ensure_fake_nodes(api)
            progress("installing Istio and Gateway API CRDs")
            docs = kube.crd_documents([tools.istio_crds, tools.gateway_api_crds])
            names = kube.install_crds(api, docs)
            kube.wait_crds_established(api, names)
            progress("installing the CanaryRollout CRD (rollout state: stateStore cluster)")
            install_crd(api)
            kube.wait_default_service_account(api)
            deadline = time.monotonic() + 60
            while len(kube.nodes_ready(api)) < len(kube.FAKE_NODES):
                if time.monotonic() > deadline:
                    raise LabError("fake nodes did not become Ready in 60s (is kwok running?)",
                                   hint=f"see {self.processes.log_file('kwok')}")
                time.sleep(0.3)

    def _healthy(self, component: Component, pki: PKI) -> bool:
        verify: bool | str = False
        cert = None
        if component.health_auth == "client":
            verify, cert = str(pki.ca_cert), (str(pki.admin_cert), str(pki.admin_key))
        try:
            with httpx.Client(verify=_ssl_context(verify, cert), timeout=2) as http:
                return http.get(component.health_url).status_code == 200
        except httpx.HTTPError:
            return False

    # -- down, status, env ----------------------------------------------------------------

    def down(self, *, wipe: bool = False, progress: Progress = print) -> list[str]:
        from rollout.lab.traffic import stop_all

        stopped = stop_all(self.layout)
        for name in reversed(self.component_names()):
            if self.processes.stop(name):
                stopped.append(name)
                progress(f"stopped {name}")
        if wipe and self.layout.root.exists():
            shutil.rmtree(self.layout.root)
            progress(f"wiped {self.layout.root}")
        return stopped

    def status(self) -> list[ComponentStatus]:
        pki = PKI(self.layout.pki)
        result = []
        try:
            tools = locate()
            comps = self.components(tools, pki)
        except LabError:
            comps = []
        for component in comps:
            running = self.processes.running(component.name)
            healthy = running is not None and self._healthy(component, pki)
            result.append(ComponentStatus(component.name, running.pid if running else None,
                                          healthy, f"127.0.0.1:{component.port}"))
        return result

    def is_up(self) -> bool:
        statuses = self.status()
        return bool(statuses) and all(s.healthy for s in statuses)

    def environment(self) -> dict[str, str]:
        env = pulumi_environment(locate(), pulumi_home=self.layout.pulumi_home,
                                 backend_dir=self.layout.pulumi_backend)
        env["KUBECONFIG"] = str(self.layout.kubeconfig)
        env["CANARY_PROMETHEUS_URL"] = self.prometheus_url
        return env


def _ssl_context(verify: bool | str, cert: tuple[str, str] | None) -> bool | object:
    if cert is None:
        return verify
    import ssl

    ctx = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
    ctx.load_cert_chain(*cert)
    return ctx
