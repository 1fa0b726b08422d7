"""`rollout status --watch` and `rollout history`: read from the stack's state store, as any
machine with access to it would."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from rollout.adapters.journal import Journal
from rollout.app.snapshot import time_left
from rollout.cli import app, views
from rollout.cli.progress import ProgressPrinter
from rollout.core.state import Outcome, Phase, RolloutState
from tests.contract.state_store import finished, rollout
from tests.unit.fakes import file_store_project

STACK = "shop"


@pytest.fixture
def journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Journal:
    monkeypatch.setenv("CANARY_PROJECT_DIR", str(file_store_project(tmp_path / "p", STACK)))
    monkeypatch.setenv("CANARY_JOURNAL_DIR", str(tmp_path / "journal"))
    monkeypatch.setenv("COLUMNS", "200")
    return Journal(tmp_path / "journal", STACK, "demo")


def test_watch_redraws_until_the_rollout_ends_and_exits_with_its_code(journal: Journal) -> None:
    journal.save(rollout(stack=STACK))
    ending = finished("v2", Outcome.ROLLED_BACK)

    def finish_later() -> None:
        time.sleep(0.6)
        journal.save(ending)

    writer = threading.Thread(target=finish_later)
    writer.start()
    started = time.monotonic()
    result = CliRunner().invoke(app, ["status", "--stack", STACK, "--watch", "--every", "0.2"])
    writer.join()
    assert result.exit_code == 1, result.output
    assert time.monotonic() - started >= 0.5, "it waited for the end"
    # Off a terminal, rich prints the last frame only: the end, with the weights it left.
    assert "primary 60% / canary 40%" in result.output and "step 2/3" in result.output
    assert "Failed" in result.output and "files in" in result.output


def test_watch_of_a_finished_rollout_shows_it_and_exits_with_its_code(journal: Journal) -> None:
    journal.save(finished("v2"))
    result = CliRunner().invoke(app, ["status", "--stack", STACK, "-w", "--output", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["current"]["outcome"] == "promoted"


def test_history_lists_finished_rollouts_oldest_first_with_outcome_and_duration(
        journal: Journal) -> None:
    for version, outcome in (("v2", Outcome.PROMOTED), ("v3", Outcome.ROLLED_BACK)):
        journal.archive(finished(version, outcome))
    result = CliRunner().invoke(app, ["history", "--stack", STACK, "--output", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["version"], r["outcome"]) for r in rows] == [("v2", "promoted"),
                                                            ("v3", "rolled-back")]
    assert rows[0]["reason"] == "v2 promoted" and rows[0]["duration_seconds"] >= 0
    assert rows[0]["started"].endswith("Z")
    table = CliRunner().invoke(app, ["history", "--stack", STACK, "--limit", "1"])
    assert table.exit_code == 0 and "v3" in table.output and "v2 promoted" not in table.output


def test_history_of_a_stack_without_rollouts_says_so(journal: Journal) -> None:
    result = CliRunner().invoke(app, ["history", "--stack", STACK])
    assert result.exit_code == 0 and "no finished rollout on stack shop" in result.output


def test_a_bad_limit_or_interval_is_refused_with_exit_2(journal: Journal) -> None:
    assert CliRunner().invoke(app, ["history", "--stack", STACK, "--limit", "0"]).exit_code == 2
    watch = CliRunner().invoke(app, ["status", "--stack", STACK, "-w", "--every", "0"])
    assert watch.exit_code == 2


# -- what the watch view shows ------------------------------------------------------------

NOW = 1_790_000_100.0
METRICS = [
    {"metric": "request-success-rate", "result": "LOW", "failed": True, "canary": 98.25,
     "primary": 99.9, "minimum": 99.0, "maximum": None},
    {"metric": "request-duration", "result": "PASS", "failed": False, "canary": 212.5,
     "primary": 198.0, "minimum": None, "maximum": 500.0},
    {"metric": "latency-shift", "result": "PASS", "failed": False, "canary": 0.25,
     "primary": 0.24, "statistic": 0.01},
]


def _render(renderable: object, *, width: int = 120) -> str:
    screen = Console(record=True, width=width)
    screen.print(renderable)
    return screen.export_text()


def _mid_rollout(**changes: object) -> RolloutState:
    """At 40% of 20/40/60 (manual pause, 30.5s pause, manual pause), 4s into the step's 10s
    interval; one failed check of a threshold of 3."""
    state = rollout(stack=STACK, threshold=3)
    state = replace(state, updated_at=NOW - 4, analyses=[
        *state.analyses[:-1],
        {"passed": False, "failed_checks": 1, "final": False, "step": 1, "weight": 40,
         "at": NOW - 4, "reason": "1 of 3 metrics failed", "metrics": METRICS}])
    return replace(state, **changes)


def test_the_watch_view_shows_each_metric_against_its_threshold() -> None:
    text = _render(views.watch_view(_mid_rollout(), stack=STACK, where="files in j", now=NOW))
    assert "last verdict  FAIL at 40%: 1 of 3 metrics failed" in text
    lines = {line.split()[1]: line for line in text.splitlines()
             if line.startswith("│") and len(line.split()) > 1}
    assert all(cell in lines["request-success-rate"]
               for cell in ("98.25%", "99.9%", "at least 99%", "fail"))
    assert all(cell in lines["request-duration"]
               for cell in ("212.5 ms", "198 ms", "at most 500 ms", "pass"))
    assert all(cell in lines["latency-shift"] for cell in ("0.25", "0.24", "-", "pass"))


def test_the_watch_view_shows_failed_checks_of_the_threshold_time_left_and_next_stop() -> None:
    text = _render(views.watch_view(_mid_rollout(), stack=STACK, where="files in j", now=NOW))
    assert "Progressing" in text and "step 2/3" in text and "files in j" in text
    assert "primary 60% / canary 40%" in text
    assert "failed checks 1 of 3" in text
    # 40%: 6s of its interval left, then its 30.5s pause and 60%'s interval; then 60%'s
    # manual pause, of no known length.
    assert "time left     ~46s + open-ended waits" in text
    assert "next stop     pause 30s at 40%" in text


def test_the_watch_view_says_what_it_waits_for_and_an_unknown_threshold() -> None:
    paused = _mid_rollout(phase=Phase.WAITING, step=0, weight=20, wait_deadline=NOW + 250,
                          threshold=0)
    text = _render(views.watch_view(paused, stack=STACK, where="files in j", now=NOW))
    assert "waiting for   approval (rollout approve), times out in 4m 10s" in text
    assert "time left     ~50s + open-ended waits" in text
    assert "next stop     pause 30s at 40%" in text
    assert "failed checks 1\n" in text, "the count alone when the threshold is not known"


def test_the_watch_view_of_a_finished_rollout_says_how_it_ended() -> None:
    ended = replace(finished("v2", Outcome.ROLLED_BACK), threshold=3, failed_checks=3)
    text = _render(views.watch_view(ended, stack=STACK, where="files in j", now=NOW))
    assert "Failed rolled-back" in text and "failed checks 3 of 3" in text
    assert "ended after" in text and "v2 rolled-back" in text
    assert "time left" not in text and "next stop" not in text


def test_status_shows_failed_checks_of_the_threshold(journal: Journal) -> None:
    journal.save(rollout(stack=STACK, threshold=3))
    result = CliRunner().invoke(app, ["status", "--stack", STACK])
    assert result.exit_code == 0, result.output
    assert "1 of 3" in result.output


def test_the_progress_log_estimates_with_the_same_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    state = _mid_rollout()
    monkeypatch.setattr("rollout.cli.progress.time.time", lambda: NOW)
    screen = Console(record=True, width=200)
    ProgressPrinter(screen)(state, "analysis FAIL")
    seconds, _ = time_left(state, now=NOW)
    assert seconds is not None and f"~{seconds:.0f}s left" in screen.export_text()


# -- history with reports -----------------------------------------------------------------


def test_history_links_each_rollout_to_its_report_when_one_was_written(
        journal: Journal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # the whole path on one line
    reported = replace(finished("v2"), stack=STACK)
    plain = replace(finished("v3", Outcome.ROLLED_BACK), stack=STACK)
    for state in (reported, plain):
        journal.archive(state)
    reports = tmp_path / "p" / "reports"
    reports.mkdir()
    page = reports / f"{STACK}-{reported.rollout_id}.html"
    page.write_text("<html></html>")
    result = CliRunner().invoke(app, ["history", "--stack", STACK, "--output", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["report"] for r in rows] == [str(page.resolve()), None]
    assert set(rows[0]) >= {"id", "version", "outcome", "reason", "started",
                            "duration_seconds", "report"}
    table = CliRunner().invoke(app, ["history", "--stack", STACK])
    assert table.exit_code == 0, table.output
    assert "report" in table.output and "took" in table.output
    assert str(page.resolve()) in table.output


def test_history_reads_reports_from_another_directory(journal: Journal, tmp_path: Path) -> None:
    state = replace(finished("v2"), stack=STACK)
    journal.archive(state)
    elsewhere = tmp_path / "ci-artifacts"
    elsewhere.mkdir()
    (elsewhere / f"{STACK}-{state.rollout_id}.html").write_text("<html></html>")
    rows = json.loads(CliRunner().invoke(app, [
        "history", "--stack", STACK, "-o", "json", "--reports-dir", str(elsewhere)]).stdout)
    assert rows[0]["report"] == str((elsewhere / f"{STACK}-{state.rollout_id}.html").resolve())
    nowhere = json.loads(CliRunner().invoke(app, [
        "history", "--stack", STACK, "-o", "json", "--reports-dir", str(tmp_path)]).stdout)
    assert nowhere[0]["report"] is None


def test_a_report_path_follows_the_reports_naming_of_stacks_with_a_slash(tmp_path: Path) -> None:
    state = replace(finished("v2"), stack="org/shop")
    assert views.report_path(state, tmp_path) is None
    (tmp_path / f"org_shop-{state.rollout_id}.html").write_text("x")
    assert views.report_path(state, tmp_path) == (
        tmp_path / f"org_shop-{state.rollout_id}.html").resolve()
    assert views.report_path(state, None) is None
    table = _render(views.history_table([state, finished("v3")], reports_dir=tmp_path),
                    width=400)
    rows = [line for line in table.splitlines() if "│" in line]
    assert f"org_shop-{state.rollout_id}.html" in rows[0]
    assert rows[1].rstrip(" │").endswith("-"), "no report: a dash"


def test_the_watch_view_prints_brackets_in_reasons_as_they_are() -> None:
    reason = "no data (query: sum(rate(x[interval])) [/bold] [le])"
    state = _mid_rollout(reason=reason, phase=Phase.FAILED, outcome=Outcome.ROLLED_BACK)
    state = replace(state, analyses=[{**state.analyses[-1], "reason": reason}])
    text = _render(views.watch_view(state, stack=STACK, where="files in [j]", now=NOW))
    assert text.count(reason) == 2 and "files in [j]" in text


def test_a_reason_at_a_glance_stops_before_its_query() -> None:
    from rollout.cli.views import brief

    reason = ("1 of 2 metrics failed: request-duration of canary demo-canary was 940.7 ms over "
              "10s, above the maximum 500 ms (primary demo-primary was 17.72 ms; query: "
              "histogram_quantile(0.99, sum(rate(x[10s])) by (le)))")

    assert brief(reason) == ("1 of 2 metrics failed: request-duration of canary demo-canary "
                             "was 940.7 ms over 10s, above the maximum 500 ms (primary "
                             "demo-primary was 17.72 ms)")
    assert brief("v2 passed every step") == "v2 passed every step"
    assert brief(reason, limit=30) == "1 of 2 metrics failed: requ..."
