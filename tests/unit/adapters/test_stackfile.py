"""Covers StackFile: config edits of a stack file change exactly the lines asked for."""

from __future__ import annotations

import difflib
import multiprocessing
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from ruamel.yaml import YAML

from rollout.adapters.paths import project_root
from rollout.adapters.stack import settings_path
from rollout.adapters.stackfile import StackFile, plain_is_safe
from rollout.core.errors import InfrastructureError, InvalidInput

P = "demo"
STACKS = sorted((project_root() / "stacks").glob("Pulumi.*.yaml"))
SALT = "v1:fx3hfr013hA=:v1:uILwNXETnINYesDN:Osi+lKy60hs/AtxK9N3msLneqYWjZQ=="

# Hand-written files with everything a person (or `pulumi config set`) puts in one.
NASTY = {
    "comments": f"""\
# The dev stack: committed after every release.
config:
  {P}:app: demo        # the DNS name, aligned
  {P}:namespace: dev # short
  {P}:createNamespace: true

  # Versions: the driver moves these.
  {P}:stableVersion: v1  # promoted last
  {P}:replicas: 1
  {P}:hosts: [demo, demo.dev.example.internal]   # flow list
  {P}:analysis:
    interval: 10s   # nested comment
    metrics:
    - name: request-success-rate
      thresholdRange: {{min: 99}}
    - name: request-duration
      thresholdRange:
        max: 500

  # the end of config
encryptionsalt: {SALT}
""",
    "pulumi-written": f"""\
config:
  {P}:app: demo
  {P}:createNamespace: "true"
  {P}:replicas: "1"
  {P}:stableVersion: v1
  {P}:token:
    secure: v1:not-a-real-ciphertext:only-its-shape-matters
  {P}:hosts:
    - demo
    - demo.x
encryptionsalt: {SALT}
""",
    "quoting": f"""\
config:
  {P}:stableVersion: 'v1'
  {P}:label: "it's \\"quoted\\""
  {P}:hex: 0x1F
  {P}:ratio: 1.5
  {P}:empty:
  {P}:nothing: null
  {P}:note: |
    two
    lines
  {P}:canaryWeight: "20"
""",
    "no-final-newline": f"config:\n  {P}:stableVersion: v1\n  {P}:replicas: 2",
    "crlf": f"config:\r\n  {P}:stableVersion: v1 # crlf\r\n  {P}:replicas: 2\r\n",
    "four-spaces": f"""\
config:
    {P}:stableVersion: v1
    {P}:hosts:
        - demo
    {P}:analysis:
        interval: 10s
secretsprovider: passphrase
""",
}
FILES = [pytest.param(path.read_text(), id=path.name) for path in STACKS] + [
    pytest.param(text, id=name) for name, text in NASTY.items()]


def write(tmp_path: Path, text: str, name: str = "Pulumi.t.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def pulumi_strings(text: str) -> dict[str, str]:
    """The plain config values as Pulumi reads them (typed YAML becomes its JSON text)."""
    config = (YAML(typ="safe", pure=True).load(text) or {}).get("config") or {}
    out = {}
    for key, value in config.items():
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, int | str):
            out[key] = str(value)
    return out


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    removed, added = [], []
    for line in difflib.ndiff(before.splitlines(True), after.splitlines(True)):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    return removed, added


def test_there_are_stack_files_to_check() -> None:
    assert len(STACKS) >= 4


@pytest.mark.parametrize("text", FILES)
def test_setting_every_value_to_what_it_is_writes_nothing(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    before = path.stat()
    current = {k: v for k, v in pulumi_strings(text).items() if not k.endswith(":hex")}
    assert current
    StackFile(path).set(current)
    assert path.read_bytes() == text.encode()
    assert path.stat().st_ino == before.st_ino and path.stat().st_mtime_ns == before.st_mtime_ns


@pytest.mark.parametrize("text", FILES)
def test_set_and_set_back_is_byte_identical(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    stack_file = StackFile(path)
    original = pulumi_strings(text)
    release = {f"{P}:stableVersion": "v9", f"{P}:canaryVersion": "v9",
               f"{P}:canaryWeight": "30", f"{P}:replicas": "3"}
    stack_file.set(release)
    assert path.read_bytes() != text.encode()
    stack_file.set({key: original[key] for key in release if key in original})
    stack_file.remove([key for key in release if key not in original])
    assert path.read_bytes() == text.encode()


@pytest.mark.parametrize("path", STACKS, ids=[p.name for p in STACKS])
def test_a_promotion_changes_exactly_the_stable_version_line(tmp_path: Path, path: Path) -> None:
    text = path.read_text()
    copy = write(tmp_path, text, path.name)
    StackFile(copy).set({f"{P}:stableVersion": "v2"})
    removed, added = changed_lines(text, copy.read_text())
    assert removed == [f"  {P}:stableVersion: v1\n"]
    assert added == [f"  {P}:stableVersion: v2\n"]


@pytest.mark.parametrize("path", STACKS, ids=[p.name for p in STACKS])
def test_a_rollout_adds_and_removes_only_its_own_lines(tmp_path: Path, path: Path) -> None:
    text = path.read_text()
    copy = write(tmp_path, text, path.name)
    StackFile(copy).set({f"{P}:canaryVersion": "v2", f"{P}:canaryWeight": "20",
                         f"{P}:canaryReplicas": "1"})
    removed, added = changed_lines(text, copy.read_text())
    assert removed == []
    assert added == [f"  {P}:canaryVersion: v2\n", f"  {P}:canaryWeight: 20\n",
                     f"  {P}:canaryReplicas: 1\n"]
    assert copy.read_text().endswith("".join(added))  # new keys close `config:`
    # The typed neighbours keep their YAML types.
    assert f"  {P}:createNamespace: true\n" in copy.read_text()
    assert isinstance(yaml.safe_load(copy.read_text())["config"][f"{P}:replicas"], int)


def test_comments_blank_lines_and_alignment_survive_edits(tmp_path: Path) -> None:
    text = NASTY["comments"]
    path = write(tmp_path, text)
    StackFile(path).set({f"{P}:app": "demo-two", f"{P}:stableVersion": "v10",
                         f"{P}:canaryWeight": "5"})
    removed, added = changed_lines(text, path.read_text())
    assert removed == [f"  {P}:app: demo        # the DNS name, aligned\n",
                       f"  {P}:stableVersion: v1  # promoted last\n"]
    assert added == [f"  {P}:app: demo-two    # the DNS name, aligned\n",
                     f"  {P}:stableVersion: v10 # promoted last\n",
                     f"  {P}:canaryWeight: 5\n"]
    lines = path.read_text().splitlines()
    # The new key goes after the last value, before the comments that close the mapping.
    assert lines[lines.index(f"  {P}:canaryWeight: 5") - 1] == "        max: 500"
    assert lines[-3:] == ["", "  # the end of config", f"encryptionsalt: {SALT}"]


def test_removing_a_key_keeps_the_comment_above_the_next_one(tmp_path: Path) -> None:
    text = NASTY["comments"]
    path = write(tmp_path, text)
    StackFile(path).remove([f"{P}:createNamespace", f"{P}:analysis"])
    removed, added = changed_lines(text, path.read_text())
    assert added == []
    assert removed[0] == f"  {P}:createNamespace: true\n"
    assert removed[1] == f"  {P}:analysis:\n" and removed[-1] == "        max: 500\n"
    assert "  # Versions: the driver moves these.\n" in path.read_text()
    assert "  # the end of config\n" in path.read_text()


@pytest.mark.parametrize(("value", "line"), [
    ("1.10", '"1.10"'), ("yes", '"yes"'), ("on", '"on"'), ("null", '"null"'), ("~", '"~"'),
    ("", '""'), ("0o7", '"0o7"'), ("1e3", '"1e3"'), (".inf", '".inf"'), ("v2", "v2"),
    ("20", "20"), ("08", '"08"'), ("0x1f", '"0x1f"'), ("y", '"y"'), ("No", '"No"'),
    ("true", "true"), ("True", '"True"'), ("-0", '"-0"'), ("1_000", '"1_000"'),
    ("2001-12-14", '"2001-12-14"'), ("1:20", '"1:20"'), ("a: b", "'a: b'"), ("#x", "'#x'"),
    ("x #y", "'x #y'"), (" lead", '" lead"'), ("tab\there", '"tab\\there"'),
    ("two\nlines", '"two\\nlines"'), ("registry.local/demo:1.2.3", "registry.local/demo:1.2.3"),
    ("1.2.3", "1.2.3"), ("é ü", "é ü"), ("12345678901234567890", '"12345678901234567890"'),
])
def test_a_new_value_reads_back_as_the_same_string(tmp_path: Path, value: str,
                                                   line: str) -> None:
    path = write(tmp_path, NASTY["pulumi-written"])
    StackFile(path).set({f"{P}:new": value})
    text = path.read_text()
    assert f"  {P}:new: {line}\n" in text
    assert pulumi_strings(text)[f"{P}:new"] == value
    # YAML 1.1 readers (PyYAML) agree wherever the value was not written typed on purpose.
    loaded = yaml.safe_load(text)["config"][f"{P}:new"]
    assert loaded == value or (value, loaded) in (("20", 20), ("true", True))


@pytest.mark.parametrize(("key", "value", "line"), [
    # Existing typed nodes stay typed while the value allows it.
    ("replicas", "3", "replicas: 3"),
    ("replicas", "three", "replicas: three"),
    ("replicas", "1.5", 'replicas: "1.5"'),
    ("createNamespace", "false", "createNamespace: false"),
    ("createNamespace", "yes", 'createNamespace: "yes"'),
    # Quoted stays quoted, single or double.
    ("stableVersion", "v2", "stableVersion: 'v2'"),
    ("stableVersion", "it's", "stableVersion: 'it''s'"),
    ("canaryWeight", "30", 'canaryWeight: "30"'),
    ("canaryWeight", "v3", 'canaryWeight: "v3"'),
    # A plain string stays plain unless the new value needs quotes.
    ("app", "demo2", "app: demo2"),
    ("app", "20", 'app: "20"'),
    ("hex", "31", 'hex: "31"'),
    ("ratio", "2.5", 'ratio: "2.5"'),
    ("empty", "x", "empty: x"),
    ("nothing", "null", 'nothing: "null"'),
    ("note", "one", 'note: "one"'),
])
def test_an_existing_value_keeps_its_style_when_it_can(tmp_path: Path, key: str, value: str,
                                                       line: str) -> None:
    source = NASTY["quoting"].replace("config:\n", f"config:\n  {P}:app: demo\n  "
                                      f"{P}:replicas: 1\n  {P}:createNamespace: true\n")
    path = write(tmp_path, source)
    StackFile(path).set({f"{P}:{key}": value})
    text = path.read_text()
    assert f"  {P}:{line}\n" in text
    assert pulumi_strings(text)[f"{P}:{key}"] == value
    removed, added = changed_lines(source, text)
    assert len(added) == 1 and all(f"{P}:{key}:" in r or key == "note" for r in removed)


@pytest.mark.parametrize("key", ["token", "hosts"])
def test_a_secret_or_structured_value_is_never_overwritten(tmp_path: Path, key: str) -> None:
    path = write(tmp_path, NASTY["pulumi-written"])
    before = path.stat().st_mtime_ns
    with pytest.raises(InvalidInput) as err:
        StackFile(path).set({f"{P}:stableVersion": "v2", f"{P}:{key}": "plain"})
    assert f"{P}:{key}" in str(err.value)
    assert path.read_text() == NASTY["pulumi-written"]
    assert path.stat().st_mtime_ns == before


def test_removing_a_secret_leaves_the_rest(tmp_path: Path) -> None:
    path = write(tmp_path, NASTY["pulumi-written"])
    StackFile(path).remove([f"{P}:token"])
    removed, added = changed_lines(NASTY["pulumi-written"], path.read_text())
    assert added == [] and len(removed) == 2 and "secure:" in removed[1]


def test_removing_an_absent_key_writes_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, NASTY["comments"])
    before = path.stat()
    StackFile(path).remove([f"{P}:canaryWeight"])
    StackFile(tmp_path / "Pulumi.missing.yaml").remove([f"{P}:canaryWeight"])
    assert path.stat().st_mtime_ns == before.st_mtime_ns and path.stat().st_ino == before.st_ino
    assert not (tmp_path / "Pulumi.missing.yaml").exists()


def test_removing_every_key_leaves_an_empty_config(tmp_path: Path) -> None:
    path = write(tmp_path, f"config:\n  {P}:a: 1\nencryptionsalt: x\n")
    StackFile(path).remove([f"{P}:a"])
    assert path.read_text() == "config:\nencryptionsalt: x\n"
    StackFile(path).set({f"{P}:a": "1"})
    assert path.read_text() == f"config:\n  {P}:a: 1\nencryptionsalt: x\n"


@pytest.mark.parametrize(("text", "expected"), [
    ("", f"config:\n  {P}:a: v\n"),
    ("# just a comment\n", f"# just a comment\nconfig:\n  {P}:a: v\n"),
    ("encryptionsalt: x\n", f"encryptionsalt: x\nconfig:\n  {P}:a: v\n"),
    ("config:\nencryptionsalt: x\n", f"config:\n  {P}:a: v\nencryptionsalt: x\n"),
    ("config: {}  # none yet\n", f"config: # none yet\n  {P}:a: v\n"),
    ("config: null", f"config:\n  {P}:a: v"),
])
def test_config_is_created_where_missing(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    StackFile(path).set({f"{P}:a": "v"})
    assert path.read_text() == expected


def test_a_missing_file_is_created_with_the_usual_mode(tmp_path: Path) -> None:
    path = tmp_path / "stacks" / "Pulumi.new.yaml"
    StackFile(path).set({f"{P}:stableVersion": "v1", f"{P}:replicas": "2"})
    assert path.read_text() == f"config:\n  {P}:stableVersion: v1\n  {P}:replicas: 2\n"
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_line_endings_and_a_missing_final_newline_are_kept(tmp_path: Path) -> None:
    crlf = write(tmp_path, NASTY["crlf"], "crlf.yaml")
    StackFile(crlf).set({f"{P}:stableVersion": "v2", f"{P}:canaryWeight": "10"})
    assert crlf.read_bytes() == (f"config:\r\n  {P}:stableVersion: v2 # crlf\r\n  "
                                 f"{P}:replicas: 2\r\n  {P}:canaryWeight: 10\r\n").encode()
    bare = write(tmp_path, NASTY["no-final-newline"], "bare.yaml")
    StackFile(bare).set({f"{P}:canaryWeight": "10"})
    assert bare.read_text() == NASTY["no-final-newline"] + f"\n  {P}:canaryWeight: 10"


def test_the_write_is_atomic_and_keeps_mode_and_symlink(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    target = write(tmp_path, NASTY["comments"], "real.yaml")
    target.chmod(0o640)
    link = tmp_path / "Pulumi.t.yaml"
    link.symlink_to(target.name)
    StackFile(link).set({f"{P}:stableVersion": "v2"})
    assert link.is_symlink() and f"{P}:stableVersion: v2" in target.read_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Pulumi.t.yaml", "real.yaml"]

    def fail(*args: Any) -> None:
        raise OSError("disk full")

    before = target.read_bytes()
    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(InfrastructureError, match="disk full"):
        StackFile(link).set({f"{P}:stableVersion": "v3"})
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Pulumi.t.yaml", "real.yaml"]


@pytest.mark.parametrize(("text", "needle"), [
    (f"config: {{{P}:a: 1}}\n", "flow style"),
    (f"config:\n  {P}:a: 1\n  {P}:a: 2\n", "twice"),
    (f"config:\n  {P}:a: 1\n---\nconfig: {{}}\n", "single valid YAML document"),
    ("- config\n", "not a block mapping"),
    ("config: [a]\n", "not a mapping"),
    (f"config:\n  {P}:a: [1\n", "single valid YAML document"),
])
def test_a_file_that_cannot_be_edited_in_place_is_refused(tmp_path: Path, text: str,
                                                          needle: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InvalidInput, match=needle):
        StackFile(path).set({f"{P}:b": "2"})
    assert path.read_text() == text


@pytest.mark.parametrize("source", [f"&x 1\n  {P}:b: *x", "!!str 1"])
def test_tags_anchors_and_aliases_are_left_to_people(tmp_path: Path, source: str) -> None:
    path = write(tmp_path, f"config:\n  {P}:a: {source}\n")
    with pytest.raises(InvalidInput, match=f"{P}:a"):
        StackFile(path).set({f"{P}:a": "2"})


def test_removing_an_anchor_that_is_still_used_is_refused(tmp_path: Path) -> None:
    text = f"config:\n  {P}:a: &x 1\n  {P}:b: *x\n"
    path = write(tmp_path, text)
    with pytest.raises(InvalidInput, match="undefined alias"):
        StackFile(path).remove([f"{P}:a"])
    assert path.read_text() == text
    StackFile(path).remove([f"{P}:b"])
    assert path.read_text() == f"config:\n  {P}:a: &x 1\n"


@pytest.mark.parametrize("key", ["stableVersion", ":x", "p:", " p:x", "p:x\ny"])
def test_keys_must_be_fully_qualified(tmp_path: Path, key: str) -> None:
    with pytest.raises(InvalidInput, match="not a config key"):
        StackFile(tmp_path / "x.yaml").set({key: "1"})


def test_plain_is_safe_only_for_strings_every_reader_keeps() -> None:
    assert plain_is_safe("v1.2.3") and plain_is_safe("registry.local/demo")
    for value in ("Off", "NULL", "+1", "-.inf", ".NaN", "0b101", "1.", "=", "<<", "n"):
        assert not plain_is_safe(value), value


@pytest.mark.parametrize(("project", "stack", "expected"), [
    ("name: p\nruntime: python\nstackConfigDir: stacks\n", "dev", "stacks/Pulumi.dev.yaml"),
    ("name: p\nruntime: python\nconfig: cfg\n", "org/p/dev", "cfg/Pulumi.dev.yaml"),
    ("name: p\nruntime: python\n", "organization/p/a.b", "Pulumi.a.b.yaml"),
])
def test_the_settings_file_is_where_the_cli_keeps_it(tmp_path: Path, project: str, stack: str,
                                                     expected: str) -> None:
    (tmp_path / "Pulumi.yaml").write_text(project)
    assert settings_path(tmp_path, stack) == tmp_path / expected


def test_the_settings_file_of_a_yml_project_is_yml(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yml").write_text("name: p\nruntime: python\n")
    assert settings_path(tmp_path, "dev") == tmp_path / "Pulumi.dev.yml"
    (tmp_path / "Pulumi.yml").unlink()
    (tmp_path / "Pulumi.json").write_text('{"name": "p"}')
    with pytest.raises(InvalidInput, match="JSON"):
        settings_path(tmp_path, "dev")


def test_this_projects_stack_files_are_found() -> None:
    root = project_root()
    assert settings_path(root, "organization/canary-service/dev") == root / "stacks" / \
        "Pulumi.dev.yaml"


def _write_weights(path: Path, service: str) -> None:
    for weight in range(60):
        StackFile(path).set({f"{service}:canaryWeight": str(weight)})


def test_two_writers_of_one_stack_file_lose_no_edit(tmp_path: Path) -> None:
    # Two drivers (processes) of two services of one stack edit the same file, each its own
    # keys; without the lock one's read-edit-write overwrote the other's about every run.
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text("config:\n  checkout:stableVersion: v1\n  cart:stableVersion: v1\n")
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_write_weights, args=(path, s))
               for s in ("checkout", "cart")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
    assert [w.exitcode for w in writers] == [0, 0]
    data = yaml.safe_load(path.read_text())["config"]
    assert data["checkout:canaryWeight"] == 59 and data["cart:canaryWeight"] == 59
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Pulumi.prod.yaml"]
