"""Headless Chromium from Debian's packages, driven by Selenium through Debian's chromedriver.

Nothing is downloaded: the driver's path is given, so Selenium Manager is never asked (and is
told to stay offline in any case). CHROME_BIN and CHROMEDRIVER point elsewhere where the
browser lives elsewhere (GitHub's runners: google-chrome and their own chromedriver).

Used by the browser tests, the compose end-to-end check and scripts/screenshot.
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

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

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


def missing() -> str | None:
    """Why no browser can start here, or None."""
    for path in (CHROME_BIN, CHROMEDRIVER):
        if not Path(path).is_file():
            return f"{path} not found (apt-get install chromium chromium-driver)"
    return None


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


def same_origin(url: str, origin: str) -> bool:
    """True if `url` is on `origin` (scheme://host:port)."""
    one, other = urlsplit(url), urlsplit(origin)
    return (one.scheme, one.netloc) == (other.scheme, other.netloc)
