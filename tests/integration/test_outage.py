"""Redis stopped, paused and restarted under a running server: 503 fast, liveness stays 200,
recovery without restarting anything."""

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import requests

from tests.conftest import redis_url_of
from tests.support import Server, wait_for


def test_redis_down_then_back(own_redis):
    server = Server(redis_url_of(own_redis), REDIS_TIMEOUT="0.3").wait_ready()
    try:
        assert requests.post(server.url + "/", timeout=5).json() == {"count": 1}
        own_redis.get_wrapped_container().stop(timeout=1)

        for call in (
            lambda: requests.get(server.url + "/", timeout=5),
            lambda: requests.post(server.url + "/", json={"increment": 2}, timeout=5),
        ):
            response = call()
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "1"
            assert "redis" in response.json()["error"]
        readiness = requests.get(server.url + "/probe/readiness", timeout=5)
        assert readiness.status_code == 503
        assert "redis" in readiness.json()["reason"]
        assert requests.get(server.url + "/probe/liveness", timeout=5).status_code == 200
        metrics = requests.get(server.url + "/metrics", timeout=5).text
        assert 'redis_errors_total{operation="increment"} 1.0' in metrics

        own_redis.get_wrapped_container().start()
        wait_for(
            lambda: requests.get(server.url + "/probe/readiness", timeout=5).ok,
            what="readiness after Redis came back",
        )
        # The rejected POST changed nothing; counting goes on from where it was.
        assert requests.post(server.url + "/", timeout=5).json() == {"count": 2}
        assert server.proc.poll() is None
    finally:
        assert server.stop() == 0


@contextmanager
def redis_stuck(own_redis, **env: str):
    """A server on `own_redis`, which is paused (a stuck Redis: connections open, no answers)
    for the body of the with block; then unpaused, the server must recover by itself."""
    server = Server(redis_url_of(own_redis), **env).wait_ready()
    container = own_redis.get_wrapped_container()
    try:
        container.pause()
        yield server
        container.unpause()
        wait_for(lambda: requests.get(server.url + "/", timeout=5).ok, what="recovery")
    finally:
        container.reload()
        if container.status == "paused":
            container.unpause()
        assert server.stop() == 0


def test_redis_stuck_answers_503_within_the_timeout(own_redis):
    with redis_stuck(own_redis, REDIS_TIMEOUT="0.3") as server:
        # REDIS_TIMEOUT (0.3 s) answers it, not the client's own 10 s timeout.
        response = requests.get(server.url + "/", timeout=10)
        assert response.status_code == 503
        assert requests.get(server.url + "/probe/readiness", timeout=10).status_code == 503


def test_requests_stuck_on_redis_never_block_the_others(own_redis):
    """One worker, many requests waiting on a paused Redis: each answers 503 when REDIS_TIMEOUT
    runs out, and meanwhile the worker goes on answering what does not need Redis (under gevent,
    a greenlet waiting on a socket yields to the others; none can hold the worker)."""
    with (
        redis_stuck(own_redis, REDIS_TIMEOUT="3", WEB_CONCURRENCY="1") as server,
        ThreadPoolExecutor(20) as pool,
    ):
        stuck = [
            pool.submit(requests.post, server.url + "/", json={"increment": 1}, timeout=15)
            for _ in range(20)
        ]
        wait_for(lambda: all(f.running() for f in stuck), what="the requests to be sent")
        # Well within the 3 s the stuck requests wait for Redis.
        liveness = requests.get(server.url + "/probe/liveness", timeout=1.5)
        assert liveness.status_code == 200
        assert not any(f.done() for f in stuck)
        assert [f.result().status_code for f in stuck] == [503] * 20
