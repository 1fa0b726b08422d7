"""The contract with Pulumi: what StackFile writes, the `pulumi` CLI reads back unchanged.

Needs the pinned CLI from toolchain/build (not the lab): a file backend in tmp_path and a
passphrase are all it uses. Skipped when the CLI has not been built.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from rollout.adapters.paths import project_root
from rollout.adapters.stack import StackAdapter, settings_path
from rollout.adapters.toolchain import locate
from rollout.core.stack_data import ConfigEntry

P = "demo"
PULUMI = locate().pulumi

pytestmark = pytest.mark.skipif(not PULUMI.exists(),
                                reason=f"{PULUMI} is not built (run toolchain/build)")

VALUES = [
    "1.10", "yes", "on", "off", "y", "n", "No", "null", "NULL", "~", "", "0o7", "0b101", "1e3",
    ".inf", "-.inf", ".NaN", "v2", "20", "-3", "0", "-0", "08", "0x1f", "1_000", "+1", "1.",
    "12345678901234567890", "true", "false", "True", "2001-12-14", "1:20", "=", "<<", "a: b",
    "#x", "x #y", "- x", "[a]", "{a: 1}", "*a", "&a", "!t", "%x", "@x", "`x", "'q'", '"dq"',
    " lead", "trail ", "tab\there", "two\nlines", "é ü", "a\u00a0b", '{"from": "staging"}',
    "registry.local/demo:1.2.3", "1.2.3",
]


def run(project: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(PULUMI), *args, "--non-interactive"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_pulumi_reads_back_exactly_the_strings_written(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PULUMI_CONFIG_PASSPHRASE_FILE", "PULUMI_BACKEND_URL", "PULUMI_ACCESS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    project = tmp_path / "project"
    (project / "stacks").mkdir(parents=True)
    (project / "Pulumi.yaml").write_text(f"name: {P}\nruntime: python\nstackConfigDir: stacks\n")
    (tmp_path / "backend").mkdir()
    env = {"PULUMI_BACKEND_URL": f"file://{tmp_path / 'backend'}",
           "PULUMI_CONFIG_PASSPHRASE": "contract", "PULUMI_HOME": str(tmp_path / "home"),
           "PULUMI_SKIP_UPDATE_CHECK": "true"}
    cli_env = {**os.environ, **env}
    run(project, cli_env, "stack", "init", "t")
    run(project, cli_env, "config", "set", "--secret", f"{P}:token", "s3cr3t", "-s", "t")
    path = settings_path(project, "t")
    written_by_pulumi = YAML(typ="safe", pure=True).load(path.read_text())
    secure = written_by_pulumi["config"][f"{P}:token"]["secure"]
    # A committed stack file as people write it (typed values), plus Pulumi's own lines.
    original = ((project_root() / "stacks" / "Pulumi.dev.yaml").read_text()
                + f"  {P}:token:\n    secure: {secure}\n"
                + f"encryptionsalt: {written_by_pulumi['encryptionsalt']}\n")
    path.write_text(original)

    adapter = StackAdapter(stack="t", project_dir=project, env=env, pulumi_bin=PULUMI)
    keys = [f"{P}:v{i:02d}" for i in range(len(VALUES))]
    # New keys first, then every existing style (typed, plain, quoted) gets other values.
    for shift in (0, 7, 23):
        wanted = {key: VALUES[(i + shift) % len(VALUES)] for i, key in enumerate(keys)}
        adapter.set_config(wanted)
        config = adapter.config()
        assert {k: config[k].value for k in keys} == wanted

    assert config[f"{P}:token"] == ConfigEntry("s3cr3t", secret=True)
    assert config[f"{P}:createNamespace"].value == "true"
    assert config[f"{P}:replicas"].value == "1"
    text = path.read_text()
    assert text.startswith(original.split(f"  {P}:token:")[0])  # every old line, untouched
    assert f"  {P}:token:\n    secure: {secure}\n" in text

    adapter.remove_config([*keys, f"{P}:token"])
    assert path.read_text() == original.replace(f"  {P}:token:\n    secure: {secure}\n", "")
    assert f"{P}:v00" not in adapter.config()


# Plain values the `pulumi` CLI itself cannot load ("json: unsupported value: +Inf").
PULUMI_REFUSES = {".inf", "-.inf", ".NaN"}


def test_values_read_without_the_cli_are_what_pulumi_reads_or_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The driver reads its canary keys from the file on every step instead of running
    # `pulumi config` (0.3 s): an answer must be exactly Pulumi's, or None ("ask Pulumi").
    for name in ("PULUMI_CONFIG_PASSPHRASE_FILE", "PULUMI_BACKEND_URL", "PULUMI_ACCESS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text(f"name: {P}\nruntime: python\n")
    (tmp_path / "backend").mkdir()
    env = {"PULUMI_BACKEND_URL": f"file://{tmp_path / 'backend'}",
           "PULUMI_CONFIG_PASSPHRASE": "contract", "PULUMI_HOME": str(tmp_path / "home"),
           "PULUMI_SKIP_UPDATE_CHECK": "true"}
    run(project, {**os.environ, **env}, "stack", "init", "t")
    path = settings_path(project, "t")
    adapter = StackAdapter(stack="t", project_dir=project, env=env, pulumi_bin=PULUMI)
    # By hand, as people type them: plain, single- and double-quoted where YAML allows.
    lines, keys = [], []
    for i, value in enumerate(VALUES):
        for style, text in (("p", value), ("s", "'" + value.replace("'", "''") + "'"),
                            ("d", '"' + value.replace('"', '\\"') + '"')):
            if "\n" in value or "\t" in value or (style == "p" and value in PULUMI_REFUSES):
                continue
            key = f"{P}:{style}{i:02d}"
            lines.append(f"  {key}: {text}")
            keys.append(key)
    kept = []
    for line in lines:  # only the lines that are YAML at all
        try:
            YAML(typ="safe", pure=True).load("config:\n" + line + "\n")
            kept.append(line)
        except Exception:  # a line no YAML reader takes is no test case
            continue
    path.write_text("config:\n" + "\n".join(kept) + "\n")
    keys = [line.split(": ", 1)[0].strip() for line in kept]
    config = adapter.config()
    answered = 0
    for key in keys:
        found = adapter.settings_file().plain_values([key])
        if found is None:
            continue
        answered += 1
        assert found[key] == (config[key].value if key in config else None), key
    assert answered > len(keys) // 2  # most values need no CLI run
    assert adapter.settings_file().plain_values([f"{P}:absent"]) == {f"{P}:absent": None}
    # An environment import may set anything: only Pulumi can say.
    path.write_text("environment:\n  - shop/prod\nconfig:\n  demo:canaryWeight: '20'\n")
    assert adapter.settings_file().plain_values([f"{P}:canaryWeight"]) is None
