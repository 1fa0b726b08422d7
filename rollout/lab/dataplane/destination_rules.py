"""Istio DestinationRules: the subsets of a host and its consistent-hash session affinity."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rollout.core.durations import parse_duration
from rollout.lab.dataplane.matching import Request
from rollout.lab.dataplane.routing import istio_destination

log = logging.getLogger("dataplane")


@dataclass(frozen=True)
class HashPolicy:
    """loadBalancer.consistentHash: what a request's endpoint is hashed on."""

    header: str | None = None  # httpHeaderName
    cookie: str | None = None  # httpCookie.name
    # Seconds; with a ttl, Envoy sets the cookie when the request has none (0: for the session).
    cookie_ttl: int | None = None
    cookie_path: str | None = None
    query: str | None = None  # httpQueryParameterName
    source_ip: bool = False  # useSourceIp

    def key(self, request: Request, client: str) -> tuple[str | None, str | None]:
        """(the hash key, a Set-Cookie header to answer with); no key: no affinity."""
        if self.header:
            return request.headers.get(self.header.lower()), None
        if self.query:
            return request.query.get(self.query), None
        if self.source_ip:
            return client, None
        if self.cookie:
            value = _cookie(request.headers.get("cookie", ""), self.cookie)
            if value is None and self.cookie_ttl is not None:
                # Envoy generates the cookie as its Http::Utility::makeSetCookieValue writes it.
                value = f'"{secrets.token_hex(8)}"'
                return value, (f"{self.cookie}={value}"
                               + (f"; Max-Age={self.cookie_ttl}" if self.cookie_ttl else "")
                               + (f"; Path={self.cookie_path}" if self.cookie_path else "")
                               + "; HttpOnly")
            return value, None
        return None, None


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return None


# loadBalancer.simple: what the lab does for each. LEAST_CONN is the deprecated name of
# LEAST_REQUEST; PASSTHROUGH (to the caller's original address) has no meaning here.
BALANCERS = {"LEAST_REQUEST": "LEAST_REQUEST", "LEAST_CONN": "LEAST_REQUEST",
             "ROUND_ROBIN": "ROUND_ROBIN", "RANDOM": "RANDOM", "UNSPECIFIED": "LEAST_REQUEST"}
# Istio's default since 1.14 (istio/istio#37220).
DEFAULT_BALANCER = "LEAST_REQUEST"


def _balancer(traffic_policy: Any) -> str | None:
    if not isinstance(traffic_policy, Mapping):
        return None
    simple = (traffic_policy.get("loadBalancer") or {}).get("simple")
    if simple is None:
        return None
    if simple not in BALANCERS:
        raise ValueError(f"loadBalancer.simple {simple!r} is none the lab knows "
                         f"({', '.join(sorted(BALANCERS))})")
    return BALANCERS[str(simple)]


def _hash_policy(traffic_policy: Any) -> HashPolicy | None:
    if not isinstance(traffic_policy, Mapping):
        return None
    spec = (traffic_policy.get("loadBalancer") or {}).get("consistentHash")
    if not isinstance(spec, Mapping):
        return None
    cookie = spec.get("httpCookie") or {}
    return HashPolicy(header=spec.get("httpHeaderName"), cookie=cookie.get("name"),
                      # The project's duration grammar; one outside it: an unreadable rule.
                      cookie_ttl=None if cookie.get("ttl") is None
                      else round(parse_duration(str(cookie["ttl"]))),
                      cookie_path=cookie.get("path"),
                      query=spec.get("httpQueryParameterName"),
                      source_ip=bool(spec.get("useSourceIp")))


@dataclass(frozen=True)
class Subset:
    labels: Mapping[str, str]
    hash: HashPolicy | None  # the subset's own trafficPolicy, else the rule's
    balancer: str = DEFAULT_BALANCER


@dataclass(frozen=True)
class HostPolicy:
    """What the DestinationRule for one host says."""

    rule: str
    hash: HashPolicy | None
    subsets: Mapping[str, Subset]
    balancer: str = DEFAULT_BALANCER


def host_policy(obj: Mapping[str, Any]) -> HostPolicy:
    spec = obj.get("spec") or {}
    top = _hash_policy(spec.get("trafficPolicy"))
    balancer = _balancer(spec.get("trafficPolicy")) or DEFAULT_BALANCER
    subsets = {}
    for entry in spec.get("subsets") or []:
        if isinstance(entry, Mapping) and entry.get("name"):
            labels = {str(k): str(v) for k, v in (entry.get("labels") or {}).items()}
            policy = entry.get("trafficPolicy")
            subsets[str(entry["name"])] = Subset(
                labels, _hash_policy(policy) or top, _balancer(policy) or balancer)
    return HostPolicy(str((obj.get("metadata") or {}).get("name", "")), top, subsets,
                      balancer)


class DestinationRules:
    """The namespace's DestinationRules by the Service their host names."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._lock = threading.Lock()
        self._objects: dict[str, Mapping[str, Any]] = {}
        self._by_service: dict[str, HostPolicy] = {}

    def set_all(self, items: Iterable[Mapping[str, Any]]) -> None:
        with self._lock:
            self._objects = {_name(o): o for o in items}
            self._index()

    def event(self, kind: str, obj: Mapping[str, Any]) -> None:
        with self._lock:
            if kind == "DELETED":
                self._objects.pop(_name(obj), None)
            else:
                self._objects[_name(obj)] = obj
            self._index()

    def _index(self) -> None:
        by_service: dict[str, HostPolicy] = {}
        # Two rules for one host: Istio uses the oldest one.
        ordered = sorted(self._objects.values(), key=lambda o: (
            str((o.get("metadata") or {}).get("creationTimestamp", "")), _name(o)))
        for obj in ordered:
            target = istio_destination({"host": (obj.get("spec") or {}).get("host", "")}, 0)
            if target.invalid or target.namespace not in (None, self.namespace):
                continue
            if target.service in by_service:
                log.warning("DestinationRule %s: %s already has %s; Istio uses the older one",
                            _name(obj), target.service, by_service[target.service].rule)
                continue
            try:
                by_service[target.service] = host_policy(obj)
            except (AttributeError, TypeError, ValueError) as err:
                log.error("DestinationRule %s cannot be read (%s: %s): the lab ignores it",
                          _name(obj), type(err).__name__, err)
        self._by_service = by_service

    def policy(self, service: str) -> HostPolicy | None:
        with self._lock:
            return self._by_service.get(service)


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))
