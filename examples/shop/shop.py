"""The shop's own Pulumi program: its namespace and settings, plus two canary services.

`checkout` takes its settings from the stack config (checkout:image, checkout:analysis, ...);
`cart` is configured here in code, and only the keys the driver changes (cart:stableVersion,
cart:canaryWeight, ...) and its analysis live in the stack config.
"""

import pulumi
import pulumi_kubernetes as k8s

from rollout.pulumi import CanaryService


def main() -> None:
    config = pulumi.Config()
    namespace_name = config.get("namespace") or "shop"
    namespace = k8s.core.v1.Namespace("shop", metadata={"name": namespace_name})
    after_namespace = pulumi.ResourceOptions(depends_on=[namespace])

    # Not a canary service: a rollout never updates it.
    settings = k8s.core.v1.ConfigMap(
        "shop-settings",
        metadata={"name": "shop-settings", "namespace": namespace_name},
        data={"currency": config.get("currency") or "EUR"},
        opts=after_namespace,
    )

    checkout = CanaryService("checkout", namespace=namespace_name, opts=after_namespace)

    cart = CanaryService(
        "cart",
        namespace=namespace_name,
        image="registry.local/demo",
        replicas=1,
        router="gateway-api",
        parent_refs=[{"name": "mesh-gateway"}],
        opts=after_namespace,
    )

    pulumi.export("checkout", checkout.outputs)
    pulumi.export("cart", cart.outputs)
    pulumi.export("settings", settings.metadata["name"])
