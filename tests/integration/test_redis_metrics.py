"""microservices-redis-metrics (the adapter of k8s/17-adapter) as a real process against a real
Redis: what it serves parses as Prometheus' text format and says what Redis holds; a password;
Redis away and back; SIGTERM; bad settings. And the conversion itself on a fixed INFO."""

from __future__ import annotations

import pytest
import requests
from microservices_lessons.redis_metrics import parse_info, render
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import redis_url_of
from tests.support import Service, free_port, wait_for

ADAPTER = "microservices-redis-metrics"


class Adapter(Service):
    def __init__(self, redis_url: str, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            ADAPTER, {"REDIS_URL": redis_url, "PORT": str(self.port), "LOG_FORMAT": "json"} | env
        )
        wait_for(lambda: self.events("started"), what=f"the adapter to serve\n{self.output}")

    def scrape(self) -> dict[tuple[str, tuple], float]:
        """{(sample name, sorted labels): value} of one GET /metrics, parsed as Prometheus
        would (a malformed exposition raises)."""
        response = requests.get(self.url + "/metrics", timeout=5)
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }


@pytest.fixture
def adapters():
    started: list[Adapter] = []

    def start(redis_url: str, **env: str) -> Adapter:
        started.append(Adapter(redis_url, **env))
        return started[-1]

    yield start
    for adapter in started:
        adapter.kill()


def test_it_serves_what_redis_holds(redis_url, redis_client, adapters):
    redis_client.set("kept", 1)
    redis_client.set("fleeting", 1, ex=600)
    adapter = adapters(redis_url)
    metrics = adapter.scrape()
    assert metrics[("redis_up", ())] == 1
    assert metrics[("redis_db_keys", (("db", "db0"),))] == 2
    assert metrics[("redis_db_keys_expiring", (("db", "db0"),))] == 1
    assert metrics[("redis_connected_clients", ())] >= 2  # the test's client and the adapter's
    [labels] = [dict(labels) for name, labels in metrics if name == "redis_info"]
    assert labels["redis_version"] == redis_client.info()["redis_version"]
    processed = metrics[("redis_commands_processed_total", ())]
    assert adapter.scrape()[("redis_commands_processed_total", ())] > processed, "fresh each time"
    assert requests.get(adapter.url + "/", timeout=5).text.endswith("GET /metrics\n")
    assert requests.get(adapter.url + "/other", timeout=5).status_code == 404


def test_it_authenticates_and_says_when_the_password_is_refused(redis_url, redis_client, adapters):
    redis_client.config_set("requirepass", "s3cret")
    try:
        assert adapters(redis_url, REDIS_PASSWORD="s3cret").scrape()[("redis_up", ())] == 1
        assert adapters(redis_url.replace("//", "//:s3cret@")).scrape()[("redis_up", ())] == 1
        refused = adapters(redis_url, REDIS_PASSWORD="wrong")
        for _ in range(3):
            assert refused.scrape() == {("redis_up", ()): 0}
    finally:
        redis_client.execute_command("AUTH", "s3cret")
        redis_client.config_set("requirepass", "")
    # One line for the outage, not one per scrape (read once the process has printed it).
    wait_for(lambda: refused.events("redis_down"), what="the warning")
    [warning] = refused.events("redis_down")
    assert "WRONGPASS" in warning["message"]


def test_redis_away_is_up_0_and_back_is_up_1(own_redis, adapters):
    adapter = adapters(redis_url_of(own_redis), REDIS_TIMEOUT="0.5")
    assert adapter.scrape()[("redis_up", ())] == 1
    own_redis.get_wrapped_container().stop(timeout=1)
    assert adapter.scrape() == {("redis_up", ()): 0}
    assert adapter.scrape() == {("redis_up", ()): 0}
    own_redis.get_wrapped_container().start()
    wait_for(lambda: adapter.scrape()[("redis_up", ())] == 1, 30, interval=0.2, what="up again")
    wait_for(lambda: adapter.events("redis_up"), what="the line saying Redis is back")
    assert len(adapter.events("redis_down")) == 1
    assert adapter.events("redis_up")[0]["message"].endswith("answers INFO again")


def test_sigterm_stops_it_with_0(redis_url, adapters):
    adapter = adapters(redis_url)
    assert adapter.stop(timeout=10) == 0
    assert adapter.events("stopped")[0]["message"] == "stopped by SIGTERM"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"REDIS_URL": "http://localhost:6379"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://localhost:port/0"}, "REDIS_URL"),
        ({"PORT": "0"}, "PORT"),
        ({"REDIS_TIMEOUT": "soon"}, "REDIS_TIMEOUT"),
    ],
)
def test_a_bad_setting_exits_2_naming_it(env, named):
    adapter = Service(ADAPTER, env)
    assert adapter.wait(10) == 2
    [line] = adapter.lines
    assert line.startswith(f"configuration error: {named}")


INFO = """\
# Server\r
redis_version:7.0.15\r
role:master\r
uptime_in_seconds:12\r
# Memory\r
used_memory:123456789012\r
maxmemory:146800640\r
mem_fragmentation_ratio:1.25\r
# Keyspace\r
db0:keys=3,expires=1,avg_ttl=5000\r
db2:keys=1,expires=0,avg_ttl=0\r
"""


def test_info_becomes_the_exposition_format():
    text = render(parse_info(INFO))
    assert "redis_memory_used_bytes 123456789012\n" in text, "integers in full, never 1.2e+11"
    assert "redis_memory_max_bytes 146800640\n" in text
    assert 'redis_db_keys{db="db0"} 3\nredis_db_keys{db="db2"} 1\n' in text
    assert 'redis_db_keys_expiring{db="db0"} 1\n' in text
    assert 'redis_info{redis_version="7.0.15",role="master"} 1\n' in text
    assert "redis_connected_clients" not in text, "a field INFO did not give is left out"
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert families["redis_up"] == "gauge" and families["redis_uptime_in_seconds"] == "gauge"
    assert render(None) == (
        "# HELP redis_up 1 when Redis answered INFO for this scrape.\n"
        "# TYPE redis_up gauge\nredis_up 0\n"
    )


def test_labels_are_escaped():
    text = render(parse_info('redis_version:7"\\x\r\nrole:master\r\n'))
    assert 'redis_info{redis_version="7\\"\\\\x",role="master"} 1' in text
    [info] = [f for f in text_string_to_metric_families(text) if f.name == "redis_info"]
    assert info.samples[0].labels["redis_version"] == '7"\\x'
