"""Finds the pinned tools built by toolchain/build, building them on first use."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from rollout.adapters.paths import cache_dir, install_root
from rollout.core.errors import ToolchainError

PROVIDER_PLUGIN = "resource-kubernetes"


def read_versions(path: Path | None = None) -> dict[str, str]:
    path = path or install_root() / "toolchain" / "versions.env"
    if not path.exists():
        raise ToolchainError(
            f"{path} is missing",
            hint="run from a checkout of the project or set CANARY_PROJECT_DIR",
        )
    versions: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip()
    return versions


@dataclass(frozen=True)
class Toolchain:
    """Absolute paths of every binary the lab and the Pulumi engine need."""

    pulumi: Path
    provider: Path
    provider_version: str
    etcd: Path
    kwok: Path
    kwok_stages: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    istio_crds: Path
    gateway_api_crds: Path
    # The Gateway API conformance suite's HTTPRoute cases, for the unit tests only: not among
    # what `missing()` lists, as the lab runs without them.
    gateway_conformance: Path
    prometheus: Path | None

    def missing(self) -> list[Path]:
        paths = [
            self.pulumi, self.provider, self.etcd, self.kwok, self.kwok_stages,
            self.kube_apiserver,
            self.kube_controller_manager, self.kube_scheduler, self.kubectl, self.istio_crds,
            self.gateway_api_crds,
        ]
        return [p for p in paths if not p.exists()]


def locate(versions: dict[str, str] | None = None) -> Toolchain:
    v = versions or read_versions()
    tools = cache_dir() / "tools"
    crds = tools / f"crds-istio-{v['ISTIO_API_VERSION']}-gateway-{v['GATEWAY_API_VERSION']}"
    k8s = tools / f"kubernetes-{v['KUBERNETES_VERSION']}"
    prometheus = shutil.which("prometheus")
    return Toolchain(
        pulumi=tools / f"pulumi-{v['PULUMI_VERSION']}" / "bin" / "pulumi",
        provider=tools / f"kubernetes-provider-{v['PULUMI_KUBERNETES_VERSION']}"
        / "pulumi-resource-kubernetes",
        provider_version=v["PULUMI_KUBERNETES_VERSION"],
        etcd=tools / f"etcd-{v['ETCD_VERSION']}" / "etcd",
        kwok=tools / f"kwok-{v['KWOK_VERSION']}" / "kwok",
        kwok_stages=tools / f"kwok-{v['KWOK_VERSION']}" / "stages.yaml",
        kube_apiserver=k8s / "kube-apiserver",
        kube_controller_manager=k8s / "kube-controller-manager",
        kube_scheduler=k8s / "kube-scheduler",
        kubectl=k8s / "kubectl",
        istio_crds=crds / "istio.yaml",
        gateway_api_crds=crds / "gateway-api.yaml",
        gateway_conformance=tools / f"gateway-conformance-{v['GATEWAY_API_VERSION']}",
        prometheus=Path(prometheus) if prometheus else None,
    )


def ensure_built() -> Toolchain:
    """Builds what is missing (a warm cache returns at once) and checks the result."""
    tools = locate()
    if tools.missing():
        script = install_root() / "toolchain" / "build"
        result = subprocess.run([str(script)], check=False)
        if result.returncode != 0:
            raise ToolchainError(
                "toolchain/build failed (its output above names the module and version)",
                hint="fix the reported module or network problem and run toolchain/build again",
            )
        tools = locate()
    if missing := tools.missing():
        raise ToolchainError(f"tools still missing after the build: {', '.join(map(str, missing))}")
    return tools


def install_provider_plugin(tools: Toolchain, pulumi_home: Path) -> Path:
    """Installs the locally built provider where the engine looks, so it never downloads one."""
    version = tools.provider_version
    plugins = pulumi_home / "plugins"
    target = plugins / f"{PROVIDER_PLUGIN}-{version}" / "pulumi-resource-kubernetes"
    partial = plugins / f"{PROVIDER_PLUGIN}-{version}.partial"
    if target.exists() and not partial.exists():
        return target
    env = {**os.environ, "PULUMI_HOME": str(pulumi_home), "PULUMI_SKIP_UPDATE_CHECK": "true"}
    cmd = [str(tools.pulumi), "plugin", "install", "resource", "kubernetes", version,
           "--file", str(tools.provider)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not target.exists():
        raise ToolchainError(
            f"could not install the kubernetes provider plugin {version} into {plugins}: "
            f"{result.stderr.strip() or result.stdout.strip()}",
            hint="rebuild it with `toolchain/build kubernetes-provider`",
        )
    return target


def pulumi_environment(tools: Toolchain, *, pulumi_home: Path, backend_dir: Path) -> dict[str, str]:
    """Variables that make the engine use our CLI, plugins and local backend, offline.

    A user's own PULUMI_BACKEND_URL or passphrase settings win over the lab defaults.
    """
    # kubectl (built from the control plane's own module) sits with the control plane.
    bin_dirs = [str(tools.pulumi.parent), str(install_root() / "toolchain" / "bin"),
                str(tools.kubectl.parent)]
    env = {
        "PULUMI_HOME": str(pulumi_home),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_BACKEND_URL": os.environ.get("PULUMI_BACKEND_URL", f"file://{backend_dir}"),
        "PATH": os.pathsep.join([*bin_dirs, os.environ.get("PATH", "")]),
        # The language host runs the program with the interpreter that has this package.
        "PULUMI_PYTHON": os.environ.get("PULUMI_PYTHON", sys.executable),
    }
    user_secrets = {"PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE"} & set(os.environ)
    if not user_secrets:
        env["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(pulumi_home / "passphrase")
    return env
