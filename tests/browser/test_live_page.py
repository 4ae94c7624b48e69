"""The live page as a person sees it in a real browser, while the tiers work and fail.

Every test also checks, through the `page` fixture, that the console shows no error and that
the page requested nothing from another host.
"""

from __future__ import annotations

import re

import requests
from microservices_common.identity import version
from microservices_server.store import CLIENTS_KEY
from redis import Redis
from selenium.webdriver.common.by import By

from tests.browser.chromium import console_errors, same_origin
from tests.support import wait_for

TIERS = ("data", "app", "counter", "poller")


def test_the_count_rises_and_every_tier_is_up(page):
    page.wait_count_rises()
    for tier in TIERS:
        panel = page.wait_status(tier, "up")
        # The status is a word, not only a colour.
        assert panel.find_element(By.CSS_SELECTOR, "[data-field=status]").text == "up"
    app = page.tier("app").text
    assert version() in app
    assert re.search(r"pid \d+", app)
    assert re.search(r"Valkey \d+\.\d+", page.tier("data").text)  # the server the data tier runs
    for tier, done in (("counter", "last incremented"), ("poller", "last read")):
        wait_for(lambda tier=tier, done=done: done in page.tier(tier).text, what=f"{tier} pods")
    wait_for(lambda: float(page.find('[data-testid="rate"]').text) > 0, what="a rate above zero")
    # The history: a line over 60 points (5-second steps over 5 minutes), drawn in SVG.
    points = page.find('[data-testid="chart"] .line').get_attribute("points").split()
    assert len(points) == 60


def test_the_fault_switches_on_in_the_pod_show_in_the_app_tier(page, stack):
    page.wait_status("app", "up")
    wait_for(lambda: "faults on\nnone" in page.tier("app").text, what="no switch on")
    switch = f"{stack.url}/faults/latency"
    key = {"X-API-Key": "test-key"}
    assert requests.put(switch, json={"ms": 5, "for": 120}, headers=key, timeout=5).ok
    try:
        wait_for(lambda: "latency 5 ms (1" in page.tier("app").text, what="the switch")
    finally:
        assert requests.delete(switch, headers=key, timeout=5).ok
    wait_for(lambda: "faults on\nnone" in page.tier("app").text, what="the switch off")


def test_only_the_server_is_asked_for_anything(page, browser, stack):
    page.wait_count_rises()
    loaded = browser.execute_script(
        "return performance.getEntries().map((entry) => entry.name)"
        ".filter((name) => name.startsWith('http'))"
    )
    assert {re.sub(r"^http://[^/]+", "", url) for url in loaded} >= {
        "/",
        "/static/page.js",
        "/static/page.css",
        "/api/status",
    }
    assert [url for url in loaded if not same_origin(url, stack.url)] == []


def test_redis_down_shows_on_the_open_page_and_recovers(page, stack):
    page.wait_status("data", "up")
    page.wait_count_rises()
    stack.stop_redis()
    try:
        data = page.wait_status("data", "down")
        assert "Error" in data.find_element(By.CSS_SELECTOR, "[data-field=reason]").text
        assert page.status("app") == "up"  # the server answers, without Redis
        assert page.count() is not None  # the last count known stays, dimmed
        assert page.find("body").get_attribute("data-stale") == "true"
        # Screen readers hear the change (a polite live region, out of sight).
        announced = page.find("[aria-live]").get_attribute("textContent")
        assert "Data tier down" in announced
        # A page opened during the outage is served too.
        page.open()
        page.wait_status("data", "down")
        # The counter keeps sending (and failing): retrying, not stale. This page never
        # had a count, and says so rather than showing a last one.
        page.wait_status("counter", "retrying")
        assert "(no count yet: Redis does not answer)" in page.find("section.count").text
    finally:
        stack.start_redis()
    page.wait_status("data", "up")
    page.wait_status("counter", "up")
    page.wait_count_rises()
    assert page.find("body").get_attribute("data-stale") == "false"


def test_a_stopped_counter_turns_stale_then_up_again(page, stack):
    page.wait_status("counter", "up")
    assert stack.counter.stop() == 0
    try:
        counter = page.wait_status("counter", "stale")
        assert "silent for" in counter.text
        pod = counter.find_element(By.CSS_SELECTOR, "li")
        assert pod.get_attribute("data-status") == "stale"
        assert page.status("poller") == "up"
    finally:
        stack.counter = stack.start_worker("counter")
    page.wait_status("counter", "up")


def test_a_server_restart_shows_and_the_page_comes_back_by_itself(page, browser, stack):
    page.wait_status("app", "up")
    pid = re.search(r"pid (\d+)", page.tier("app").text)[1]
    assert stack.server.stop() == 0
    try:
        app = page.wait_status("app", "down")
        assert "no answer from the server" in app.text
        assert page.status("data") == "stale"
    finally:
        stack.server = stack.start_server()
    page.wait_status("app", "up")
    wait_for(
        lambda: re.search(r"pid (\d+)", page.tier("app").text)[1] != pid,
        what="the new server process on the page",
    )
    page.wait_count_rises()
    # While the server was away, the browser logged its failed requests; nothing else.
    errors = console_errors(browser)
    assert errors and all("api/status" in e["message"] for e in errors), errors


def test_client_strings_are_shown_as_text_never_as_html(page, stack):
    """A hostname reaches the page from a User-Agent through Redis. The server accepts only
    hostname characters; the page would not run markup even if Redis held some."""
    member = "poller <img/src=x/onerror=window.pwned=1> 1.0"
    redis = Redis.from_url(stack.redis_url)
    try:
        seconds, _ = redis.time()
        redis.zadd(CLIENTS_KEY, {member: seconds})
        poller = page.tier("poller")
        wait_for(lambda: "<img/src=x" in poller.text, what="the hostname shown as text")
        assert poller.find_elements(By.CSS_SELECTOR, "img") == []
        assert page.driver.execute_script("return window.pwned === undefined")
    finally:
        redis.zrem(CLIENTS_KEY, member)
        redis.close()


def test_counts_past_2_to_the_53_are_shown_exactly(page, browser):
    """JavaScript numbers lose digits past 2^53; the count may go up to 2^63-1."""
    page.wait_count_rises()
    shown = browser.execute_script(
        "return BigInt(parse('{\"count\": 9223372036854775807}').count).toLocaleString('en')"
    )
    assert shown == "9,223,372,036,854,775,807"


def test_readable_at_320_pixels(page, browser):
    browser.set_window_size(320, 800)
    try:
        page.open()
        page.wait_status("counter", "up")
        width = browser.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]"
        )
        assert width[0] <= width[1], f"the page scrolls sideways at 320 px: {width}"
        for tier in TIERS:
            assert page.tier(tier).is_displayed()
    finally:
        browser.set_window_size(1280, 900)


def test_labels_for_screen_readers(page):
    page.wait_status("data", "up")
    assert page.find("html").get_attribute("lang") == "en"
    for tier in TIERS:
        label = page.tier(tier).get_attribute("aria-labelledby")
        assert page.find(f"#{label}").text
    chart = page.find('[data-testid="chart"]')
    assert chart.get_attribute("role") == "img"
    wait_for(lambda: "peak" in chart.get_attribute("aria-label"), what="the chart's label")
    assert page.find("[aria-live]").get_attribute("aria-live") == "polite"


def test_the_browser_refuses_other_hosts(page, browser):
    """The Content-Security-Policy at work: a script on the page that tried to reach another
    host (an injected one, a CDN) is stopped by the browser before any request leaves."""
    page.wait_status("app", "up")
    browser.execute_script("fetch('http://localhost:9/elsewhere').catch(() => {})")
    refused = wait_for(
        lambda: [e for e in console_errors(browser) if "Content Security Policy" in e["message"]],
        what="the CSP's refusal in the console",
    )
    assert "http://localhost:9/elsewhere" in refused[0]["message"]
