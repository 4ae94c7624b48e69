"""How gunicorn is set up: WEB_CONCURRENCY's default from the CPUs the container may use (cgroup
v2 and v1 files as the kernel writes them), the worker class and the access log."""

import os
from pathlib import Path

import pytest
from microservices_common.config import ConfigError
from microservices_server.settings import (
    ServeSettings,
    cgroup_cpu_quota,
    cpus_allowed,
    usable_cpus,
)


def cgroup_files(tmp_path, v2=None, v1_quota=None, v1_period=None):
    """The three files in tmp_path, each written only when given (absent otherwise)."""
    paths = {
        "cpu_max": tmp_path / "cpu.max",
        "cfs_quota": tmp_path / "cpu.cfs_quota_us",
        "cfs_period": tmp_path / "cpu.cfs_period_us",
    }
    for key, content in (("cpu_max", v2), ("cfs_quota", v1_quota), ("cfs_period", v1_period)):
        if content is not None:
            paths[key].write_text(content + "\n")
    return paths


@pytest.mark.parametrize(
    ("files", "cpus"),
    [
        ({"v2": "max 100000"}, None),  # v2, no limit
        ({"v2": "150000 100000"}, 1.5),  # docker run --cpus 1.5
        ({"v2": "100000 100000"}, 1.0),  # Kubernetes limits.cpu: "1"
        ({"v2": "25000 100000"}, 0.25),  # limits.cpu: 250m
        ({"v1_quota": "-1", "v1_period": "100000"}, None),  # v1, no limit
        ({"v1_quota": "200000", "v1_period": "100000"}, 2.0),
        ({"v1_quota": "50000", "v1_period": "100000"}, 0.5),
        ({"v1_quota": "50000"}, None),  # no period: not a quota we can read
        ({}, None),  # no cgroup files at all (not in a container)
        ({"v2": "garbage"}, None),
    ],
)
def test_cgroup_quota(tmp_path, files, cpus):
    assert cgroup_cpu_quota(**cgroup_files(tmp_path, **files)) == cpus


def test_cgroup_v2_wins_over_v1(tmp_path):
    files = cgroup_files(tmp_path, v2="300000 100000", v1_quota="100000", v1_period="100000")
    assert cgroup_cpu_quota(**files) == 3.0


@pytest.mark.parametrize(
    ("quota", "affinity", "cpus"),
    [
        (None, 2, 2),  # no quota: every CPU it may run on
        (1.0, 8, 1),  # the base manifests' limit of 1 CPU on a big node
        (0.25, 8, 1),  # a quarter of a CPU still needs one worker
        (1.5, 8, 2),  # rounded up: two workers can use 1.5 CPUs, one cannot
        (4.0, 2, 2),  # pinned to 2 CPUs (taskset, cpuset): the affinity is the limit
    ],
)
def test_usable_cpus_is_the_fewest_of_quota_and_affinity(quota, affinity, cpus):
    assert usable_cpus(quota, affinity) == cpus


def test_usable_cpus_of_this_process_is_at_most_its_affinity():
    assert 1 <= usable_cpus() <= len(os.sched_getaffinity(0))


def test_web_concurrency_defaults_to_the_usable_cpus_and_wins_when_set(monkeypatch):
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    assert ServeSettings.from_env().workers == usable_cpus()
    monkeypatch.setenv("WEB_CONCURRENCY", "5")
    assert ServeSettings.from_env().workers == 5


def test_worker_class_and_access_log(monkeypatch):
    for name in ("GUNICORN_WORKER_CLASS", "ACCESS_LOG"):
        monkeypatch.delenv(name, raising=False)
    settings = ServeSettings.from_env()
    assert (settings.worker_class, settings.access_log) == ("gevent", "api")
    monkeypatch.setenv("GUNICORN_WORKER_CLASS", "gthread")
    monkeypatch.setenv("ACCESS_LOG", "off")
    settings = ServeSettings.from_env()
    assert (settings.worker_class, settings.access_log) == ("gthread", "off")
    monkeypatch.setenv("GUNICORN_WORKER_CLASS", "sync")
    with pytest.raises(ConfigError, match="GUNICORN_WORKER_CLASS"):
        ServeSettings.from_env()


def test_the_kernels_cpu_list_counts_as_the_affinity_does():
    # PyPy has no os.sched_getaffinity: the server reads /proc/self/status there.
    assert cpus_allowed(Path("/proc/self/status").read_text()) == len(os.sched_getaffinity(0))
    assert cpus_allowed("Name:\tx\nCpus_allowed_list:\t0-3,6\n") == 5
    assert cpus_allowed("Name:\tx\n") is None


def test_warmup_is_off_by_default_and_needs_the_gevent_worker(monkeypatch):
    for name in ("GUNICORN_WORKER_CLASS", "WARMUP_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    assert ServeSettings.from_env().warmup_seconds == 0
    monkeypatch.setenv("WARMUP_SECONDS", "15")
    assert ServeSettings.from_env().warmup_seconds == 15
    # gthread has no worker.handle(listener, socket, address) to answer the warm-up with.
    monkeypatch.setenv("GUNICORN_WORKER_CLASS", "gthread")
    with pytest.raises(ConfigError, match="WARMUP_SECONDS.*needs GUNICORN_WORKER_CLASS=gevent"):
        ServeSettings.from_env()
