"""Endpoints: the ready pods behind each Service, from its EndpointSlices and the Pods."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("dataplane")

VERSION_LABEL = "app.kubernetes.io/version"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"  # on every EndpointSlice of a Service
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def declared_version(name: str, labels: Mapping[str, str],
                     pod_spec: Mapping[str, Any]) -> str | None:
    """The demo app version a pod (or a pod template) declares: its version label, else a
    container's VERSION env or image tag. None, with a log line, when it declares none."""
    version = labels.get(VERSION_LABEL)
    if not version:
        for container in pod_spec.get("containers") or []:
            env = {e.get("name"): e.get("value") for e in container.get("env") or []}
            image = str(container.get("image", ""))
            version = env.get("VERSION") or (image.rsplit(":", 1)[1] if ":" in image else None)
            if version:
                break
    if not version:
        log.error("%s declares no version (no %s label, VERSION env or image tag): no demo "
                  "app serves it", name, VERSION_LABEL)
        return None
    if not _VERSION_RE.match(str(version)):
        log.error("%s declares the version %r, which is no label value: no demo app serves it",
                  name, version)
        return None
    return str(version)


@dataclass(frozen=True)
class Pod:
    name: str
    workload: str  # the Deployment that owns it, as Istio names a pod's workload
    version: str | None
    labels: tuple[tuple[str, str], ...]

    def has_labels(self, wanted: Mapping[str, str]) -> bool:
        mine = dict(self.labels)
        return all(mine.get(k) == v for k, v in wanted.items())


def pod_from_object(obj: Mapping[str, Any]) -> Pod:
    meta = obj.get("metadata") or {}
    name = str(meta.get("name", ""))
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    return Pod(name, _workload(meta, labels), declared_version(name, labels, obj.get("spec") or {}),
               tuple(sorted(labels.items())))


def _workload(meta: Mapping[str, Any], labels: Mapping[str, str]) -> str:
    """A ReplicaSet's pod belongs to its Deployment: the ReplicaSet's name less its
    pod-template-hash suffix (how Istio derives destination_workload)."""
    for owner in meta.get("ownerReferences") or []:
        owner_name = str(owner.get("name", ""))
        suffix = "-" + labels.get("pod-template-hash", "\0")
        if owner.get("kind") == "ReplicaSet" and owner_name.endswith(suffix):
            return owner_name[: -len(suffix)]
        if owner_name:
            return owner_name
    return str(meta.get("name", ""))


@dataclass(frozen=True)
class Endpoint:
    """One address of a Service: the pod behind it and whether it may take traffic."""

    pod: str
    ready: bool


def endpoints_of_slice(obj: Mapping[str, Any]) -> tuple[Endpoint, ...]:
    found = []
    for endpoint in obj.get("endpoints") or []:
        ref = endpoint.get("targetRef") or {}
        if ref.get("kind") != "Pod" or not ref.get("name"):
            continue
        conditions = endpoint.get("conditions") or {}
        # "ready" unset means ready (discovery.k8s.io/v1); a terminating pod is never ready.
        ready = conditions.get("ready") is not False and not conditions.get("terminating")
        found.append(Endpoint(str(ref["name"]), ready))
    return tuple(found)


class Endpoints:
    """What the Service, EndpointSlice and Pod watches say, kept as Services -> ready pods."""

    def __init__(self, on_versions: Callable[[frozenset[str]], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._services: set[str] = set()
        self._slices: dict[str, tuple[str, tuple[Endpoint, ...]]] = {}  # slice -> service
        self._pods: dict[str, Pod] = {}
        self.on_versions = on_versions
        self._versions: frozenset[str] = frozenset()

    # -- fed by the watches ------------------------------------------------------------------

    def set_services(self, items: Iterable[Mapping[str, Any]]) -> None:
        with self._lock:
            self._services = {_name(obj) for obj in items}

    def service_event(self, kind: str, obj: Mapping[str, Any]) -> None:
        with self._lock:
            if kind == "DELETED":
                self._services.discard(_name(obj))
            else:
                self._services.add(_name(obj))

    def set_slices(self, items: Iterable[Mapping[str, Any]]) -> None:
        with self._lock:
            self._slices = {}
            for obj in items:
                self._put_slice(obj)

    def slice_event(self, kind: str, obj: Mapping[str, Any]) -> None:
        with self._lock:
            if kind == "DELETED":
                self._slices.pop(_name(obj), None)
            else:
                self._put_slice(obj)

    def _put_slice(self, obj: Mapping[str, Any]) -> None:
        service = ((obj.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
        if service:
            self._slices[_name(obj)] = (str(service), endpoints_of_slice(obj))

    def set_pods(self, items: Iterable[Mapping[str, Any]]) -> None:
        with self._lock:
            self._pods = {p.name: p for p in map(pod_from_object, items)}
        self._versions_changed()

    def pod_event(self, kind: str, obj: Mapping[str, Any]) -> None:
        with self._lock:
            if kind == "DELETED":
                self._pods.pop(_name(obj), None)
            else:
                pod = pod_from_object(obj)
                self._pods[pod.name] = pod
        self._versions_changed()

    def _versions_changed(self) -> None:
        with self._lock:
            versions = frozenset(p.version for p in self._pods.values() if p.version)
            changed, self._versions = versions != self._versions, versions
        if changed and self.on_versions is not None:
            self.on_versions(versions)

    # -- read by the data plane --------------------------------------------------------------

    def knows(self, service: str) -> bool:
        """Whether the Service exists (with or without ready pods)."""
        with self._lock:
            return service in self._services

    def ready(self, service: str, labels: Mapping[str, str] | None = None) -> list[Pod]:
        """The Service's ready pods (only those with `labels`, for a subset), by name."""
        with self._lock:
            names = {e.pod for s, endpoints in self._slices.values() if s == service
                     for e in endpoints if e.ready}
            pods = [self._pods[n] for n in sorted(names) if n in self._pods]
        return [p for p in pods if labels is None or p.has_labels(labels)]

    def summary(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            out: dict[str, list[dict[str, Any]]] = {}
            for service in sorted(self._services):
                out[service] = []
            for service, endpoints in sorted(self._slices.values()):
                for e in endpoints:
                    pod = self._pods.get(e.pod)
                    out.setdefault(service, []).append({
                        "pod": e.pod, "ready": e.ready,
                        "workload": pod.workload if pod else None,
                        "version": pod.version if pod else None})
                out.setdefault(service, [])
            return out


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def hash_pick(pods: list[Pod], key: str) -> Pod:
    """The pod a consistent hash of `key` lands on: rendezvous hashing, so a pod joining or
    leaving moves only the keys that hashed to it, as Envoy's ring hash does."""
    def score(pod: Pod) -> bytes:
        return hashlib.blake2b(f"{key}\0{pod.name}".encode(), digest_size=8).digest()

    return max(pods, key=score)
