"""The one chart of a rollout, as a Plotly figure: the canary weight, success rate and p99
latency of primary and canary over time, with each verdict marked. The HTML report draws it
once; the dashboard redraws it as the rollout goes on. Plotly's own JavaScript comes from the
pinned `plotly` package (`plotly_js`), never from a CDN."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rollout.analysis.wording import show
from rollout.app.timeline import NO_SERIES_NOTE

PRIMARY, CANARY = "#1f5fa8", "#e4711a"
VERDICT_COLOURS = {"pass": "#2e7d32", "fail": "#c62828", "inconclusive": "#757575"}
OUTCOME_COLOURS = {"promoted": "#2e7d32", "rolled-back": "#c62828", "aborted": "#c77800"}
_SHORT = {"pass": "pass", "fail": "FAIL", "inconclusive": "inc."}
# Three stacked plots sharing the time axis: weight on top, then success rate, then p99.
_ROWS = (("y", (0.72, 1.0)), ("y2", (0.37, 0.67)), ("y3", (0.0, 0.32)))
# Beyond about 30 labels they overlap; passes are then left to their markers.
_CROWDED = 30


def plotly_js() -> Path:
    """The minified plotly.js shipped inside the pinned `plotly` Python package."""
    return Path(str(importlib.resources.files("plotly") / "package_data" / "plotly.min.js"))


def plotly_js_name() -> str:
    """A file name that changes with the plotly version, so caches and reports never mix."""
    return f"plotly-{importlib.metadata.version('plotly')}.min.js"


def timeline_figure(report: Mapping[str, Any]) -> dict[str, Any]:
    """The figure (Plotly's `data` and `layout`) of a report from rollout.app.timeline."""
    summary = report["rollout"]
    end = _plot_end(report)
    data: list[dict[str, Any]] = [_weight_trace(report, end)]
    layout: dict[str, Any] = {
        "height": 640, "margin": {"l": 70, "r": 30, "t": 90, "b": 50},
        "showlegend": True, "legend": {"orientation": "h", "y": 1.09, "x": 1, "xanchor": "right"},
        "hovermode": "x unified", "plot_bgcolor": "#ffffff",
        "title": {"text": _title(summary), "x": 0.01, "font": {"size": 15}},
        "shapes": [], "annotations": [],
        "xaxis": {"domain": [0, 1], "anchor": "y3", "range": [0, end * 1.02],
                  "title": {"text": "seconds since start"}, "gridcolor": "#eeeeee"},
    }
    for axis, domain in _ROWS:
        layout[_layout_key(axis)] = {"domain": list(domain), "anchor": "x",
                                     "gridcolor": "#eeeeee", "zeroline": False}
    layout["yaxis"].update(title={"text": "canary weight (%)"},
                           range=[0, max(100, _max_weight(report) + 48)],
                           tickvals=[0, 25, 50, 75, 100])
    for kind, axis, label in (("success_rate", "y2", "success rate (%)"),
                              ("p99", "y3", "p99 latency (ms)")):
        data += _pair(report, kind, axis)
        layout[_layout_key(axis)]["title"] = {"text": label}
        _limits(layout, report, kind, axis)
    _mark_verdicts(data, layout, report)
    return {"data": data, "layout": layout}


def _layout_key(axis: str) -> str:
    return "yaxis" + axis[1:]


def _title(summary: Mapping[str, Any]) -> str:
    head = (f"<b>{summary['app']} on {summary['stack']}: {summary['candidate']} (candidate) vs "
            f"{summary['stable']} (stable)</b>")
    outcome = summary["outcome"] or f"in progress ({summary['phase']})"
    reason = summary["reason"] or ("no reason recorded" if summary["outcome"] else "")
    line = outcome.upper().replace("-", " ") + (f": {reason}" if reason else "")
    colour = OUTCOME_COLOURS.get(summary["outcome"] or "", "#424242")
    wrapped = "<br>".join(textwrap.wrap(line, width=140, max_lines=2, placeholder=" …"))
    return f"{head}<br><span style='font-size:12px;color:{colour}'>{_escape(wrapped)}</span>"


def _escape(text: str) -> str:
    # Plotly renders a small HTML subset in titles; the reason is text, never markup.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _plot_end(report: Mapping[str, Any]) -> float:
    summary = report["rollout"]
    ends = [summary["duration_seconds"], *(e["t"] for e in report["events"])]
    ends += [v["t"] for v in report["verdicts"] if v["t"] is not None]
    for points in (report.get("series") or {}).values():
        ends += [t - summary["started_at"] for t, _ in points[-1:]]
    return float(max(max(ends), 1.0))


def _max_weight(report: Mapping[str, Any]) -> int:
    return max(int(s["weight"]) for s in report["steps"])


def _weight_trace(report: Mapping[str, Any], end: float) -> dict[str, Any]:
    steps = report["steps"]
    return {"type": "scatter", "mode": "lines", "name": "canary weight",
            "x": [s["t"] for s in steps] + [end],
            "y": [s["weight"] for s in steps] + [steps[-1]["weight"]],
            "line": {"shape": "hv", "color": CANARY, "width": 2},
            "fill": "tozeroy", "fillcolor": "rgba(228,113,26,0.15)",
            "xaxis": "x", "yaxis": "y", "hovertemplate": "%{y}%"}


def _pair(report: Mapping[str, Any], kind: str, axis: str) -> list[dict[str, Any]]:
    summary, series = report["rollout"], report.get("series") or {}
    unit = "%" if kind == "success_rate" else " ms"
    traces = []
    for side, colour, version in (("primary", PRIMARY, summary["stable"]),
                                  ("canary", CANARY, summary["candidate"])):
        points = series.get(f"{kind}_{side}") or []
        traces.append({
            "type": "scatter", "mode": "lines", "name": f"{side} ({version})",
            "legendgroup": side, "showlegend": kind == "success_rate",
            "x": [round(t - summary["started_at"], 3) for t, _ in points],
            "y": [v for _, v in points],
            "line": {"color": colour, "width": 1.6}, "xaxis": "x", "yaxis": axis,
            "hovertemplate": f"{side} %{{y:.4g}}{unit}<extra></extra>"})
    return traces


def _limits(layout: dict[str, Any], report: Mapping[str, Any], kind: str, axis: str) -> None:
    series = report.get("series") or {}
    values = [v for side in ("primary", "canary") for _, v in series.get(f"{kind}_{side}") or []]
    key = _layout_key(axis)
    if not values:
        layout[key].update(showticklabels=False)
        layout["annotations"].append(_note(axis, NO_SERIES_NOTE, x=0.5, y=0.5, anchor="center"))
        return
    if kind == "success_rate":
        threshold = _threshold(report, "request-success-rate", "minimum")
        # A fixed ceiling keeps a flat 100% line off the frame and small dips visible.
        floor = min([*values, 95.0] + ([threshold] if threshold is not None else []))
        layout[key]["range"] = [max(0.0, floor - 1.0), 100.8]
        if threshold is not None:
            _threshold_line(layout, axis, threshold, "%")
        return
    top = max(values)
    threshold = _threshold(report, "request-duration", "maximum")
    layout[key]["range"] = [0, top * 1.15 if top > 0 else 1.0]
    if threshold is None:
        return
    # A bound far above the data would flatten it; say where the bound is instead.
    if threshold <= top * 1.6:
        layout[key]["range"] = [0, max(top, threshold) * 1.15]
        _threshold_line(layout, axis, threshold, "ms")
    else:
        layout["annotations"].append(
            _note(axis, f"threshold {threshold:g} ms (above the chart)", x=1, y=1,
                  anchor="right"))


def _threshold(report: Mapping[str, Any], metric: str, bound: str) -> float | None:
    """The latest configured bound of a built-in metric, as the verdicts recorded it."""
    found = [m[bound] for v in report["verdicts"] for m in v["evidence"]
             if m["metric"] == metric and m[bound] is not None]
    return float(found[-1]) if found else None


def _threshold_line(layout: dict[str, Any], axis: str, value: float, unit: str) -> None:
    layout["shapes"].append({"type": "line", "xref": "x domain", "yref": axis, "x0": 0, "x1": 1,
                             "y0": value, "y1": value,
                             "line": {"color": "#555555", "dash": "dash", "width": 1}})
    layout["annotations"].append({"xref": "x domain", "yref": axis, "x": 1, "y": value,
                                  "xanchor": "right", "yanchor": "bottom", "showarrow": False,
                                  "text": f"threshold {show(value, unit)}",
                                  "font": {"size": 11, "color": "#555555"}})


def _note(axis: str, text: str, *, x: float, y: float, anchor: str) -> dict[str, Any]:
    return {"xref": "x domain", "yref": f"{axis} domain", "x": x, "y": y, "text": text,
            "xanchor": anchor, "yanchor": "top" if y == 1 else "middle", "showarrow": False,
            "font": {"size": 12, "color": "#757575"}}


def _mark_verdicts(data: list[dict[str, Any]], layout: dict[str, Any],
                   report: Mapping[str, Any]) -> None:
    crowded = len(report["verdicts"]) > _CROWDED
    marked: dict[str, dict[str, list[Any]]] = {}
    for number, verdict in enumerate(report["verdicts"], start=1):
        if verdict["t"] is None:
            continue
        result = verdict["result"]
        colour = VERDICT_COLOURS[result]
        for axis, _ in _ROWS:
            layout["shapes"].append({
                "type": "line", "xref": "x", "yref": f"{axis} domain", "x0": verdict["t"],
                "x1": verdict["t"], "y0": 0, "y1": 1, "opacity": 0.45,
                "line": {"color": colour, "width": 1.2,
                         "dash": "solid" if result == "fail" else "dot"}})
        weight = verdict["weight"] or 0
        points = marked.setdefault(result, {"x": [], "y": [], "text": []})
        points["x"].append(verdict["t"])
        points["y"].append(weight)
        points["text"].append(f"#{number} {_SHORT[result]} at {weight}%: {verdict['reason']}")
        if crowded and result == "pass":
            continue
        layout["annotations"].append({
            "xref": "x", "yref": "y", "x": verdict["t"], "y": weight, "yshift": 10,
            "text": f"#{number} {_SHORT[result]}", "textangle": -90, "showarrow": False,
            "yanchor": "bottom", "font": {"size": 10, "color": colour}})
    for result, points in marked.items():
        data.append({"type": "scatter", "mode": "markers", "name": f"verdict: {result}",
                     "x": points["x"], "y": points["y"], "text": points["text"],
                     "hovertemplate": "%{text}<extra></extra>", "xaxis": "x", "yaxis": "y",
                     "marker": {"color": VERDICT_COLOURS[result], "size": 11,
                                "symbol": "x" if result == "fail" else "circle",
                                "line": {"color": "#ffffff", "width": 1}}})
