"""The highly available data tier (docker-compose.ha.yml), proven by the counter's ledger:
the primary is killed, frozen or restarted at once while counting, and the whole stack is
restarted after a failover; every increment the server acknowledged is in the count once
(README, "High availability").

A compose project of its own, next to the suite's (the `backend` fixture), on its own port.
Each scenario prints what it measured (failover seconds), which the README's table reports.
"""

from __future__ import annotations

import os
import time

import pytest
import requests

from tests.e2e.backends import ComposeBackend, run
from tests.e2e.test_scenarios import count, json_lines, ledger, printed_counts, readiness
from tests.support import wait_for

# The nodes' fixed addresses (docker-compose.ha.yml): the sentinels name the primary by its
# address. A second checkout sets HA_SUBNET (and E2E_COMPOSE_PROJECT) apart, as it would
# for its own stack.
SUBNET = os.environ.get("HA_SUBNET") or "172.28.57"
NODES = {
    f"{SUBNET}.10": "redis",
    f"{SUBNET}.11": "redis-replica-1",
    f"{SUBNET}.12": "redis-replica-2",
}
PROJECT = (os.environ.get("E2E_COMPOSE_PROJECT") or "microservices-e2e") + "-ha"
PASSWORD = "e2e-redis-password"  # ComposeBackend's


@pytest.fixture(scope="module")
def ha(request):
    backend = ComposeBackend(project=PROJECT, files=("docker-compose.yml", "docker-compose.ha.yml"))
    try:
        backend.start()
        yield backend
    finally:
        run(["docker", "rm", "-f", f"{backend.project}-load"])  # a Watch's, if a test failed
        backend.teardown(failed=request.session.testsfailed > 0)


def valkey(ha, service: str, *command: str, port: int = 6379) -> str:
    """A valkey-cli command run in `service`'s container (its own password)."""
    return ha.compose(
        "exec", "-T", "-e", f"REDISCLI_AUTH={PASSWORD}", service,
        "valkey-cli", "-p", str(port), "--raw", *command,
    ).strip()  # fmt: skip


def primary(ha) -> str:
    """The service the sentinels name the primary ("" while none is)."""
    answer = valkey(ha, "sentinel-1", "SENTINEL", "get-master-addr-by-name", "mymaster", port=26379)
    return NODES[answer.splitlines()[0]] if answer else ""  # the address; the port follows


def role(ha, node: str) -> str:
    return valkey(ha, node, "ROLE").splitlines()[0]


def container_id(ha, service: str) -> str:
    return ha.compose("ps", "--all", "--quiet", service).strip()


LOAD_SECONDS = 30


class Watch:
    """Readiness and the ledger, before and after a fault; the counter stopped for the sum.
    With `load`, beside the ordinary counter a second one in load mode (40 POSTs/s, no
    retries) for LOAD_SECONDS: its summary says how many it got acknowledged, how many failed."""

    def __init__(self, ha, load: bool = False) -> None:
        self.ha = ha
        ha.compose("stop", "counter")
        self.start_count = count(ha)
        self.seen = len(ledger(ha))
        self.load = f"{ha.project}-load" if load else None
        if self.load:
            run(["docker", "rm", "-f", self.load])
            ha.compose(
                "run", "--detach", "--no-deps", "--name", self.load, "counter",
                "--rate", "40", "--concurrency", "4", "--duration", str(LOAD_SECONDS),
            )  # fmt: skip
        ha.compose("start", "counter")
        wait_for(lambda: len(ledger(ha)) >= self.seen + 3, 60, 0.5, "the counter to count")

    def failover(self, old: str, fault_at: float, within: float = 60) -> dict:
        """Watch readiness and the sentinels until a new primary serves: the new primary and
        the seconds, from the fault, until readiness turned 503, until the sentinels named
        another primary, and until readiness was 200 again."""
        seen: dict = {}  # each time the poll that first saw it started, seconds after the fault
        deadline = fault_at + within
        while "ready" not in seen:
            assert time.monotonic() < deadline, f"no failover within {within}s: {seen}"
            now = time.monotonic() - fault_at
            ready = readiness(self.ha) == 200
            if not ready:
                seen.setdefault("unready", now)
            if "primary" not in seen and (named := primary(self.ha)) not in (old, ""):
                seen["primary"] = named
                seen["promoted"] = now  # at most one poll late, as the others
            if ready and "unready" in seen and "primary" in seen:
                seen["ready"] = now
            time.sleep(0.1)
        return seen

    def counting_resumes(self) -> None:
        after = len(ledger(self.ha))
        wait_for(lambda: len(ledger(self.ha)) >= after + 3, 60, 0.5, "counting to resume")
        polled = len(printed_counts(self.ha))
        wait_for(lambda: len(printed_counts(self.ha)) > polled, 30, 0.5, "the poller to go on")

    def ledger_adds_up(self) -> dict:
        """The sums, once both counters stopped: the ordinary counter retries every failure
        with its key, so what it acknowledged is exactly what it added; the load mode does
        not retry, so each of its failures may or may not have been counted (an unknown
        outcome), and only its acknowledged POSTs are sure to be."""
        load = {"ok": 0, "failed": 0}
        if self.load:
            run(["docker", "wait", self.load], timeout=LOAD_SECONDS + 60)
            logs = run(["docker", "logs", self.load])
            run(["docker", "rm", "-f", self.load])
            [load] = [e for e in json_lines(logs) if e.get("event") == "load_summary"]
        self.ha.compose("stop", "counter")  # SIGTERM: it finishes its request, then exits
        new = ledger(self.ha)[self.seen :]
        gained = count(self.ha) - self.start_count
        acknowledged = sum(e["increment"] for e in new)
        self.ha.compose("start", "counter")
        assert len({e["idempotency_key"] for e in new}) == len(new)
        sums = {
            "counter_acknowledged": acknowledged,
            "load_acknowledged": load["ok"],
            "load_failed": load["failed"],
            "gained": gained,
        }
        unknown_counted = gained - acknowledged - load["ok"]
        assert 0 <= unknown_counted <= load["failed"], sums  # 0 acknowledged lost
        return {**sums, "load_failures_counted": unknown_counted}


def test_the_stack_starts_with_one_primary_two_replicas_and_counts(ha):
    assert primary(ha) == "redis"
    assert [role(ha, node) for node in NODES.values()] == ["master", "slave", "slave"]
    wait_for(lambda: count(ha) > 0, 60, 0.5, "the count to rise")


@pytest.mark.parametrize("load", [False, True], ids=["counter", "counter-and-load"])
def test_primary_killed_while_counting_loses_and_doubles_nothing(ha, load):
    watch = Watch(ha, load)
    old = primary(ha)
    killed_at = time.monotonic()
    run(["docker", "kill", "--signal", "KILL", container_id(ha, old)])
    seen = watch.failover(old, killed_at)
    new = seen["primary"]
    watch.counting_resumes()
    ha.compose("start", old)  # Docker does not restart a container it was told to kill
    wait_for(lambda: role(ha, old) == "slave", 90, 0.5, f"{old} to rejoin as a replica")
    assert primary(ha) == new
    sums = watch.ledger_adds_up()
    print(f"\nSIGKILL of the primary: {seen}; ledger {sums}")
    if not load:  # the ordinary counter alone: exactly what it acknowledged
        assert sums["gained"] == sums["counter_acknowledged"]


def test_primary_frozen_then_thawed_acknowledges_nothing_it_then_loses(ha):
    """`docker pause` is a partition as the sentinels see it. Thawed after the failover, the
    stale primary refuses writes (NOREPLICAS: its replicas left it; or READONLY once the
    sentinels made it a replica), and the ledger adds up."""
    watch = Watch(ha)
    old = primary(ha)
    frozen = container_id(ha, old)
    paused_at = time.monotonic()
    run(["docker", "pause", frozen])
    try:
        seen = watch.failover(old, paused_at)
        new = seen["primary"]
        watch.counting_resumes()
    finally:
        run(["docker", "unpause", frozen])
    refused = valkey(ha, old, "SET", "stale-write", "1")
    assert refused.startswith(("NOREPLICAS", "READONLY")), refused
    wait_for(lambda: role(ha, old) == "slave", 60, 0.5, f"{old} to rejoin as a replica")
    assert valkey(ha, new, "EXISTS", "stale-write") == "0"
    sums = watch.ledger_adds_up()
    print(f"\ndocker pause of the primary: {seen}; ledger {sums}")
    assert sums["gained"] == sums["counter_acknowledged"]  # 0 lost, 0 doubled


def test_primary_restarted_at_once_waits_for_the_failover_and_loses_nothing(ha):
    """`docker restart -t 0`: the primary is killed and back before the sentinels noticed.
    Still named the primary, it waits for the failover (valkey-ha.sh) and rejoins as a
    replica, rather than hand the replicas its own data."""
    watch = Watch(ha)
    old = primary(ha)
    restarted_at = time.monotonic()
    run(["docker", "restart", "--time", "0", container_id(ha, old)])
    seen = watch.failover(old, restarted_at)
    watch.counting_resumes()
    wait_for(lambda: role(ha, old) == "slave", 90, 0.5, f"{old} to rejoin as a replica")
    assert "still named the primary; waiting for a failover" in ha.logs(old)
    sums = watch.ledger_adds_up()
    print(f"\ndocker restart -t 0 of the primary: {seen}; ledger {sums}")
    assert sums["gained"] == sums["counter_acknowledged"]


def fail_over(ha) -> str:
    """A failover on demand (SENTINEL FAILOVER): the new primary, once the old follows it."""
    old = primary(ha)
    valkey(ha, "sentinel-1", "SENTINEL", "FAILOVER", "mymaster", port=26379)
    wait_for(lambda: primary(ha) not in (old, ""), 60, 0.5, "the sentinels to fail over")
    wait_for(lambda: role(ha, old) == "slave", 60, 0.5, f"{old} to follow the new primary")
    return primary(ha)


def test_a_restart_of_the_whole_stack_keeps_the_current_primary_and_the_count(ha):
    """After a failover, `down` (volumes kept) and `up`: the sentinels remember which node is
    primary now, so the first one (`redis`) does not come back as primary with older data."""
    current = fail_over(ha)
    if current == "redis":  # the first primary: one more, and it is another node
        current = fail_over(ha)
    watch = Watch(ha)
    watch.ledger_adds_up()
    ha.compose("stop", "counter")
    before = count(ha)
    ha.compose("down", "--timeout", "30")  # no --volumes: the data and what sentinels learnt
    ha.start()
    assert primary(ha) == current
    assert [role(ha, node) for node in NODES.values()].count("master") == 1
    wait_for(lambda: len(ledger(ha)) >= 3, 60, 0.5, "the counter to count again")
    ha.compose("stop", "counter")
    acknowledged = sum(e["increment"] for e in ledger(ha))  # the new counter's, since the up
    assert count(ha) == before + acknowledged
    ha.compose("start", "counter")


def test_the_page_status_shows_the_primary_and_its_replicas(ha):
    """The page's JSON: the node that answers is the primary, with two replicas streaming
    (once a rejoining one has synchronised), and the sentinels name it."""

    def replication() -> dict:
        status = requests.get(ha.server_url + "/api/status", timeout=5).json()
        return status["tiers"]["data"]["replication"]

    shown = wait_for(
        lambda: (
            [r["state"] for r in replication()["replicas"]] == ["online", "online"]
            and replication()
        ),
        60,
        0.5,
        "both replicas online on the page",
    )
    assert shown["role"] == "master"
    address = next(a for a, node in NODES.items() if node == primary(ha))
    assert shown["sentinels"]["primary"] == f"{address}:6379"
    assert shown["sentinels"]["sentinels"] == 3
