"""The project's config namespace, stack names, and the keys the driver changes, as plain data."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rollout.core.errors import InvalidInput
from rollout.core.stack_data import ConfigEntry

# An image tag, as the stack's stableVersion / canaryVersion and `rollout run --version` take it.
VERSION_TAG = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
# The config namespace of the program's settings (`canary-service:<key>`).
PROJECT = "demo"
STACK_NAME = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9_.-]*/){0,2}[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")


# A canary service's name: its config namespace (`<service>:<key>`), and by default its app.
SERVICE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,48}[a-z0-9])?$")
# Config namespaces that belong to Pulumi and its Kubernetes provider, never to a service.
RESERVED_NAMESPACES = frozenset({"pulumi", "kubernetes"})
# The one key every service has in its stack config: the driver writes it on promotion, so a
# service is a config namespace holding it.
SERVICE_MARKER = "stableVersion"
# The Pulumi type of the CanaryService component (rollout.pulumi): the driver finds a service's
# resources, and the settings a program gave it in code, under the component of that name.
COMPONENT_TYPE = "canary:index:CanaryService"
# What the driver changes; a program reads these from config even when it passes the rest of
# a service's settings in code.
DRIVER_OWNED = ("stableVersion", "canaryVersion", "canaryWeight", "canaryReplicas")


def validate_service_name(name: str) -> str:
    if not SERVICE_NAME.match(name) or name in RESERVED_NAMESPACES:
        raise InvalidInput(
            f"{name!r} is not a valid service name",
            hint="use a DNS label of at most 50 characters (lowercase letters, digits, '-'), "
            "not " + " or ".join(sorted(RESERVED_NAMESPACES)),
        )
    return name


def services_in(keys: Iterable[str]) -> list[str]:
    """The canary services a stack's config declares: each namespace with a stableVersion."""
    found = {key.split(":", 1)[0] for key in keys
             if ":" in key and key.split(":", 1)[1] == SERVICE_MARKER}
    return sorted(found - RESERVED_NAMESPACES)


def choose_service(services: list[str], requested: str | None, *, stack: str) -> str:
    """The service a command acts on: the one asked for, or the stack's only one."""
    if requested is not None:
        validate_service_name(requested)
    if not services:
        raise InvalidInput(
            f"stack {stack} declares no canary service: no <service>:{SERVICE_MARKER} in its "
            "stack config",
            hint=f"run `rollout init --stack {stack} --service <name>` to add one")
    listed = ", ".join(services)
    if requested is None:
        if len(services) > 1:
            raise InvalidInput(f"stack {stack} has {len(services)} canary services: {listed}",
                               hint="pick one with --service <name>")
        return services[0]
    if requested not in services:
        raise InvalidInput(
            f"stack {stack} has no canary service {requested!r} (no "
            f"{requested}:{SERVICE_MARKER} in its stack config); its services: {listed}",
            hint=f"pass one of them to --service, or run `rollout init --stack {stack} "
            f"--service {requested}` to add it")
    return requested


PROGRAM = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*)?$")


def validate_program(entry: str) -> str:
    """`module:function` (function defaults to main), as `--program` takes it."""
    if not PROGRAM.match(entry):
        raise InvalidInput(f"{entry!r} is not a program entry point",
                           hint="use module:function, e.g. shop.infra:main (a module of the "
                           "project or an installed one)")
    return entry


def validate_stack_name(name: str) -> str:
    if not STACK_NAME.match(name):
        raise InvalidInput(
            f"{name!r} is not a valid stack name",
            hint="use letters, digits, '-', '_' or '.', optionally as org/project/stack",
        )
    return name


@dataclass(frozen=True)
class Keys:
    """Fully qualified config keys of one service (`<service>:<name>`)."""

    service: str

    def key(self, name: str) -> str:
        return f"{self.service}:{name}"

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


def plain_config(entries: dict[str, ConfigEntry], service: str) -> dict[str, Any]:
    """The service's own keys without their prefix; secrets are left out."""
    prefix = f"{service}:"
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
