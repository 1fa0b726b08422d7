"""`rollout init`: the stack config of one new canary service, each key with a comment."""

from __future__ import annotations

import json
import re
from typing import Any

from rollout.core.errors import InvalidInput, SettingsError
from rollout.core.routers import router_named
from rollout.core.service import load_settings
from rollout.core.stackconfig import VERSION_TAG, validate_service_name

# A first policy that is safe on most services: five steps of 10% to 50%, a check a minute,
# two failed checks revert, and the two metrics every mesh reports.
DEFAULT_ANALYSIS: dict[str, Any] = {
    "interval": "1m",
    "threshold": 2,
    "stepWeight": 10,
    "maxWeight": 50,
    "metrics": [
        {"name": "request-success-rate", "thresholdRange": {"min": 99}},
        {"name": "request-duration", "thresholdRange": {"max": 500}},
    ],
}


def service_block(service: str, *, version: str, image: str | None, router: str | None,
                  namespace: str | None) -> tuple[list[str], dict[str, Any]]:
    """Lines of YAML for the stack's `config:` and the data they hold. Settings left as None
    are not written: the program passes them in code, or their defaults apply."""
    validate_service_name(service)
    if router is not None:
        router_named(router)
    if not re.match(VERSION_TAG, version):
        raise InvalidInput(f"{version!r} is not a valid image tag",
                           hint="use letters, digits, '_', '.', '-' (at most 128)")

    def key(name: str) -> str:
        return f"{service}:{name}"

    lines = [
        "",
        f"# -- canary service {service} (rollout init) --",
        "# The version serving all traffic; `rollout run` sets it when it promotes.",
        f"{key('stableVersion')}: {json.dumps(version)}",
    ]
    data: dict[str, Any] = {key("stableVersion"): version}
    optional = [
        ("image", image, "Image repository without a tag (the tag is the version)."),
        ("namespace", namespace, "Namespace of the Deployments, Services and route."),
        ("router", router, "How traffic is split: istio (VirtualService) or gateway-api "
                           "(HTTPRoute; then set parentRefs)."),
    ]
    for name, value, comment in optional:
        if value is not None:
            lines += [f"# {comment}", f"{key(name)}: {json.dumps(value)}"]
            data[key(name)] = value
    if router == "gateway-api":
        refs = [{"name": "<your-gateway>"}]
        lines += ["# The Gateway (or mesh Service) the HTTPRoute attaches to.",
                  f"{key('parentRefs')}:", "  - name: <your-gateway>"]
        data[key("parentRefs")] = refs
    analysis = DEFAULT_ANALYSIS
    lines += [
        "# How the canary is judged between steps (README: Analysis). Driver-owned keys",
        f"# ({service}:canaryVersion, canaryWeight, canaryReplicas) appear during a rollout.",
        f"{key('analysis')}:",
        "  # Time between checks; failed checks that revert; canary weight per step, and max.",
        f"  interval: {analysis['interval']}",
        f"  threshold: {analysis['threshold']}",
        f"  stepWeight: {analysis['stepWeight']}",
        f"  maxWeight: {analysis['maxWeight']}",
        "  metrics:",
        "    # Share of non-5xx responses, percent: the canary fails below min.",
        "    - name: request-success-rate",
        "      thresholdRange:",
        "        min: 99",
        "    # p99 latency in milliseconds: the canary fails above max.",
        "    - name: request-duration",
        "      thresholdRange:",
        "        max: 500",
    ]
    data[key("analysis")] = analysis
    if image is not None:
        try:  # the program will validate the same settings: refuse now what it would refuse
            load_settings({k.split(":", 1)[1]: v for k, v in data.items()}, service=service)
        except SettingsError as err:
            raise InvalidInput(str(err), hint="fix the option named above") from None
    return lines, data
