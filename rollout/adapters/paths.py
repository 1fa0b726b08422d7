"""Where the project, its tool cache and its lab state live on this machine."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The Pulumi project the driver works on: CANARY_PROJECT_DIR (`--project-dir`), else the
    one holding the current directory, as for `pulumi`, else this package's own checkout."""
    if env := os.environ.get("CANARY_PROJECT_DIR"):
        return Path(env).resolve()
    for candidate in [Path.cwd(), *Path.cwd().parents]:
        if (candidate / "Pulumi.yaml").exists():
            return candidate
    here = Path(__file__).resolve().parents[2]
    return here if (here / "Pulumi.yaml").exists() else Path.cwd()


def install_root() -> Path:
    """The checkout this package runs from: its toolchain/ and, by default, its lab state."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "toolchain").is_dir() else project_root()


def cache_dir() -> Path:
    """Built tools, shared by every checkout on the machine (keyed by version inside)."""
    env = os.environ.get("CANARY_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "canary-rollout"


def state_dir() -> Path:
    """The lab's state: certificates, etcd data, logs, PIDs, the Pulumi backend and home."""
    env = os.environ.get("CANARY_STATE_DIR")
    return Path(env).resolve() if env else install_root() / ".lab"


def journal_dir() -> Path:
    """Rollout journals, one per stack; keep it on durable storage in pipelines (cache it)."""
    env = os.environ.get("CANARY_JOURNAL_DIR")
    return Path(env).resolve() if env else project_root() / ".rollout"
