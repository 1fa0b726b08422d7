"""The judges benchmarked, as the analysis policies users write in their stack config.

Each row is parsed by the project's own loader (`parse_analysis`); a policy it refuses is a row
whose result is the refusal message. Rows whose policies differ only in `threshold` share one
analysis per interval: the threshold only says how many failed checks roll back, and
MetricAnalysis never reads it, so their verdicts are the same calls' verdicts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rollout.core.analysis_model import AnalysisSpec, parse_analysis
from rollout.core.errors import InvalidInput

FLAGGER_METRICS = [
    {"name": "request-success-rate", "thresholdRange": {"min": 99}},
    {"name": "request-duration", "thresholdRange": {"max": 500}},
]
BUILTIN_METRICS = [{"name": "request-success-rate"}, {"name": "request-duration"}]


@dataclass(frozen=True)
class Row:
    """One judge as configured: its policy, and the parsed spec or the loader's refusal."""

    name: str
    kind: str  # threshold, comparative or sequential
    policy: Mapping[str, Any]
    spec: AnalysisSpec | None
    refusal: str | None = None
    watches_latency: bool = True  # the sequential judge sees latency only with slowRequestMs


@dataclass(frozen=True)
class Group:
    """Rows judged by the same analysis calls (their policies differ only in threshold)."""

    spec: AnalysisSpec
    rows: tuple[Row, ...]


def rows(*, scrape_s: int, alpha: float, slow_ms: float, interval: str = "1m") -> list[Row]:
    """The benchmark's rows for a Prometheus scraping every `scrape_s` seconds.

    The comparative judge samples rate() over its step; at a 30 s scrape a 30 s window holds a
    single sample (rate() needs two), so there it is configured with a 60 s step.
    """
    step = "30s" if scrape_s < 30 else "60s"
    policies: list[tuple[str, str, dict[str, Any], bool]] = [
        ("threshold (Flagger) t=1", "threshold",
         {"interval": interval, "threshold": 1, "metrics": FLAGGER_METRICS}, True),
        ("threshold (Flagger) t=5", "threshold",
         {"interval": interval, "threshold": 5, "metrics": FLAGGER_METRICS}, True),
        (f"comparative (MW) step {step}", "comparative",
         {"interval": interval, "threshold": 1,
          "judge": {"kind": "comparative", "alpha": alpha, "step": step},
          "metrics": BUILTIN_METRICS}, True),
        ("sequential errors", "sequential",
         {"interval": interval, "threshold": 1,
          "judge": {"kind": "sequential", "alpha": alpha}}, False),
        (f"sequential errors+slow>{slow_ms:g}ms", "sequential",
         {"interval": interval, "threshold": 1,
          "judge": {"kind": "sequential", "alpha": alpha, "slowRequestMs": slow_ms}}, True),
    ]
    return [
        _parsed(name, kind, policy, watches_latency=latency)
        for name, kind, policy, latency in policies
    ]


def groups(judged: Sequence[Row]) -> list[Group]:
    """Rows that can be judged, grouped by their policy without its threshold."""
    found: dict[str, list[Row]] = {}
    for row in judged:
        if row.spec is None:
            continue
        key = json.dumps({k: v for k, v in row.policy.items() if k != "threshold"},
                         sort_keys=True)
        found.setdefault(key, []).append(row)
    result = []
    for members in found.values():
        spec = members[0].spec
        assert spec is not None
        result.append(Group(spec=spec, rows=tuple(members)))
    return result


def _parsed(name: str, kind: str, policy: dict[str, Any], *, watches_latency: bool) -> Row:
    try:
        spec = parse_analysis(policy)
    except InvalidInput as exc:
        return Row(name, kind, policy, None, refusal=" ".join(exc.message.split()),
                   watches_latency=watches_latency)
    return Row(name, kind, policy, spec, watches_latency=watches_latency)
