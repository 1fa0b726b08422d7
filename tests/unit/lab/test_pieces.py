"""Covers the lab's plain parts: PKI, PID tracking, ports, component argv, tool versions."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from rollout.adapters.lab_layout import Layout, Ports, ports_from_env
from rollout.adapters.toolchain import locate, read_versions
from rollout.core.errors import InvalidInput
from rollout.lab import components
from rollout.lab.certs import create_pki, write_kubeconfig
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


def test_every_component_binds_loopback_only(tmp_path: Path) -> None:
    tools = locate()
    layout, ports = Layout(tmp_path), Ports(20000)
    pki = create_pki(layout.pki)
    built = [
        components.etcd(tools, layout, ports),
        components.kube_apiserver(tools, layout, ports, pki),
        components.kube_controller_manager(tools, layout, ports, pki),
        components.kube_scheduler(tools, layout, ports),
        components.kwok(tools, layout, ports),
        components.prometheus(Path("/usr/bin/prometheus"), layout, ports),
    ]
    assert len({c.port for c in built}) == len(built)
    for component in built:
        joined = " ".join(component.argv)
        assert "0.0.0.0" not in joined
        assert "127.0.0.1" in joined or "--bind-address=127.0.0.1" in joined


def test_versions_file_pins_every_tool() -> None:
    versions = read_versions()
    for key in ("PULUMI_VERSION", "PULUMI_KUBERNETES_VERSION", "KUBERNETES_VERSION",
                "ETCD_VERSION", "KWOK_VERSION", "ISTIO_API_VERSION", "GATEWAY_API_VERSION"):
        assert versions[key].startswith("v")


def test_provider_pin_matches_the_python_sdk() -> None:
    import importlib.metadata

    sdk = importlib.metadata.version("pulumi-kubernetes")
    assert read_versions()["PULUMI_KUBERNETES_VERSION"] == f"v{sdk}"
