"""Numbers and bounds written the way a person reads them in a verdict's reason."""

from __future__ import annotations

import math
from typing import Any


def show(value: float | None, unit: str = "") -> str:
    if value is None or math.isnan(value):
        return "no value"
    if math.isinf(value):
        return "infinite" if value > 0 else "minus infinity"
    number = f"{value:.4g}" if abs(value) < 1e6 else f"{value:.3e}"
    if unit == "%":
        return f"{number}%"
    return f"{number} {unit}" if unit else number


def bounds(minimum: float | None, maximum: float | None, unit: str) -> str:
    if minimum is not None and maximum is not None:
        return f"between {show(minimum, unit)} and {show(maximum, unit)}"
    if minimum is not None:
        return f"at least {show(minimum, unit)}"
    return f"at most {show(maximum, unit)}"


def verdict_word(passed: bool | None) -> str:
    """A verdict as one word: a pass, a fail, or no verdict."""
    return {True: "PASS", False: "FAIL", None: "INCONCLUSIVE"}[passed]


def share(fraction: float) -> str:
    return f"{100 * fraction:.3g}%"


def metrics_line(metrics: list[dict[str, Any]]) -> str:
    """`request-success-rate 90.5 (primary 100) FAIL, ...`: the numbers without the queries."""
    parts = []
    for m in metrics:
        canary = _num(m.get("canary"))
        primary = f" (primary {_num(m.get('primary'))})" if m.get("primary") is not None else ""
        parts.append(f"{m.get('metric')} {canary}{primary} {m.get('result')}")
    return ", ".join(parts)


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"
