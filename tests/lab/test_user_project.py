"""A user's own Pulumi project (examples/shop) driven from its own directory, as an installed
`rollout` runs it: two canary services (checkout on Istio, cart on the Gateway API) and an
unrelated ConfigMap in one stack. A rollout of one service never touches the others."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from rollout.adapters.paths import install_root
from rollout.adapters.stackfile import StackFile
from rollout.cli.demo import wait_for_series
from rollout.lab import kube
from rollout.lab.lab import Lab
from rollout.lab.traffic import Traffic

pytestmark = pytest.mark.lab

EXAMPLE = install_root() / "examples" / "shop"
FAST = {"interval": "5s", "threshold": 1, "stepWeights": [50],
        "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}},
                    {"name": "request-duration", "thresholdRange": {"max": 500}}]}
# cart's bad v3 must fail an analysis: two of them, so that one lucky window (about 1 in 500
# at 40 requests/s) cannot promote it.
TWO_CHECKS = {**FAST, "stepWeights": [40, 50]}

CART = ("cart", "cart-primary", "cart-canary")
CHECKOUT = ("checkout", "checkout-primary", "checkout-canary")


@dataclass
class Shop:
    lab: Lab
    root: Path
    stack: str
    namespace: str
    env: dict[str, str]

    @property
    def stack_file(self) -> Path:
        return self.root / "stacks" / f"Pulumi.{self.stack}.yaml"

    def run(self, *args: str, tool: str = "rollout", timeout: float = 300
            ) -> subprocess.CompletedProcess[str]:
        """`rollout ...` (the installed console script) or `pulumi ...` in the project's own
        directory, with no CANARY_PROJECT_DIR: the directory alone says which project."""
        binary = str(Path(sys.executable).parent / "rollout") if tool == "rollout" else tool
        return subprocess.run([binary, *args], cwd=self.root, env=self.env, text=True,
                              capture_output=True, timeout=timeout)

    def rollout(self, service: str | None, version: str, *options: str
                ) -> subprocess.CompletedProcess[str]:
        chosen = ["--service", service] if service else []
        return self.run("run", "--stack", self.stack, *chosen, "--version", version,
                        "--output", "json", *options)

    def state(self) -> dict[str, Any]:
        """Each Pulumi resource of the stack as recorded in its state, by URN: read from the
        lab's file backend, as `pulumi stack export` would print it, without a CLI start."""
        checkpoint = (self.lab.layout.pulumi_backend / ".pulumi" / "stacks" / "shop"
                      / f"{self.stack}.json")
        latest = json.loads(checkpoint.read_text())["checkpoint"]["latest"]
        return {r["urn"]: r for r in latest["resources"]}

    def live(self, names: tuple[str, ...]) -> dict[str, str]:
        """resourceVersion of each live object of these apps, and of the ConfigMap."""
        api = kube.api_client(self.lab.layout.kubeconfig)
        try:
            apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
            objects = client.CustomObjectsApi(api)
            found = {"configmap": core.read_namespaced_config_map(
                "shop-settings", self.namespace).metadata.resource_version}
            for name in names:
                if name.endswith(("-primary", "-canary")):
                    found[name] = apps.read_namespaced_deployment(
                        name, self.namespace).metadata.resource_version
                    found[f"svc/{name}"] = core.read_namespaced_service(
                        name, self.namespace).metadata.resource_version
                else:
                    group, plural = (("gateway.networking.k8s.io", "httproutes")
                                     if name == "cart" else
                                     ("networking.istio.io", "virtualservices"))
                    found[name] = objects.get_namespaced_custom_object(
                        group, "v1", self.namespace, plural, name)["metadata"]["resourceVersion"]
            return found
        finally:
            api.close()


def _not_of(state: dict[str, Any], service: str) -> dict[str, Any]:
    """The stack's resources that are neither the service's component nor under it."""
    component = f"canary:index:CanaryService::{service}"
    mine = {urn for urn in state if urn.endswith(component)}
    changed = True
    while changed:
        more = {urn for urn, r in state.items() if r.get("parent") in mine} - mine
        changed = bool(more)
        mine |= more
    # The stack resource carries the stack's outputs, which report every service's weights.
    return {urn: r for urn, r in state.items()
            if urn not in mine and not r["type"].startswith("pulumi:")}


@pytest.fixture(scope="module")
def shop(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    root = tmp_path_factory.mktemp("user") / "shop"
    shutil.copytree(EXAMPLE, root)
    stack = f"shop-{uuid.uuid4().hex[:6]}"
    namespace = stack
    config = yaml.safe_load((EXAMPLE / "stacks" / "Pulumi.lab.yaml").read_text())
    values = config["config"]
    values.update({"shop:namespace": namespace, "checkout:analysis": FAST,
                   "cart:analysis": FAST})
    (root / "stacks" / "Pulumi.lab.yaml").unlink()
    (root / "stacks" / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(config))
    env = {key: value for key, value in os.environ.items()
           if key not in ("CANARY_PROJECT_DIR", "CANARY_JOURNAL_DIR")}
    env.update(lab.environment())
    shop = Shop(lab, root, stack, namespace, env)
    # As the walk-through in examples/shop/README.md: stack init, then a plain `pulumi up`.
    for args in (("stack", "init", stack), ("up", "--yes", "--stack", stack)):
        done = shop.run(*args, "--non-interactive", tool="pulumi")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    traffic = [Traffic(lab.layout, lab.ports, app="checkout", namespace=namespace, rps=40),
               Traffic(lab.layout, lab.ports, app="cart", namespace=namespace, rps=40,
                       router="gateway-api")]
    try:
        for running in traffic:
            running.start()
        for workload in ("checkout-primary", "cart-primary"):
            wait_for_series(lab.prometheus_url, workload=workload, namespace=namespace)
        yield shop
    finally:
        for running in traffic:
            running.stop()
        shop.run("stack", "rm", "--yes", "--force", "--stack", stack, tool="pulumi")
        api = kube.api_client(lab.layout.kubeconfig)
        try:
            client.CoreV1Api(api).delete_namespace(namespace, _request_timeout=30)
        finally:
            api.close()


def test_checkout_is_promoted_without_touching_cart_or_the_configmap(shop: Shop) -> None:
    state_before, live_before = shop.state(), shop.live(CART)
    # Edits to cart and to the ConfigMap are pending in the stack file: any update that is not
    # scoped to checkout would deploy them.
    original = shop.stack_file.read_bytes()
    config = yaml.safe_load(original)
    config["config"].update({"cart:canaryWeight": 10, "shop:currency": "USD"})
    shop.stack_file.write_text(yaml.safe_dump(config))
    try:
        done = shop.rollout("checkout", "v2")
        promoted = yaml.safe_load(shop.stack_file.read_text())["config"]
    finally:
        shop.stack_file.write_bytes(original)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert json.loads(done.stdout)["outcome"] == "promoted"
    # Every object of cart, and the ConfigMap, is the same live object and Pulumi resource.
    assert shop.live(CART) == live_before
    assert _not_of(shop.state(), "checkout") == _not_of(state_before, "checkout")
    StackFile(shop.stack_file).set({"checkout:stableVersion": promoted["checkout:stableVersion"]})
    # A hand-run `pulumi up` of the project agrees with what the driver left, whether it runs
    # __main__.py or the same function by name (what `--program shop:main` runs).
    for program in ("", "shop:main"):
        preview = subprocess.run(
            ["pulumi", "preview", "--expect-no-changes", "--stack", shop.stack,
             "--non-interactive"], cwd=shop.root, text=True, capture_output=True, timeout=300,
            env={**shop.env, "CANARY_PROGRAM": program})
        assert preview.returncode == 0, preview.stdout[-3000:] + preview.stderr[-3000:]
    stack_file = yaml.safe_load(shop.stack_file.read_text())["config"]
    assert stack_file["checkout:stableVersion"] == "v2"
    assert stack_file["cart:stableVersion"] == "v1"


def test_a_weight_step_by_hand_is_config_set_plus_up(shop: Shop) -> None:
    # What the driver does in a step, a person does with two commands per step.
    original = shop.stack_file.read_bytes()

    def pulumi(*args: str) -> str:
        done = shop.run(*args, "--stack", shop.stack, "--non-interactive", tool="pulumi")
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done.stdout

    def weights() -> list[int]:
        api = kube.api_client(shop.lab.layout.kubeconfig)
        try:
            route = client.CustomObjectsApi(api).get_namespaced_custom_object(
                "networking.istio.io", "v1", shop.namespace, "virtualservices", "checkout")
        finally:
            api.close()
        primary = next(h for h in route["spec"]["http"] if h["name"] == "primary")
        return [d["weight"] for d in primary["route"]]

    try:
        for key, value in (("canaryVersion", "v1"), ("canaryReplicas", "1"),
                           ("canaryWeight", "30")):
            pulumi("config", "set", f"checkout:{key}", value)
        pulumi("up", "--yes")
        assert weights() == [70, 30]
    finally:
        shop.stack_file.write_bytes(original)
        pulumi("up", "--yes")
    assert weights() == [100, 0]


def test_a_bad_cart_is_reverted_without_touching_checkout(shop: Shop) -> None:
    original = shop.stack_file.read_bytes()
    StackFile(shop.stack_file).remove(["cart:analysis"])
    StackFile(shop.stack_file).set({"cart:analysis": json.dumps(TWO_CHECKS)})
    file_before = shop.stack_file.read_bytes()
    state_before, live_before = shop.state(), shop.live(CHECKOUT)
    try:
        done = shop.rollout("cart", "v3", "--program", "shop:main")
        file_after = shop.stack_file.read_bytes()
    finally:
        shop.stack_file.write_bytes(original)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["outcome"] == "rolled-back"
    assert "request-success-rate" in result["reason"]
    assert shop.live(CHECKOUT) == live_before
    assert _not_of(shop.state(), "cart") == _not_of(state_before, "cart")
    assert file_after == file_before, "the revert put cart's keys back"
    history = shop.run("history", "--stack", shop.stack, "--service", "cart", "-o", "json")
    assert [r["outcome"] for r in json.loads(history.stdout)] == ["rolled-back"]


def test_two_services_of_one_stack_roll_out_at_once(shop: Shop) -> None:
    # Each service has its own lock and state; their updates take turns on the stack's
    # Pulumi lock, and their edits of the one stack file are serialised.
    binary = str(Path(sys.executable).parent / "rollout")
    drivers = {service: subprocess.Popen(
        [binary, "run", "--stack", shop.stack, "--service", service, "--version", version,
         "--output", "json"], cwd=shop.root, env=shop.env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for service, version in (("checkout", "v1"), ("cart", "v2"))}
    results = {service: driver.communicate(timeout=300) for service, driver in drivers.items()}
    for service, driver in drivers.items():
        out, err = results[service]
        assert driver.returncode == 0, f"{service}: {out[-2000:]}{err[-3000:]}"
        assert json.loads(out)["outcome"] == "promoted"
    config = yaml.safe_load(shop.stack_file.read_text())["config"]
    assert (config["checkout:stableVersion"], config["cart:stableVersion"]) == ("v1", "v2")
    assert not any(key.endswith((":canaryVersion", ":canaryWeight")) for key in config)
    preview = shop.run("preview", "--expect-no-changes", "--stack", shop.stack,
                       "--non-interactive", tool="pulumi")
    assert preview.returncode == 0, preview.stdout[-3000:] + preview.stderr[-3000:]


@pytest.mark.parametrize(("args", "edit", "expected"), [
    (("--service", "payments"), {},
     "has no canary service 'payments' (no payments:stableVersion in its stack config); "
     "its services: cart, checkout"),
    ((), {}, "has 2 canary services: cart, checkout"),
    (("--service", "checkout"), {"basket:stableVersion": "v1", "basket:app": "checkout",
                                 "basket:namespace": "{namespace}",
                                 "basket:image": "registry.local/demo"},
     "services basket and checkout of stack"),
    (("--service", "checkout"), {"checkout:router": "gateway-api"},
     "checkout:parentRefs = []: router gateway-api needs parentRefs"),
])
def test_bad_per_service_config_exits_2_and_changes_nothing(
        shop: Shop, args: tuple[str, ...], edit: dict[str, str], expected: str) -> None:
    original = shop.stack_file.read_bytes()
    if edit:
        config = yaml.safe_load(original)
        config["config"].update({key: value.format(namespace=shop.namespace)
                                 for key, value in edit.items()})
        shop.stack_file.write_text(yaml.safe_dump(config))
    edited = shop.stack_file.read_bytes()
    state_before = shop.state()
    try:
        done = shop.run("run", "--stack", shop.stack, *args, "--version", "v2")
        assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
        assert expected in " ".join(done.stderr.split()), done.stderr
        assert shop.stack_file.read_bytes() == edited
        assert shop.state() == state_before
    finally:
        shop.stack_file.write_bytes(original)
