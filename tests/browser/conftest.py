"""The live page in a real browser: headless Chromium (Debian's chromium and chromium-driver,
see chromium.py) against a real Redis and the real server, counter and poller processes.

One stack and one browser per module; a test that stops a tier starts it again. After every
test: no console error, and no request from the page to another host.
"""

from __future__ import annotations

import os

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from testcontainers.community.redis import RedisContainer

from tests.browser.chromium import chromium, console_errors, missing, requested_urls, same_origin
from tests.conftest import redis_url_of
from tests.support import REDIS_IMAGE, Server, Service, free_port, wait_for

STALE_AFTER = "2"  # the server's CLIENT_STALE_AFTER, short to keep the tests short


class Stack:
    """Redis on a fixed port (it keeps its address when stopped and started), the server,
    one counter and one poller, every worker calling every half second."""

    def __init__(self) -> None:
        self.redis = RedisContainer(REDIS_IMAGE).with_bind_ports(6379, free_port())
        self.redis.start()
        self.redis_url = redis_url_of(self.redis)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = self.start_server()
        self.counter = self.start_worker("counter")
        self.poller = self.start_worker("poller")

    def start_server(self) -> Server:
        return Server(
            self.redis_url, port=self.port, REDIS_TIMEOUT="0.3", CLIENT_STALE_AFTER=STALE_AFTER
        ).wait_ready()

    def start_worker(self, kind: str) -> Service:
        env = {"API_URL": self.url, "INTERVAL": "0.5", "RETRY_CAP": "1"}
        return Service(f"microservices-{kind}", env)

    def stop_redis(self) -> None:
        self.redis.get_wrapped_container().stop(timeout=1)

    def start_redis(self) -> None:
        self.redis.get_wrapped_container().start()

    def close(self) -> None:
        for service in (self.counter, self.poller, self.server):
            service.kill()
        self.redis.stop()


class Page:
    """The page open in the browser, read the way a person reads it."""

    def __init__(self, driver: WebDriver, url: str) -> None:
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
            what=f"the {name} tier to show {status!r} (shows {self.status(name)!r})",
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


@pytest.fixture(scope="session")
def browser_available() -> None:
    reason = missing()
    if reason:
        # CI must run these (.ci/run installs the browser); elsewhere, say what is missing.
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def stack(browser_available):
    stack = Stack()
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def browser(browser_available):
    with chromium() as driver:
        yield driver


@pytest.fixture
def page(browser, stack):
    """The page, opened afresh; afterwards, no console error and nothing from another host."""
    console_errors(browser)  # empty the logs of what came before
    requested_urls(browser, stack.url)
    yield Page(browser, stack.url).open()
    assert console_errors(browser) == []
    urls = requested_urls(browser, stack.url)
    assert stack.url + "/api/status" in urls
    assert [url for url in urls if not same_origin(url, stack.url)] == []
