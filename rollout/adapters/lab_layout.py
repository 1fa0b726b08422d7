"""Where each piece of lab state lives, and which 127.0.0.1 ports the lab uses."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rollout.adapters.paths import state_dir
from rollout.core.errors import InvalidInput

DEFAULT_PORT_BASE = 16000


@dataclass(frozen=True)
class Ports:
    base: int

    @property
    def etcd_client(self) -> int:
        return self.base + 379

    @property
    def etcd_peer(self) -> int:
        return self.base + 380

    @property
    def apiserver(self) -> int:
        return self.base + 443

    @property
    def controller_manager(self) -> int:
        return self.base + 257

    @property
    def scheduler(self) -> int:
        return self.base + 259

    @property
    def kwok(self) -> int:
        return self.base + 247

    @property
    def prometheus(self) -> int:
        return self.base + 90


def ports_from_env() -> Ports:
    raw = os.environ.get("CANARY_LAB_PORT_BASE", str(DEFAULT_PORT_BASE))
    try:
        base = int(raw)
    except ValueError:
        base = -1
    if not 1024 <= base <= 64000:
        raise InvalidInput(
            f"CANARY_LAB_PORT_BASE={raw!r} is not a port base between 1024 and 64000",
            hint="unset it to use 16000, or pick a base whose ports base+90..base+443 are free",
        )
    return Ports(base)


@dataclass(frozen=True)
class Layout:
    root: Path

    @classmethod
    def default(cls) -> Layout:
        return cls(state_dir())

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def kwok_stages(self) -> Path:
        return self.root / "kwok-stages.yaml"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def certs(self) -> Path:
        return self.root / "serving-certs"

    @property
    def prometheus(self) -> Path:
        return self.root / "prometheus"

    @property
    def scrape_targets(self) -> Path:
        """Prometheus file_sd directory: drop a JSON target list here to get it scraped."""
        return self.prometheus / "targets"

    @property
    def pulumi_home(self) -> Path:
        return self.root / "pulumi-home"

    @property
    def pulumi_backend(self) -> Path:
        return self.root / "pulumi-backend"

    @property
    def passphrase(self) -> Path:
        return self.pulumi_home / "passphrase"


def default_kubeconfig() -> str:
    """The kubeconfig a command uses unless told another: $KUBECONFIG, else the lab's."""
    return os.environ.get("KUBECONFIG") or str(Layout.default().kubeconfig)
