"""Which canary services a stack declares, and which one a command acts on."""

from __future__ import annotations

import pytest

from rollout.core.errors import InvalidInput
from rollout.core.stackconfig import choose_service, services_in, validate_service_name


def test_a_service_is_a_namespace_with_a_stable_version() -> None:
    keys = ["checkout:stableVersion", "checkout:image", "cart:stableVersion", "cart:router",
            "kubernetes:context", "shop:greeting", "pulumi:stableVersion", "plain"]
    assert services_in(keys) == ["cart", "checkout"]


def test_the_only_service_is_the_default() -> None:
    assert choose_service(["checkout"], None, stack="prod") == "checkout"
    assert choose_service(["cart", "checkout"], "cart", stack="prod") == "cart"


@pytest.mark.parametrize(("services", "requested", "message", "hint"), [
    (["cart", "checkout"], None, "stack prod has 2 canary services: cart, checkout",
     "pick one with --service <name>"),
    (["cart", "checkout"], "payments", "stack prod has no canary service 'payments' "
     "(no payments:stableVersion in its stack config); its services: cart, checkout",
     "rollout init --stack prod --service payments"),
    ([], None, "stack prod declares no canary service", "rollout init --stack prod"),
    (["cart"], "Cart!", "'Cart!' is not a valid service name", "DNS label"),
    (["cart"], "kubernetes", "'kubernetes' is not a valid service name", "not kubernetes"),
])
def test_a_wrong_choice_names_the_services_and_the_fix(
        services: list[str], requested: str | None, message: str, hint: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        choose_service(services, requested, stack="prod")
    assert message in caught.value.message
    assert hint in (caught.value.hint or "")
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("name", ["a", "checkout", "cart-2", "a" * 50])
def test_service_names_are_dns_labels_up_to_50(name: str) -> None:
    assert validate_service_name(name) == name


@pytest.mark.parametrize("name", ["", "-a", "a-", "A", "a_b", "a.b", "a" * 51, "pulumi"])
def test_other_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        validate_service_name(name)
