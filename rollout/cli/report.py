"""The rollout report: a JSON document, a PNG chart and a self-contained HTML page."""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import textwrap
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from rollout.analysis.templates import BUILTIN_TEMPLATES, DURATION_P99, SUCCESS_RATE, render
from rollout.analysis.wording import bounds, show
from rollout.core.durations import format_duration
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
_SHORT = {"pass": "pass", "fail": "FAIL", "inconclusive": "inc."}
_COLOURS = {"pass": "#2e7d32", "fail": "#c62828", "inconclusive": "#757575"}
_OUTCOME_COLOURS = {"promoted": "#2e7d32", "rolled-back": "#c62828", "aborted": "#c77800"}
_PRIMARY, _CANARY = "#1f5fa8", "#e4711a"


# -- metric series ------------------------------------------------------------------------


def prometheus_fetcher(
    base_url: str,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
    client: httpx.Client | None = None,
) -> Fetcher:
    """A fetcher on Prometheus' `GET /api/v1/query_range`; the first series of each answer."""
    url = base_url.rstrip("/") + "/api/v1/query_range"

    def fetch(promql: str, start: float, end: float, step: float) -> list[Point]:
        params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": step}
        if client is None:
            response = httpx.get(url, params=params, headers=headers, timeout=timeout)
        else:
            response = client.get(url, params=params, headers=headers, timeout=timeout)
        response.raise_for_status()
        result = response.json()["data"]["result"]
        if not result:
            return []
        return [(float(at), float(value)) for at, value in result[0]["values"]]

    return fetch


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
    ended = _ended_at(state)
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


def _ended_at(state: RolloutState) -> float | None:
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


# -- the PNG ------------------------------------------------------------------------------


def render_png(report: Mapping[str, Any], path: Path) -> Path:
    """Weight, success rate and p99 latency over the rollout, with each verdict marked."""
    # Imported here: matplotlib costs about a second and only reports need it.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 8.5), dpi=110, layout="constrained")
    weight_ax, rate_ax, p99_ax = fig.subplots(
        3, 1, sharex=True, gridspec_kw={"height_ratios": [1, 1.2, 1.2]}
    )
    end = _plot_end(report)
    _plot_weight(weight_ax, report, end)
    _plot_pair(rate_ax, report, "success_rate", "success rate (%)")
    _plot_pair(p99_ax, report, "p99", "p99 latency (ms)")
    _mark_verdicts(weight_ax, report, labels=True)
    for ax in (rate_ax, p99_ax):
        _mark_verdicts(ax, report, labels=False)
    # A little room on the right, so a last weight change at the very end stays visible.
    p99_ax.set_xlim(0, end * 1.02)
    p99_ax.set_xlabel("seconds since start")
    _titles(fig, weight_ax, report)
    path = Path(path)
    fig.savefig(path, format="png")
    return path


def _plot_end(report: Mapping[str, Any]) -> float:
    summary = report["rollout"]
    ends = [summary["duration_seconds"], *(e["t"] for e in report["events"])]
    ends += [v["t"] for v in report["verdicts"] if v["t"] is not None]
    for points in (report.get("series") or {}).values():
        ends += [t - summary["started_at"] for t, _ in points[-1:]]
    return max(max(ends), 1.0)


def _plot_weight(ax: Any, report: Mapping[str, Any], end: float) -> None:
    steps = report["steps"]
    times = [s["t"] for s in steps] + [end]
    weights = [s["weight"] for s in steps] + [steps[-1]["weight"]]
    ax.step(times, weights, where="post", color=_CANARY, linewidth=2)
    ax.fill_between(times, weights, step="post", color=_CANARY, alpha=0.15)
    ax.set_ylabel("canary weight (%)")
    # Head room above the highest step for the verdict labels.
    ax.set_ylim(0, max(100, max(weights) + 48))
    ax.set_yticks([0, 25, 50, 75, 100])
    ax.grid(True, alpha=0.3)


def _plot_pair(ax: Any, report: Mapping[str, Any], kind: str, label: str) -> None:
    summary, series = report["rollout"], report.get("series") or {}
    ax.set_ylabel(label)
    ax.grid(True, alpha=0.3)
    values = []
    for side, colour, version in (("primary", _PRIMARY, summary["stable"]),
                                  ("canary", _CANARY, summary["candidate"])):
        points = series.get(f"{kind}_{side}") or []
        values += [v for _, v in points]
        if points:
            ax.plot([t - summary["started_at"] for t, _ in points], [v for _, v in points],
                    color=colour, linewidth=1.6, label=f"{side} ({version})")
    if not values:
        ax.text(0.5, 0.5, NO_SERIES_NOTE, transform=ax.transAxes, ha="center", va="center",
                color="#757575", fontsize=11, style="italic")
        ax.set_yticks([])
        return
    if kind == "success_rate":
        _success_rate_limits(ax, values, _threshold(report, "request-success-rate", "minimum"))
    else:
        _latency_limits(ax, values, _threshold(report, "request-duration", "maximum"))
    ax.legend(loc="lower left" if kind == "success_rate" else "upper left", fontsize=9,
              framealpha=0.85)


def _success_rate_limits(ax: Any, values: list[float], threshold: float | None) -> None:
    # A fixed ceiling keeps a flat 100% line off the frame and small dips visible.
    floor = min([*values, 95.0] + ([threshold] if threshold is not None else []))
    ax.set_ylim(max(0.0, floor - 1.0), 100.8)
    if threshold is not None:
        _threshold_line(ax, threshold, "%")


def _latency_limits(ax: Any, values: list[float], threshold: float | None) -> None:
    top = max(values)
    ax.set_ylim(0, top * 1.15 if top > 0 else 1.0)
    if threshold is None:
        return
    # A bound far above the data would flatten it; say where the bound is instead.
    if threshold <= top * 1.6:
        ax.set_ylim(0, max(top, threshold) * 1.15)
        _threshold_line(ax, threshold, "ms")
    else:
        ax.text(0.995, 0.97, f"threshold {threshold:g} ms (above the chart)",
                transform=ax.transAxes, ha="right", va="top", fontsize=8.5, color="#555555")


def _threshold(report: Mapping[str, Any], metric: str, bound: str) -> float | None:
    """The latest configured bound of a built-in metric, as the verdicts recorded it."""
    found = [m[bound] for v in report["verdicts"] for m in v["evidence"]
             if m["metric"] == metric and m[bound] is not None]
    return found[-1] if found else None


def _threshold_line(ax: Any, value: float, unit: str) -> None:
    ax.axhline(value, color="#555555", linestyle="--", linewidth=1)
    ax.annotate(f"threshold {show(value, unit)}", xy=(1, value),
                xycoords=("axes fraction", "data"), xytext=(-4, 3), textcoords="offset points",
                ha="right", va="bottom", fontsize=8.5, color="#555555")


def _mark_verdicts(ax: Any, report: Mapping[str, Any], *, labels: bool) -> None:
    # Beyond about 30 labels they overlap; passes are then left to their markers.
    crowded = len(report["verdicts"]) > 30
    for number, verdict in enumerate(report["verdicts"], start=1):
        if verdict["t"] is None:
            continue
        colour = _COLOURS[verdict["result"]]
        ax.axvline(verdict["t"], color=colour, alpha=0.45, linewidth=1.2,
                   linestyle="-" if verdict["result"] == "fail" else ":")
        if not labels:
            continue
        weight = verdict["weight"] or 0
        ax.plot(verdict["t"], weight, marker="X" if verdict["result"] == "fail" else "o",
                color=colour, markersize=8, markeredgecolor="white", zorder=5)
        if crowded and verdict["result"] == "pass":
            continue
        ax.annotate(f"#{number} {_SHORT[verdict['result']]}", xy=(verdict["t"], weight),
                    xytext=(0, 8), textcoords="offset points", ha="center", va="bottom",
                    fontsize=8, color=colour, rotation=90)


def _titles(fig: Any, top_ax: Any, report: Mapping[str, Any]) -> None:
    summary = report["rollout"]
    title = (f"{summary['app']} on {summary['stack']}: {summary['candidate']} (candidate) "
             f"vs {summary['stable']} (stable)")
    fig.suptitle("\n".join(textwrap.wrap(title, width=100)), fontsize=14, fontweight="bold")
    outcome = summary["outcome"] or f"in progress ({summary['phase']})"
    line = f"{outcome.upper().replace('-', ' ')}: {summary['reason'] or 'no reason recorded'}"
    top_ax.set_title("\n".join(textwrap.wrap(line, width=120, max_lines=3, placeholder=" …")),
                     loc="left", fontsize=10.5,
                     color=_OUTCOME_COLOURS.get(summary["outcome"] or "", "#424242"))


# -- the HTML page ------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#212121;
margin:0 auto;max-width:1200px;padding:24px}
h1{font-size:22px;margin:0 0 12px}h2{font-size:17px;margin:28px 0 8px}
.banner{border-radius:6px;padding:14px 18px;color:#fff;margin-bottom:18px}
.banner b{font-size:18px;text-transform:uppercase;letter-spacing:.04em;margin-right:10px}
.promoted{background:#2e7d32}.rolled-back{background:#c62828}.aborted{background:#c77800}
.other{background:#616161}
table{border-collapse:collapse;width:100%;margin:4px 0}
th,td{border-bottom:1px solid #e0e0e0;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f5;font-weight:600}
table.summary th{width:180px}
td.num{text-align:right;white-space:nowrap}
.pass{color:#2e7d32;font-weight:600}.fail{color:#c62828;font-weight:600}
.inconclusive{color:#757575;font-weight:600}
table.evidence{margin:6px 0 0;font-size:12.5px}
table.evidence th,table.evidence td{padding:3px 6px}
code{font:12px ui-monospace,Menlo,Consolas,monospace;background:#f5f5f5;padding:1px 3px;
word-break:break-all}
.note{background:#fff8e1;border-left:4px solid #e69500;padding:8px 12px;margin:8px 0}
img{max-width:100%;border:1px solid #e0e0e0}
"""


def render_html(report: Mapping[str, Any], png_path: Path | None = None) -> str:
    """A self-contained page: outcome banner, tables, the chart inline as a data URI."""
    summary = report["rollout"]
    title = f"Rollout {summary['id']} of {summary['app']} on {summary['stack']}"
    body = [
        f"<h1>{_e(title)}</h1>",
        _banner(summary),
        *(f'<p class="note">{_e(note)}</p>' for note in report.get("notes", [])),
        _chart(png_path),
        "<h2>Summary</h2>", _summary_table(summary),
        "<h2>Steps</h2>", _steps_table(report["steps"]),
        "<h2>Verdicts</h2>", _verdicts_table(report["verdicts"]),
        "<h2>Timeline</h2>", _events_table(report["events"]),
    ]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _banner(summary: Mapping[str, Any]) -> str:
    outcome = summary["outcome"]
    css = outcome if outcome in _OUTCOME_COLOURS else "other"
    label = outcome.replace("-", " ") if outcome else f"in progress ({summary['phase']})"
    reason = summary["reason"] or "no reason recorded"
    return (f'<div class="banner {css}"><b>{_e(label)}</b>{_e(summary["candidate"])} vs '
            f'{_e(summary["stable"])}: {_e(reason)}</div>')


def _chart(png_path: Path | None) -> str:
    if png_path is None or not Path(png_path).is_file():
        return ""
    data = base64.b64encode(Path(png_path).read_bytes()).decode("ascii")
    alt = "canary weight, success rate and p99 latency over the rollout"
    return f'<img alt="{alt}" src="data:image/png;base64,{data}">'


def _table(headers: list[str], rows: list[list[str]], css: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    lines = ["<tr>" + "".join(cells) + "</tr>" for cells in rows]
    if not lines:
        lines = [f'<tr><td colspan="{len(headers)}">none</td></tr>']
    opening = f'<table class="{css}">' if css else "<table>"
    return f"{opening}<tr>{head}</tr>" + "".join(lines) + "</table>"


def _td(value: Any, css: str = "") -> str:
    return f'<td class="{css}">{_e(value)}</td>' if css else f"<td>{_e(value)}</td>"


def _summary_table(summary: Mapping[str, Any]) -> str:
    rows = [("rollout id", summary["id"]), ("stack", summary["stack"]),
            ("app", f"{summary['app']} in namespace {summary['namespace']}"),
            ("candidate", summary["candidate"]), ("stable before", summary["stable"]),
            ("outcome", summary["outcome"] or "-"), ("phase", summary["phase"]),
            ("reason", summary["reason"] or "-"), ("failed checks", summary["failed_checks"]),
            ("started", summary["started"]), ("ended", summary["ended"] or "-"),
            ("duration", format_duration(summary["duration_seconds"]))]
    lines = "".join(f"<tr><th>{_e(k)}</th>{_td(v)}</tr>" for k, v in rows)
    return f'<table class="summary">{lines}</table>'


def _steps_table(steps: list[Mapping[str, Any]]) -> str:
    rows = [[_td(f"+{s['t']:.0f}s", "num"), _td(s["step"] or "-", "num"),
             _td(f"{s['weight']}%", "num"),
             _td(f"{s['seconds']:.1f}s" if s.get("seconds") is not None else "-", "num"),
             _td(s["message"])] for s in steps]
    return _table(["time", "step", "canary weight", "apply time", "event"], rows)


def _verdicts_table(verdicts: list[Mapping[str, Any]]) -> str:
    rows = []
    for number, v in enumerate(verdicts, start=1):
        when = f"+{v['t']:.0f}s" if v["t"] is not None else "-"
        weight = f"{v['weight']}%" if v["weight"] is not None else "-"
        rows.append([_td(number, "num"), _td(when, "num"), _td(v["step"] or "-", "num"),
                     _td(weight, "num"), _td(v["result"].upper(), v["result"]),
                     f"<td>{_e(v['reason'])}{_evidence_table(v['evidence'])}</td>"])
    return _table(["#", "time", "step", "weight", "verdict", "reason and evidence"], rows)


def _evidence_table(evidence: list[Mapping[str, Any]]) -> str:
    if not evidence:
        return ""
    rows = [[_td(m["metric"]), _td(m["result"], "fail" if m["failed"] else "pass"),
             _td(m["value"], "num"), _td(m["primary_value"] or "-", "num"),
             _td(m["threshold"] or _statistics(m) or "-"), _td(m["window"] or "-"),
             f"<td><code>{_e(m['query'])}</code></td>" if m["query"] else "<td>-</td>"]
            for m in evidence]
    return _table(["metric", "result", "canary", "primary", "threshold", "window", "query"],
                  rows, "evidence")


def _statistics(metric: Mapping[str, Any]) -> str:
    parts = []
    if metric["statistic"] is not None:
        parts.append(f"statistic {show(metric['statistic'])}")
    if metric["interval"]:
        low, high = metric["interval"]
        parts.append(f"interval [{show(low)}, {show(high)}]")
    if metric["p_value"] is not None:
        parts.append(f"p = {show(metric['p_value'])}")
    return ", ".join(parts)


def _events_table(events: list[Mapping[str, Any]]) -> str:
    rows = [[_td(f"+{e['t']:.1f}s", "num"), _td(e["phase"]), _td(e["step"] or "-", "num"),
             _td(f"{e['weight']}%", "num"), _td(e["message"])] for e in events]
    return _table(["time", "phase", "step", "weight", "message"], rows)


# -- writing it all -----------------------------------------------------------------------


def write_report(
    state: RolloutState,
    *,
    directory: Path,
    fetch: Fetcher | None = None,
    app: str,
    namespace: str,
) -> dict[str, Path]:
    """Write `<stack>-<id>.json|.png|.html`; metric or chart failures become notes, not errors.

    Returns the paths written (keys "json", "png", "html"); whatever fails is logged and left
    out, so a report never fails the rollout it describes.
    """
    try:
        return _write(state, directory=Path(directory), fetch=fetch, app=app,
                      namespace=namespace)
    except Exception:
        _log.exception("could not write the report of rollout %s", state.rollout_id)
        return {}


def _write(state: RolloutState, *, directory: Path, fetch: Fetcher | None, app: str,
           namespace: str) -> dict[str, Path]:
    series, notes = _series_for(state, fetch=fetch, app=app, namespace=namespace)
    report = build_report(state, series=series, app=app, namespace=namespace, notes=notes)
    directory.mkdir(parents=True, exist_ok=True)
    # Not with_suffix: a stack such as "dev.eu" would lose everything after its dot.
    name = f"{state.stack.replace('/', '_')}-{state.rollout_id}"
    written: dict[str, Path] = {}
    png = _try(lambda: render_png(report, directory / f"{name}.png"), "the chart", report)
    if png is not None:
        written["png"] = png
    page = render_html(report, png)
    for kind, text in (("json", json.dumps(report, indent=2, default=str)), ("html", page)):
        path = directory / f"{name}.{kind}"
        path.write_text(text, encoding="utf-8")
        written[kind] = path
    return written


def _series_for(
    state: RolloutState, *, fetch: Fetcher | None, app: str, namespace: str
) -> tuple[dict[str, list[Point]] | None, list[str]]:
    if fetch is None:
        return None, []
    end = _ended_at(state) or state.updated_at
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


def _try(action: Callable[[], Any], what: str, report: dict[str, Any]) -> Any:
    try:
        return action()
    except Exception as exc:
        _log.warning("rollout report: could not write %s: %s", what, exc)
        report["notes"].append(f"could not write {what}: {exc}")
        return None
