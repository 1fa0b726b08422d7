"""The CanaryService component, for any Python Pulumi program.

    from rollout.pulumi import CanaryService
    CanaryService("checkout")                      # every setting from the `checkout:` config
    CanaryService("cart", image="registry.local/cart", router="gateway-api")  # some in code

The driver-owned keys (stableVersion, canaryVersion, canaryWeight, canaryReplicas) always
come from the stack config, so `rollout run` and a hand-run `pulumi config set` + `pulumi up`
drive the same service.
"""

from rollout.pulumi.component import CanaryService

__all__ = ["CanaryService"]
