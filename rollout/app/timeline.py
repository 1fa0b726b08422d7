"""A rollout's timeline as data: its steps, verdicts with evidence, events and the metric
series of primary and canary from Prometheus. The report and the dashboard both draw it."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from rollout.analysis.templates import BUILTIN_TEMPLATES, DURATION_P99, SUCCESS_RATE, render
from rollout.analysis.wording import bounds, show
from rollout.core.gates import when
from rollout.core.state import RolloutState

_log = logging.getLogger(__name__)

Point = tuple[float, float]
Fetcher = Callable[[str, float, float, float], list[Point]]
"""(promql, start, end, step) -> [(epoch seconds, value)] of the query's one series."""

RATE_WINDOW = "10s"
SERIES_KEYS = ("success_rate_primary", "success_rate_canary", "p99_primary", "p99_canary")
NO_SERIES_NOTE = "metric series were unavailable"

_RESULTS = {True: "pass", False: "fail", None: "inconclusive"}


# -- metric series ------------------------------------------------------------------------


def series_queries(*, app: str, namespace: str) -> dict[str, str]:
    """The built-in Istio metric queries (the judges' own templates) behind each series key."""
    queries = {}
    for side in ("primary", "canary"):
        def filled(template: str, side: str = side) -> str:
            return render(template, namespace=namespace, target=f"{app}-{side}",
                          primary=f"{app}-primary", interval=RATE_WINDOW)

        queries[f"success_rate_{side}"] = filled(SUCCESS_RATE)
        queries[f"p99_{side}"] = filled(DURATION_P99)
    return queries


def fetch_series(
    fetch: Fetcher, *, app: str, namespace: str, start: float, end: float, step: float = 2.0
) -> dict[str, list[Point]]:
    """Success rate (%) and p99 latency (ms) of primary and canary between start and end."""
    return {
        key: _finite(fetch(promql, start, end, step))
        for key, promql in series_queries(app=app, namespace=namespace).items()
    }



def _finite(points: list[Point]) -> list[Point]:
    # 0/0 (no traffic yet) comes back as NaN, which JSON cannot hold.
    return [(float(t), float(v)) for t, v in points if math.isfinite(v)]


# -- the JSON document --------------------------------------------------------------------


def build_report(
    state: RolloutState,
    *,
    series: dict[str, list[Point]] | None,
    app: str,
    namespace: str,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """Summary, weight steps, verdicts with evidence, events and (when given) metric series."""
    start = state.started_at
    return {
        "rollout": _summary(state, app=app, namespace=namespace),
        "steps": _steps(state),
        "verdicts": [_verdict(analysis, start) for analysis in state.analyses],
        "events": [_event(event, start) for event in state.events],
        "series": {key: [list(p) for p in points] for key, points in series.items()}
        if series
        else None,
        "notes": _notes(notes or [], has_series=bool(series)),
        "generated_at": time.time(),
    }


def _notes(notes: list[str], *, has_series: bool) -> list[str]:
    if has_series or any(note.startswith(NO_SERIES_NOTE) for note in notes):
        return list(notes)
    return [*notes, NO_SERIES_NOTE]


def _summary(state: RolloutState, *, app: str, namespace: str) -> dict[str, Any]:
    ended = ended_at(state)
    return {
        "id": state.rollout_id,
        "stack": state.stack,
        "app": app,
        "namespace": namespace,
        "candidate": state.candidate,
        "stable": state.stable,
        "phase": str(state.phase),
        "outcome": str(state.outcome) if state.outcome else None,
        "reason": state.reason,
        "failed_checks": state.failed_checks,
        "started_at": state.started_at,
        "ended_at": ended,
        "started": when(state.started_at),
        "ended": when(ended) if ended is not None else None,
        "duration_seconds": round((ended or state.updated_at) - state.started_at, 3),
    }


def ended_at(state: RolloutState) -> float | None:
    if not state.phase.terminal:
        return None
    return max([state.updated_at, *(e["at"] for e in state.events)])


def _steps(state: RolloutState) -> list[dict[str, Any]]:
    """The canary weight over time: one row wherever an event shows a new weight."""
    steps = [{"at": state.started_at, "t": 0.0, "step": None, "weight": 0,
              "message": "rollout started"}]
    for event in state.events:
        if event["weight"] != steps[-1]["weight"]:
            steps.append({"at": event["at"], "t": round(event["at"] - state.started_at, 3),
                          "step": event["step"] + 1 if event["step"] >= 0 else None,
                          "weight": event["weight"], "message": event["message"],
                          "seconds": event.get("seconds")})
    return steps


def _verdict(analysis: Mapping[str, Any], start: float) -> dict[str, Any]:
    at = analysis.get("at")
    step = analysis.get("step")
    return {
        "at": at,
        "t": round(at - start, 3) if at is not None else None,
        "step": step + 1 if isinstance(step, int) and step >= 0 else None,
        "weight": analysis.get("weight"),
        "result": _RESULTS[analysis.get("passed")],
        "failed_checks": analysis.get("failed_checks", 0),
        "reason": analysis.get("reason", ""),
        "evidence": [_evidence(metric) for metric in analysis.get("metrics", [])],
    }


def _evidence(metric: Mapping[str, Any]) -> dict[str, Any]:
    unit = BUILTIN_TEMPLATES.get(metric.get("metric", ""), ("", ""))[1]
    low, high = metric.get("minimum"), metric.get("maximum")
    interval = metric.get("interval")
    return {
        "metric": metric.get("metric", ""),
        "result": metric.get("result", ""),
        "failed": bool(metric.get("failed")),
        "unit": unit,
        "canary": metric.get("canary"),
        "primary": metric.get("primary"),
        "value": show(metric.get("canary"), unit),
        "primary_value": show(metric.get("primary"), unit) if metric.get("primary") is not None
        else "",
        "threshold": bounds(low, high, unit) if low is not None or high is not None else "",
        "minimum": low,
        "maximum": high,
        "statistic": metric.get("statistic"),
        "interval": list(interval) if interval else None,
        "p_value": metric.get("p_value"),
        "window": metric.get("window", ""),
        "query": metric.get("query", ""),
        "reason": metric.get("reason", ""),
    }


def _event(event: Mapping[str, Any], start: float) -> dict[str, Any]:
    known = ("at", "phase", "step", "weight", "message")
    return {
        "at": event["at"],
        "t": round(event["at"] - start, 3),
        "phase": event.get("phase", ""),
        "step": event["step"] + 1 if event.get("step", -1) >= 0 else None,
        "weight": event.get("weight"),
        "message": event.get("message", ""),
        "data": {k: v for k, v in event.items() if k not in known},
    }



def report_name(state: RolloutState, kind: str) -> str:
    """The file name of a rollout's report: `<stack>-<id>.<kind>` ("/" of an organisation's
    stack name made "_"; not with_suffix: a stack such as "dev.eu" keeps its dot)."""
    return f"{state.stack.replace('/', '_')}-{state.rollout_id}.{kind}"


# -- the series of one rollout ------------------------------------------------------------


def series_for(
    state: RolloutState, *, fetch: Fetcher | None, app: str, namespace: str,
    end: float | None = None,
) -> tuple[dict[str, list[Point]] | None, list[str]]:
    """The rollout's series from its start to `end` (default: its end, else its last save);
    a failure becomes a note, so a report or a page never fails for want of metrics."""
    if fetch is None:
        return None, []
    end = end or ended_at(state) or state.updated_at
    # Prometheus caps a range query at 11,000 points; long rollouts get a coarser step.
    step = max(2.0, (end - state.started_at) / 2000)
    try:
        series = fetch_series(fetch, app=app, namespace=namespace, start=state.started_at,
                              end=end + step, step=step)
    except Exception as exc:
        _log.warning("rollout report without metric series: %s", exc)
        return None, [f"{NO_SERIES_NOTE}: {exc}"]
    if not any(series.values()):
        return None, [f"{NO_SERIES_NOTE}: Prometheus returned no data for {app}"]
    return series, []
