"""Short, plain-text summaries of verdicts for progress lines and logs."""

from __future__ import annotations

from typing import Any


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
