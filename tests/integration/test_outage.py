"""Redis stopped, paused and restarted under a running server: 503 fast, liveness stays 200,
recovery without restarting anything."""

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


def test_redis_stuck_answers_503_within_the_timeout(own_redis):
    server = Server(redis_url_of(own_redis), REDIS_TIMEOUT="0.3").wait_ready()
    container = own_redis.get_wrapped_container()
    try:
        container.pause()
        # REDIS_TIMEOUT (0.3 s) answers it, not the client's own 10 s timeout.
        response = requests.get(server.url + "/", timeout=10)
        assert response.status_code == 503
        assert requests.get(server.url + "/probe/readiness", timeout=10).status_code == 503
        container.unpause()
        wait_for(lambda: requests.get(server.url + "/", timeout=5).ok, what="recovery")
    finally:
        if container.reload() or container.status == "paused":
            container.unpause()
        assert server.stop() == 0
