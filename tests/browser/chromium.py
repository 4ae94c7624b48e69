"""Headless Chromium from Debian's packages, driven by Selenium through Debian's chromedriver.

Nothing is downloaded: the driver's path is given, so Selenium Manager is never asked (and is
told to stay offline in any case). Where the browser is installed elsewhere (GitHub's runners:
google-chrome and their own chromedriver), CHROME_BIN and CHROMEDRIVER say where.

Used by the browser tests, the compose end-to-end check and scripts/screenshot; `Page` reads
the live page the way a person does.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from tests.support import wait_for

CHROME_BIN = os.environ.get("CHROME_BIN", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
# Headless, and quiet: without the background-networking flags Chromium reaches out to
# Google's services (refused here, and nothing the page asked for).
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def require_chromium() -> None:
    """Skip the test where no browser is installed; fail it in CI, which must run it (.ci/run
    installs the browser)."""
    for path in (CHROME_BIN, CHROMEDRIVER):
        if not Path(path).is_file():
            reason = f"{path} not found (apt-get install chromium chromium-driver)"
            if os.environ.get("CI"):
                pytest.fail(reason)
            pytest.skip(reason)


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with a fresh profile, its console and network logs recorded."""
    os.environ["SE_OFFLINE"] = "true"
    profile = tempfile.mkdtemp(prefix="chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROME_BIN
    for flag in [*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver: webdriver.Chrome) -> list[dict]:
    """The console's errors since the last call (reading the log empties it)."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def requested_urls(driver: webdriver.Chrome, origin: str) -> list[str]:
    """Every URL that a page from `origin` requested since the last call (from Chrome's
    network log, which reading empties; the browser's own pages are left out)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            params = message["params"]
            if same_origin(params.get("documentURL", ""), origin):
                urls.append(params["request"]["url"])
    return urls


def assert_clean(driver: webdriver.Chrome, origin: str) -> None:
    """Since the last look: no error in the console, and the page from `origin` asked
    `origin` (its status endpoint at least) and no other host for anything."""
    assert console_errors(driver) == []
    urls = requested_urls(driver, origin)
    assert origin + "/api/status" in urls
    assert [url for url in urls if not same_origin(url, origin)] == []


def same_origin(url: str, origin: str) -> bool:
    """True if `url` is on `origin` (scheme://host:port)."""
    one, other = urlsplit(url), urlsplit(origin)
    return (one.scheme, one.netloc) == (other.scheme, other.netloc)


class Page:
    """The page open in the browser, read the way a person reads it."""

    def __init__(self, driver: webdriver.Chrome, url: str) -> None:
        self.driver = driver
        self.url = url

    def open(self) -> Page:
        self.driver.get(self.url + "/")
        return self

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def tier(self, name: str) -> WebElement:
        return self.find(f'[data-tier="{name}"]')

    def status(self, name: str) -> str:
        return self.tier(name).get_attribute("data-status")

    def count(self) -> int | None:
        digits = "".join(c for c in self.find('[data-testid="count"]').text if c.isdigit())
        return int(digits) if digits else None

    def wait_status(self, name: str, status: str, timeout: float = 30) -> WebElement:
        wait_for(
            lambda: self.status(name) == status,
            timeout,
            interval=0.2,
            what=f"the {name} tier to show {status!r}",
        )
        return self.tier(name)

    def wait_count_rises(self, timeout: float = 30) -> int:
        start = wait_for(self.count, timeout, interval=0.2, what="a count on the page")
        return wait_for(
            lambda: (now := self.count()) is not None and now > start and now,
            timeout,
            interval=0.2,
            what=f"the count on the page to rise above {start}",
        )
