"""The dashboard's HTTP surface on a real project folder with file state stores: what each
page reads, and that actions are the CLI's own requests, refused unless allowed."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from rollout.web.server import ACTION_HEADER, Dashboard

from .conftest import Project

Client = Callable[..., httpx.Client]


@pytest.fixture()
def client(project: Project) -> Iterator[Client]:
    """The dashboard served by uvicorn on a free port of 127.0.0.1, and a client of it."""
    opened: list[tuple[Dashboard, httpx.Client]] = []

    def start(*, allow_actions: bool = False) -> httpx.Client:
        dashboard = Dashboard(project.board(), allow_actions=allow_actions).__enter__()
        http = httpx.Client(base_url=dashboard.url, timeout=10)
        opened.append((dashboard, http))
        return http

    yield start
    for dashboard, http in opened:
        http.close()
        dashboard.__exit__()


def test_the_overview_lists_every_stack_with_versions_rollout_and_live_weight(
        project: Project, client: Client) -> None:
    rows = client().get("/api/overview").json()

    assert [(r["stack"], r["service"]) for r in rows] == [("dev", "demo"), ("prod", "demo")]
    dev, prod = rows
    assert (dev["stableVersion"], dev["runningVersion"]) == ("v1", "v1")
    assert dev["live"] == {"primary": 80, "canary": 20}
    assert (dev["rollout"]["phase"], dev["rollout"]["step"], dev["rollout"]["total_steps"]) == (
        "Progressing", 1, 2)
    assert dev["lastOutcome"] is None and dev["problems"] == []
    # prod: its cluster cannot be read; the page says why instead of showing no traffic.
    assert prod["live"] is None and prod["lastOutcome"] == "promoted"
    assert prod["problems"] == ["live objects: could not reach the cluster to read demo's live "
                                "objects: connection refused"]
    assert prod["rollout"]["outcome"] == "promoted"


def test_a_service_page_has_the_verdict_against_its_threshold_and_the_history(
        project: Project, client: Client) -> None:
    http = client()

    dev = http.get("/api/stacks/dev/demo").json()
    prod = http.get("/api/stacks/prod/demo").json()

    rollout = dev["view"]["rollout"]
    assert (rollout["verdict"], rollout["failed_checks"], rollout["threshold"]) == ("PASS", 0, 2)
    assert rollout["metrics"] == [{"metric": "request-success-rate", "result": "pass",
                                   "failed": False, "canary": "99.5%", "primary": "99.9%",
                                   "threshold": "at least 99%"}]
    assert dev["history"] == []
    (past,) = prod["history"]
    assert (past["rollout_id"], past["outcome"]) == (project.promoted.rollout_id, "promoted")
    assert past["report"] == f"prod-{project.promoted.rollout_id}.html"
    assert http.get(f"/reports/{past['report']}").text == "<html>report</html>"


def test_the_timeline_is_the_report_chart_with_live_series(
        project: Project, client: Client) -> None:
    figure = client().get("/api/stacks/dev/demo/timeline").json()["figure"]

    names = [trace["name"] for trace in figure["data"]]
    assert names[:5] == ["canary weight", "primary (v1)", "canary (v2)", "primary (v1)",
                         "canary (v2)"]
    assert "verdict: pass" in names
    assert {trace["yaxis"] for trace in figure["data"]} == {"y", "y2", "y3"}
    assert figure["data"][1]["y"] and set(figure["data"][1]["y"]) == {99.9}


@pytest.mark.parametrize("action", ["approve", "promote", "abort"])
def test_without_allow_actions_every_action_is_403_and_nothing_is_queued(
        project: Project, client: Client, action: str) -> None:
    http = client()

    answer = http.post(f"/api/stacks/dev/demo/{action}", headers={ACTION_HEADER: "1"})

    assert answer.status_code == 403
    assert answer.json() == {"error": "this dashboard is read-only",
                             "hint": "start it with `rollout dashboard --allow-actions`"}
    assert http.get("/api/config").json()["allowActions"] is False
    assert project.journal("dev").requests() == []


def test_an_approval_is_the_clis_own_request_for_the_running_rollout(
        project: Project, client: Client) -> None:
    http = client(allow_actions=True)

    answer = http.post("/api/stacks/dev/demo/approve", headers={ACTION_HEADER: "1"})

    assert answer.status_code == 200, answer.text
    assert answer.json()["rolloutId"] == project.running.rollout_id
    (request,) = project.journal("dev").requests()
    assert (request["action"], request["rollout_id"], request["by"]) == (
        "approve", project.running.rollout_id, "dashboard")


def test_refused_actions_say_why_and_queue_nothing(project: Project, client: Client) -> None:
    http = client(allow_actions=True)
    post = http.post

    no_header = post("/api/stacks/dev/demo/approve")
    nothing_running = post("/api/stacks/prod/demo/approve", headers={ACTION_HEADER: "1"})
    no_driver = post("/api/stacks/dev/demo/abort", headers={ACTION_HEADER: "1"})
    unknown = post("/api/stacks/dev/demo/delete", headers={ACTION_HEADER: "1"})
    missing = post("/api/stacks/qa/demo/approve", headers={ACTION_HEADER: "1"})
    not_json = post("/api/stacks/dev/demo/promote", content=b"{", headers={ACTION_HEADER: "1"})

    assert (no_header.status_code, no_header.json()["error"]) == (
        403, f"actions need the {ACTION_HEADER} header")
    assert nothing_running.status_code == 409
    assert "no unfinished rollout" in nothing_running.json()["error"], nothing_running.json()
    assert no_driver.status_code == 409 and "rollout abort --stack dev" in no_driver.json()["hint"]
    assert unknown.status_code == 404
    assert missing.status_code == 404 and missing.json()["error"].startswith("no stack qa")
    assert not_json.status_code == 409 and "not JSON" in not_json.json()["error"]
    assert project.journal("dev").requests() == []


def test_another_host_name_is_refused(project: Project, client: Client) -> None:
    """A page whose DNS name was rebound to 127.0.0.1 still sends its own Host."""
    answer = client().get("/api/overview", headers={"host": "evil.example:8080"})

    assert answer.status_code == 400


def test_a_report_outside_the_reports_folder_is_not_served(
        project: Project, client: Client) -> None:
    (project.reports.parent / "secret.html").write_text("no")
    http = client()

    assert http.get("/reports/..%2Fsecret.html").status_code == 404
    assert http.get("/reports/nothing.html").status_code == 404


def test_live_events_follow_the_journal(project: Project) -> None:
    """Through the real server (uvicorn): the first event is the state as it is, the next
    one comes when the driver saves a new weight."""
    journal = project.journal("dev")
    with Dashboard(project.board(), every=0.1) as dashboard, httpx.Client(
            base_url=dashboard.url, timeout=10) as http, http.stream(
            "GET", "/api/events") as stream:
        weights = []
        event = ""
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "overview":
                rows = json.loads(line.split(":", 1)[1])
                weights.append(rows[0]["live"]["canary"])
                if len(weights) == 1:
                    journal.save(project.running.moved(weight=50, step=1))
                else:
                    break
    assert weights == [20, 50]


def test_a_broken_stack_file_is_a_row_that_says_why_and_the_others_still_show(
        project: Project, client: Client) -> None:
    (project.root / "stacks" / "Pulumi.qa.yaml").write_text("config: [unclosed\n")
    http = client()

    rows = http.get("/api/overview").json()

    assert [(r["stack"], r["service"]) for r in rows] == [
        ("dev", "demo"), ("prod", "demo"), ("qa", "-")]
    (problem,) = rows[2]["problems"]
    assert problem.startswith("stack file: cannot read ") and "Pulumi.qa.yaml" in problem
    assert http.get("/api/stacks/qa/demo").status_code == 409


@pytest.mark.parametrize("path", ["/api/stacks/bad name!/demo", "/api/stacks/dev/no%20such",
                                  "/api/stacks/dev/other", "/api/stacks/dev/demo/events/x"])
def test_nonsense_names_are_404_with_the_fix(client: Client, path: str) -> None:
    answer = client().get(path)

    assert answer.status_code == 404, answer.text


def test_bound_to_one_address_it_answers_to_that_address_and_loopback_only(
        project: Project) -> None:
    from rollout.web.server import create_app

    def status(app: object, host: str) -> int:
        import asyncio

        sent: list[dict[str, object]] = []

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/api/config", "raw_path":
                 b"/api/config", "query_string": b"", "root_path": "", "scheme": "http",
                 "server": ("127.0.0.1", 80), "headers": [(b"host", host.encode())],
                 "http_version": "1.1"}
        asyncio.run(app(scope, receive, send))  # type: ignore[operator]
        return int(sent[0]["status"])  # type: ignore[call-overload]

    one = create_app(project.board(), host="192.0.2.10")
    every = create_app(project.board(), host="0.0.0.0")

    assert [status(one, h) for h in ("192.0.2.10:8040", "localhost:8040", "evil.example")] == [
        200, 200, 400]
    assert status(every, "dashboard.internal:8040") == 200


def test_a_stack_file_edited_while_it_serves_is_read_again(
        project: Project, client: Client) -> None:
    """Broken by hand, then moved to another namespace: the row says what is wrong, then
    reads the live objects where the file now says they are."""
    http = client()
    path = project.root / "stacks" / "Pulumi.dev.yaml"
    good = path.read_text()
    assert http.get("/api/stacks/dev/demo").status_code == 200

    path.write_text("config: [unclosed\n")
    broken = http.get("/api/overview").json()
    path.write_text(good.replace("demo:namespace: dev", "demo:namespace: staging"))
    os.utime(path, (time.time() + 5, time.time() + 5))  # a new mtime, even within a tick
    moved = http.get("/api/overview").json()

    assert broken[0]["service"] == "-" and "Pulumi.dev.yaml" in broken[0]["problems"][0]
    assert moved[0]["service"] == "demo" and moved[0]["problems"] == []
    assert project.live_reads[-2:] == [("staging", None), ("prod", None)]


def test_the_real_live_reader_fails_as_the_stand_in_does(
        project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests' live reader raises InfrastructureError for an unreachable cluster; so does
    the real one (the lab tests exercise its success)."""
    from rollout.app.board import cluster_live
    from rollout.core.errors import InfrastructureError
    from rollout.core.service import service_settings
    from rollout.lab.certs import create_pki, write_kubeconfig

    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", pki=create_pki(tmp_path / "pki"),
                                  server="https://127.0.0.1:1")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    settings = service_settings("demo", {"namespace": "prod", "stableVersion": "v1",
                                         "image": "registry.local/demo"})

    with pytest.raises(InfrastructureError) as real:
        cluster_live(settings, None)
    with pytest.raises(InfrastructureError) as stand_in:
        project.live(settings, None)

    assert real.value.message.startswith("could not reach the cluster to read demo's live")
    assert stand_in.value.message.startswith("could not reach the cluster to read demo's live")
