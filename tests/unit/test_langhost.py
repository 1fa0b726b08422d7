"""The toolchain's language host runs the project's main, or the function CANARY_PROGRAM names
(`rollout run --program`), with the project on sys.path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from rollout.adapters.paths import install_root
from rollout.app.api import Rollouts
from rollout.core.errors import InvalidInput


def _langhost() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "langhost", install_root() / "toolchain" / "langhost.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "Pulumi.yaml").write_text("name: shop\nruntime: python\n")
    (tmp_path / "__main__.py").write_text(
        "from pathlib import Path\nPath('ran').write_text('__main__')\n")
    (tmp_path / "shop_prog.py").write_text(
        "from pathlib import Path\n\ndef deploy():\n    Path('ran').write_text('deploy')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield tmp_path
    sys.modules.pop("shop_prog", None)


@pytest.mark.parametrize(("entry", "ran"), [("", "__main__"), ("shop_prog:deploy", "deploy")])
def test_the_program_is_main_or_the_named_function(
        project: Path, monkeypatch: pytest.MonkeyPatch, entry: str, ran: str) -> None:
    monkeypatch.setenv("CANARY_PROGRAM", entry)
    _langhost().program()
    assert (project / "ran").read_text() == ran


@pytest.mark.parametrize(("entry", "message"), [
    ("shop prog", "is not a program entry point"),
    ("shop_prog:", "is not a program entry point"),
    ("nowhere_to_be_found:main", "no module nowhere_to_be_found"),
])
def test_a_bad_program_is_refused_before_anything_runs(project: Path, entry: str,
                                                       message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Rollouts(stack="prod", project_dir=project, program=entry)
    assert not (project / "ran").exists()


def test_a_module_of_the_project_or_an_installed_one_is_accepted(project: Path) -> None:
    assert Rollouts(stack="prod", project_dir=project, program="shop_prog:deploy").program
    assert Rollouts(stack="prod", project_dir=project, program="json").program == "json"
