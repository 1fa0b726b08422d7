"""How the stack adapter scopes an update to one service, and reads a service back from the
state: from a deployment as `pulumi stack export` writes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rollout.adapters.stack import StackAdapter
from rollout.core.routers import WEIGHT_STEP_TYPES

PREFIX = "urn:pulumi:prod::shop::"
COMPONENT = "canary:index:CanaryService"


def _resource(type_: str, name: str, parent: str = "", chain: str = "",
              outputs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"urn": f"{PREFIX}{chain}{type_}::{name}", "type": type_, "parent": parent,
            "outputs": outputs or {}}


def _deployment() -> list[dict[str, Any]]:
    stack = _resource("pulumi:pulumi:Stack", "shop-prod")
    resources = [stack, _resource("kubernetes:core/v1:ConfigMap", "settings", stack["urn"])]
    for service, route in (("checkout", "kubernetes:networking.istio.io/v1:VirtualService"),
                           ("cart", "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute")):
        component = _resource(COMPONENT, service, stack["urn"], outputs={
            "app": service, "primaryDeployment": f"{service}-primary",
            "codeSettings": {"router": "x"}})
        chain = f"{COMPONENT}$"
        resources += [
            component,
            _resource(route, service, component["urn"], chain),
            _resource("kubernetes:apps/v1:Deployment", f"{service}-primary", component["urn"],
                      chain, {"spec": {"template": {"spec": {"containers": [
                          {"image": f"registry.local/{service}:v7"}]}}}}),
            _resource("kubernetes:apps/v1:Deployment", f"{service}-canary", component["urn"],
                      chain, {"spec": {"template": {"spec": {"containers": [
                          {"image": f"registry.local/{service}:v8"}]}}}}),
        ]
    return resources


@pytest.fixture
def adapter(monkeypatch: pytest.MonkeyPatch) -> StackAdapter:
    stack = StackAdapter(stack="prod", project_dir=Path("."), env={}, pulumi_bin=Path("pulumi"))
    monkeypatch.setattr(stack, "_resources", _deployment)
    return stack


def test_an_update_of_a_service_targets_its_component_and_everything_under_it(
        adapter: StackAdapter) -> None:
    targets = adapter.service_targets("cart")
    assert targets[0] == f"{PREFIX}{COMPONENT}::cart"
    assert sorted(t.rsplit("::", 1)[1] for t in targets[1:]) == [
        "cart", "cart-canary", "cart-primary"]
    assert not any("checkout" in t or "settings" in t for t in targets)


def test_a_weight_step_targets_only_the_services_route(adapter: StackAdapter) -> None:
    assert adapter.service_targets("checkout", types=set(WEIGHT_STEP_TYPES)) == [
        f"{PREFIX}{COMPONENT}$kubernetes:networking.istio.io/v1:VirtualService::checkout"]


def test_a_service_not_deployed_has_no_targets(adapter: StackAdapter) -> None:
    assert adapter.service_targets("payments") == []
    assert "payments" not in adapter.deployed_services()


def test_deployed_services_carry_their_outputs_and_the_primarys_image(
        adapter: StackAdapter) -> None:
    deployed = adapter.deployed_services()
    assert set(deployed) == {"checkout", "cart"}
    assert deployed["cart"]["stableImage"] == "registry.local/cart:v7"
    assert deployed["cart"]["codeSettings"] == {"router": "x"}


def test_the_state_is_exported_once_until_the_adapter_changes_the_stack() -> None:
    # A rollout asked for it three times (0.5-1.4 s each); it changes when an update runs.
    class Exported:
        exports = 0
        refreshes = 0

        def export_stack(self) -> Any:
            self.exports += 1
            return type("Deployment", (), {"deployment": {"resources": _deployment()}})()

        def refresh(self, **_: Any) -> None:
            self.refreshes += 1

    stack = StackAdapter(stack="prod", project_dir=Path("."), env={}, pulumi_bin=Path("pulumi"))
    fake = Exported()
    stack._stack = fake  # type: ignore[assignment]
    stack.deployed_services()
    stack.service_targets("cart")
    stack.service_targets("cart", types=WEIGHT_STEP_TYPES)
    assert fake.exports == 1
    stack.refresh()
    stack.service_targets("cart")
    assert fake.exports == 2 and fake.refreshes == 1
