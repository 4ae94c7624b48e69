"""High availability against a real data tier: one primary, two replicas, three sentinels, each
a container of the data tier's image on a network of their own (README, "High availability").

The server runs in this process (one test runs it as a process, the image's with SERVER_IMAGE)
and reaches the containers at their addresses on that network (on Linux the host routes to a
bridge network), which are the addresses the sentinels give.
"""

from __future__ import annotations

import time
import uuid

import docker
import pytest
import redis
import requests
from microservices_server.app import create_app
from microservices_server.settings import Settings
from microservices_server.state import runtime
from microservices_server.store import CounterStore, NotReplicated

from tests.support import REDIS_IMAGE, Server, Service, wait_for

PASSWORD = "ha-test-password"
MASTER = "mymaster"
# Quicker than the shipped settings (README, "High availability"): a primary silent for 1 s
# is down, and a failover that stalls is retried after 2 x 3 s.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


class DataTier:
    """The containers, started on `network`; `close()` removes every one and the network."""

    def __init__(self) -> None:
        self.docker = docker.from_env()
        self.name = f"ha-test-{uuid.uuid4().hex[:8]}"
        self.network = self.docker.networks.create(self.name)
        self.nodes: list = []
        self.sentinel_containers: list = []
        self.closing: list = []  # stores made on the tier (their primary watch stops)
        try:
            self.nodes.append(self._node("node0", replica_of=None))
            primary_ip = self.ip(self.nodes[0])
            self.nodes += [self._node(f"node{i}", replica_of=primary_ip) for i in (1, 2)]
            self.sentinel_containers = [self._sentinel(i, primary_ip) for i in range(3)]
            wait_for(self._all_see_two_replicas, 60, 0.2, "the sentinels to see both replicas")
            self._both_replicas_acknowledge()
        except BaseException:
            self.close()
            raise

    def _run(self, name: str, script: str):
        return self.docker.containers.run(
            REDIS_IMAGE,
            entrypoint=["sh", "-c", script],
            name=f"{self.name}-{name}",
            network=self.name,
            detach=True,
        )

    def _node(self, name: str, replica_of: str | None):
        conf = (
            f"requirepass {PASSWORD}\\nmasterauth {PASSWORD}\\nappendonly yes\\n"
            "min-replicas-to-write 1\\nmin-replicas-max-lag 10\\n"
        )
        if replica_of:
            conf += f"replicaof {replica_of} 6379\\n"
        return self._run(name, f"printf '{conf}' > /tmp/n.conf && exec valkey-server /tmp/n.conf")

    def _sentinel(self, index: int, primary_ip: str):
        conf = (
            f"port 26379\\nrequirepass {PASSWORD}\\n"
            f"sentinel monitor {MASTER} {primary_ip} 6379 2\\n"
            f"sentinel auth-pass {MASTER} {PASSWORD}\\n"
            f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\\n"
            f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\\n"
            f"sentinel parallel-syncs {MASTER} 1\\n"
        )
        return self._run(
            f"sentinel{index}",
            f"printf '{conf}' > /tmp/s.conf && exec valkey-server /tmp/s.conf --sentinel",
        )

    def ip(self, container) -> str:
        container.reload()
        return container.attrs["NetworkSettings"]["Networks"][self.name]["IPAddress"]

    def client(self, container, port: int = 6379) -> redis.Redis:
        return redis.Redis(self.ip(container), port, password=PASSWORD, socket_timeout=2)

    @property
    def sentinels(self) -> tuple[tuple[str, int], ...]:
        return tuple((self.ip(c), 26379) for c in self.sentinel_containers)

    def _all_see_two_replicas(self) -> bool:
        with self.client(self.nodes[0]) as client:
            if client.info("replication").get("min_slaves_good_slaves") != 2:
                return False  # the primary counts a replica once it has acknowledged
        for sentinel in self.sentinel_containers:
            with self.client(sentinel, 26379) as client:
                state = client.sentinel_master(MASTER)
                if state["num-slaves"] != 2 or state["num-other-sentinels"] != 2:
                    return False
        return True

    def _both_replicas_acknowledge(self) -> None:
        """A write both replicas confirm (WAIT 2): min_slaves_good_slaves counts a replica that
        has pinged, not one that acknowledges writes yet, and a test's first short WAIT would
        then time out on a loaded machine."""
        with self.client(self.nodes[0]) as client:
            client.set("{microservices}:warm-up", 1)
            assert client.execute_command("WAIT", 2, 10000) == 2, "the replicas never caught up"
            client.delete("{microservices}:warm-up")
            assert client.execute_command("WAIT", 2, 10000) == 2, "the replicas never caught up"

    def primary(self):
        """The node the sentinels name the primary now."""
        with self.client(self.sentinel_containers[0], 26379) as client:
            ip, _ = client.sentinel_get_master_addr_by_name(MASTER)
        return next(node for node in self.nodes if self.ip(node) == ip.decode())

    def replicas(self) -> list:
        primary = self.primary()
        return [node for node in self.nodes if node.id != primary.id]

    def settings(self, **overrides) -> Settings:
        values = {
            "redis_url": "redis://unused-with-sentinels:6379/0",
            "redis_password": PASSWORD,
            "redis_sentinels": self.sentinels,
            "redis_master_name": MASTER,
            "api_key": "test-key",
            **overrides,
        }
        return Settings(**values)

    def store(self, **overrides) -> CounterStore:
        """A store on the tier, closed with it."""
        store = CounterStore.from_settings(self.settings(**overrides))
        self.closing.append(store)
        return store

    def close(self) -> None:
        for store in self.closing:
            store.close()
        for container in self.sentinel_containers + self.nodes:
            container.remove(force=True)
        self.network.remove()
        self.docker.close()


@pytest.fixture
def tier():
    tier = DataTier()
    yield tier
    tier.close()


def api_client(tier: DataTier, **overrides):
    """The app on the tier (through its sentinels), and a test client of it; its store
    (and the store's primary watch) closed with the tier."""
    app = create_app(tier.settings(**overrides))
    app.config["TESTING"] = True
    tier.closing.append(runtime(app).store)
    return app.test_client()


def increment_until_answered(store: CounterStore, amount: int, key: str, within: float = 30):
    """Retry one increment with the same Idempotency-Key, as the counter does, until the
    data tier answers: (the answer, how many attempts failed)."""
    deadline = time.monotonic() + within
    failures = 0
    while True:
        try:
            return store.increment(amount, key), failures
        except (redis.RedisError, NotReplicated):
            failures += 1
            assert time.monotonic() < deadline, "no primary answered in time"
            time.sleep(0.1)


def test_finds_the_primary_through_the_sentinels(tier):
    store = tier.store()
    assert store.increment(5, "first").count == 5
    store.ping()
    primary_ip = tier.ip(tier.primary())
    assert store.redis.connection_pool.master_address == (primary_ip, 6379)
    with tier.client(tier.primary()) as client:
        assert client.get("{microservices}:count") == b"5"
    store.close()


def test_with_every_sentinel_gone_the_primary_they_named_keeps_the_server_ready(tier):
    """The sentinels are how the server finds the primary, not a part of serving: with none
    answering, the node they named last serves while it says it is the primary, and readiness
    does not take every server out of the Service at once."""
    client = api_client(tier)
    assert client.post("/").status_code == 200
    for sentinel in tier.sentinel_containers:
        sentinel.stop(timeout=0)
    readiness = client.get("/probe/readiness")
    assert readiness.status_code == 200, readiness.get_json()
    assert client.post("/").status_code == 200
    assert client.get("/").get_json() == {"count": 2}


def test_the_page_shows_the_primary_its_replicas_and_the_sentinels_view(tier):
    client = api_client(tier)
    replication = client.get("/api/status").get_json()["tiers"]["data"]["replication"]
    assert replication["role"] == "master"
    replicas = {tier.ip(node) for node in tier.replicas()}
    assert {r["address"] for r in replication["replicas"]} == {f"{ip}:6379" for ip in replicas}
    # How far behind: bytes of the stream not yet acknowledged (acknowledged every second).
    assert all(r["state"] == "online" and r["behind"] >= 0 for r in replication["replicas"])
    sentinels = replication["sentinels"]
    assert sentinels["primary"] == f"{tier.ip(tier.primary())}:6379"
    assert (sentinels["sentinels"], sentinels["quorum"], sentinels["replicas"]) == (3, 2, 2)
    assert sentinels["replicas_down"] == 0


def test_the_page_shows_the_sentinels_view_while_the_primary_is_down(tier):
    """The primary killed, with the replicas frozen so that no failover ends yet: the data
    tier is down on the page, and the sentinels' view says why (the primary seen down). Once
    a replica took over, the dead node is no replica up but one down."""
    client = api_client(tier)

    def data_tier() -> dict:
        return client.get("/api/status").get_json()["tiers"]["data"]

    old, replicas = tier.primary(), tier.replicas()
    old_address = f"{tier.ip(old)}:6379"
    for replica in replicas:
        replica.pause()
    old.kill()
    try:
        down = wait_for(
            lambda: (
                (data := data_tier())["status"] == "down"
                and "o_down" in (data["replication"]["sentinels"] or {}).get("flags", "")
                and data
            ),
            30,
            0.2,
            "the page to show the primary down",
        )
    finally:
        for replica in replicas:
            replica.unpause()
    assert down["replication"]["sentinels"]["primary"] == old_address

    # The other replica counts once the sentinels heard it streams from the new primary.
    def replicas_up_and_down():
        data = data_tier()
        sentinels = data.get("replication", {}).get("sentinels") or {}
        return data["status"] == "up" and (sentinels["replicas"], sentinels["replicas_down"])

    wait_for(lambda: replicas_up_and_down() == (1, 1), 60, 0.2, "one replica up, the old one down")
    primary = data_tier()["replication"]["sentinels"]["primary"]
    assert primary == f"{tier.ip(tier.primary())}:6379" != old_address


def test_after_the_primary_is_killed_a_replica_takes_over_and_nothing_is_lost(tier):
    store = tier.store(redis_wait_replicas=1)
    for i in range(20):
        store.increment(1, f"before-{i}")
    old = tier.primary()
    old.kill()  # SIGKILL
    # The count only moves on once the client found the new primary (the same key each time).
    result, failures = increment_until_answered(store, 1, "after")
    assert failures > 0  # the old primary's connection failed first
    assert result.count == 21 and not result.replayed
    new_ip = tier.ip(tier.primary())
    assert new_ip != tier.ip(old)
    assert store.redis.connection_pool.master_address == (new_ip, 6379)
    assert store.get() == 21
    store.close()


def test_the_server_process_counts_on_through_a_failover(tier):
    """The whole server, gunicorn and a worker, as a process (the image's with SERVER_IMAGE:
    `make test` runs it on PyPy too, whose redis-py has no hiredis): a POST retried with its
    Idempotency-Key, as the counter retries, counts once the new primary answers."""
    server = Server(
        "redis://unused:6379/0",  # not used: REDIS_SENTINELS names the tier
        REDIS_SENTINELS=",".join(f"{host}:{port}" for host, port in tier.sentinels),
        REDIS_MASTER_NAME=MASTER,
        REDIS_PASSWORD=PASSWORD,
        WEB_CONCURRENCY="1",
    )

    def post(amount: int, key: str) -> requests.Response:
        return requests.post(
            server.url + "/", json={"increment": amount}, headers={"Idempotency-Key": key},
            timeout=10,
        )  # fmt: skip

    try:
        server.wait_ready(60)
        assert post(3, "before").json() == {"count": 3}
        tier.primary().kill()  # SIGKILL
        answered = wait_for(
            lambda: (answer := post(4, "after")).status_code == 200 and answer,
            60, 0.2, "a POST through the new primary",
        )  # fmt: skip
        assert answered.json() == {"count": 7}
        assert server.count() == 7
    finally:
        server.kill()


def cut_off_from_the_tier(tier, node) -> None:
    """The node goes on answering the connections it has (the server's), but the sentinels
    and the other nodes can no longer talk to it: its password changes and their connections
    are closed. To the sentinels it is down, so they promote a replica, and it never hears of
    it (as behind a network partition that leaves the server on its side)."""
    others = {tier.ip(c) for c in tier.sentinel_containers + tier.nodes if c.id != node.id}
    with tier.client(node) as client:
        client.config_set("requirepass", f"not-{PASSWORD}")
        for entry in client.client_list():
            if entry["addr"].rsplit(":", 1)[0] in others:
                client.client_kill_filter(_id=entry["id"])


def test_a_primary_cut_off_from_the_sentinels_but_not_from_the_server_is_left(tier):
    """redis-py asks the sentinels only for a new connection: without asking again, the
    server would keep its connections to the old primary, every write refused and every read
    frozen. It asks once a second, on readiness and after a refused write."""
    on_both_replicas(tier, 1)
    client = api_client(tier, redis_wait_replicas=1)
    assert client.get("/").get_json() == {"count": 1}  # a connection to the primary, kept
    old = tier.primary()
    cut_off_from_the_tier(tier, old)
    wait_for(lambda: tier.primary().id != old.id, 60, 0.2, "the sentinels to promote a replica")
    with tier.client(tier.primary()) as new:
        # Just promoted, it refuses writes (NOREPLICAS, nothing applied: min-replicas-to-write 1)
        # until the sentinels have turned the other replica to it and that replica has synced.
        wait_for(lambda: new.incrby("{microservices}:count", 10), 30, 0.2, "a write to be taken")
    # Reads follow the new primary without any write nor probe (the background check).
    wait_for(lambda: client.get("/").get_json() == {"count": 11}, 10, 0.1, "reads to follow")
    assert client.get("/probe/readiness").status_code == 200
    assert post_until_confirmed(client, 1, "after").get_json() == {"count": 12}


def post_until_confirmed(client, amount: int, key: str):
    """POST / with an Idempotency-Key, retried as the counter does until it answers 200."""
    headers = {"Idempotency-Key": key}
    return wait_for(
        lambda: (
            (r := client.post("/", json={"increment": amount}, headers=headers)).status_code == 200
            and r
        ),
        30,
        0.1,
        f"the write {key!r} to be confirmed",
    )


def wait_errors(client) -> float:
    """redis_errors_total{operation="wait"}: the writes no replica confirmed in time."""
    for line in client.get("/metrics").get_data(True).splitlines():
        if line.startswith('redis_errors_total{operation="wait"}'):
            return float(line.split()[-1])
    raise AssertionError("no redis_errors_total for wait")


def test_too_few_replicas_in_time_is_an_unknown_outcome_and_the_retry_applies_once(tier):
    client = api_client(tier, redis_wait_replicas=1, redis_wait_timeout=0.2)
    headers = {"Idempotency-Key": "paused-replicas"}
    # Confirmed within 0.2 s, however loaded the machine: retried (same key) until it is.
    first = post_until_confirmed(client, 3, "first")
    assert first.get_json() == {"count": 3}
    unconfirmed_before = wait_errors(client)
    replicas = tier.replicas()
    for replica in replicas:
        replica.pause()
    try:
        answer = client.post("/", json={"increment": 4}, headers=headers)
    finally:
        for replica in replicas:
            replica.unpause()
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "1"
    assert "outcome unknown" in answer.get_json()["error"]
    assert wait_errors(client) == unconfirmed_before + 1
    # The write was done on the primary: the retry (same key) returns it, confirmed now.
    retry = post_until_confirmed(client, 4, "paused-replicas")
    assert retry.get_json() == {"count": 7}
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert client.get("/").get_json() == {"count": 7}


def test_a_replay_on_another_connection_waits_for_the_record_to_reach_a_replica(tier):
    """WAIT counts the writes of its own connection only. A record written by one server (here
    without WAIT) and replayed through another, whose connection wrote nothing yet, would be
    confirmed at once though no replica has it: the replay writes the record again (SET
    KEEPTTL), so its WAIT covers it, and with the replicas frozen the outcome is unknown."""
    plain = tier.store()
    waiting = tier.store(redis_wait_replicas=1, redis_wait_timeout=0.2)
    replicas = tier.replicas()
    for replica in replicas:
        replica.pause()
    try:
        assert plain.increment(5, "written-elsewhere").count == 5
        with pytest.raises(NotReplicated):
            waiting.increment(5, "written-elsewhere")
    finally:
        for replica in replicas:
            replica.unpause()
    result, _ = increment_until_answered(waiting, 5, "written-elsewhere")
    assert (result.count, result.replayed) == (5, True)
    plain.close()
    waiting.close()


def on_both_replicas(tier, amount: int) -> None:
    """Count `amount`, confirmed by both replicas (WAIT 2) before the trouble starts."""
    store = tier.store(redis_wait_replicas=2, redis_wait_timeout=10)
    store.increment(amount, "base")
    store.close()


def primary_alone(tier):
    """The replicas frozen and their links cut: the primary holds writes no replica has, and
    the replicas cannot catch up when they thaw, since the primary is gone by then."""
    replicas = tier.replicas()
    for replica in replicas:
        replica.pause()
    with tier.client(tier.primary()) as client:
        client.execute_command("CLIENT", "KILL", "TYPE", "replica")
    return replicas


def fail_over(tier, replicas) -> None:
    tier.primary().kill()
    for replica in replicas:
        replica.unpause()


def test_without_protection_an_acknowledged_write_is_lost_and_wait_makes_it_unknown(tier):
    """The primary alone takes writes, then dies, and a replica takes over. Without WAIT (and
    with min-replicas-to-write off) the server had answered 200 for a write only the dead
    primary held: lost. With WAIT the same write answered 503, and the retry applied once."""
    plain = tier.store()
    waiting = tier.store(redis_wait_replicas=1, redis_wait_timeout=0.2)
    on_both_replicas(tier, 10)
    with tier.client(tier.primary()) as client:
        client.config_set("min-replicas-to-write", 0)
    replicas = primary_alone(tier)
    acknowledged = plain.increment(1, "acknowledged-without-wait")  # 200
    with pytest.raises(NotReplicated):
        waiting.increment(100, "unknown-with-wait")  # 503: the outcome unknown
    fail_over(tier, replicas)
    result, _ = increment_until_answered(waiting, 100, "unknown-with-wait")
    # Acknowledged and lost: 10 + 100, not 10 + 1 + 100. The unknown one applied once.
    assert acknowledged.count == 11
    assert (result.count, result.replayed) == (110, False)
    assert waiting.get() == 110
    plain.close()
    waiting.close()


def test_min_replicas_to_write_refuses_what_no_replica_would_get(tier):
    """The shipped min-replicas-to-write 1: a primary with no replica refuses writes (503,
    nothing changed), so even without WAIT nothing is acknowledged that a failover drops."""
    plain = tier.store()
    on_both_replicas(tier, 10)
    replicas = primary_alone(tier)
    with pytest.raises(redis.ResponseError, match="NOREPLICAS"):
        plain.increment(1, "refused")
    fail_over(tier, replicas)
    result, _ = increment_until_answered(plain, 1, "refused")
    assert (result.count, result.replayed) == (11, False)
    plain.close()


def test_a_wrong_master_name_is_unready_with_the_reason_and_await_redis_keeps_waiting(tier):
    client = api_client(tier, redis_master_name="no-such-primary")
    answer = client.get("/probe/readiness")
    assert answer.status_code == 503
    reason = answer.get_json()["reason"]
    assert "no primary named 'no-such-primary' (REDIS_MASTER_NAME)" in reason
    assert f"monitors {MASTER}" in reason
    waiter = Service(
        "microservices-await-redis",
        {
            "REDIS_SENTINELS": ",".join(f"{host}:{port}" for host, port in tier.sentinels),
            "REDIS_MASTER_NAME": "no-such-primary",
            "REDIS_PASSWORD": PASSWORD,
            "AWAIT_TIMEOUT": "2",
        },
    )
    assert waiter.wait(30) == 1
    assert "attempt 2" in waiter.output
    assert "no primary named 'no-such-primary'" in waiter.output
    assert "gave up" in waiter.output


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("sentinel-0", "is not host:port"),
        ("sentinel-0:26379,", "'' is not host:port"),
        ("sentinel-0:port", "is not host:port"),
        ("sentinel-0:70000", "port must be 1 to 65535"),
        ("sentinel-0:26379,sentinel-0:26379", "listed twice"),
    ],
)
@pytest.mark.parametrize("command", ["microservices-server", "microservices-await-redis"])
def test_malformed_sentinels_exit_2_naming_the_variable(command, value, reason):
    service = Service(command, {"REDIS_SENTINELS": value})
    assert service.wait(30) == 2, service.output
    assert service.output.startswith("configuration error: REDIS_SENTINELS="), service.output
    assert reason in service.output


@pytest.mark.parametrize(
    ("name", "value", "env"),
    [
        ("REDIS_SENTINELS", "s:26379", {"REDIS_URL": "rediss://data-tier:6379/0"}),
        ("REDIS_MASTER_NAME", "my master", {}),
        ("REDIS_WAIT_REPLICAS", "-1", {}),
        ("REDIS_WAIT_TIMEOUT", "0", {}),
    ],
)
def test_other_bad_ha_settings_exit_2_naming_the_variable(name, value, env):
    service = Service("microservices-server", {name: value, **env})
    assert service.wait(30) == 2, service.output
    assert service.output.startswith(f"configuration error: {name}="), service.output
