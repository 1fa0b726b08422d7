"""A stack's canary services as its config declares them.

A service's settings live in its own config namespace (`checkout:image`, `checkout:router`, ...),
so `pulumi config set checkout:canaryWeight 20` is a whole manual step. A stack's services are
the namespaces holding a `stableVersion` (rollout.core.stackconfig.services_in).
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
from pulumi.runtime.config import CONFIG

from rollout.core.service import config_keys
from rollout.core.stackconfig import services_in


def present_keys() -> set[str]:
    # Inline (Automation API) programs get config in CONFIG, CLI-run ones in PULUMI_CONFIG.
    return {*pulumi.runtime.get_config_env(), *CONFIG.get()}


def config_services() -> list[str]:
    """The canary services this stack's config declares."""
    return services_in(present_keys())


def read_config(config: pulumi.Config) -> dict[str, Any]:
    """Every key of the config namespace, without its prefix, values decoded from text.

    Unknown keys are included on purpose so that validation can reject them.
    """
    prefix = f"{config.name}:"
    keys = {key.removeprefix(prefix) for key in present_keys() if key.startswith(prefix)}
    text_keys = config_keys()
    # Known keys may also come from PULUMI_CONFIG_<KEY> variables, which cannot be listed.
    keys |= {key for key in text_keys if config.get(key) is not None}
    raw = {}
    for key in sorted(keys):
        value = config.get(key)
        if value is not None:
            raw[key] = value if text_keys.get(key, False) else decode(value)
    return raw


def decode(value: str) -> Any:
    """A config value as data: numbers, booleans, lists and objects arrive as JSON text."""
    try:
        return json.loads(value)
    except ValueError:
        return value
