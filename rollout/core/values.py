"""Checks for the values that reach a query: workload names and user variables (durations:
`rollout.core.durations`)."""

from __future__ import annotations

import re

from rollout.core.errors import InvalidInput

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
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
