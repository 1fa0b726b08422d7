"""Edits the plain config values of one Pulumi stack settings file, changing nothing else."""

from __future__ import annotations

import contextlib
import fcntl
import io
import itertools
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

from rollout.core.errors import InfrastructureError, InvalidInput

_STR = "tag:yaml.org,2002:str"
# Plain text that some YAML reader takes for something else than a string: YAML 1.2 (ruamel,
# Go's yaml.v3 that Pulumi uses) and 1.1 (PyYAML, older tools: yes/on/y, 1:20, 2001-12-14).
_RESOLVERS = (VersionedResolver(version=(1, 2)), VersionedResolver(version=(1, 1)))
# What yaml.v3 reads as a float, besides everything strconv.ParseInt(s, 0, 64) takes ("08").
_GO_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_CANONICAL_INT = re.compile(r"^(0|-?[1-9][0-9]{0,14})$")
_BOOLS = ("true", "false")
_INDENT = 2
_WIDE = 1 << 30


class StackFile:
    """One Pulumi stack settings file (`Pulumi.<stack>.yaml`) whose `config:` values change.

    An edit is a splice of the exact source spans the YAML parser reports: a changed value is
    replaced inside its own line (an end-of-line comment keeps its column where it can), a new
    key is one new line at the end of `config:`, a removed key loses exactly the lines of its
    key and value. Every other byte (comments, blank lines, quoting, typed neighbours such as
    `replicas: 1`, indentation, line endings) stays as it was. The result is parsed again and
    must hold exactly the old data plus the edit, or nothing is written; the write is atomic.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Holds the stack config folder's lock for one read-edit-write, so that two drivers
        (two services of one stack) never lose each other's edit. A lock on the folder itself
        leaves no lock file behind in a folder people commit."""
        try:
            handle = os.open(self.path.parent, os.O_RDONLY)
        except FileNotFoundError:
            yield  # nothing to edit yet; _read says so
            return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        finally:
            os.close(handle)

    def set(self, values: dict[str, str]) -> None:
        with self._exclusive():
            self._set(values)

    def remove(self, keys: list[str]) -> None:
        """Removes these config keys (any value, secrets included); absent keys are ignored."""
        with self._exclusive():
            self._remove(keys)

    def plain_values(self, keys: list[str]) -> dict[str, str | None] | None:
        """These keys' values as Pulumi reads them from this file (None: absent), read
        without the `pulumi` CLI; None when one of them is not a plain value that every YAML
        reader reads alike (a secret, a structure, `1.10`, `yes`), or when the file imports
        an environment: then only Pulumi can say."""
        doc = _Document(self._read(), self.path)
        if doc.root is not None and any(k.value == "environment"
                                        for k, _ in doc._pairs(doc.root, "the top level")):
            return None
        found: dict[str, str | None] = {}
        for key in keys:
            entry = doc.entries.get(key)
            if entry is None:
                found[key] = None
                continue
            node = entry.value
            if not isinstance(node, ScalarNode) or getattr(node, "anchor", None):
                return None
            value = str(node.value)
            if node.style is None and not (plain_is_safe(value) or _CANONICAL_INT.match(value)):
                return None
            if node.style is not None and str(node.tag) != _STR:
                return None
            found[key] = value
        return found

    def add_block(self, lines: list[str], data: dict[str, Any]) -> None:
        """Adds new keys as these lines of YAML (comments allowed) at the end of `config:`;
        `data` is what they must parse to. A key already present is refused."""
        with self._exclusive():
            text = self._read()
            doc = _Document(text, self.path)
            present = sorted(set(data) & set(doc.entries))
            if present:
                raise InvalidInput(f"{self.path} already sets {', '.join(present)}",
                                   hint="edit those keys instead, or remove them first")
            self._commit(text, [doc.append_lines(lines)], written=data, removed=[])

    def _set(self, values: dict[str, str]) -> None:
        """Sets plain config keys (`project:key`) so that Pulumi reads back exactly `values`."""
        for key, value in values.items():
            _check_key(key)
            if not isinstance(value, str):
                raise InvalidInput(f"config value of {key} must be a string, not {value!r}")
        if not values:
            return
        text = self._read()
        doc = _Document(text, self.path)
        splices: list[_Splice] = []
        new: dict[str, _Rendered] = {}
        written: dict[str, Any] = {}
        for key, value in values.items():
            entry = doc.entries.get(key)
            if entry is None:
                new[key] = _render_new(value)
                written[key] = new[key].data
                continue
            rendered = _render_existing(key, entry, value, text)
            if rendered is None:
                written[key] = value
                continue
            written[key] = rendered.data
            splice = doc.replace_value(entry, rendered.text)
            if splice is not None:
                splices.append(splice)
        if new:
            splices.append(doc.append({key: r.text for key, r in new.items()}))
        if splices:
            self._commit(text, splices, written=written, removed=[])

    def _remove(self, keys: list[str]) -> None:
        for key in keys:
            _check_key(key)
        if not keys:
            return
        text = self._read()
        doc = _Document(text, self.path)
        present = [key for key in dict.fromkeys(keys) if key in doc.entries]
        if present:
            splices = doc.cuts([doc.entries[key] for key in present])
            self._commit(text, splices, written={}, removed=present)

    # -- reading and writing ------------------------------------------------------------

    def _read(self) -> str:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return ""
        except OSError as err:
            raise InfrastructureError(f"cannot read {self.path}: {err}") from err
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InvalidInput(f"{self.path} is not UTF-8 text: {err}",
                               hint="save the stack file as UTF-8") from err

    def _commit(self, text: str, splices: list[_Splice], *, written: dict[str, Any],
                removed: list[str]) -> None:
        result = _apply(text, splices)
        _verify(self.path, text, result, written=written, removed=removed)
        _write_atomic(self.path, result.encode("utf-8"))


# -- the document -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Splice:
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class _Entry:
    key: Node
    value: Node


@dataclass(frozen=True)
class _Rendered:
    text: str
    data: Any


class _Document:
    """The parsed file: where `config:` and each of its entries are in the text."""

    def __init__(self, text: str, path: Path) -> None:
        self.text = text
        self.path = path
        self.newline = "\r\n" if "\r\n" in text else "\n"
        try:
            root = YAML(typ="rt").compose(text)
        except YAMLError as err:
            raise self._refuse(f"is not a single valid YAML document: {err}") from err
        self.root: MappingNode | None = None
        self.config_key: Node | None = None
        self.config: Node | None = None
        self.entries: dict[str, _Entry] = {}
        if root is None or _is_null(root):
            return
        if not isinstance(root, MappingNode) or root.flow_style:
            raise self._refuse("is not a block mapping at the top")
        self.root = root
        for key, value in self._pairs(root, "the top level"):
            if key.value == "config":
                self.config_key, self.config = key, value
        if self.config is None or _is_null(self.config):
            return
        if not isinstance(self.config, MappingNode):
            raise self._refuse("has a `config:` that is not a mapping")
        if self.config.flow_style:
            if self.config.value:
                raise self._refuse("writes `config:` in flow style ({...})",
                                   hint="write it as a block mapping, one key per line")
            return
        for key, value in self._pairs(self.config, "`config:`"):
            self.entries[key.value] = _Entry(key, value)

    def _pairs(self, mapping: MappingNode, where: str) -> list[tuple[ScalarNode, Node]]:
        seen: set[str] = set()
        pairs = []
        for key, value in mapping.value:
            if not isinstance(key, ScalarNode) or key.tag == "tag:yaml.org,2002:merge" \
                    or self.text[self._line_start(key.start_mark.index):key.start_mark.index] \
                    .strip(" \t\ufeff"):
                raise self._refuse(f"has a key in {where} that is not a plain key on its own "
                                   f"line (line {key.start_mark.line + 1})")
            if key.value in seen:
                raise self._refuse(f"has {key.value} twice in {where}")
            seen.add(key.value)
            pairs.append((key, value))
        return pairs

    def _refuse(self, what: str, *, hint: str | None = None) -> InvalidInput:
        return InvalidInput(
            f"{self.path} {what}; it cannot be edited without reformatting it",
            hint=hint or "edit the stack file by hand (or with `pulumi config set`)",
        )

    # -- positions ----------------------------------------------------------------------

    def _line_start(self, index: int) -> int:
        return self.text.rfind("\n", 0, index) + 1

    def _line_end(self, index: int) -> int:
        """The index just past the line break of the line holding `index` (or the end)."""
        found = self.text.find("\n", index)
        return len(self.text) if found < 0 else found + 1

    def _content_end(self, key: Node, value: Node) -> int:
        """Where the text of `key`'s value ends, without the comments and blank lines after
        it (the parser puts the end of a block collection after those)."""
        floor = key.end_mark.index
        while isinstance(value, MappingNode | SequenceNode) and value.value \
                and not value.flow_style and value.start_mark.index >= floor:
            floor = value.start_mark.index
            last = value.value[-1]
            key, value = last if isinstance(last, tuple) else (None, last)
        start, end = value.start_mark.index, value.end_mark.index
        if start < floor:
            # An alias (`*name`): the node is the anchored one, written further up.
            if key is None:
                raise self._refuse("ends a list with an alias (`- *name`)")
            return self._line_end(key.end_mark.index) - 1
        if start == end:
            # An empty value: the parser's marks are on the token after it.
            if key is None:
                raise self._refuse(f"has an empty list item (line {value.start_mark.line + 1})")
            return self._colon_end(key)
        return start + len(self.text[start:end].rstrip())

    def _after(self, entry: _Entry) -> int:
        """Start of the line after the one where the entry's value ends."""
        return self._line_end(self._content_end(entry.key, entry.value))

    def _colon_end(self, key: Node) -> int:
        colon = self.text.index(":", key.end_mark.index)
        return colon + 1

    # -- edits --------------------------------------------------------------------------

    def replace_value(self, entry: _Entry, new: str) -> _Splice | None:
        value = entry.value
        start = value.start_mark.index
        end = self._content_end(entry.key, value)
        if start == value.end_mark.index:  # `key:` with nothing after the colon
            return _Splice(end, end, " " + new)
        if self.text[start:end] == new:
            return None
        if "\n" not in self.text[start:end]:
            comment = re.match(r"[ \t]+(?=#)", self.text[end:])
            if comment:
                column = start - self._line_start(start)
                hash_column = end - self._line_start(end) + len(comment.group())
                gap = max(1, hash_column - column - len(new))
                return _Splice(start, end + len(comment.group()), new + " " * gap)
        return _Splice(start, end, new)

    def cuts(self, entries: list[_Entry]) -> list[_Splice]:
        """Deletes the lines of these entries (adjacent ones as one block)."""
        spans = sorted((self._line_start(e.key.start_mark.index), self._after(e))
                       for e in entries)
        merged: list[list[int]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        start, end = merged[-1]
        if end == len(self.text) and not self.text.endswith("\n") and start > 0:
            # The last line goes and the file has no final line break: keep it that way.
            merged[-1][0] = start - (2 if self.text[start - 2:start] == "\r\n" else 1)
        return [_Splice(start, end, "") for start, end in merged]

    def append(self, lines: dict[str, str]) -> _Splice:
        """New `key: value` lines at the end of `config:` (created if need be)."""
        return self.append_lines([f"{_render_key(k)}: {v}" for k, v in lines.items()])

    def append_lines(self, lines: list[str]) -> _Splice:
        """Lines of YAML (keys of `config:`, their nested values, comments) at the end of
        `config:`, each indented as the config's keys are."""
        nl = self.newline

        def block(indent: str) -> str:
            return "".join(f"{indent}{line}{nl}" if line else nl for line in lines)

        if self.entries:
            first = next(iter(self.entries.values())).key
            body = block(" " * first.start_mark.column)
            return self._insert(self._after(list(self.entries.values())[-1]), body)
        if self.config_key is not None and self.config is not None:
            column = self.config_key.start_mark.column
            body = block(" " * (column + _INDENT))
            if self.config.end_mark.index > self.config.start_mark.index:
                return self._replace_null_config(body)  # `config: {}` or `config: null`
            return self._insert(self._line_end(self.config_key.end_mark.index), body)
        indent = " " * (self.root.value[0][0].start_mark.column if self.root else 0)
        body = f"{indent}config:{nl}" + block(indent + " " * _INDENT)
        if self.root is not None:
            last_key, last_value = self.root.value[-1]
            return self._insert(self._after(_Entry(last_key, last_value)), body)
        return self._insert(len(self.text), body)

    def _replace_null_config(self, body: str) -> _Splice:
        """The block of new keys takes the place of `config:`'s `{}` or `null`."""
        assert self.config_key is not None and self.config is not None
        at = self._colon_end(self.config_key)
        start, end = self.config.start_mark.index, self.config.end_mark.index
        line_end = self._line_end(end)
        rest = self.text[end:line_end]
        # An end-of-line comment stays on the `config:` line.
        line = self.text[at:start] + rest.lstrip(" \t") if rest.strip() else ""
        if not line.endswith("\n"):
            line += self.newline
        if line_end == len(self.text) and not self.text.endswith("\n"):
            body = body[: -len(self.newline)]
        return _Splice(at, line_end, line + body)

    def _insert(self, at: int, body: str) -> _Splice:
        if at == len(self.text) and self.text and not self.text.endswith("\n"):
            # The file has no final line break: keep it that way.
            return _Splice(at, at, self.newline + body[: -len(self.newline)])
        return _Splice(at, at, body)


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _apply(text: str, splices: list[_Splice]) -> str:
    ordered = sorted(splices, key=lambda s: (s.start, s.end))
    for before, after in itertools.pairwise(ordered):
        if after.start < before.end:
            raise AssertionError("overlapping edits of the stack file")
    for splice in reversed(ordered):
        text = text[: splice.start] + splice.text + text[splice.end :]
    return text


# -- values -------------------------------------------------------------------------------


def _check_key(key: str) -> None:
    namespace, _, name = key.partition(":") if isinstance(key, str) else ("", "", "")
    if not (namespace and name and key.strip() == key and "\n" not in key):
        raise InvalidInput(f"{key!r} is not a config key",
                           hint="use the fully qualified form `project:key`")


def plain_is_safe(value: str) -> bool:
    """Whether `value` written plain is read back as this same string by every YAML reader."""
    if not value or value != value.strip() or not value.isprintable():
        return False
    if any(str(r.resolve(ScalarNode, value, (True, False))) != _STR for r in _RESOLVERS):
        return False
    bare = value.replace("_", "")
    if _GO_FLOAT.match(bare) or value in ("y", "Y", "n", "N"):
        return False
    try:
        int(bare, 0)
    except ValueError:
        return True
    return False


def _render_new(value: str) -> _Rendered:
    """A new key: a canonical int or true/false is written typed, like Pulumi's own files."""
    if _CANONICAL_INT.match(value):
        return _Rendered(value, int(value))
    if value in _BOOLS:
        return _Rendered(value, value == "true")
    return _Rendered(_emit(value if plain_is_safe(value) else DoubleQuotedScalarString(value)),
                     value)


def _render_existing(key: str, entry: _Entry, value: str, text: str) -> _Rendered | None:
    """How the new value is written over the old one; None when the old text stays."""
    node = entry.value
    if not isinstance(node, ScalarNode):
        raise InvalidInput(
            f"{key} holds a secret or a structured value; the driver only sets plain values",
            hint=f"change {key} by hand or with `pulumi config set`",
        )
    source = text[node.start_mark.index:node.end_mark.index]
    if node.start_mark.index < entry.key.end_mark.index or getattr(node, "anchor", None) \
            or source[:1] in ("!", "&", "*"):
        raise InvalidInput(
            f"{key} is written with a YAML tag, anchor or alias; the driver only sets "
            "plain values", hint=f"write {key} as a plain value by hand",
        )
    tag = str(node.tag)
    if node.style is None:
        if tag == "tag:yaml.org,2002:int" and _CANONICAL_INT.match(source) \
                and _CANONICAL_INT.match(value):
            return _Rendered(value, int(value))
        if tag == "tag:yaml.org,2002:bool" and source in _BOOLS and value in _BOOLS:
            return _Rendered(value, value == "true")
        if plain_is_safe(value):
            return _Rendered(_emit(value), value)
    elif tag == _STR and node.value == value:
        return None  # quoted or a block already holding this very string: keep it as written
    elif node.style == '"' or (node.style == "'" and not value.isprintable()):
        return _Rendered(_emit(DoubleQuotedScalarString(value)), value)
    elif node.style == "'":
        return _Rendered(_emit(SingleQuotedScalarString(value)), value)
    return _Rendered(_emit(DoubleQuotedScalarString(value)), value)


def _emitter() -> YAML:
    yaml = YAML(typ="rt")
    yaml.width = _WIDE
    yaml.allow_unicode = True
    return yaml


def _emit(value: Any) -> str:
    """One scalar as ruamel writes it in block context, on one line."""
    out = io.StringIO()
    _emitter().dump([value], out)
    text = out.getvalue()
    if text.startswith("- ") and text.count("\n") == 1:
        return text[2:-1]
    if isinstance(value, str) and not isinstance(value, DoubleQuotedScalarString):
        return _emit(DoubleQuotedScalarString(value))
    return _unrenderable(value)


def _render_key(key: str) -> str:
    out = io.StringIO()
    _emitter().dump({key if plain_is_safe(key) else DoubleQuotedScalarString(key): 0}, out)
    text = out.getvalue()
    if not text.endswith(": 0\n") or text.count("\n") != 1 or text.startswith("?"):
        _unrenderable(key)
    return text[: -len(": 0\n")]


def _unrenderable(value: Any) -> str:
    raise InvalidInput(f"{value!r} cannot be written on one line of a stack file")


# -- checking and writing -----------------------------------------------------------------


def _load(path: Path, text: str, *, edited: bool = False) -> Any:
    try:
        return YAML(typ="safe", pure=True).load(text)
    except YAMLError as err:
        what = "the edited text of" if edited else ""
        raise InvalidInput(f"{what} {path} cannot be read as data: {err}".strip(),
                           hint="edit the stack file by hand (or with `pulumi config set`)",
                           ) from err


def _verify(path: Path, before: str, after: str, *, written: dict[str, Any],
            removed: list[str]) -> None:
    """The edited text must hold the old data with exactly this edit, nothing else."""
    expected = _load(path, before) or {}
    if not isinstance(expected, dict):
        raise InvalidInput(f"{path} is not a mapping")
    config = expected.get("config") or {}
    for key in removed:
        config.pop(key, None)
    config.update(written)
    expected["config"] = config
    got = _load(path, after, edited=True)
    if isinstance(got, dict) and got.get("config") is None and "config" in got:
        got["config"] = {}  # every key removed: `config:` is left empty
    if repr(got) != repr(expected):
        raise InvalidInput(
            f"editing {path} would change more than the keys asked for; nothing was written",
            hint="edit the stack file by hand (or with `pulumi config set`)",
        )


def _umask() -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


def _write_atomic(path: Path, data: bytes) -> None:
    target = Path(os.path.realpath(path))
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):
            dir_fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except OSError as err:
        raise InfrastructureError(f"cannot write {path}: {err}") from err
