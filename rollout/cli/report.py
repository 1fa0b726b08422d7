"""The rollout report: a JSON document and an HTML page with the rollout's chart
(rollout.web.chart, the dashboard's own) drawn by the plotly.js kept next to the reports."""

from __future__ import annotations

import html
import json
import logging
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rollout.analysis.wording import show
from rollout.app.timeline import (
    NO_SERIES_NOTE,
    SERIES_KEYS,
    Fetcher,
    build_report,
    fetch_series,
    report_name,
    series_for,
    series_queries,
)
from rollout.core.durations import format_duration
from rollout.web.chart import OUTCOME_COLOURS, plotly_js, plotly_js_name, timeline_figure

__all__ = ["NO_SERIES_NOTE", "SERIES_KEYS", "build_report", "fetch_series", "render_html",
           "series_queries", "write_report"]

_log = logging.getLogger(__name__)


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
#timeline{border:1px solid #e0e0e0;min-height:640px}
"""


def render_html(report: Mapping[str, Any], *, figure: Mapping[str, Any] | None = None,
                script: str | None = None) -> str:
    """The page: outcome banner, the chart (`figure`, drawn by `script`: plotly.js beside the
    page; no chart without both), tables."""
    summary = report["rollout"]
    title = f"Rollout {summary['id']} of {summary['app']} on {summary['stack']}"
    body = [
        f"<h1>{_e(title)}</h1>",
        _banner(summary),
        *(f'<p class="note">{_e(note)}</p>' for note in report.get("notes", [])),
        _chart(figure, script),
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
    css = outcome if outcome in OUTCOME_COLOURS else "other"
    label = outcome.replace("-", " ") if outcome else f"in progress ({summary['phase']})"
    reason = summary["reason"] or "no reason recorded"
    return (f'<div class="banner {css}"><b>{_e(label)}</b>{_e(summary["candidate"])} vs '
            f'{_e(summary["stable"])}: {_e(reason)}</div>')


def _chart(figure: Mapping[str, Any] | None, script: str | None) -> str:
    if figure is None or script is None:
        return ""
    # No "<" inside a script element (a reason could hold "</script>"); "<" only ever
    # appears in JSON strings, where \u003c means the same.
    data = json.dumps(figure).replace("<", "\\u003c")
    alt = "canary weight, success rate and p99 latency over the rollout"
    return (f'<div id="timeline" role="img" aria-label="{alt}"></div>'
            f'<script src="{_e(script)}"></script>'
            f'<script>const figure = {data};'
            'Plotly.newPlot("timeline", figure.data, figure.layout, {responsive: true});'
            "</script>")


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
    state: Any,
    *,
    directory: Path,
    fetch: Fetcher | None = None,
    app: str,
    namespace: str,
) -> dict[str, Path]:
    """Write `<stack>-<id>.json|.html` (and plotly.js once beside them); metric or chart
    failures become notes, not errors.

    Returns the paths written (keys "json", "html"); whatever fails is logged and left out, so
    a report never fails the rollout it describes.
    """
    try:
        return _write(state, directory=Path(directory), fetch=fetch, app=app,
                      namespace=namespace)
    except Exception:
        _log.exception("could not write the report of rollout %s", state.rollout_id)
        return {}


def _write(state: Any, *, directory: Path, fetch: Fetcher | None, app: str,
           namespace: str) -> dict[str, Path]:
    series, notes = series_for(state, fetch=fetch, app=app, namespace=namespace)
    report = build_report(state, series=series, app=app, namespace=namespace, notes=notes)
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / plotly_js_name()
    if not script.is_file():
        shutil.copyfile(plotly_js(), script)
    figure = _try(lambda: timeline_figure(report), "the chart", report)
    page = render_html(report, figure=figure, script=script.name)
    written: dict[str, Path] = {}
    for kind, text in (("json", json.dumps(report, indent=2, default=str)), ("html", page)):
        path = directory / report_name(state, kind)
        path.write_text(text, encoding="utf-8")
        written[kind] = path
    return written


def _try(action: Callable[[], Any], what: str, report: dict[str, Any]) -> Any:
    try:
        return action()
    except Exception as exc:
        _log.warning("rollout report: could not draw %s: %s", what, exc)
        report["notes"].append(f"could not draw {what}: {exc}")
        return None
