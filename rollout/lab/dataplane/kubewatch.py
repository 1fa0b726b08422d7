"""Watches the route object, Services, EndpointSlices, Pods and DestinationRules."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollout.core.routers import router_named

if TYPE_CHECKING:
    from rollout.lab.dataplane.plane import DataPlane

log = logging.getLogger("dataplane")

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

    what = "route"

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


class NamespaceWatch:
    """Feeds a handler every object of one kind in the namespace: the whole list after each
    (re)list, then each event."""

    def __init__(self, list_call: Callable[..., Any], namespace: str, what: str,
                 on_list: Callable[[list[dict[str, Any]]], None],
                 on_event: Callable[[str, dict[str, Any]], None],
                 **kwargs: Any) -> None:
        self._list = list_call
        self._kwargs = {"namespace": namespace, **kwargs}
        self._on_list = on_list
        self._on_event = on_event
        self.what = what
        self.synced = threading.Event()

    def _listed(self, items: list[dict[str, Any]]) -> None:
        self._on_list(items)
        self.synced.set()

    def run(self, stop: threading.Event) -> None:
        _watch_forever(self._list, self._kwargs, self._listed, self._on_event, stop, self.what)


def run_watches(plane: DataPlane, kubeconfig: Path, stop: threading.Event) -> None:
    from kubernetes import client, config

    def api() -> Any:
        return config.new_client_from_config(config_file=str(kubeconfig))

    ns = plane.namespace
    route = RouteWatch(api(), plane.router, ns, plane.app, plane.apply_object)
    watches: list[RouteWatch | NamespaceWatch] = [
        route,
        NamespaceWatch(client.CoreV1Api(api()).list_namespaced_service, ns, "services",
                       plane.endpoints.set_services, plane.endpoints.service_event),
        NamespaceWatch(client.CoreV1Api(api()).list_namespaced_pod, ns, "pods",
                       plane.endpoints.set_pods, plane.endpoints.pod_event),
        NamespaceWatch(client.DiscoveryV1Api(api()).list_namespaced_endpoint_slice, ns,
                       "endpointslices", plane.endpoints.set_slices,
                       plane.endpoints.slice_event),
    ]
    if plane.router == "istio":
        watches.append(NamespaceWatch(
            client.CustomObjectsApi(api()).list_namespaced_custom_object, ns,
            "destinationrules", plane.rules.set_all, plane.rules.event,
            group="networking.istio.io", version="v1", plural="destinationrules"))
    for watcher in watches:
        threading.Thread(target=watcher.run, args=(stop,), name=f"{watcher.what}-watch",
                         daemon=True).start()

    def mark_synced() -> None:
        for watcher in watches:
            watcher.synced.wait()
        plane.synced.set()

    threading.Thread(target=mark_synced, daemon=True).start()
