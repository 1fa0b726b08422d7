"""The unit tests' fake stack declares what the project's program declares: the program run
under Pulumi mocks on the same config (its real export is compared on the lab, by
tests/lab/test_rollout.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pulumi
import pytest
from pulumi.runtime.config import set_all_config

from rollout.core.errors import SettingsError
from rollout.core.stack_data import ConfigEntry
from rollout.core.stackconfig import COMPONENT_TYPE
from rollout.pulumi import component, program
from tests.unit.fake_state import PROVIDER_TYPE, STACK_TYPE, program_state
from tests.unit.fakes import SECRET_MARKER, base_config

STACK, PROJECT = "unit", "canary-service"


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


@pytest.fixture
def monitor() -> Iterator[pulumi.runtime.MockMonitor]:
    # The Pulumi runtime is process-global: fresh mocks and empty config for every test.
    pulumi.runtime.set_mocks(Mocks(), project=PROJECT, stack=STACK, preview=False)
    set_all_config({})
    yield pulumi.runtime.settings.SETTINGS.monitor
    set_all_config({})


def _config(service: str, **values: Any) -> dict[str, ConfigEntry]:
    return {f"{service}:{key}": ConfigEntry(value if isinstance(value, str)
                                            else json.dumps(value))
            for key, value in values.items()}


@pulumi.runtime.test
def _run() -> None:
    program.main()


BASE = {"image": "registry.local/shop", "stableVersion": "v1"}
CASES = {
    "the unit tests' base config": base_config(),
    "a namespace it creates": _config("demo", **BASE, namespace="shop", createNamespace=True),
    "an HPA": _config("demo", **BASE, hpa={"maxReplicas": 4}),
    "gateway-api": _config("demo", **BASE, router="gateway-api",
                           parentRefs=[{"name": "public", "namespace": "gateways"}]),
    "two services, mid-rollout": {
        **_config("checkout", **BASE, canaryVersion="v2", canaryWeight=20, canaryReplicas=1),
        **_config("cart", **BASE, app="cart", env={"MODE": "fast"})},
}


@pytest.mark.parametrize("entries", list(CASES.values()), ids=list(CASES))
def test_the_fake_state_holds_what_the_program_declares(
        monitor: pulumi.runtime.MockMonitor, monkeypatch: pytest.MonkeyPatch,
        entries: dict[str, ConfigEntry]) -> None:
    exported: dict[str, Any] = {}
    registered: dict[str, Any] = {}
    monkeypatch.setattr(pulumi, "export", exported.__setitem__)
    monkeypatch.setattr(component.CanaryService, "register_outputs",
                        lambda self, outputs: registered.__setitem__(self._name, outputs))
    set_all_config({key: entry.value for key, entry in entries.items()})
    _run()
    state = program_state(STACK, PROJECT, entries)
    # The mocks name the stack's type in its children's type chains; Pulumi does not.
    declared = {urn.replace("::pulumi:pulumi:Stack$", "::")
                for urn in monitor.get_registered_resources()}
    assert {r["urn"] for r in state if r["type"] not in (STACK_TYPE, PROVIDER_TYPE)} == declared
    components = {r["urn"].rsplit("::", 1)[1]: r["outputs"] for r in state
                  if r["type"] == COMPONENT_TYPE}
    assert components == registered
    assert next(r for r in state if r["type"] == STACK_TYPE)["outputs"] == exported


@pytest.mark.parametrize("entries", [
    {**base_config(), "demo:sessionSalt": ConfigEntry(SECRET_MARKER, secret=True)},
    {**_config("checkout", **BASE, app="shop"), **_config("cart", **BASE, app="shop")},
], ids=["a key that is no setting", "two services owning one app"])
def test_config_the_program_refuses_the_fake_refuses(
        monitor: pulumi.runtime.MockMonitor, entries: dict[str, ConfigEntry]) -> None:
    set_all_config({key: entry.value for key, entry in entries.items()})
    with pytest.raises(pulumi.RunError):
        _run()
    with pytest.raises(SettingsError):
        program_state(STACK, PROJECT, entries)
