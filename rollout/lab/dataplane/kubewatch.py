"""Watches the route object and the app's two Deployments on the Kubernetes API server."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollout.core.routers import router_named

if TYPE_CHECKING:
    from rollout.lab.dataplane.plane import DataPlane

log = logging.getLogger("dataplane")

VERSION_LABEL = "app.kubernetes.io/version"
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def declared_version(deployment: Mapping[str, Any] | None) -> str | None:
    """The version a Deployment declares, or None when it should have no backend."""
    if deployment is None:
        return None
    spec = deployment.get("spec") or {}
    replicas = spec.get("replicas")
    # No replicas field means the default of 1 (or an HPA owns the count).
    if replicas is not None and int(replicas) <= 0:
        return None
    template = spec.get("template") or {}
    version = ((template.get("metadata") or {}).get("labels") or {}).get(VERSION_LABEL)
    if not version:
        for container in (template.get("spec") or {}).get("containers") or []:
            env = {e.get("name"): e.get("value") for e in container.get("env") or []}
            image = str(container.get("image", ""))
            version = env.get("VERSION") or (image.rsplit(":", 1)[1] if ":" in image else None)
            if version:
                break
    if not version:
        log.error("%s declares no version (no %s label, VERSION env or image tag): it gets "
                  "no backend", (deployment.get("metadata") or {}).get("name"), VERSION_LABEL)
        return None
    if not _VERSION_RE.match(str(version)):
        log.error("%s declares the version %r, which is no label value: it gets no backend",
                  (deployment.get("metadata") or {}).get("name"), version)
        return None
    return str(version)


def _lines(resp: Any) -> Iterator[str]:
    """The lines of a streamed (chunked) response as they arrive."""
    buffer = b""
    for chunk in resp.stream(amt=None, decode_content=False):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield line.decode()


def _watch_forever(list_call: Callable[..., Any], kwargs: dict[str, Any],
                   on_list: Callable[[list[dict[str, Any]]], None],
                   on_event: Callable[[str, dict[str, Any]], None],
                   stop: threading.Event, what: str) -> None:
    """List, then watch from that resourceVersion; relist after any expiry or error.

    Events stay plain dicts: the client's typed models add nothing here and their validation
    would turn one odd object into a broken watch.
    """
    from kubernetes.client.exceptions import ApiException

    backoff = 0.2
    while not stop.is_set():
        try:
            resp = list_call(**kwargs, _preload_content=False, _request_timeout=10)
            listed = json.loads(resp.data)
            resp.release_conn()
            on_list(listed.get("items") or [])
            backoff = 0.2
            resp = list_call(**kwargs, watch=True, allow_watch_bookmarks=True,
                             resource_version=listed["metadata"]["resourceVersion"],
                             timeout_seconds=240, _preload_content=False,
                             _request_timeout=(10, 270))
            try:
                for line in _lines(resp):
                    event = json.loads(line)
                    if stop.is_set() or event.get("type") == "ERROR":
                        break  # ERROR is usually 410 Gone: relist
                    if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                        on_event(event["type"], event["object"])
            finally:
                # A watch left mid-stream must not go back to the pool.
                resp.close()
                resp.release_conn()
            continue
        except ApiException as err:
            level = logging.INFO if err.status in (404, 410) else logging.WARNING
            log.log(level, "%s watch: %s %s; relisting", what, err.status, err.reason)
        except Exception as err:
            log.warning("%s watch failed (%s: %s); retrying in %.1fs", what,
                        type(err).__name__, err, backoff)
        stop.wait(backoff)
        backoff = min(backoff * 2, 5.0)


class RouteWatch:
    """Feeds the data plane every version of the route object named after the app."""

    def __init__(self, api: Any, router: str, namespace: str, app: str,
                 apply: Callable[[dict[str, Any] | None], None]) -> None:
        from kubernetes import client

        route = router_named(router)
        self._list = client.CustomObjectsApi(api).list_namespaced_custom_object
        self._kwargs = {"group": route.group, "version": route.version, "namespace": namespace,
                        "plural": route.plural, "field_selector": f"metadata.name={app}"}
        self._apply = apply
        self.synced = threading.Event()

    def _listed(self, items: list[dict[str, Any]]) -> None:
        self._apply(items[0] if items else None)
        self.synced.set()

    def _event(self, kind: str, obj: dict[str, Any]) -> None:
        self._apply(None if kind == "DELETED" else obj)

    def run(self, stop: threading.Event) -> None:
        _watch_forever(self._list, self._kwargs, self._listed, self._event, stop, "route")


class DeploymentWatch:
    """Feeds the backends the version each of <app>-primary and <app>-canary declares."""

    def __init__(self, api: Any, namespace: str, app: str,
                 apply: Callable[[str, str | None], None]) -> None:
        from kubernetes import client

        self._list = client.AppsV1Api(api).list_namespaced_deployment
        self._kwargs = {"namespace": namespace}
        self.workloads = (f"{app}-primary", f"{app}-canary")
        self._apply = apply
        self.synced = threading.Event()

    def _listed(self, items: list[dict[str, Any]]) -> None:
        by_name = {d["metadata"]["name"]: d for d in items}
        for workload in self.workloads:
            self._apply(workload, declared_version(by_name.get(workload)))
        self.synced.set()

    def _event(self, kind: str, obj: dict[str, Any]) -> None:
        name = obj.get("metadata", {}).get("name")
        if name in self.workloads:
            self._apply(name, None if kind == "DELETED" else declared_version(obj))

    def run(self, stop: threading.Event) -> None:
        _watch_forever(self._list, self._kwargs, self._listed, self._event, stop, "deployments")


def run_watches(plane: DataPlane, kubeconfig: Path, stop: threading.Event) -> None:
    from kubernetes import config

    def api() -> Any:
        return config.new_client_from_config(config_file=str(kubeconfig))

    route = RouteWatch(api(), plane.router, plane.namespace, plane.app, plane.apply_object)
    deployments = DeploymentWatch(api(), plane.namespace, plane.app, plane.backends.want)
    for name, watcher in (("route-watch", route), ("deployment-watch", deployments)):
        threading.Thread(target=watcher.run, args=(stop,), name=name, daemon=True).start()

    def mark_synced() -> None:
        route.synced.wait()
        deployments.synced.wait()
        plane.synced.set()

    threading.Thread(target=mark_synced, daemon=True).start()
