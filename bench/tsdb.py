"""A real Prometheus over backfilled data: `promtool` writes the blocks, `prometheus` serves them.

    backfill(Path("samples.om"), Path("data"))      # or backfill(openmetrics_text, ...)
    with serving(Path("data")) as url:             # http://127.0.0.1:<free port>
        PrometheusProvider(address=url).query(...)

Prometheus binds 127.0.0.1 only, scrapes nothing (an empty scrape config), keeps blocks for ten
years (so samples from any recent past stay queryable) and never compacts them. It serves the
backfilled blocks from the moment it is ready: blocks in the data directory load at startup.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

EMPTY_CONFIG = "global:\n  scrape_interval: 1m\nscrape_configs: []\n"


class TsdbError(RuntimeError):
    """promtool or prometheus failed; the message carries their output."""


def tool(name: str) -> str:
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else "")
    if not found:
        raise TsdbError(f"{name} not found: install Debian's prometheus package")
    return found


def version() -> str:
    """`prometheus, version 2.42.0+ds (...)` -> `Prometheus 2.42.0+ds`."""
    done = subprocess.run([tool("prometheus"), "--version"], capture_output=True, text=True,
                          check=False)
    words = (done.stdout or done.stderr).split()
    return f"Prometheus {words[2]}" if len(words) > 2 else "Prometheus"


def backfill(
    source: str | bytes | os.PathLike[str], directory: Path, *,
    max_block_duration: str | None = None,
) -> str:
    """Writes TSDB blocks into `directory` from OpenMetrics: a file (a path) or the text itself
    (str or bytes). Returns promtool's report. Blocks span promtool's 2h default (aligned to 2h)
    unless `max_block_duration` is longer; promtool parses the whole input once per block."""
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(source, os.PathLike):
        return _create_blocks(Path(source), directory, max_block_duration)
    data = source.encode() if isinstance(source, str) else source
    with tempfile.NamedTemporaryFile(suffix=".om", delete=False) as handle:
        handle.write(data)
    try:
        return _create_blocks(Path(handle.name), directory, max_block_duration)
    finally:
        os.unlink(handle.name)


def _create_blocks(path: Path, directory: Path, max_block_duration: str | None) -> str:
    command = [tool("promtool"), "tsdb", "create-blocks-from", "openmetrics"]
    if max_block_duration is not None:
        command.append(f"--max-block-duration={max_block_duration}")
    command += [str(path), str(directory)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise TsdbError(
            f"promtool could not backfill {path} (exit {done.returncode}):\n"
            f"{(done.stderr or done.stdout).strip()[-4000:]}"
        )
    return done.stdout


@contextmanager
def serving(directory: Path, *, ready_timeout: float = 120.0) -> Iterator[str]:
    """Prometheus on `directory` until the block exits; yields its base URL once /-/ready."""
    with tempfile.TemporaryDirectory(prefix="bench-prometheus-") as scratch:
        config = Path(scratch) / "prometheus.yml"
        config.write_text(EMPTY_CONFIG)
        log_path = Path(scratch) / "prometheus.log"
        port = _free_port()
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    tool("prometheus"),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={directory}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--storage.tsdb.retention.time=10y",
                    # Equal bounds: never compact, so the blocks served are the blocks written.
                    "--storage.tsdb.min-block-duration=2h",
                    "--storage.tsdb.max-block-duration=2h",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            _await_ready(process, url, log_path, timeout=ready_timeout)
            yield url
            if process.poll() is not None:
                raise TsdbError(
                    f"prometheus exited with {process.returncode} while it was in use:\n"
                    f"{log_path.read_text(errors='replace')[-4000:]}"
                )
        finally:
            _stop(process)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _await_ready(process: subprocess.Popen[bytes], url: str, log: Path, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise TsdbError(
                f"prometheus exited with {process.returncode} before it was ready:\n"
                f"{log.read_text(errors='replace')[-4000:]}"
            )
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    _stop(process)
    raise TsdbError(f"prometheus at {url} was not ready after {timeout:g}s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
