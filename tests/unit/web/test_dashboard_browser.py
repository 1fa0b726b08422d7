"""The dashboard in a real browser (Debian's chromium, headless): what a person sees and can
do, on a project with file state stores (the lab test does it on the lab's cluster)."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from rollout.web.server import Dashboard
from tests.browser import wait_for

from .conftest import Project

# Read in one script run: the page redraws its rows as events come, so an element found by
# one WebDriver call may be gone by the next.


def _rows(browser: WebDriver) -> list[list[str]]:
    return list(browser.execute_script(
        "return [...document.querySelectorAll('tr[data-stack]')]"
        ".map(row => [row.dataset.stack, row.dataset.service]);"))


def _row_text(browser: WebDriver, stack: str) -> str:
    return str(browser.execute_script(
        "const row = document.querySelector(`tr[data-stack='${arguments[0]}']`);"
        "return row ? row.innerText : '';", stack))


def _text(browser: WebDriver, css: str) -> str:
    return str(browser.execute_script(
        "const node = document.querySelector(arguments[0]);"
        "return node ? node.innerText : '';", css))


def _canary(browser: WebDriver, stack: str) -> str:
    return str(browser.execute_script(
        "const cell = document.querySelector(`tr[data-stack='${arguments[0]}'] .live-weight`);"
        "return cell ? cell.dataset.canary : '';", stack))


def test_the_overview_lists_the_stacks_and_follows_the_live_weight(
        project: Project, browser: WebDriver) -> None:
    with Dashboard(project.board(), every=0.2) as dashboard:
        browser.get(dashboard.url)
        wait_for(browser, lambda b: _rows(b) == [["dev", "demo"], ["prod", "demo"]],
                 what="the two stacks listed")
        assert _canary(browser, "dev") == "20"
        text = _row_text(browser, "prod")
        assert "promoted" in text and "could not reach the cluster" in text

        project.journal("dev").save(project.running.moved(weight=50, step=1))
        wait_for(browser, lambda b: _canary(b, "dev") == "50", what="the weight redrawn")
        assert "primary 50% / canary 50%" in _row_text(browser, "dev")


def test_read_only_has_no_buttons_and_its_endpoints_answer_403(
        project: Project, browser: WebDriver) -> None:
    with Dashboard(project.board(), every=0.2) as dashboard:
        browser.get(f"{dashboard.url}/stacks/dev/demo")
        wait_for(browser, lambda b: _text(b, "#verdict-word") == "PASS", what="the verdict")
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
