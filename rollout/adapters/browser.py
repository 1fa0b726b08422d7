"""A screenshot of a web page by a headless Chromium (Debian's `chromium`), run as a command:
no browser driver, nothing downloaded."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from rollout.core.errors import InfrastructureError

NAMES = ("chromium", "chromium-browser", "google-chrome")
# The closed network refuses Chromium's background connections; these keep it from trying.
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars")


def find_chromium() -> str | None:
    """$CANARY_CHROMIUM, else the first Chromium on the PATH."""
    given = os.environ.get("CANARY_CHROMIUM")
    if given:
        return given
    return next((found for name in NAMES if (found := shutil.which(name))), None)


def screenshot(url: str, path: Path, *, width: int = 1400, height: int = 1300,
               settle_ms: int = 8000, timeout: float = 90.0) -> Path:
    """A PNG of the page once its scripts have run (up to `settle_ms` of page time)."""
    binary = find_chromium()
    if binary is None:
        raise InfrastructureError("no Chromium to take the screenshot with",
                                  hint="install Debian's chromium (make system-deps), or set "
                                  "CANARY_CHROMIUM to a Chromium binary")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="canary-chromium-") as profile:
        command = [binary, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={path}",
                   f"--window-size={width},{height}", f"--virtual-time-budget={settle_ms}",
                   url]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise InfrastructureError(f"Chromium took more than {timeout:.0f}s to draw {url}",
                                      hint="check that the page loads") from None
    if done.returncode != 0 or not path.is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise InfrastructureError(f"Chromium could not take a screenshot of {url}: {last}",
                                  hint=f"run `{binary} --headless=new --screenshot {url}` "
                                  "to see why")
    return path
