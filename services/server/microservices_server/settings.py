"""The server's settings, read once from the environment.

`Settings` is what the app needs (Redis, limits, the reset key); `ServeSettings` is how
gunicorn serves it. microservices-server reads both before it starts gunicorn, so a bad value
stops it with one line naming the variable (exit 2) instead of a traceback in every worker.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from microservices_common.config import (
    ConfigError,
    env_choice,
    env_float,
    env_int,
    env_str,
    env_url,
)

from .lifecycle import MULTIPROC_ENV
from .sentinel import check_master_name, parse_sentinels

REDIS_SCHEMES = ("redis", "rediss", "unix")
# Options the server sets itself: in the URL they would silently undo a promise (a
# `socket_timeout=30` would hold a worker 30 s on a stuck Redis instead of answering 503).
OWNED_OPTIONS = {
    "socket_timeout": "REDIS_TIMEOUT",
    "socket_connect_timeout": "REDIS_TIMEOUT",
    "timeout": "REDIS_TIMEOUT",
    "retry_on_timeout": "the server (it never retries hidden from the client)",
    "retry_on_error": "the server (it never retries hidden from the client)",
    "health_check_interval": "the server",
}
FLAG_VALUES = {"true", "false", "yes", "no", "1", "0"}
DB_PATH = re.compile(r"^/?(\d+)?/?$")


def redis_url(name: str, default: str) -> str:
    """A Redis URL that redis-py will use exactly as written, or a ConfigError."""
    value = env_url(name, default, REDIS_SCHEMES)
    parts = urlsplit(value)
    if parts.scheme != "unix" and not DB_PATH.match(parts.path):
        raise ConfigError(name, value, "the path must be a database number, like /0")
    # Imported here, not at the top: gunicorn's master imports this module (for ServeSettings)
    # and must not import redis-py, which each gevent worker imports only once it has patched
    # the socket module, so that redis-py's sockets are cooperative.
    import redis
    from redis.connection import URL_QUERY_ARGUMENT_PARSERS, to_bool

    for option, given in parse_qs(parts.query, keep_blank_values=True).items():
        if option in OWNED_OPTIONS:
            raise ConfigError(name, value, f"{option} is set by {OWNED_OPTIONS[option]}")
        # redis-py reads any value but a few "false" spellings as true: `maybe` would be on.
        is_flag = URL_QUERY_ARGUMENT_PARSERS.get(option) is to_bool
        if is_flag and any(flag.lower() not in FLAG_VALUES for flag in given):
            raise ConfigError(name, value, f"{option} must be true or false")

    try:
        # Build (not connect) a connection, as the server will: redis-py rejects a bad value
        # or an unknown option only here, and otherwise only on the first request.
        redis.ConnectionPool.from_url(value).make_connection()
    except (TypeError, ValueError) as exc:
        raise ConfigError(name, value, str(exc)) from None
    return value


def sentinels_setting(name: str, url_name: str) -> tuple[tuple[str, int], ...]:
    """The sentinels' addresses; () when unset. Sentinel gives plain TCP addresses, so the
    URL's TLS or unix socket could not be kept: refused rather than silently dropped."""
    value = env_str(name)
    if value is None:
        return ()
    url = env_str(url_name, Settings.redis_url)
    if not url.strip().startswith("redis://"):
        raise ConfigError(name, value, f"works with a redis:// {url_name} only")
    return parse_sentinels(name, value)


@dataclass(frozen=True)
class Settings:
    redis_url: str = "redis://localhost:6379/0"
    # When set, the Redis password whatever REDIS_URL says: a Secret can hold it as it is,
    # with no URL escaping.
    redis_password: str | None = None
    # Short on purpose: with Redis gone or stuck, a request fails in well under a second
    # with 503 instead of holding a worker thread.
    redis_timeout: float = 0.5
    api_key: str | None = None
    max_increment: int = 1000
    # How long a replay of an Idempotency-Key returns the first answer. It must outlast the
    # counter's RETRY_DEADLINE (300 s), after which the counter stops retrying a key; and it
    # bounds the memory the records take (see README, "What is guaranteed").
    idempotency_ttl: int = 600
    max_body_bytes: int = 1024
    # High availability (sentinel.py; README, "High availability"). REDIS_SENTINELS: find the
    # primary through these sentinels, under REDIS_MASTER_NAME (Sentinel's own example name);
    # REDIS_URL then gives only the database number and options, never the address.
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_master_name: str = "mymaster"
    # Acknowledged means replicated: an increment (or reset) answers 200 only once this many
    # replicas confirmed it (WAIT) within REDIS_WAIT_TIMEOUT seconds; else 503, the outcome
    # unknown, and the counter retries the same Idempotency-Key. 0: no WAIT, as before.
    redis_wait_replicas: int = 0
    redis_wait_timeout: float = 0.5
    # The page shows a counter or poller "stale" once it has not been seen for this long
    # (they call every INTERVAL, 1 s); it is forgotten after 12 times as long.
    client_stale_after: float = 10.0
    # The fault switches (faults.py), for learning: on in compose, the dev overlay and the
    # lessons; off in staging and prod, where every /faults path is a 404.
    faults_enabled: bool = False

    @property
    def clients_ttl(self) -> int:
        return math.ceil(12 * self.client_stale_after)

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            redis_url=redis_url("REDIS_URL", cls.redis_url),
            redis_password=env_str("REDIS_PASSWORD"),
            redis_timeout=env_float("REDIS_TIMEOUT", cls.redis_timeout, 0.01, 30),
            redis_sentinels=sentinels_setting("REDIS_SENTINELS", "REDIS_URL"),
            redis_master_name=check_master_name(
                "REDIS_MASTER_NAME", env_str("REDIS_MASTER_NAME", cls.redis_master_name)
            ),
            redis_wait_replicas=env_int("REDIS_WAIT_REPLICAS", cls.redis_wait_replicas, 0, 100),
            redis_wait_timeout=env_float("REDIS_WAIT_TIMEOUT", cls.redis_wait_timeout, 0.001, 30),
            api_key=env_str("API_KEY"),
            max_increment=env_int("MAX_INCREMENT", cls.max_increment, 1, 2**31),
            idempotency_ttl=env_int("IDEMPOTENCY_TTL", cls.idempotency_ttl, 1, 30 * 24 * 3600),
            client_stale_after=env_float("CLIENT_STALE_AFTER", cls.client_stale_after, 0.5, 3600),
            faults_enabled=env_choice("FAULTS_ENABLED", "false", ("true", "false")) == "true",
        )


# Where a container sees its own CPU limit: cgroup v2, else v1 (Docker and Kubernetes write
# `--cpus` and `resources.limits.cpu` there).
CGROUP_V2_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_CPU = Path("/sys/fs/cgroup/cpu")
MAX_WORKERS = 64
# ACCESS_LOG: which requests get an access-log line (see access_log.py).
ACCESS_LOG_CHOICES = ("api", "all", "off")
# GUNICORN_WORKER_CLASS: gevent (the default: one thread, a greenlet per connection, redis-py's
# sockets made cooperative) or gthread (GUNICORN_THREADS threads per worker).
WORKER_CLASSES = ("gevent", "gthread")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:  # absent (no such cgroup version here) or unreadable
        return None


def cgroup_cpu_quota(
    cpu_max: Path = CGROUP_V2_CPU_MAX,
    cfs_quota: Path = CGROUP_V1_CPU / "cpu.cfs_quota_us",
    cfs_period: Path = CGROUP_V1_CPU / "cpu.cfs_period_us",
) -> float | None:
    """The CPUs the cgroup quota allows (1.5 for `--cpus 1.5`), or None when there is none.

    cgroup v2's cpu.max holds "QUOTA PERIOD" ("max PERIOD": no limit); v1 has the two in
    files of their own (quota -1: no limit)."""
    v2 = _read(cpu_max)
    if v2 is not None:
        quota, _, period = v2.partition(" ")
    else:
        quota, period = _read(cfs_quota), _read(cfs_period)
    try:
        cpus = int(quota) / int(period)
    except (TypeError, ValueError, ZeroDivisionError):  # "max", absent, or unreadable
        return None
    return cpus if cpus > 0 else None


def affinity_cpus() -> int:
    """How many CPUs this process may run on. PyPy has no os.sched_getaffinity: there, the
    kernel's Cpus_allowed_list, else every CPU of the machine."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return cpus_allowed(_read(Path("/proc/self/status")) or "") or os.cpu_count() or 1


def cpus_allowed(status: str) -> int | None:
    """The CPUs of /proc/<pid>/status's Cpus_allowed_list ("0-3,6": 5), or None."""
    for line in status.splitlines():
        name, _, ranges = line.partition(":")
        if name == "Cpus_allowed_list":
            bounds = [part.split("-") for part in ranges.strip().split(",") if part]
            return sum(int(pair[-1]) - int(pair[0]) + 1 for pair in bounds)
    return None


def usable_cpus(quota: float | None = None, affinity: int | None = None) -> int:
    """The CPUs this process may use: the fewest of the cgroup quota (rounded up: a worker
    more can use 1.5 CPUs, a worker fewer cannot) and the CPUs it may run on; at least 1.

    Without arguments, read from this process's cgroup and affinity."""
    if affinity is None:
        affinity = affinity_cpus()
    if quota is None:
        quota = cgroup_cpu_quota()
    limits = [affinity] + ([math.ceil(quota)] if quota else [])
    return max(1, min(limits))


@dataclass(frozen=True)
class ServeSettings:
    """gunicorn's settings (gunicorn_conf.py turns them into its configuration)."""

    port: int = 8080
    # WEB_CONCURRENCY: by default one worker process per CPU the container may use (one Python
    # process uses one CPU at most). In Kubernetes, scale with replicas first.
    workers: int = 1
    worker_class: str = "gevent"
    threads: int = 8  # gthread only
    timeout: int = 30
    # After the drain: the time in-flight requests get to finish.
    graceful_timeout: int = 20
    # After SIGTERM: readiness answers 503 while requests are still served, so that whoever
    # polls readiness (a load balancer, compose's healthcheck) stops sending traffic first.
    drain_delay: float = 3.0
    # Where every worker's metrics add up; by default a fresh folder when workers > 1.
    metrics_dir: str | None = None
    # Which requests get an access-log line: see access_log.py.
    access_log: str = "api"
    # A request's body must arrive within this many seconds of its head, else 408 and the
    # connection closes (body_deadline.py): a body trickled a byte at a time held a
    # connection for ever. The API's bodies are 1 KiB at most.
    body_timeout: float = 5.0
    # Each worker's warm-up before its first connection (warmup.py): for PyPy, whose JIT is
    # cold at first. The gevent worker only (it answers the warm-up over a socket pair).
    warmup_seconds: float = 0.0

    @classmethod
    def from_env(cls) -> ServeSettings:
        settings = cls(
            port=env_int("PORT", cls.port, 1, 65535),
            workers=env_int("WEB_CONCURRENCY", min(usable_cpus(), MAX_WORKERS), 1, MAX_WORKERS),
            worker_class=env_choice("GUNICORN_WORKER_CLASS", cls.worker_class, WORKER_CLASSES),
            threads=env_int("GUNICORN_THREADS", cls.threads, 1, 256),
            timeout=env_int("GUNICORN_TIMEOUT", cls.timeout, 1, 3600),
            graceful_timeout=env_int("GRACEFUL_TIMEOUT", cls.graceful_timeout, 1, 3600),
            drain_delay=env_float("DRAIN_DELAY", cls.drain_delay, 0, 300),
            metrics_dir=writable_dir(MULTIPROC_ENV),
            access_log=env_choice("ACCESS_LOG", cls.access_log, ACCESS_LOG_CHOICES),
            body_timeout=env_float("BODY_TIMEOUT", cls.body_timeout, 0.1, 60),
            warmup_seconds=env_float("WARMUP_SECONDS", cls.warmup_seconds, 0, 120),
        )
        if settings.warmup_seconds and settings.worker_class != "gevent":
            raise ConfigError(
                "WARMUP_SECONDS", str(settings.warmup_seconds), "needs GUNICORN_WORKER_CLASS=gevent"
            )
        return settings


def writable_dir(name: str) -> str | None:
    """A folder that is (or can be made) and takes a file: tried, not guessed from the mode
    bits, which root and read-only mounts make misleading."""
    value = env_str(name)
    if value is None:
        return None
    try:
        Path(value).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=value):
            pass
    except OSError as exc:
        raise ConfigError(name, value, f"not a writable folder ({exc.strerror})") from None
    return value
