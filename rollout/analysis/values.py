"""Checks for the values that reach a query: workload names, durations and user variables."""

from __future__ import annotations

import re

from rollout.errors import InvalidInput

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)
# No quotes, braces, brackets, parentheses, commas, operators or spaces: a value cannot close a
# label matcher or add PromQL of its own.
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.:/-]*$")
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_name(value: str, *, what: str) -> str:
    """Return `value` if it is a DNS-1123 label (what Kubernetes workloads and namespaces use)."""
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise InvalidInput(
            f"{what} {value!r} is not a valid Kubernetes name",
            hint="use lower-case letters, digits and '-', at most 63 characters, "
            "starting and ending with a letter or digit",
        )
    return value


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration such as '1m', '90s' or '1h30m'."""
    match = _DURATION.match(text)
    if not text or not match or not any(match.groups()):
        raise InvalidInput(
            f"{text!r} is not a Prometheus duration", hint="write it like 30s, 1m, 5m or 1h30m"
        )
    seconds = sum(
        int(n) * unit for n, unit in zip(match.groups(), _DURATION_UNITS, strict=True) if n
    )
    if seconds <= 0:
        raise InvalidInput(f"duration {text!r} must be longer than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest Prometheus duration for a whole number of seconds (e.g. 90 -> '1m30s')."""
    whole = round(seconds)
    if whole <= 0:
        return f"{max(round(seconds * 1000), 1)}ms"
    parts = []
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def check_variable(name: str, value: str) -> str:
    """Return `value` if a template variable of that name may carry it into a query."""
    if not _VARIABLE_NAME.match(name):
        raise InvalidInput(
            f"variable name {name!r} is not allowed",
            hint="use letters, digits and '_', starting with a letter or '_'",
        )
    if not _SAFE_VALUE.match(value):
        raise InvalidInput(
            f"variable {name!r} has the value {value!r}, which could change the query's meaning",
            hint="variable values may only hold letters, digits and _ . : / -",
        )
    return value
