"""The Pulumi program: stack config -> ServiceSettings -> one CanaryService -> stack outputs."""

from __future__ import annotations

import json
from typing import Any

import pulumi
from pulumi.runtime.config import CONFIG

from rollout.core.errors import SettingsError
from rollout.core.service import config_keys, load_settings
from rollout.pulumi.component import CanaryService


def main() -> None:
    """Declare the service from this stack's config; bad config fails before any resource."""
    config = pulumi.Config()
    try:
        settings = load_settings(read_config(config), project=config.name)
    except SettingsError as err:
        raise pulumi.RunError(str(err)) from None
    service = CanaryService(settings.app, settings)
    for key, value in service.outputs.items():
        pulumi.export(key, value)


def read_config(config: pulumi.Config) -> dict[str, Any]:
    """Every key of the config namespace, without its prefix, values decoded from text.

    Unknown keys are included on purpose so that validation can reject them.
    """
    prefix = f"{config.name}:"
    # Inline (Automation API) programs get config in CONFIG, CLI-run ones in PULUMI_CONFIG.
    present = {**pulumi.runtime.get_config_env(), **CONFIG.get()}
    keys = {key.removeprefix(prefix) for key in present if key.startswith(prefix)}
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
