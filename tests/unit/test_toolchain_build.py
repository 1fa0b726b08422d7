"""toolchain/build refuses a Go older than its modules need, naming both versions, before it
builds anything (GOTOOLCHAIN=local: an older Go would fail deep inside a build); it copies the
Gateway API conformance cases from their module."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from rollout.adapters.toolchain import read_versions

ROOT = Path(__file__).resolve().parents[2]
CONFORMANCE = "sigs.k8s.io/gateway-api/conformance"


def _needed() -> str:
    directives = [re.search(r"^go (\S+)$", mod.read_text(), re.M)
                  for mod in (ROOT / "toolchain").glob("*/go.mod")]
    versions = [tuple(int(x) for x in d[1].split(".")) for d in directives if d]
    return ".".join(map(str, max(versions)))


def _build(tmp_path: Path, target: str, go_version: str | None = None, *,
           module_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Runs toolchain/build TARGET with a fake `go` that reports `go_version` and answers
    `go mod download -json` for the conformance module with `module_dir` (else fails it)."""
    fake = tmp_path / "bin" / "go"
    fake.parent.mkdir()
    v = read_versions()
    download = json.dumps({"Path": CONFORMANCE, "Version": v["GATEWAY_API_VERSION"],
                           "Dir": str(module_dir)})
    answer = f"echo '{download}' && exit 0" if module_dir else "echo 'not found' >&2 && exit 1"
    fake.write_text(
        "#!/bin/sh\n"
        f'[ "$1 $2" = "env GOVERSION" ] && echo go{go_version or _needed()} && exit 0\n'
        f'[ "$*" = "mod download -json {CONFORMANCE}@{v["GATEWAY_API_VERSION"]}" ] && {answer}\n'
        "echo 'not expected: go '\"$*\" >&2; exit 9\n")
    fake.chmod(0o755)
    return subprocess.run([str(ROOT / "toolchain" / "build"), target], capture_output=True,
                          text=True, timeout=60, check=False,
                          env={"PATH": f"{fake.parent}:/usr/bin:/bin", "HOME": str(tmp_path),
                               "CANARY_CACHE_DIR": str(tmp_path / "cache")})


def _build_with_go(tmp_path: Path, version: str) -> subprocess.CompletedProcess[str]:
    # The CRDs already in the (empty) cache: a Go that passes the check has nothing to build.
    v = read_versions()
    crds = (tmp_path / "cache" / "tools" /
            f"crds-istio-{v['ISTIO_API_VERSION']}-gateway-{v['GATEWAY_API_VERSION']}")
    crds.mkdir(parents=True)
    (crds / ".complete").touch()
    return _build(tmp_path, "crds", version)


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


def _conformance_module(root: Path) -> Path:
    """The layout of the conformance module that the build step copies from."""
    for name in ("base/manifests.yaml", "mesh/manifests.yaml", "tests/httproute-a.go",
                 "tests/httproute-a.yaml", "tests/gateway-b.yaml", "tests/mesh/httproute-c.go",
                 "tests/mesh/httproute-c.yaml", "tests/mesh/mesh-d.yaml",
                 "tests/mesh/grpcroute-e.yaml"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"# {name}\n")
        (root / name).chmod(0o444)  # as in the Go module cache
    return root


def _conformance_dir(tmp_path: Path) -> Path:
    version = read_versions()["GATEWAY_API_VERSION"]
    return tmp_path / "cache" / "tools" / f"gateway-conformance-{version}"


def test_the_conformance_cases_are_copied_from_their_module(tmp_path: Path) -> None:
    module = _conformance_module(tmp_path / "module")

    done = _build(tmp_path, "gateway-conformance", module_dir=module)

    assert done.returncode == 0, done.stderr
    dest = _conformance_dir(tmp_path)
    copied = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert copied == [".complete", "base/manifests.yaml", "mesh/manifests.yaml",
                      "tests/httproute-a.go", "tests/httproute-a.yaml",
                      "tests/mesh/httproute-c.go", "tests/mesh/httproute-c.yaml",
                      "tests/mesh/mesh-d.yaml"]
    assert (dest / "tests/httproute-a.yaml").read_text() == "# tests/httproute-a.yaml\n"
    assert f"Gateway API conformance cases: {CONFORMANCE}@" in done.stderr


def test_cached_conformance_cases_are_not_fetched_again(tmp_path: Path) -> None:
    dest = _conformance_dir(tmp_path)
    dest.mkdir(parents=True)
    (dest / ".complete").touch()

    done = _build(tmp_path, "gateway-conformance")  # a download would fail

    assert done.returncode == 0, done.stderr
    assert "Gateway API conformance cases: cached" in done.stderr


def test_a_failed_conformance_download_says_which_module(tmp_path: Path) -> None:
    done = _build(tmp_path, "gateway-conformance")

    assert done.returncode == 1
    version = read_versions()["GATEWAY_API_VERSION"]
    assert (f"could not download {CONFORMANCE}@{version} from the Go module proxy"
            in done.stderr)
    assert not (_conformance_dir(tmp_path) / ".complete").exists()


def test_a_conformance_module_of_another_layout_is_refused(tmp_path: Path) -> None:
    module = _conformance_module(tmp_path / "module")
    (module / "base" / "manifests.yaml").unlink()

    done = _build(tmp_path, "gateway-conformance", module_dir=module)

    assert done.returncode == 1
    assert "has the suite's layout changed?" in done.stderr
    assert not (_conformance_dir(tmp_path) / ".complete").exists()
