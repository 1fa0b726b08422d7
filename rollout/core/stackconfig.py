"""The project's config namespace, stack names, and the keys the driver changes, as plain data."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from rollout.core.errors import InvalidInput
from rollout.core.stack_data import ConfigEntry

# An image tag, as the stack's stableVersion / canaryVersion and `rollout run --version` take it.
VERSION_TAG = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
# The config namespace of the program's settings (`canary-service:<key>`).
PROJECT = "canary-service"
STACK_NAME = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9_.-]*/){0,2}[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")


def validate_stack_name(name: str) -> str:
    if not STACK_NAME.match(name):
        raise InvalidInput(
            f"{name!r} is not a valid stack name",
            hint="use letters, digits, '-', '_' or '.', optionally as org/project/stack",
        )
    return name


@dataclass(frozen=True)
class Keys:
    """Fully qualified config keys of one project (`<project>:<name>`)."""

    project: str

    def key(self, name: str) -> str:
        return f"{self.project}:{name}"

    @property
    def canary_weight(self) -> str:
        return self.key("canaryWeight")

    @property
    def canary_version(self) -> str:
        return self.key("canaryVersion")

    @property
    def stable_version(self) -> str:
        return self.key("stableVersion")

    @property
    def canary_replicas(self) -> str:
        return self.key("canaryReplicas")

    @property
    def owned(self) -> tuple[str, str, str, str]:
        """The keys the driver changes; a revert puts exactly these back."""
        return (self.canary_version, self.canary_weight, self.canary_replicas,
                self.stable_version)


def decode(value: str) -> Any:
    """Structured config arrives as JSON text; scalars stay strings for pydantic to coerce."""
    text = value.strip()
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except ValueError:
            return value
    return value


def plain_config(entries: dict[str, ConfigEntry], project: str) -> dict[str, Any]:
    """The project's own keys without their prefix; secrets are left out."""
    prefix = f"{project}:"
    return {
        key[len(prefix):]: decode(entry.value)
        for key, entry in entries.items()
        if key.startswith(prefix) and not entry.secret
    }


def captured(entries: dict[str, ConfigEntry]) -> dict[str, dict[str, Any]]:
    """The journal's copy: plain values kept, secret values never written down."""
    return {k: {"value": "" if e.secret else e.value, "secret": e.secret}
            for k, e in entries.items()}


def restored(data: dict[str, dict[str, Any]]) -> dict[str, ConfigEntry]:
    return {k: ConfigEntry(v["value"], bool(v["secret"])) for k, v in data.items()}
