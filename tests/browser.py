"""Debian's chromium, headless, driven by Selenium through Debian's chromium-driver (both
installed by `make system-deps`): the browser the dashboard tests use. Nothing is downloaded."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from rollout.adapters.browser import FLAGS, find_chromium

CHROMEDRIVER = Path("/usr/bin/chromedriver")


@contextmanager
def chromium() -> Iterator[WebDriver]:
    binary = find_chromium()
    missing = [name for name, there in (("chromium", binary is not None),
                                        (str(CHROMEDRIVER), CHROMEDRIVER.is_file())) if not there]
    if missing:
        raise AssertionError(f"browser tests need {', '.join(missing)}: run `make system-deps` "
                             "(Debian's chromium and chromium-driver)")
    # Selenium Manager would look for a driver online; it has the one it needs.
    os.environ["SE_OFFLINE"] = "true"
    profile = tempfile.mkdtemp(prefix="canary-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(binary)
    # The flags the demo's screenshot uses (the closed network refuses Chromium's own calls).
    for flag in (*FLAGS, "--window-size=1400,1000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any], *,
             timeout: float = 20, what: str = "", page_said: str = "") -> Any:
    """`condition`'s first truthy value; on timeout an error naming `what` and what the page
    (or, given `page_said`, the dashboard's JSON at that path) showed instead."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)
    except TimeoutException:
        seen = text(driver, "main")
        if page_said:
            seen = str(driver.execute_async_script(
                "fetch(arguments[0]).then(r => r.text()).then(arguments[1]);", page_said))
        raise AssertionError(f"the page never showed {what or 'it'} in {timeout:g}s; it "
                             f"showed: {seen[:3000]}") from None


# The dashboard's page, read in one script run each: it redraws as events come, so an element
# found by one WebDriver call may be gone by the next.


def rows(browser: WebDriver) -> list[list[str]]:
    return list(browser.execute_script(
        "return [...document.querySelectorAll('tr[data-stack]')]"
        ".map(row => [row.dataset.stack, row.dataset.service]);"))


def row_text(browser: WebDriver, stack: str) -> str:
    return str(browser.execute_script(
        "const row = document.querySelector(`tr[data-stack='${arguments[0]}']`);"
        "return row ? row.innerText : '';", stack))


def text(browser: WebDriver, css: str) -> str:
    return str(browser.execute_script(
        "const node = document.querySelector(arguments[0]);"
        "return node ? node.innerText : '';", css))


def canary_weight(browser: WebDriver, stack: str) -> str:
    return str(browser.execute_script(
        "const cell = document.querySelector(`tr[data-stack='${arguments[0]}'] .live-weight`);"
        "return cell ? cell.dataset.canary : '';", stack))
