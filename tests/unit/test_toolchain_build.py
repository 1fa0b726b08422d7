"""toolchain/build refuses a Go older than its modules need, naming both versions, before it
builds anything (GOTOOLCHAIN=local: an older Go would fail deep inside a build)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from rollout.adapters.toolchain import read_versions

ROOT = Path(__file__).resolve().parents[2]


def _needed() -> str:
    directives = [re.search(r"^go (\S+)$", mod.read_text(), re.M)
                  for mod in (ROOT / "toolchain").glob("*/go.mod")]
    versions = [tuple(int(x) for x in d[1].split(".")) for d in directives if d]
    return ".".join(map(str, max(versions)))


def _build_with_go(tmp_path: Path, version: str) -> subprocess.CompletedProcess[str]:
    fake = tmp_path / "bin" / "go"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\n[ "$1 $2" = "env GOVERSION" ] && echo go{version} && exit 0\n'
                    "echo 'not expected: go '\"$*\" >&2; exit 9\n")
    fake.chmod(0o755)
    # The CRDs already in the (empty) cache: a Go that passes the check has nothing to build.
    v = read_versions()
    crds = (tmp_path / "cache" / "tools" /
            f"crds-istio-{v['ISTIO_API_VERSION']}-gateway-{v['GATEWAY_API_VERSION']}")
    crds.mkdir(parents=True)
    (crds / ".complete").touch()
    return subprocess.run([str(ROOT / "toolchain" / "build"), "crds"], capture_output=True,
                          text=True, timeout=60, check=False,
                          env={"PATH": f"{fake.parent}:/usr/bin:/bin", "HOME": str(tmp_path),
                               "CANARY_CACHE_DIR": str(tmp_path / "cache")})


def test_an_older_go_is_refused_naming_the_version_needed(tmp_path: Path) -> None:
    need = _needed()
    major, minor, patch = (int(x) for x in need.split("."))
    older = f"{major}.{minor}.{patch - 1}" if patch else f"{major}.{minor - 1}.99"

    done = _build_with_go(tmp_path, older)

    assert done.returncode == 1, done.stderr
    assert f"Go {older} is too old: toolchain/*/go.mod needs Go >= {need}" in done.stderr


def test_the_go_the_modules_need_passes(tmp_path: Path) -> None:
    done = _build_with_go(tmp_path, _needed())

    assert done.returncode == 0, done.stderr
    assert "CRDs: cached" in done.stderr
