"""Request matching: Istio and Gateway API match clauses as conditions on a request's parts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import unquote, urlsplit

# The lab's proxy serves plain HTTP/1.1: the scheme Envoy would see in :scheme.
SCHEME = "http"


def split_target(target: str) -> tuple[str, dict[str, str]]:
    """The path and the query parameters of a request target ("/a?b=1"); a repeated parameter
    keeps its first value, as the Gateway API recommends and Envoy's matchers use."""
    if target.startswith(("http://", "https://")):  # absolute form, as sent to a proxy
        parts = urlsplit(target)
        path, query = parts.path or "/", parts.query
    else:
        path, _, query = target.partition("#")[0].partition("?")
    params: dict[str, str] = {}
    for pair in query.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            params.setdefault(unquote(name), unquote(value))
    return path, params


@dataclass(frozen=True)
class Request:
    """What a route can match on: the method, the path without its query, the query parameters
    and the headers (names in lower case)."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]

    def part(self, field: str, name: str) -> str | None:
        if field == "path":
            return self.path
        if field == "method":
            return self.method
        if field == "header":
            return self.headers.get(name)
        if field == "query":
            return self.query.get(name)
        if field == "authority":  # Envoy's :authority is HTTP/1.1's Host header
            return self.headers.get("host")
        return SCHEME


@dataclass(frozen=True)
class Condition:
    """One test on one part of a request (`field`: path, method, header, query, authority or
    scheme; `name`: the header's or parameter's). `kind` is exact, prefix, segments (the
    Gateway API's PathPrefix), regex (the whole value) or present."""

    field: str
    kind: str
    value: str = ""
    name: str = ""
    negate: bool = False  # Istio withoutHeaders
    missing_as_empty: bool = False  # what Istio sets on a negated non-presence header matcher
    ignore_case: bool = False  # Istio ignoreUriCase: exact and prefix URI matches only

    def holds(self, request: Request) -> bool:
        actual = request.part(self.field, self.name)
        if actual is None:
            if not self.missing_as_empty:
                return self.negate
            actual = ""
        return self._test(actual) != self.negate

    def _test(self, actual: str) -> bool:
        value = self.value
        if self.ignore_case:
            actual, value = actual.lower(), value.lower()
        if self.kind == "present":
            return True
        if self.kind == "exact":
            return actual == value
        if self.kind == "prefix":
            return actual.startswith(value)
        if self.kind == "segments":
            return not value or actual == value or actual.startswith(value + "/")
        pattern = _compiled(value)
        return pattern is not None and pattern.fullmatch(actual) is not None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field}
        if self.name:
            out["name"] = self.name
        out["kind"] = self.kind
        if self.kind != "present":
            out["value"] = self.value
        for flag in ("negate", "ignore_case"):
            if getattr(self, flag):
                out[flag] = True
        return out


@dataclass(frozen=True)
class Match:
    """One match of a route: all of its conditions hold. A match with `never` set (the clause
    the lab cannot evaluate, or the unknown key) matches no request. `precedence` ranks Gateway
    API matches, highest first."""

    conditions: tuple[Condition, ...] = ()
    never: str | None = None
    precedence: tuple[int, ...] = ()

    def holds(self, request: Request) -> bool:
        return self.never is None and all(c.holds(request) for c in self.conditions)

    @property
    def catches_all(self) -> bool:
        return self.never is None and not self.conditions

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"conditions": [c.as_dict() for c in self.conditions]}
        if self.never is not None:
            out["never"] = self.never
        if self.precedence:
            out["precedence"] = list(self.precedence)
        return out


class _Never(Exception):
    """A match the lab must not route by; the message names the clause."""


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _regex(pattern: Any, where: str) -> str:
    text = str(pattern)
    if _compiled(text) is None:
        raise _Never(f"{where}: invalid regex {text!r}")
    return text


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _Never(f"{where}: {value!r} is not an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Never(f"{where}: {value!r} is not a list")
    return value


def _unknown_keys(spec: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    unknown = sorted(set(spec) - known)
    if unknown:
        raise _Never(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} "
                     f"{', '.join(map(repr, unknown))}")


# -- Istio HTTPMatchRequest (istio.io/api v1.32.0, networking/v1alpha3/virtual_service.proto) ---

ISTIO_KEYS = frozenset({"name", "uri", "scheme", "method", "authority", "headers", "port",
                        "sourceLabels", "gateways", "queryParams", "ignoreUriCase",
                        "withoutHeaders", "sourceNamespace", "statPrefix"})

# Clauses Istio evaluates when it builds a proxy's routes (pilot's translateRoute and
# sourceMatchHTTP), from what the lab's proxy is not: a labelled workload in a namespace, a
# named gateway, a listener on the service port. A match using one never routes in the lab.
ISTIO_NOT_IN_THE_LAB = {
    "port": "the lab's proxy listens on a port of its own, not the service's",
    "sourceLabels": "the lab's client is no labelled workload",
    "sourceNamespace": "the lab's client runs in no namespace",
    "gateways": "the lab's proxy is no named gateway",
}

_STRING_MATCH = frozenset({"exact", "prefix", "regex"})


def _istio_string(field: str, name: str, spec: Any, where: str, *,
                  ignore_case: bool = False, negate: bool = False) -> Condition:
    """An Istio StringMatch. Empty, or the regex "*", tests presence (pilot's
    canBeConvertedToPresentMatch); a regex matches the whole value, as Envoy's safe_regex."""
    spec = _mapping(spec, where)
    _unknown_keys(spec, _STRING_MATCH, where)
    if len(spec) > 1:
        raise _Never(f"{where}: a StringMatch sets one of exact, prefix, regex, not "
                     f"{', '.join(sorted(spec))}")
    kind, value = next(iter(spec.items()), ("present", ""))
    if kind == "regex" and value == "*":
        kind = "present"
    if kind == "present":
        return Condition(field, "present", name=name, negate=negate)
    text = _regex(value, where) if kind == "regex" else str(value)
    return Condition(field, kind, text, name, negate=negate, missing_as_empty=negate,
                     ignore_case=ignore_case and kind != "regex")


def istio_match(spec: Any) -> Match:
    """One HTTPMatchRequest of a VirtualService's HTTP route."""
    try:
        return Match(_istio_conditions(_mapping(spec, "match")))
    except _Never as err:
        return Match(never=str(err))


def _istio_conditions(spec: Mapping[str, Any]) -> tuple[Condition, ...]:
    _unknown_keys(spec, ISTIO_KEYS, "match")
    for key, why in ISTIO_NOT_IN_THE_LAB.items():
        if spec.get(key):  # pilot treats 0, {} and [] as not set
            raise _Never(f"{key}: {why}")
    conditions = []
    if spec.get("uri") is not None:
        # Istio's uri.prefix is a plain string prefix: virtual_service.proto (istio.io/api
        # v1.32.0) line 746 reads "`prefix: "value"` for prefix-based match", and pilot's
        # TranslateRouteMatch makes it Envoy's RouteMatch.prefix ("the prefix must match the
        # beginning of the :path header"); only a VirtualService generated from a Gateway API
        # route or an Ingress gets path_separated_prefix. So /foo matches /foobar here.
        conditions.append(_istio_string("path", "", spec["uri"], "uri",
                                        ignore_case=bool(spec.get("ignoreUriCase"))))
    for field in ("method", "scheme", "authority"):
        if spec.get(field) is not None:
            conditions.append(_istio_string(field, "", spec[field], field))
    for name, string_match in _mapping(spec.get("headers"), "headers").items():
        if str(name).startswith("@request.auth.claims"):
            raise _Never(f"headers.{name}: JWT claims need a RequestAuthentication the lab has not")
        conditions.append(_istio_string("header", str(name).lower(), string_match,
                                        f"headers.{name}"))
    for name, string_match in _mapping(spec.get("withoutHeaders"), "withoutHeaders").items():
        conditions.append(_istio_string("header", str(name).lower(), string_match,
                                        f"withoutHeaders.{name}", negate=True))
    for name, string_match in _mapping(spec.get("queryParams"), "queryParams").items():
        conditions.append(_istio_string("query", str(name), string_match,
                                        f"queryParams.{name}"))
    return tuple(conditions)


# -- Gateway API HTTPRouteMatch (sigs.k8s.io/gateway-api v1.6.3, apis/v1/httproute_types.go) ---

GATEWAY_KEYS = frozenset({"path", "headers", "queryParams", "method"})
_PATH_KINDS = {"Exact": "exact", "PathPrefix": "segments", "RegularExpression": "regex"}
_VALUE_KINDS = {"Exact": "exact", "RegularExpression": "regex"}

# The Gateway API leaves the rank of a RegularExpression path to the implementation. The lab
# puts it below Exact and above every PathPrefix, so a regex rule still wins over the
# catch-all rule (PathPrefix "/") that carries the weights.
_PATH_RANK = {"exact": 3, "regex": 2, "segments": 1}

DEFAULT_GATEWAY_MATCH: Mapping[str, Any] = {"path": {"type": "PathPrefix", "value": "/"}}


def gateway_match(spec: Any) -> Match:
    """One HTTPRouteMatch of an HTTPRoute rule, ranked by the spec's precedence."""
    try:
        return _gateway_match(_mapping(spec, "match"))
    except _Never as err:
        return Match(never=str(err))


def _gateway_match(spec: Mapping[str, Any]) -> Match:
    _unknown_keys(spec, GATEWAY_KEYS, "match")
    path = _mapping(spec.get("path"), "path")
    _unknown_keys(path, frozenset({"type", "value"}), "path")
    path_type, value = str(path.get("type", "PathPrefix")), str(path.get("value", "/"))
    kind = _PATH_KINDS.get(path_type)
    if kind is None:
        raise _Never(f"path.type: unknown type {path_type!r}")
    conditions = []
    if kind == "regex":
        conditions.append(Condition("path", kind, _regex(value, "path.value")))
    elif kind == "exact":
        conditions.append(Condition("path", kind, value))
    elif value.removesuffix("/"):
        # PathPrefix matches whole path elements; "When specified, a trailing `/` is ignored."
        conditions.append(Condition("path", kind, value.removesuffix("/")))
    method = spec.get("method")
    if method is not None:
        conditions.append(Condition("method", "exact", str(method)))
    headers = _named_matches(spec.get("headers"), "headers", "header", fold_case=True)
    params = _named_matches(spec.get("queryParams"), "queryParams", "query", fold_case=False)
    precedence = (_PATH_RANK[kind], len(value) if kind == "segments" else 0,
                  int(method is not None), len(headers), len(params))
    return Match((*conditions, *headers, *params), precedence=precedence)


def _named_matches(specs: Any, key: str, field: str, *, fold_case: bool) -> list[Condition]:
    """HTTPHeaderMatch or HTTPQueryParamMatch entries; of entries with an equivalent name only
    the first counts (header names compare case-insensitively, parameter names exactly)."""
    conditions: dict[str, Condition] = {}
    for i, entry in enumerate(_list(specs, key)):
        where = f"{key}[{i}]"
        entry = _mapping(entry, where)
        _unknown_keys(entry, frozenset({"type", "name", "value"}), where)
        if "name" not in entry or "value" not in entry:
            raise _Never(f"{where}: needs a name and a value")
        entry_type = str(entry.get("type", "Exact"))
        kind = _VALUE_KINDS.get(entry_type)
        if kind is None:
            raise _Never(f"{where}.type: unknown type {entry_type!r}")
        name = str(entry["name"]).lower() if fold_case else str(entry["name"])
        value = _regex(entry["value"], f"{where}.value") if kind == "regex" else str(entry["value"])
        conditions.setdefault(name, Condition(field, kind, value, name))
    return list(conditions.values())
