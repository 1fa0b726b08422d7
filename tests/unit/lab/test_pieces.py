"""Covers the lab's plain parts: PKI, PID tracking, ports, component argv, tool versions."""

from __future__ import annotations

import os
import socket
import stat
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from rollout.adapters.lab_layout import Layout, Ports, ports_from_env
from rollout.adapters.toolchain import locate, read_versions
from rollout.core.errors import InvalidInput, LabError
from rollout.lab import components
from rollout.lab.certs import create_pki, write_kubeconfig, write_private
from rollout.lab.processes import ProcessTable, port_in_use


def test_pki_signs_serving_and_admin_certs_with_one_ca(tmp_path: Path) -> None:
    pki = create_pki(tmp_path)
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    serving = x509.load_pem_x509_certificate(pki.serving_cert.read_bytes())
    admin = x509.load_pem_x509_certificate(pki.admin_cert.read_bytes())
    serving.verify_directly_issued_by(ca)
    admin.verify_directly_issued_by(ca)
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    org = admin.subject.get_attributes_for_oid(x509.oid.NameOID.ORGANIZATION_NAME)
    assert org[0].value == "system:masters"
    assert oct(pki.ca_key.stat().st_mode & 0o777) == "0o600"


def test_pki_is_created_once_and_kept(tmp_path: Path) -> None:
    first = create_pki(tmp_path).ca_cert.read_bytes()
    assert create_pki(tmp_path).ca_cert.read_bytes() == first


def test_kubeconfig_points_at_the_local_server(tmp_path: Path) -> None:
    pki = create_pki(tmp_path)
    path = write_kubeconfig(tmp_path / "kubeconfig", pki=pki, server="https://127.0.0.1:1")
    config = yaml.safe_load(path.read_text())
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:1"
    assert config["users"][0]["user"]["client-key"] == str(pki.admin_key)


def test_process_table_starts_and_stops_by_pid(tmp_path: Path) -> None:
    table = ProcessTable(tmp_path / "run", tmp_path / "logs")
    running = table.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    assert table.running("sleeper") == running
    assert table.stop("sleeper", grace=5)
    assert table.running("sleeper") is None
    stat = Path(f"/proc/{running.pid}/stat")
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    assert not table.stop("sleeper")


def test_a_recycled_pid_is_not_ours(tmp_path: Path) -> None:
    table = ProcessTable(tmp_path / "run", tmp_path / "logs")
    table.run_dir.mkdir(parents=True)
    # Our own PID with a different start time stands for a PID reused by another process.
    table.pid_file("ghost").write_text(f"{os.getpid()} 1\n")
    assert table.running("ghost") is None
    assert not table.stop("ghost")
    assert Path(f"/proc/{os.getpid()}").exists()


def test_port_in_use_sees_a_listener() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert port_in_use(sock.getsockname()[1])


@pytest.mark.parametrize("raw", ["abc", "80", "70000"])
def test_bad_port_base_is_rejected_with_a_fix(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANARY_LAB_PORT_BASE", raw)
    with pytest.raises(InvalidInput) as err:
        ports_from_env()
    assert "CANARY_LAB_PORT_BASE" in str(err.value)
    assert err.value.hint


# Each component's own listen flags: without one, it listens on every address (the Kubernetes
# components' --bind-address defaults to 0.0.0.0), so each must be there, set to loopback.
LISTEN_FLAGS = {
    "etcd": ("--listen-client-urls", "--listen-peer-urls"),
    "kube-apiserver": ("--bind-address",),
    "kube-controller-manager": ("--bind-address",),
    "kube-scheduler": ("--bind-address",),
    "kwok": ("--server-address",),
    "prometheus": ("--web.listen-address",),
}


def _listen_hosts(argv: list[str], flag: str) -> list[str]:
    values = [arg.split("=", 1)[1] for arg in argv if arg.startswith(f"{flag}=")]
    hosts = []
    for value in values:
        for address in value.split(","):
            address = address.split("://", 1)[-1]
            hosts.append(address.rsplit(":", 1)[0] if ":" in address else address)
    return hosts


def test_every_component_binds_loopback_only(tmp_path: Path) -> None:
    tools = locate()
    layout, ports = Layout(tmp_path), Ports(20000)
    pki = create_pki(layout.pki)
    built = [
        components.etcd(tools, layout, ports, pki),
        components.kube_apiserver(tools, layout, ports, pki),
        components.kube_controller_manager(tools, layout, ports, pki),
        components.kube_scheduler(tools, layout, ports),
        components.kwok(tools, layout, ports),
        components.prometheus(Path("/usr/bin/prometheus"), layout, ports),
    ]
    assert len({c.port for c in built}) == len(built)
    assert {c.name for c in built} == set(LISTEN_FLAGS)
    for component in built:
        assert "0.0.0.0" not in " ".join(component.argv)
        for flag in LISTEN_FLAGS[component.name]:
            assert _listen_hosts(component.argv, flag) == ["127.0.0.1"], (component.name, flag)


def test_the_loopback_check_fails_without_a_bind_address(tmp_path: Path) -> None:
    """The check above can fail: the API server without --bind-address is caught."""
    pki = create_pki(tmp_path / "pki")
    api = components.kube_apiserver(locate(), Layout(tmp_path), Ports(20000), pki)
    argv = [arg for arg in api.argv if not arg.startswith("--bind-address=")]

    assert _listen_hosts(argv, "--bind-address") == []


def test_versions_file_pins_every_tool() -> None:
    versions = read_versions()
    for key in ("PULUMI_VERSION", "PULUMI_KUBERNETES_VERSION", "KUBERNETES_VERSION",
                "ETCD_VERSION", "KWOK_VERSION", "ISTIO_API_VERSION", "GATEWAY_API_VERSION"):
        assert versions[key].startswith("v")


def test_provider_pin_matches_the_python_sdk() -> None:
    import importlib.metadata

    sdk = importlib.metadata.version("pulumi-kubernetes")
    assert read_versions()["PULUMI_KUBERNETES_VERSION"] == f"v{sdk}"


def test_keys_secrets_and_the_pki_folder_are_owner_only_from_creation(tmp_path: Path) -> None:
    old = os.umask(0o002)  # a permissive umask: nothing may depend on it
    try:
        pki = create_pki(tmp_path / "pki")
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", pki=pki,
                                      server="https://127.0.0.1:1")
        stale = tmp_path / "passphrase"
        stale.write_text("old")
        stale.chmod(0o644)
        write_private(stale, b"new")
    finally:
        os.umask(old)
    assert stat.S_IMODE(pki.directory.stat().st_mode) == 0o700
    keys = sorted(pki.directory.glob("*.key"))
    assert len(keys) == 6
    for path in [*keys, kubeconfig, stale]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stale.read_text() == "new"


def test_a_pki_from_before_etcd_had_certificates_gets_them_from_its_own_ca(
        tmp_path: Path) -> None:
    pki = create_pki(tmp_path)
    ca_before = pki.ca_cert.read_bytes()
    for path in (pki.etcd_cert, pki.etcd_key, pki.etcd_client_cert, pki.etcd_client_key):
        path.unlink()

    create_pki(tmp_path)

    assert pki.ca_cert.read_bytes() == ca_before
    ca = x509.load_pem_x509_certificate(ca_before)
    for cert in (pki.etcd_cert, pki.etcd_client_cert):
        signed = x509.load_pem_x509_certificate(cert.read_bytes())
        assert signed.issuer == ca.subject
        signed.verify_directly_issued_by(ca)


def test_etcd_answers_only_clients_with_a_lab_certificate(tmp_path: Path) -> None:
    tools = locate()
    layout, ports = Layout(tmp_path), Ports(20000)
    pki = create_pki(layout.pki)
    etcd = components.etcd(tools, layout, ports, pki)
    api = " ".join(components.kube_apiserver(tools, layout, ports, pki).argv)

    assert "--client-cert-auth=true" in etcd.argv and "--peer-client-cert-auth=true" in etcd.argv
    assert f"--trusted-ca-file={pki.ca_cert}" in etcd.argv
    assert not [arg for arg in etcd.argv if "http://" in arg], "no plain HTTP listener"
    assert etcd.health_url.startswith("https://") and etcd.health_auth == "client"
    assert f"--etcd-servers=https://127.0.0.1:{ports.etcd_client}" in api
    assert f"--etcd-certfile={pki.etcd_client_cert}" in api
    prometheus = components.prometheus(Path("/usr/bin/prometheus"), layout, ports)
    assert not [arg for arg in prometheus.argv if "lifecycle" in arg]


@pytest.mark.parametrize(("said", "problem"), [
    ("prometheus, version 2.42.0+ds (branch: debian/sid)", None),
    ("prometheus, version 3.1.0 (branch: HEAD)", None),
    ("prometheus, version 2.41.9 (branch: HEAD)", "Prometheus 2.41.9 at"),
    ("usage: prometheus [<flags>]", "printed no version"),
])
def test_the_prometheus_version_is_checked(tmp_path: Path, said: str,
                                           problem: str | None) -> None:
    binary = tmp_path / "prometheus"
    binary.write_text(f"#!/bin/sh\necho '{said}'\n")
    binary.chmod(0o755)
    if problem is None:
        components.check_prometheus(binary)
        return
    with pytest.raises(LabError) as err:
        components.check_prometheus(binary)
    assert problem in err.value.message and ">= 2.42.0" in (err.value.hint or "")
