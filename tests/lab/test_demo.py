"""The main job end to end: `rollout demo` promotes v2 and catches v3, and writes reports."""

from __future__ import annotations

import json
from pathlib import Path

from rollout.cli.demo import run_demo
from rollout.lab.lab import Lab


def test_the_demo_promotes_v2_catches_v3_and_reports_both(lab: Lab, tmp_path: Path) -> None:
    lines: list[str] = []
    # `make demo` itself checks every 10s at 20 requests/s; the test twice as often, with the
    # traffic that keeps a 5s window as telling.
    runs = run_demo(progress=lambda state, msg: lines.append(msg), say=lines.append,
                    reports_dir=tmp_path, interval="5s", rps=50)
    assert [(r.version, r.result.outcome) for r in runs] == [("v2", "promoted"),
                                                            ("v3", "rolled-back")]
    assert all(r.as_expected for r in runs)
    assert "request-success-rate" in runs[1].result.reason
    shot = runs[0].reports["dashboard"]
    assert shot.parent == tmp_path and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 50_000, "a page drawn, not a blank one"
    for run in runs:
        paths = run.reports
        assert {"json", "html"} <= set(paths)
        assert (tmp_path / paths["html"].read_text().split('<script src="')[1].split('"')[0]
                ).is_file(), "plotly.js beside the report"
        report = json.loads(paths["json"].read_text())
        assert report["rollout"]["outcome"] == run.result.outcome
        assert [s["weight"] for s in report["steps"]]
        assert len(report["verdicts"]) == len(run.result.state.analyses)
        assert report["series"]["success_rate_primary"], "live metric series in the report"
        html = paths["html"].read_text()
        assert run.result.outcome.replace("-", " ") in html.lower().replace("-", " ")
    assert any("analysis FAIL" in line for line in lines)
