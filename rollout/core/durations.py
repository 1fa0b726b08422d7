"""The one duration grammar of the project: Prometheus's, since durations also reach queries.

A duration is one or more whole-number parts with units in falling order, as PromQL writes
them: `500ms`, `30s`, `1m30s`, `2h`, `1d`, `1w`, `1y`. Fractions (`1.5m`), spaces and units
out of order are refused everywhere alike, so a value that passes the policy also passes the
analysis model and the query it ends up in.
"""

from __future__ import annotations

import re

from rollout.core.errors import InvalidInput

_GRAMMAR = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)
FORM = "whole numbers with units in falling order, such as 500ms, 30s, 1m30s, 2h or 1d"


class InvalidDuration(InvalidInput, ValueError):
    """A duration outside the grammar; a ValueError too, so pydantic validators report it."""


def parse_duration(text: str, *, positive: bool = False) -> float:
    """Seconds in `text`; `positive` refuses zero (a query window or a step must be longer)."""
    match = _GRAMMAR.match(text) if isinstance(text, str) else None
    if not text or match is None or not any(match.groups()):
        raise InvalidDuration(f"{text!r} is not a duration", hint=f"write it as {FORM}")
    seconds = sum(int(n) * unit for n, unit in zip(match.groups(), _UNITS, strict=True) if n)
    if positive and seconds <= 0:
        raise InvalidDuration(f"duration {text!r} must be longer than zero",
                              hint=f"write it as {FORM}")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest duration in the grammar for `seconds`, in whole seconds from one second
    up (query windows are whole seconds), so whatever is printed can be pasted back into
    config or a query: 90 -> '1m30s', 0.25 -> '250ms'."""
    whole = round(seconds)
    if whole <= 0:
        return f"{max(round(seconds * 1000), 1)}ms"
    parts = []
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
