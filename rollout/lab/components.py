"""The lab's processes as plain data: how each one is started and how its health is read."""

from __future__ import annotations

import functools
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rollout.adapters.lab_layout import Layout, Ports
from rollout.adapters.toolchain import Toolchain
from rollout.core.errors import LabError
from rollout.lab.certs import PKI

SERVICE_CIDR = "10.96.0.0/16"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"


@dataclass(frozen=True)
class Component:
    name: str
    argv: list[str]
    port: int
    health_url: str
    # "plain" (no TLS), "insecure" (self-signed serving cert, anonymous) or "client" (admin cert)
    health_auth: str = "plain"
    env: dict[str, str] = field(default_factory=dict)


def etcd(tools: Toolchain, layout: Layout, ports: Ports, pki: PKI) -> Component:
    client = f"https://127.0.0.1:{ports.etcd_client}"
    peer = f"https://127.0.0.1:{ports.etcd_peer}"
    tls = [f"--cert-file={pki.etcd_cert}", f"--key-file={pki.etcd_key}",
           f"--trusted-ca-file={pki.ca_cert}", "--client-cert-auth=true"]
    peer_tls = [f"--peer-cert-file={pki.etcd_cert}", f"--peer-key-file={pki.etcd_key}",
                f"--peer-trusted-ca-file={pki.ca_cert}", "--peer-client-cert-auth=true"]
    return Component(
        name="etcd",
        argv=[
            str(tools.etcd), "--name=lab", f"--data-dir={layout.etcd_data}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=lab={peer}", *tls, *peer_tls,
            # The trade-off `rollout lab status` states (UNSAFE_NO_FSYNC): a throwaway lab
            # does not need fsync, and it makes every pulumi up noticeably faster.
            "--unsafe-no-fsync=true", "--log-level=warn",
        ],
        port=ports.etcd_client,
        health_url=f"{client}/health",
        health_auth="client",
    )


UNSAFE_NO_FSYNC = ("etcd runs with --unsafe-no-fsync: a crash of this machine (not of etcd) "
                   "can lose the lab cluster's last writes; the lab is throwaway, and every "
                   "pulumi up is faster for it. `rollout lab down --wipe` starts it afresh.")


def kube_apiserver(tools: Toolchain, layout: Layout, ports: Ports, pki: PKI) -> Component:
    return Component(
        name="kube-apiserver",
        argv=[
            str(tools.kube_apiserver),
            f"--etcd-servers=https://127.0.0.1:{ports.etcd_client}",
            f"--etcd-cafile={pki.ca_cert}", f"--etcd-certfile={pki.etcd_client_cert}",
            f"--etcd-keyfile={pki.etcd_client_key}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={ports.apiserver}", f"--cert-dir={layout.certs}",
            f"--tls-cert-file={pki.serving_cert}", f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--service-account-issuer={SA_ISSUER}", f"--api-audiences={SA_ISSUER}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC", "--allow-privileged=true",
            # No kubelets or network here: nothing could serve the `kubernetes` endpoints.
            "--endpoint-reconciler-type=none",
            "--enable-priority-and-fairness=false", "--profiling=false", "--v=1",
        ],
        port=ports.apiserver,
        health_url=f"https://127.0.0.1:{ports.apiserver}/readyz",
        health_auth="client",
    )


def _client_flags(layout: Layout) -> list[str]:
    kubeconfig = str(layout.kubeconfig)
    return [
        f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}", "--bind-address=127.0.0.1",
        "--leader-elect=false", "--profiling=false",
    ]


def kube_controller_manager(tools: Toolchain, layout: Layout, ports: Ports, pki: PKI) -> Component:
    return Component(
        name="kube-controller-manager",
        argv=[
            str(tools.kube_controller_manager), *_client_flags(layout),
            f"--secure-port={ports.controller_manager}",
            f"--cert-dir={layout.certs / 'controller-manager'}",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_cert}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--use-service-account-credentials=false",
            # No cloud here: skip the controllers that wait on a cloud provider.
            "--controllers=*,-cloud-node-lifecycle,-route,-service",
        ],
        port=ports.controller_manager,
        health_url=f"https://127.0.0.1:{ports.controller_manager}/healthz",
        health_auth="insecure",
    )


def kube_scheduler(tools: Toolchain, layout: Layout, ports: Ports) -> Component:
    return Component(
        name="kube-scheduler",
        argv=[
            str(tools.kube_scheduler), *_client_flags(layout),
            f"--secure-port={ports.scheduler}", f"--cert-dir={layout.certs / 'scheduler'}",
        ],
        port=ports.scheduler,
        health_url=f"https://127.0.0.1:{ports.scheduler}/healthz",
        health_auth="insecure",
    )


# How long a new pod takes to become Ready, as kubelet's readiness probe would make it wait:
# a base and a random extra, per pod. Short, as every `pulumi up` of a Deployment waits for it.
POD_READY_DELAY_SECONDS = 1.0
POD_READY_JITTER_SECONDS = 0.5
# A pod (a Deployment's template) can ask for its own delay, e.g. "5s", with this annotation.
POD_READY_DELAY_ANNOTATION = "pod-ready.stage.kwok.x-k8s.io/delay"


def kwok_stages(upstream: str, ready_delay: float) -> str:
    """kwok's upstream "fast" stages, with a readiness delay on the pod-ready stage: a pod
    is Running and Ready `ready_delay` seconds (plus up to POD_READY_JITTER_SECONDS) after it
    is scheduled, not at once, so the EndpointSlice controller adds it only then."""
    docs = [d for d in yaml.safe_load_all(upstream) if d]
    ready = [d for d in docs if d.get("kind") == "Stage"
             and d.get("metadata", {}).get("name") == "pod-ready"]
    if len(ready) != 1:
        raise LabError("kwok's stages have no pod-ready stage to give a readiness delay",
                       hint="rebuild the toolchain: rm -rf ~/.cache/canary-rollout/tools/kwok-* "
                       "&& make toolchain")
    # kwok draws each delay between the duration and the jitter duration, and takes the
    # jitter alone when it is the smaller: a pod's annotation sets both, so it is exact.
    annotation = {"expressionFrom": f'.metadata.annotations["{POD_READY_DELAY_ANNOTATION}"]'}
    ready[0]["spec"]["delay"] = {
        "durationMilliseconds": round(ready_delay * 1000),
        "durationFrom": annotation,
        "jitterDurationMilliseconds": round(
            (ready_delay + POD_READY_JITTER_SECONDS if ready_delay > 0 else 0) * 1000),
        "jitterDurationFrom": annotation,
    }
    return yaml.safe_dump_all(docs, sort_keys=False)


def kwok(tools: Toolchain, layout: Layout, ports: Ports) -> Component:
    return Component(
        name="kwok",
        argv=[
            str(tools.kwok), f"--kubeconfig={layout.kubeconfig}",
            f"--config={layout.kwok_stages}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-ip=127.0.0.1", "--cidr=10.244.0.1/16",
            f"--server-address=127.0.0.1:{ports.kwok}",
        ],
        port=ports.kwok,
        health_url=f"http://127.0.0.1:{ports.kwok}/healthz",
    )


# Debian 12's: the version the lab's flags, scrape config and the judges' queries run on in
# every lab test. Older ones are refused rather than half working.
MIN_PROMETHEUS = (2, 42, 0)


@functools.lru_cache(maxsize=4)
def prometheus_version(binary: Path) -> tuple[int, int, int] | None:
    """What `prometheus --version` says, e.g. "version 2.42.0+ds" -> (2, 42, 0)."""
    try:
        said = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                              timeout=30, check=False)
    except OSError:
        return None
    found = re.search(r"version (\d+)\.(\d+)\.(\d+)", said.stdout + said.stderr)
    return (int(found[1]), int(found[2]), int(found[3])) if found else None


def check_prometheus(binary: Path) -> None:
    version = prometheus_version(binary)
    need = ".".join(map(str, MIN_PROMETHEUS))
    if version is None:
        raise LabError(f"cannot tell which Prometheus {binary} is: `{binary} --version` "
                       "printed no version", hint=f"install Prometheus >= {need} "
                       "(make system-deps installs Debian's)")
    if version < MIN_PROMETHEUS:
        have = ".".join(map(str, version))
        raise LabError(f"Prometheus {have} at {binary} is older than {need}, the version the "
                       "lab is tested with", hint=f"install Prometheus >= {need} (Debian 12's "
                       "package, which make system-deps installs) first on the PATH")


def prometheus(binary: Path, layout: Layout, ports: Ports) -> Component:
    return Component(
        name="prometheus",
        argv=[
            str(binary), f"--config.file={layout.prometheus / 'prometheus.yml'}",
            f"--storage.tsdb.path={layout.prometheus / 'data'}",
            f"--web.listen-address=127.0.0.1:{ports.prometheus}",
            # No --web.enable-lifecycle: it would let any local user stop it over HTTP.
            "--storage.tsdb.retention.time=2d",
        ],
        port=ports.prometheus,
        health_url=f"http://127.0.0.1:{ports.prometheus}/-/ready",
    )


def prometheus_config(layout: Layout, ports: Ports) -> str:
    """Scrapes itself and every file_sd target list the lab (or a test) drops in targets/."""
    return (
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: prometheus\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{ports.prometheus}']}}]\n"
        "  - job_name: lab\n"
        "    file_sd_configs:\n"
        f"      - files: ['{layout.scrape_targets}/*.json']\n"
        "        refresh_interval: 1s\n"
    )
