"""`rollout dashboard` refuses what it cannot serve, with the fix, before it listens; and the
real command serves the page (a subprocess, stopped with Ctrl-C's signal)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from rollout.cli import app


def test_a_folder_without_a_pulumi_project_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["dashboard", "--project-dir", str(tmp_path)])

    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())  # rich wraps a long path
    assert f"no Pulumi.yaml in {tmp_path}" in said and "fix:" in said


def test_a_port_in_use_exits_2_naming_it(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: p\nruntime: python\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["dashboard", "--project-dir", str(tmp_path),
                                          "--port", str(port)])

    assert result.exit_code == 2, result.output
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "pick another --port" in " ".join(result.output.split())


def test_the_command_serves_read_only_and_stops_on_sigint(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: p\nruntime: python\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "rollout.cli", "dashboard", "--project-dir", str(tmp_path),
         "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                config = httpx.get(f"http://127.0.0.1:{port}/api/config", timeout=2).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None, \
                    process.communicate()
                time.sleep(0.2)
        assert config["allowActions"] is False
        assert httpx.get(f"http://127.0.0.1:{port}/api/overview").json() == []
        page = httpx.get(f"http://127.0.0.1:{port}/").text
        assert '<script src="/vendor/plotly.min.js" defer></script>' in page
        assert httpx.get(f"http://127.0.0.1:{port}/vendor/plotly.min.js").status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    said = " ".join(err.split())
    assert f"at http://127.0.0.1:{port} (read-only)" in said and "dashboard stopped" in said
    assert "Traceback" not in err and process.returncode == 0, err
