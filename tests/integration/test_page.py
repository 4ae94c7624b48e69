"""The live page's server side, against a real Redis: GET / by content negotiation, security
headers, the status endpoint (one round trip, bounded), the clients seen and the history.
What a real browser makes of it: tests/browser."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from microservices_common.identity import version
from microservices_server.page import Snapshots, snapshots
from microservices_server.store import (
    CLIENTS_KEY,
    COUNT_KEY,
    HISTORY_KEY,
    HISTORY_SECONDS,
    MAX_CLIENTS,
)
from redis.connection import AbstractConnection

from tests.conftest import API_KEY, make_app
from tests.support import free_port, wait_for

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"
COUNTER = {"User-Agent": "microservices-counter/1.0.0 (counter-7c9f-x2kq)"}
POLLER = {"User-Agent": "microservices-poller/1.0.0 (poller-5d8b-k4mz)"}


def assert_secured(response) -> None:
    assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def status(client) -> dict:
    response = client.get("/api/status")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_json()


@pytest.mark.parametrize("accept", [BROWSER, "text/html", "text/html, application/json", "text/*"])
def test_a_browser_gets_the_page(client, accept):
    response = client.get("/", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert 'data-testid="count"' in response.text
    assert response.headers["Vary"] == "Accept"
    assert_secured(response)


@pytest.mark.parametrize(
    "accept",
    [
        None,  # python-requests' urllib, some scripts
        "*/*",  # curl, requests (the counter and the poller), wget, kubelet
        "application/json",
        "application/json, text/html",
        "application/json, */*;q=0.5",  # httpie
        "text/html;q=0.5, */*",
        "text/html;q=0, */*",
        "image/png",
    ],
)
def test_every_api_client_keeps_getting_json(client, accept):
    response = client.get("/", headers={"Accept": accept} if accept else {})
    assert response.status_code == 200
    assert response.get_json() == {"count": 0}
    assert response.headers["Vary"] == "Accept"


@pytest.mark.parametrize(
    ("name", "mimetype"),
    [("page.js", "text/javascript"), ("page.css", "text/css"), ("favicon.svg", "image/svg+xml")],
)
def test_static_files_carry_the_security_headers(client, name, mimetype):
    response = client.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.mimetype == mimetype
    assert_secured(response)


def test_the_page_and_its_status_work_without_redis():
    client = make_app(f"redis://127.0.0.1:{free_port()}/0").test_client()
    assert client.get("/", headers={"Accept": "text/html"}).status_code == 200
    assert client.get("/static/page.js").status_code == 200
    answer = status(client)
    assert answer["count"] is None
    tiers = answer["tiers"]
    assert tiers["data"]["status"] == "down"
    assert "ConnectionError" in tiers["data"]["reason"]
    assert tiers["app"]["status"] == "up"
    assert tiers["counter"]["status"] == tiers["poller"]["status"] == "stale"
    metrics = client.get("/metrics").text
    assert 'redis_errors_total{operation="status"} 1.0' in metrics


def test_status_shows_each_support_tier_pod(client, redis_client):
    client.post("/", json={"increment": 3}, headers=COUNTER)
    client.get("/", headers=POLLER)
    client.get("/", headers={"User-Agent": "microservices-poller"})  # an older poller
    # A read's caller is recorded off the request's path (seen.py), within a second.
    wait_for(lambda: redis_client.zcard(CLIENTS_KEY) == 3, what="the pollers to be recorded")
    answer = status(client)
    assert answer["count"] == 3
    tiers = answer["tiers"]
    assert tiers["data"]["status"] == "up"
    assert tiers["data"]["version"].startswith("Valkey ")  # the suite runs on Valkey
    assert tiers["app"]["version"] == version()
    assert tiers["counter"]["status"] == "up"
    [counter] = tiers["counter"]["pods"]
    assert counter["host"] == "counter-7c9f-x2kq"
    assert counter["version"] == "1.0.0"
    assert counter["status"] == "up"
    assert 0 <= counter["age"] < 5
    assert {(p["host"], p["version"]) for p in tiers["poller"]["pods"]} == {
        ("poller-5d8b-k4mz", "1.0.0"),
        ("", ""),
    }


@pytest.mark.parametrize(
    "user_agent",
    [
        "curl/8.5.0",
        "python-requests/2.34.2",
        "microservices-counterfeit",
        "Mozilla/5.0 microservices-counter",
        "microservices-counter/1.0.0 (<img src=x onerror=alert(1)>)",
        "microservices-counter/1.0.0 (two words)",
        "microservices-counter/1.0.0 (" + "a" * 100 + ")",
    ],
)
def test_other_user_agents_are_not_recorded(client, redis_client, user_agent):
    client.post("/", headers={"User-Agent": user_agent})
    client.get("/", headers={"User-Agent": user_agent})
    assert redis_client.zcard(CLIENTS_KEY) == 0
    assert status(client)["tiers"]["counter"] == {
        "status": "down",
        "reason": "not seen in the last 120 s",
        "pods": [],
    }


def test_a_silent_client_turns_stale(redis_url):
    client = make_app(redis_url, client_stale_after=0.5).test_client()
    client.post("/", headers=COUNTER)
    assert status(client)["tiers"]["counter"]["status"] == "up"
    counter = wait_for(
        lambda: (tier := status(client)["tiers"]["counter"])["status"] == "stale" and tier,
        what="the counter to turn stale",
    )
    assert counter["pods"][0]["status"] == "stale"
    assert counter["reason"].startswith("silent for")


def test_client_records_are_bounded_and_expire(client, redis_client):
    for n in range(MAX_CLIENTS + 20):
        client.post("/", headers={"User-Agent": f"microservices-counter/1.0.0 (pod-{n})"})
    assert redis_client.zcard(CLIENTS_KEY) == MAX_CLIENTS
    assert 0 < redis_client.ttl(CLIENTS_KEY) <= 120
    hosts = {pod["host"] for pod in status(client)["tiers"]["counter"]["pods"]}
    assert "pod-0" not in hosts  # the oldest went first
    assert f"pod-{MAX_CLIENTS + 19}" in hosts


def test_a_record_redis_refuses_fails_no_read(client, redis_client):
    """Redis out of memory refuses the client's record, and the read goes on."""
    client.post("/", json={"increment": 2})
    redis_client.config_set("maxmemory", 1)  # every write now refused (noeviction)
    try:
        assert client.post("/", headers=COUNTER).status_code == 503
        assert client.get("/", headers=POLLER).get_json() == {"count": 2}
    finally:
        redis_client.config_set("maxmemory", 0)


def test_history_counts_the_increments_of_each_second(client, redis_client):
    key = {"Idempotency-Key": "history-1"}
    client.post("/", json={"increment": 4}, headers=key)
    client.post("/", json={"increment": 4}, headers=key)  # a replay adds nothing
    client.post("/", json={"increment": 3})
    assert sum(int(n) for n in redis_client.hvals(HISTORY_KEY)) == 7
    assert 0 < redis_client.ttl(HISTORY_KEY) <= HISTORY_SECONDS
    # The current second is not in the history until it is complete.
    answer = wait_for(
        lambda: sum((answer := status(client))["history"]) == 7 and answer,
        what="the seconds of the increments to complete",
    )
    assert len(answer["history"]) == HISTORY_SECONDS
    assert sum(answer["history"]) == 7
    assert answer["rate"] == 0.7


def test_history_forgets_the_seconds_that_left_the_window(client, redis_client):
    now = redis_client.time()[0]
    redis_client.hset(HISTORY_KEY, mapping={now - HISTORY_SECONDS - 5: 50, now - 10: 2})
    client.post("/", json={"increment": 1})
    kept = {int(second) for second in redis_client.hkeys(HISTORY_KEY)}
    assert now - HISTORY_SECONDS - 5 not in kept
    assert now - 10 in kept


def test_one_redis_round_trip_per_request(app, monkeypatch):
    """Recording the clients and the history adds no round trip to GET and POST (a GET's
    client is written by another thread, seen.py), and the status costs one, however many
    clients and seconds it reports."""
    snapshots(app).fresh_for = 0  # every status reads Redis (see the test below)
    client = app.test_client()
    requests = [
        lambda: client.get("/", headers=POLLER),
        lambda: client.post("/", headers={**COUNTER, "Idempotency-Key": "rt"}),
        lambda: client.get("/api/status"),
    ]
    for request in requests:  # connect, load the scripts
        assert request().status_code == 200
    sent = []
    original = AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        if threading.current_thread() is threading.main_thread():  # the request's thread
            sent.append(command)
        return original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    for request in requests:
        sent.clear()
        assert request().status_code == 200
        assert len(sent) == 1
    sent.clear()
    assert client.get("/", headers={"Accept": "text/html"}).status_code == 200
    assert sent == []  # the page itself never touches Redis


class CountingStore:
    """A store whose snapshot is counted, and waits for `release` (a stuck Redis)."""

    def __init__(self, store, release: threading.Event):
        self.store, self.release, self.reads = store, release, 0

    def snapshot(self):
        self.reads += 1
        self.release.wait(10)
        return self.store.snapshot()


def test_a_dozen_pages_cost_one_read_and_a_stuck_redis_holds_one_thread(store):
    shared = Snapshots(fresh_for=60)
    release = threading.Event()
    release.set()
    counting = CountingStore(store, release)
    first = shared.read(counting, on_error=lambda: None)
    assert first.snapshot is not None
    with ThreadPoolExecutor(12) as pool:
        readings = list(pool.map(lambda _: shared.read(counting, lambda: None), range(12)))
    assert counting.reads == 1
    assert all(reading is first for reading in readings)

    shared.fresh_for = 0  # every page now wants a new reading, and Redis is stuck
    release.clear()
    with ThreadPoolExecutor(12) as pool:
        stuck = pool.submit(shared.read, counting, lambda: None)
        wait_for(lambda: counting.reads == 2, what="one thread reading the stuck Redis")
        # The other pages do not wait for it: they get the latest reading at once.
        others = list(pool.map(lambda _: shared.read(counting, lambda: None), range(11)))
        assert all(reading is first for reading in others)
        assert counting.reads == 2
        release.set()
        assert stuck.result(10).snapshot is not None


@pytest.mark.parametrize(
    "hold_writes",
    [
        # What a failover (and a managed Redis' maintenance) does for a few seconds.
        ["CLIENT", "PAUSE", "3000", "WRITE"],
        # A read-only replica: of a primary that does not exist, so it never syncs.
        ["REPLICAOF", "127.0.0.1", "1"],
    ],
    ids=["paused-writes", "read-only-replica"],
)
def test_a_read_never_waits_for_its_bookkeeping(client, redis_client, hold_writes):
    """GET / writes nothing on the request's path: the poller's read is served where Redis
    holds or refuses writes, and its record is written once Redis takes writes again."""
    client.post("/", json={"increment": 5})
    undo = ["CLIENT", "UNPAUSE"] if hold_writes[0] == "CLIENT" else ["REPLICAOF", "NO", "ONE"]
    redis_client.execute_command(*hold_writes)
    try:
        for _ in range(3):
            answer = client.get("/", headers=POLLER)
            assert answer.status_code == 200, answer.get_json()
            assert answer.get_json() == {"count": 5}
        if hold_writes[0] == "REPLICAOF":  # writes are refused here, not held
            assert client.post("/", headers=COUNTER).status_code == 503
    finally:
        redis_client.execute_command(*undo)
    wait_for(
        lambda: status(client)["tiers"]["poller"]["status"] == "up",
        what="the poller's record, once Redis takes writes again",
    )


@pytest.mark.parametrize(
    ("bad", "shown"),
    [
        (lambda r: r.set(COUNT_KEY, "abc"), "holds 'abc', not an integer"),
        (lambda r: r.hset(COUNT_KEY, "a", "1"), "another type of key"),
        # Numbers to Python's int(), not to INCRBY: GET would read what POST refuses.
        (lambda r: r.set(COUNT_KEY, " 12"), "holds ' 12'"),
        (lambda r: r.set(COUNT_KEY, "1_000"), "holds '1_000'"),
        (lambda r: r.set(COUNT_KEY, "99999999999999999999"), "not an integer"),
    ],
    ids=["not-a-number", "a-hash", "a-space", "an-underscore", "past-64-bits"],
)
def test_a_count_that_is_no_number_is_one_clear_error(client, redis_client, bad, shown):
    """A count written by hand (or by another program) that Redis cannot count: GET and POST
    answer one clear 500, count nothing, the page says what is wrong while the data tier is
    up, and DELETE / repairs it."""
    bad(redis_client)
    for answer in (client.get("/"), client.post("/", headers={"Idempotency-Key": "k1"})):
        assert answer.status_code == 500
        error = answer.get_json()["error"]
        assert "is not a number" in error
        assert "DELETE /" in error  # how to repair it
    assert "Traceback" not in error
    assert shown in client.get("/").get_json()["error"]
    assert client.get("/probe/readiness").status_code == 200  # Redis itself is fine
    tiers = status(client)["tiers"]
    assert tiers["data"]["status"] == "up"
    assert "is not a number" in tiers["data"]["reason"]
    assert status(client)["count"] is None
    assert client.delete("/", headers={"X-API-Key": API_KEY}).get_json() == {"count": 0}
    assert client.post("/", headers={"Idempotency-Key": "k1"}).get_json() == {"count": 1}
