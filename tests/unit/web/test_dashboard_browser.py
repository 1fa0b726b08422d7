"""The dashboard in a real browser (Debian's chromium, headless): what a person sees and can
do, on a project with file state stores (the lab test does it on the lab's cluster)."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from rollout.web.server import Dashboard
from tests.browser import canary_weight, row_text, rows, text, wait_for

from .conftest import Project


def test_the_overview_lists_the_stacks_and_follows_the_live_weight(
        project: Project, browser: WebDriver) -> None:
    with Dashboard(project.board(), every=0.2) as dashboard:
        browser.get(dashboard.url)
        wait_for(browser, lambda b: rows(b) == [["dev", "demo"], ["prod", "demo"]],
                 what="the two stacks listed")
        assert canary_weight(browser, "dev") == "20"
        prod = row_text(browser, "prod")
        assert "promoted" in prod and "could not reach the cluster" in prod

        project.journal("dev").save(project.running.moved(weight=50, step=1))
        wait_for(browser, lambda b: canary_weight(b, "dev") == "50", what="the weight redrawn")
        assert "primary 50% / canary 50%" in row_text(browser, "dev")


def test_read_only_has_no_buttons_and_its_endpoints_answer_403(
        project: Project, browser: WebDriver) -> None:
    with Dashboard(project.board(), every=0.2) as dashboard:
        browser.get(f"{dashboard.url}/stacks/dev/demo")
        wait_for(browser, lambda b: text(b, "#verdict-word") == "PASS", what="the verdict")
        assert "read-only" in browser.find_element(By.ID, "mode").text
        assert browser.find_elements(By.CSS_SELECTOR, "#actions button") == []
        # What a button would send, sent by hand from the page itself.
        status = browser.execute_async_script(
            "const done = arguments[0];"
            "fetch('/api/stacks/dev/demo/approve', {method: 'POST',"
            " headers: {'X-Rollout-Dashboard': '1'}}).then(r => done(r.status));")
        assert status == 403
    assert project.journal("dev").requests() == []


def test_approve_asks_first_then_queues_the_request(project: Project,
                                                    browser: WebDriver) -> None:
    with Dashboard(project.board(), allow_actions=True, every=0.2) as dashboard:
        browser.get(f"{dashboard.url}/stacks/dev/demo")
        button = wait_for(browser, lambda b: b.find_elements(By.ID, "action-approve"),
                          what="the approve button")[0]
        button.click()
        browser.switch_to.alert.dismiss()  # "no": nothing is sent
        button.click()
        alert = browser.switch_to.alert
        assert "approve the rollout of v2 on dev (demo)?" in alert.text
        alert.accept()
        wait_for(browser, lambda b: "approve requested" in b.find_element(By.ID, "message").text,
                 what="the answer shown")
    (request,) = project.journal("dev").requests()
    assert (request["action"], request["by"]) == ("approve", "dashboard")
