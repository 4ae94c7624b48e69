"""WARMUP_SECONDS (warmup.py): each worker answers requests of its own before it takes any
connection, and nobody can tell afterwards: not in Redis, not in /metrics, not in the access
log, not on the page. Its log says once what went wrong, and its `warmed_up` line how many
answers were not a healthy pod's. (`make test` runs it again on the PyPy image, which sets it.)"""

import requests
from microservices_server.store import COUNT_KEY

from tests.support import Server, wait_for

# Every key the server writes (store.py), seeded so that a change would show.
SEEDED = {"{microservices}:count": "41"}


def everything_in(redis_client) -> dict:
    """Every key with its type, value and whether it expires."""
    found = {}
    for key in redis_client.keys("*"):
        kind = redis_client.type(key)
        value = {
            "string": redis_client.get,
            "hash": redis_client.hgetall,
            "zset": lambda k: redis_client.zrange(k, 0, -1, withscores=True),
        }[kind](key)
        found[key] = (kind, value, redis_client.ttl(key) > 0)
    return found


def test_the_warm_up_answers_before_readiness_and_changes_nothing_anyone_sees(
    redis_url, redis_client
):
    redis_client.mset(SEEDED)
    before = everything_in(redis_client)
    server = Server(
        redis_url,
        WARMUP_SECONDS="2",
        WEB_CONCURRENCY="2",
        LOG_FORMAT="json",
        ACCESS_LOG="all",
    )
    try:
        server.wait_ready(60)
        # Both workers warmed up before the first answer to a connection of ours.
        warmed = server.events("warmed_up")
        assert len(warmed) == 2 and all(w["requests"] > 0 for w in warmed), server.output
        # Every answer the one a healthy pod gives, nothing logged more than once.
        assert all(w["unexpected"] == 0 and w["level"] == "info" for w in warmed), warmed
        assert all(w["unexpected_statuses"] == {} and w["repeated"] == {} for w in warmed)
        assert everything_in(redis_client) == before
        assert server.count() == 41
        metrics = requests.get(server.url + "/metrics", timeout=5).text
        counted = [line for line in metrics.splitlines() if line.startswith("http_requests_total")]
        # Only what this test asked: liveness (wait_ready), GET / (count), not the warm-up's.
        assert counted and all('route="/probe/liveness"' in c or 'method="GET",route="/",' in c
                               for c in counted), counted  # fmt: skip
        assert 'route="unmatched"' not in metrics and 'status="400"' not in metrics
        # The access log (every request's line, ACCESS_LOG=all) has none of the warm-up's.
        assert "/nowhere" not in server.output and "/api/status" not in server.output
    finally:
        assert server.stop() == 0


def test_with_redis_away_the_warm_up_logs_no_failed_requests():
    """Redis refuses: the warm-up's own requests fail to read it, and must not fill the log
    with warnings that read like real clients' failures (hundreds a second before)."""
    server = Server("redis://127.0.0.1:1/0", WARMUP_SECONDS="2", LOG_FORMAT="json")
    try:
        warmed = wait_for(lambda: server.events("warmed_up"), 30, what="the warm-up")
        assert warmed[0]["requests"] > 0, server.output
        assert server.events("redis_error") == [], server.output
        # But its last line says that it warmed up against errors, not as a healthy pod.
        assert warmed[0]["level"] == "warning", warmed
        assert warmed[0]["unexpected_statuses"]["503"] > 0, warmed
        # Once warm, a real request's failure is logged as before.
        assert requests.get(server.url + "/", timeout=5).status_code == 503
        wait_for(lambda: server.events("redis_error"), 5, what="a real request's redis_error")
    finally:
        assert server.stop() == 0


def test_a_corrupt_count_is_logged_once_by_the_warm_up_and_counted_in_its_last_line(
    redis_url, redis_client
):
    """Errors are logged during the warm-up, but each one once: a count that is not a number
    fails every warm-up GET / with an error line (thousands in 15 s before)."""
    redis_client.set(COUNT_KEY, "not a number")
    server = Server(redis_url, WARMUP_SECONDS="2", WEB_CONCURRENCY="1", LOG_FORMAT="json")
    try:
        warmed = wait_for(lambda: server.events("warmed_up"), 30, what="the warm-up")[0]
        assert len(server.events("count_corrupt")) == 1, server.output
        assert warmed["repeated"]["count_corrupt"] > 1, warmed
        assert warmed["unexpected_statuses"]["500"] > 1 and warmed["level"] == "warning", warmed
        assert f"{warmed['unexpected']} not answered as by a healthy pod" in warmed["message"]
        # Once warm, each real request's error is logged again.
        for logged in (2, 3):
            assert requests.get(server.url + "/", timeout=5).status_code == 500
            wait_for(lambda n=logged: len(server.events("count_corrupt")) == n, 5)
    finally:
        redis_client.delete(COUNT_KEY)  # the session's Redis: the next tests count from it
        assert server.stop() == 0
