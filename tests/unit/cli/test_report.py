"""Covers the rollout report: JSON content, the chart and the HTML page, PromQL and failure
handling."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollout.adapters.prometheus import prometheus_fetcher
from rollout.cli.report import (
    NO_SERIES_NOTE,
    SERIES_KEYS,
    build_report,
    fetch_series,
    render_html,
    series_queries,
    write_report,
)
from rollout.core.state import Outcome, Phase, RolloutState
from rollout.web.chart import plotly_js_name, timeline_figure

START = 1_750_000_000.0
INTERVAL = 15.0


def _metrics(rate: float, p99: float) -> list[dict[str, Any]]:
    return [
        {"metric": "request-success-rate", "result": "PASS" if rate >= 99 else "LOW",
         "failed": rate < 99, "reason": f"success rate {rate:.4g}% (at least 99%)",
         "canary": rate, "primary": 99.9, "minimum": 99.0, "maximum": None,
         "query": 'sum(rate(istio_requests_total{destination_workload=~"demo-canary"}[15s]))',
         "window": "15s"},
        {"metric": "request-duration", "result": "PASS" if p99 <= 500 else "HIGH",
         "failed": p99 > 500, "reason": f"p99 {p99:.4g} ms (at most 500 ms)",
         "canary": p99, "primary": 48.0, "minimum": None, "maximum": 500.0,
         "query": "histogram_quantile(0.99, ...)", "window": "15s"},
    ]


def _state(*, fail_at: int | None = None, reason: str | None = None) -> RolloutState:
    """A rollout through 10/20/30/50%, two analyses per step; failing from step `fail_at`."""
    events: list[dict[str, Any]] = []
    analyses: list[dict[str, Any]] = []
    t = START

    def event(message: str, phase: str, step: int, weight: int, **data: Any) -> None:
        events.append({"at": t, "phase": phase, "step": step, "weight": weight,
                       "message": message, **data})

    event("canary v2 is ready", "Progressing", 0, 0)
    failed = 0
    for step, weight in enumerate((10, 20, 30, 50)):
        t += 3
        event(f"canary weight set to {weight}%", "Progressing", step, weight, seconds=2.4)
        for _ in range(2):
            t += INTERVAL
            bad = fail_at is not None and step >= fail_at
            failed += bad
            verdict_reason = ("request-success-rate 91.5% is below 99%" if bad
                              else "all 2 metrics passed")
            analyses.append({"passed": not bad, "failed_checks": int(bad),
                             "reason": verdict_reason, "step": step, "weight": weight, "at": t,
                             "metrics": _metrics(91.5 if bad else 99.9, 120 if bad else 52)})
            event(f"analysis: {verdict_reason}", "Progressing", step, weight, passed=not bad)
            if failed >= 2:
                t += 4
                why = reason or f"2 failed checks reached the threshold 2: {verdict_reason}"
                event("reverted to v1", "Failed", step, 0)
                return _finished(events, analyses, Outcome.ROLLED_BACK, why, t, failed)
    t += 6
    event("v2 promoted", "Succeeded", 3, 0)
    return _finished(events, analyses, Outcome.PROMOTED, reason or "v2 passed every step", t, 0)


def _finished(events: list[dict[str, Any]], analyses: list[dict[str, Any]], outcome: Outcome,
              reason: str, end: float, failed: int) -> RolloutState:
    return RolloutState(
        stack="lab", candidate="v2", stable="v1", last_good={}, rollout_id="abc123def456",
        phase=Phase.SUCCEEDED if outcome is Outcome.PROMOTED else Phase.FAILED,
        outcome=outcome, reason=reason, events=events, analyses=analyses,
        failed_checks=failed, step_seconds=[2.4] * 4, started_at=START, updated_at=end)


def _series(state: RolloutState, *, canary_breaks_at: float | None = None
            ) -> dict[str, list[tuple[float, float]]]:
    """2-second samples with noise; the canary degrades from `canary_breaks_at` seconds on."""
    rng = random.Random(7)
    out: dict[str, list[tuple[float, float]]] = {key: [] for key in SERIES_KEYS}
    t = START + 10  # no canary traffic before the first weight step
    while t <= state.updated_at:
        broken = canary_breaks_at is not None and t - START >= canary_breaks_at
        out["success_rate_primary"].append((t, min(100.0, 99.85 + rng.gauss(0, 0.1))))
        out["success_rate_canary"].append(
            (t, min(100.0, (91.5 if broken else 99.8) + rng.gauss(0, 0.6 if broken else 0.15))))
        out["p99_primary"].append((t, 46 + rng.gauss(0, 3)))
        out["p99_canary"].append((t, (118 if broken else 50) + rng.gauss(0, 6)))
        t += 2
    return out


@pytest.fixture(scope="module")
def promoted() -> RolloutState:
    return _state()


@pytest.fixture(scope="module")
def rolled_back() -> RolloutState:
    return _state(fail_at=2, reason='canary <script>alert("x")</script> broke & failed')


def test_json_has_summary_steps_verdicts_and_evidence(promoted: RolloutState) -> None:
    report = build_report(promoted, series=_series(promoted), app="demo", namespace="apps")

    summary = report["rollout"]
    assert summary["id"] == "abc123def456" and summary["stack"] == "lab"
    assert (summary["candidate"], summary["stable"], summary["outcome"]) == ("v2", "v1",
                                                                             "promoted")
    assert summary["duration_seconds"] == pytest.approx(promoted.updated_at - START)
    assert [s["weight"] for s in report["steps"]] == [0, 10, 20, 30, 50, 0]
    assert len(report["verdicts"]) == 8
    first = report["verdicts"][0]
    assert (first["result"], first["weight"], first["step"]) == ("pass", 10, 1)
    assert first["t"] == pytest.approx(18.0)
    evidence = {m["metric"]: m for m in first["evidence"]}
    assert evidence["request-success-rate"]["threshold"] == "at least 99%"
    assert evidence["request-duration"]["value"] == "52 ms"
    assert "istio_requests_total" in evidence["request-success-rate"]["query"]
    assert set(report["series"]) == set(SERIES_KEYS)
    assert report["notes"] == []
    json.dumps(report, allow_nan=False)


def test_rolled_back_verdicts_fail(rolled_back: RolloutState) -> None:
    report = build_report(rolled_back, series=None, app="demo", namespace="apps")

    assert report["rollout"]["outcome"] == "rolled-back"
    assert [v["result"] for v in report["verdicts"]][-2:] == ["fail", "fail"]
    assert report["steps"][-1]["weight"] == 0
    assert report["series"] is None and report["notes"] == [NO_SERIES_NOTE]


def test_html_shows_outcome_reasons_and_escapes_text(rolled_back: RolloutState,
                                                     tmp_path: Path) -> None:
    report = build_report(rolled_back, series=_series(rolled_back, canary_breaks_at=70),
                          app="demo", namespace="apps")

    page = render_html(report, figure=timeline_figure(report), script="plotly.min.js")

    assert 'class="banner rolled-back"' in page
    assert "request-success-rate 91.5% is below 99%" in page
    # The reason, in the chart's title inside a script element, cannot end that element.
    assert "<script>alert" not in page and page.count("</script>") == 2
    assert "canary &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; broke &amp; failed" in page
    assert '<script src="plotly.min.js"></script>' in page
    figure = json.loads(page.split("const figure = ")[1].split(";Plotly.newPlot")[0])
    assert figure == json.loads(json.dumps(timeline_figure(report)))
    assert "<code>sum(rate(istio_requests_total{destination_workload=~&quot;demo-canary" in page
    assert "at least 99%" in page and "canary weight set to 30%" in page


def test_html_banner_of_promoted_rollout_without_chart(promoted: RolloutState) -> None:
    page = render_html(build_report(promoted, series=None, app="demo", namespace="apps"))

    assert 'class="banner promoted"' in page and "v2 passed every step" in page
    assert "Plotly" not in page and NO_SERIES_NOTE in page


def test_the_chart_has_weights_series_thresholds_and_every_verdict(
        rolled_back: RolloutState) -> None:
    report = build_report(rolled_back, series=_series(rolled_back, canary_breaks_at=70),
                          app="demo", namespace="apps")

    figure = timeline_figure(report)

    traces = {trace["name"]: trace for trace in figure["data"]}
    weight = traces["canary weight"]
    assert weight["line"]["shape"] == "hv" and weight["y"][:-1] == [0, 10, 20, 30, 0]
    assert [t["yaxis"] for t in figure["data"][1:5]] == ["y2", "y2", "y3", "y3"]
    seconds = [x for t in figure["data"][1:5] for x in t["x"]]
    assert min(seconds) == 10.0 and max(seconds) <= report["rollout"]["duration_seconds"] + 2, (
        "seconds since the start, as the weight and verdicts")
    fails, passes = traces["verdict: fail"], traces["verdict: pass"]
    assert len(fails["x"]) + len(passes["x"]) == len(report["verdicts"])
    assert fails["marker"]["symbol"] == "x" and fails["text"][0].startswith("#")
    layout = figure["layout"]
    thresholds = [a["text"] for a in layout["annotations"] if a["text"].startswith("threshold")]
    assert thresholds == ["threshold 99%", "threshold 500 ms"] or thresholds == [
        "threshold 99%", "threshold 500 ms (above the chart)"]
    lines = [s for s in layout["shapes"] if s["xref"] == "x"]
    assert len(lines) == 3 * len(report["verdicts"]), "each verdict marked on all three plots"
    assert "ROLLED BACK" in layout["title"]["text"]
    assert "&lt;script&gt;" in layout["title"]["text"], "the reason is text, not markup"
    json.dumps(figure, allow_nan=False)


def test_a_chart_without_series_says_so(promoted: RolloutState) -> None:
    figure = timeline_figure(build_report(promoted, series=None, app="demo", namespace="apps"))

    notes = [a["text"] for a in figure["layout"]["annotations"]]
    assert notes.count(NO_SERIES_NOTE) == 2
    assert all(not t["x"] for t in figure["data"][1:5])


def test_fetch_series_sends_the_istio_queries() -> None:
    asked: list[tuple[str, float, float, float]] = []

    def fetch(promql: str, start: float, end: float, step: float) -> list[tuple[float, float]]:
        asked.append((promql, start, end, step))
        return [(start, 99.0), (start + step, math.nan)]

    series = fetch_series(fetch, app="demo", namespace="apps", start=100.0, end=200.0)

    assert set(series) == set(SERIES_KEYS)
    assert series["success_rate_canary"] == [(100.0, 99.0)]  # NaN (no traffic) dropped
    assert {(start, end, step) for _, start, end, step in asked} == {(100.0, 200.0, 2.0)}
    queries = series_queries(app="demo", namespace="apps")
    assert sorted(q for q, *_ in asked) == sorted(queries.values())
    # The chart plots exactly what the judges measure: the built-in templates, filled in.
    assert 'destination_workload=~"demo-canary"' in queries["success_rate_canary"]
    assert 'response_code!~"5.*"' in queries["success_rate_canary"]
    assert queries["p99_primary"].startswith("histogram_quantile(0.99, ")
    assert 'destination_workload=~"demo-primary"' in queries["p99_primary"]
    assert "[10s]" in queries["p99_primary"]


def test_prometheus_fetcher_reads_query_range() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "success", "data": {
            "resultType": "matrix",
            "result": [{"metric": {}, "values": [[100, "99.5"], [102, "NaN"]]}]}})

    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        fetch = prometheus_fetcher("http://prom:9090/", client=client)
        points = fetch("up", 100.0, 110.0, 2.0)

    assert seen[0].url.path == "/api/v1/query_range"
    assert seen[0].url.params["query"] == "up" and seen[0].url.params["step"] == "2.0"
    assert points[0] == (100.0, 99.5) and math.isnan(points[1][1])


def test_write_report_writes_three_files(rolled_back: RolloutState, tmp_path: Path) -> None:
    series = _series(rolled_back, canary_breaks_at=70)
    dotted = replace(rolled_back, stack="org/lab.eu")

    paths = write_report(dotted, directory=tmp_path / "reports",
                         fetch=lambda q, s, e, st: series[_key_of(q)], app="demo",
                         namespace="apps")

    assert {k: p.name for k, p in paths.items()} == {
        "json": "org_lab.eu-abc123def456.json", "html": "org_lab.eu-abc123def456.html"}
    assert json.loads(paths["json"].read_text())["series"]["p99_canary"]
    script = tmp_path / "reports" / plotly_js_name()
    assert script.stat().st_size > 1_000_000, "plotly.js beside the page, from the package"
    assert f'<script src="{script.name}"></script>' in paths["html"].read_text()


def test_write_report_survives_unreachable_prometheus(promoted: RolloutState,
                                                      tmp_path: Path) -> None:
    def unreachable(promql: str, start: float, end: float, step: float) -> list[Any]:
        raise httpx.ConnectError("connection refused")

    paths = write_report(promoted, directory=tmp_path, fetch=unreachable, app="demo",
                         namespace="apps")

    assert set(paths) == {"json", "html"}
    notes = json.loads(paths["json"].read_text())["notes"]
    assert notes == [f"{NO_SERIES_NOTE}: connection refused"]
    assert NO_SERIES_NOTE in paths["html"].read_text()


def test_write_report_survives_a_broken_chart(promoted: RolloutState, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(report: Any) -> dict[str, Any]:
        raise RuntimeError("no axes")

    monkeypatch.setattr("rollout.cli.report.timeline_figure", broken)

    paths = write_report(promoted, directory=tmp_path, app="demo", namespace="apps")

    assert set(paths) == {"json", "html"}
    assert "could not draw the chart: no axes" in paths["html"].read_text()
    assert "Plotly.newPlot" not in paths["html"].read_text()


def test_write_report_without_fetcher(promoted: RolloutState, tmp_path: Path) -> None:
    paths = write_report(promoted, directory=tmp_path, app="demo", namespace="apps")

    assert set(paths) == {"json", "html"}
    assert json.loads(paths["json"].read_text())["notes"] == [NO_SERIES_NOTE]


def _key_of(promql: str) -> str:
    side = "canary" if "demo-canary" in promql else "primary"
    kind = "p99" if promql.startswith("histogram_quantile") else "success_rate"
    return f"{kind}_{side}"
