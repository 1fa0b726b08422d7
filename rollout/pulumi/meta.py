"""Names, labels and metadata shared by every Kubernetes object of a canary service."""

from __future__ import annotations

import pulumi_kubernetes as k8s

from rollout.core.service import ServiceSettings

SERVICE_PORT = 80
PORT_NAME = "http"
TRACK_LABEL = "canary.rollout/track"
# CustomResources have no readiness of their own; only they may skip the await.
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}
_REGEX_SPECIAL = frozenset(".^$*+?()[]{}|\\")


def common_labels(settings: ServiceSettings) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": settings.app,
        "app.kubernetes.io/part-of": settings.app,
        "app.kubernetes.io/managed-by": "pulumi",
    }


def object_meta(
    settings: ServiceSettings,
    name: str,
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> k8s.meta.v1.ObjectMetaArgs:
    """Metadata with a fixed name (no auto-naming: the driver finds objects by name)."""
    return k8s.meta.v1.ObjectMetaArgs(
        name=name,
        namespace=settings.namespace,
        labels={**common_labels(settings), **(labels or {})},
        annotations=annotations,
    )


def regex_literal(text: str) -> str:
    """`text` escaped for RE2 (Envoy), matching itself literally."""
    return "".join(f"\\{c}" if c in _REGEX_SPECIAL else c for c in text)


def cookie_regex(cookie: str) -> str:
    """A regex on the Cookie header that matches when `cookie` (name=value) is one of its pairs.

    Clients separate pairs with "; ", so the space after a ';' is optional whitespace.
    """
    return rf"^(.*?;\s*)?({regex_literal(cookie)})(;.*)?$"
