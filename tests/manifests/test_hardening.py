"""The hardening rules on every overlay, every lesson and docker-compose.yml; and each rule on a
planted defect (the layout it replaced among them), to show that it bites."""

from __future__ import annotations

import copy

import pytest

from tests.manifests import compose
from tests.manifests.hardening import (
    heartbeat_problems,
    heartbeats,
    is_redis,
    redis_problems,
    redis_settings,
    retry_problems,
)
from tests.manifests.render import LESSONS, OVERLAYS, all_sets, lesson_objects
from tests.manifests.rules import containers, pod_specs


def every_set(rendered):
    yield from all_sets(rendered)
    yield "compose", compose.as_pod(compose.load())


def deployment(objects: list[dict], name: str) -> dict:
    return next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name)


def container(obj: dict, name: str) -> dict:
    return next(c for c in obj["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def set_env(c: dict, name: str, value: str) -> None:
    c["env"] = [e for e in c.get("env", []) if e["name"] != name] + [{"name": name, "value": value}]


def as_pod(spec: dict) -> list[dict]:
    return [{"kind": "Pod", "metadata": {"name": "planted"}, "spec": spec}]


# 1. Each worker has its own heartbeat.


def test_no_two_containers_share_a_heartbeat(rendered):
    problems = [
        p for where, objects in every_set(rendered) for p in heartbeat_problems(where, objects)
    ]
    assert problems == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_worker_beats_on_a_tmp_of_its_own(rendered, overlay):
    spec = deployment(rendered[overlay], "support-tier")["spec"]["template"]["spec"]
    assert heartbeats(spec) == {
        "counter": ("volume counter-tmp", "heartbeat"),
        "poller": ("volume poller-tmp", "heartbeat"),
    }


def test_compose_workers_beat_on_their_own_tmpfs():
    [pod] = compose.as_pod(compose.load())
    assert heartbeats(pod["spec"]) == {
        "counter": ("volume counter-tmpfs-0", "heartbeat"),
        "poller": ("volume poller-tmpfs-0", "heartbeat"),
    }


def test_the_heartbeat_rule_fails_on_the_old_shared_tmp(rendered):
    """The layout this replaced: one emptyDir `tmp` at /tmp in both workers."""
    spec = copy.deepcopy(deployment(rendered["dev"], "support-tier")["spec"]["template"]["spec"])
    spec["volumes"] = [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}]
    for c in spec["containers"]:
        c["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"}]
    [problem] = heartbeat_problems("planted", as_pod(spec))
    assert "counter and poller share one heartbeat (heartbeat on volume tmp)" in problem


def worker(name: str, mounts: list[tuple], heartbeat_file: str | None = None) -> dict:
    c = {"name": name, "image": f"microservices/{name}:1.1.0", "env": []}
    c["volumeMounts"] = [
        {"name": volume, "mountPath": path, **({"subPath": sub} if sub else {})}
        for volume, path, sub in mounts
    ]
    if heartbeat_file:
        set_env(c, "HEARTBEAT_FILE", heartbeat_file)
    return c


@pytest.mark.parametrize(
    ("counter", "poller", "shared"),
    [
        # No volume over /tmp: each writes into its own container filesystem (the lessons).
        (worker("counter", []), worker("poller", []), False),
        # One volume, two files on it.
        (
            worker("counter", [("tmp", "/tmp", None)], "/tmp/counter-heartbeat"),
            worker("poller", [("tmp", "/tmp", None)], "/tmp/poller-heartbeat"),
            False,
        ),
        # One volume, a sub-path each.
        (
            worker("counter", [("tmp", "/tmp", "counter")]),
            worker("poller", [("tmp", "/tmp", "poller")]),
            False,
        ),
        # A nested mount wins over /tmp for the file below it.
        (
            worker("counter", [("tmp", "/tmp", None), ("beat", "/tmp/beat", None)], "/tmp/beat/x"),
            worker("poller", [("tmp", "/tmp", None)], "/tmp/x"),
            False,
        ),
        # Different paths in the containers, one file on the volume.
        (
            worker("counter", [("tmp", "/tmp", None)]),
            worker("poller", [("tmp", "/run/beat", None)], "/run/beat/heartbeat"),
            True,
        ),
        # Different sub-paths that reach the same file.
        (
            worker("counter", [("tmp", "/tmp", "a")], "/tmp/b/heartbeat"),
            worker("poller", [("tmp", "/tmp", "a/b")]),
            True,
        ),
    ],
)
def test_the_heartbeat_rule_resolves_files_to_volumes(counter, poller, shared):
    volumes = {m["name"] for c in (counter, poller) for m in c["volumeMounts"]}
    spec = {
        "containers": [counter, poller],
        "volumes": [{"name": v, "emptyDir": {}} for v in volumes],
    }
    assert bool(heartbeat_problems("planted", as_pod(spec))) == shared


def test_the_heartbeat_rule_reads_compose_volumes():
    """A named volume mounted at /tmp in both workers is shared, as an emptyDir in a pod."""
    planted = copy.deepcopy(compose.load())
    for name in ("counter", "poller"):
        planted["services"][name].pop("tmpfs")
        planted["services"][name]["volumes"] = ["beats:/tmp"]
    [problem] = heartbeat_problems("compose", compose.as_pod(planted))
    assert "counter and poller share one heartbeat" in problem


# 2. Redis has a memory bound, and only keys with a TTL can be evicted.


def test_every_redis_has_a_memory_bound_that_spares_the_count(rendered):
    problems = [p for where, objects in all_sets(rendered) for p in redis_problems(where, objects)]
    assert problems + compose.redis_problems(compose.load()) == []


def test_the_rule_finds_every_redis(rendered):
    def redises(objects):
        return [c for _, _, s in pod_specs(objects) for c in containers(s) if is_redis(c)]

    for overlay in OVERLAYS:
        assert len(redises(rendered[overlay])) == 1, overlay
    assert len([lesson for lesson in LESSONS if redises(lesson_objects(lesson))]) >= 6


@pytest.mark.parametrize(("overlay", "maxmemory"), [("dev", "176mb"), ("prod", "1100mb")])
def test_the_overlays_size_maxmemory_to_their_limit(rendered, overlay, maxmemory):
    """prod's bigger limit comes with its own memory.conf, merged into the base's ConfigMap."""
    objects = rendered[overlay]
    redis = container(deployment(objects, "data-tier"), "redis")  # the adapter may be beside it
    config = next(o for o in objects if o["kind"] == "ConfigMap")

    def read_file(path):
        return config["data"].get(path.removeprefix("/etc/redis/"))

    settings = redis_settings(redis, read_file)
    assert settings["maxmemory"] == maxmemory
    assert settings["maxmemory-policy"] == "volatile-ttl"
    # Sampled eviction: 10 keys, not the default 5, keep the young records (README, measured).
    assert settings["maxmemory-samples"] == "10"
    assert settings["dir"] == "/data"  # the includes were followed, not just the first file


def planted_lesson_13(config: str | None = None, limit: str | None = "128Mi", args=None):
    objects = copy.deepcopy(lesson_objects("13-configmaps-secrets"))
    redis = container(deployment(objects, "data-tier"), "redis")
    if config is not None:
        next(o for o in objects if o["kind"] == "ConfigMap")["data"]["redis.conf"] = config
    if limit is None:
        del redis["resources"]["limits"]["memory"]
    else:
        redis["resources"]["limits"]["memory"] = limit
    if args is not None:
        redis["args"] = args
    return redis_problems("planted", objects)


@pytest.mark.parametrize(
    ("planted", "complaint"),
    [
        # Lesson 13 as it was.
        (dict(config="maxmemory 64mb\nmaxmemory-policy noeviction\n"), "noeviction"),
        (dict(config="maxmemory-policy volatile-ttl\n"), "no maxmemory"),
        (dict(limit="100Mi"), "not within 60% of the memory limit (100 MiB)"),
        (dict(limit=None), "no memory limit"),
        # The command line comes after the file and wins.
        (dict(args=["/etc/redis/redis.conf", "--maxmemory-policy", "allkeys-lru"]), "allkeys-lru"),
        (dict(args=["valkey-server"]), "no maxmemory"),
    ],
)
def test_the_redis_rule_fails_on(planted, complaint):
    assert planted_lesson_13() == []
    problems = planted_lesson_13(**planted)
    assert problems and complaint in " ".join(problems), problems


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ("no maxmemory", "no maxmemory"),
        ("allkeys", "allkeys-lru"),
        ("no mem_limit", "no memory limit"),
    ],
)
def test_the_compose_redis_rule_fails_on(change, complaint):
    planted = copy.deepcopy(compose.load())
    redis = planted["services"]["redis"]
    if change == "no mem_limit":
        del redis["mem_limit"]
    else:
        new = {"no maxmemory": "", "allkeys": "maxmemory 176mb\\nmaxmemory-policy allkeys-lru\\n"}
        old = "maxmemory 176mb\\nmaxmemory-policy volatile-ttl\\n"
        assert old in redis["command"][0]
        redis["command"] = [redis["command"][0].replace(old, new[change])]
    problems = compose.redis_problems(planted)
    assert problems and complaint in " ".join(problems), problems


# 4. The counter stops retrying before the server forgets the key.


def test_retries_end_before_the_idempotency_records_expire(rendered):
    problems = [p for where, objects in every_set(rendered) for p in retry_problems(where, objects)]
    assert problems == []


@pytest.mark.parametrize(
    ("counter_env", "server_env", "fails"),
    [
        ({"RETRY_DEADLINE": "900"}, {}, True),  # the server forgets after its default 600 s
        ({}, {"IDEMPOTENCY_TTL": "120"}, True),  # the counter retries for its default 300 s
        ({"RETRY_DEADLINE": "600"}, {"IDEMPOTENCY_TTL": "600"}, True),  # equal is too late
        ({"RETRY_DEADLINE": "60"}, {"IDEMPOTENCY_TTL": "120"}, False),
        ({}, {"IDEMPOTENCY_TTL": ""}, False),  # empty means the default
    ],
)
def test_the_retry_rule(rendered, counter_env, server_env, fails):
    objects = copy.deepcopy(rendered["prod"])
    for name, env in (("counter", counter_env), ("server", server_env)):
        tier = "support-tier" if name == "counter" else "app-tier"
        for key, value in env.items():
            set_env(container(deployment(objects, tier), name), key, value)
    assert bool(retry_problems("planted", objects)) == fails


def test_the_retry_rule_reads_compose():
    planted = copy.deepcopy(compose.load())
    planted["services"]["counter"]["environment"]["RETRY_DEADLINE"] = "${RETRY_DEADLINE:-900}"
    [problem] = retry_problems("compose", compose.as_pod(planted))
    assert "RETRY_DEADLINE 900 s is not below server's IDEMPOTENCY_TTL 600 s" in problem
