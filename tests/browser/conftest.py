"""The live page in a real browser: headless Chromium (Debian's chromium and chromium-driver,
see chromium.py) against a real Redis and the real server, counter and poller processes.

One stack and one browser per module; a test that stops a tier starts it again. After every
test: no console error, and no request from the page to another host.
"""

from __future__ import annotations

import pytest
from testcontainers.community.redis import RedisContainer

from tests.browser.chromium import (
    Page,
    assert_clean,
    chromium,
    console_errors,
    requested_urls,
    require_chromium,
)
from tests.conftest import redis_url_of
from tests.support import REDIS_IMAGE, Server, Service, free_port

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
            self.redis_url,
            port=self.port,
            REDIS_TIMEOUT="0.3",
            CLIENT_STALE_AFTER=STALE_AFTER,
            FAULTS_ENABLED="true",
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


@pytest.fixture(scope="module")
def stack():
    require_chromium()
    stack = Stack()
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def browser():
    require_chromium()
    with chromium() as driver:
        yield driver


@pytest.fixture
def page(browser, stack):
    """The page, opened afresh; afterwards, no console error and nothing from another host."""
    console_errors(browser)  # empty the logs of what came before
    requested_urls(browser, stack.url)
    yield Page(browser, stack.url).open()
    assert_clean(browser, stack.url)
