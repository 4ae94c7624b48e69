"""The server's settings, read once from the environment.

`Settings` is what the app needs (Redis, limits, the reset key); `ServeSettings` is how
gunicorn serves it. microservices-server reads both before it starts gunicorn, so a bad value
stops it with one line naming the variable (exit 2) instead of a traceback in every worker.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from microservices_common.config import ConfigError, env_float, env_int, env_str, env_url

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
DB_PATH = re.compile(r"^/?(\d+)?/?$")


def redis_url(name: str, default: str) -> str:
    """A Redis URL that redis-py will use exactly as written, or a ConfigError."""
    value = env_url(name, default, REDIS_SCHEMES)
    parts = urlsplit(value)
    if parts.scheme != "unix" and not DB_PATH.match(parts.path):
        raise ConfigError(name, value, "the path must be a database number, like /0")
    for option in parse_qs(parts.query, keep_blank_values=True):
        if option in OWNED_OPTIONS:
            raise ConfigError(name, value, f"{option} is set by {OWNED_OPTIONS[option]}")
    import redis  # here, not at the top: gunicorn's master reads ServeSettings only

    try:
        # Build (not connect) a connection, as the server will: redis-py rejects a bad value
        # or an unknown option only here, and otherwise only on the first request.
        redis.ConnectionPool.from_url(value).make_connection()
    except (TypeError, ValueError) as exc:
        raise ConfigError(name, value, str(exc)) from None
    return value


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

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            redis_url=redis_url("REDIS_URL", cls.redis_url),
            redis_password=env_str("REDIS_PASSWORD"),
            redis_timeout=env_float("REDIS_TIMEOUT", cls.redis_timeout, 0.01, 30),
            api_key=env_str("API_KEY"),
            max_increment=env_int("MAX_INCREMENT", cls.max_increment, 1, 2**31),
            idempotency_ttl=env_int("IDEMPOTENCY_TTL", cls.idempotency_ttl, 1, 30 * 24 * 3600),
        )


@dataclass(frozen=True)
class ServeSettings:
    """gunicorn's settings (gunicorn_conf.py turns them into its configuration)."""

    port: int = 8080
    workers: int = 1  # WEB_CONCURRENCY; in Kubernetes, scale with replicas first
    threads: int = 8
    timeout: int = 30
    # After the drain: the time in-flight requests get to finish.
    graceful_timeout: int = 20
    # After SIGTERM: readiness answers 503 while requests are still served, so that whoever
    # polls readiness (a load balancer, compose's healthcheck) stops sending traffic first.
    drain_delay: float = 3.0
    # Where every worker's metrics add up; by default a fresh folder when workers > 1.
    metrics_dir: str | None = None

    @classmethod
    def from_env(cls) -> ServeSettings:
        return cls(
            port=env_int("PORT", cls.port, 1, 65535),
            workers=env_int("WEB_CONCURRENCY", cls.workers, 1, 64),
            threads=env_int("GUNICORN_THREADS", cls.threads, 1, 256),
            timeout=env_int("GUNICORN_TIMEOUT", cls.timeout, 1, 3600),
            graceful_timeout=env_int("GRACEFUL_TIMEOUT", cls.graceful_timeout, 1, 3600),
            drain_delay=env_float("DRAIN_DELAY", cls.drain_delay, 0, 300),
            metrics_dir=writable_dir("PROMETHEUS_MULTIPROC_DIR"),
        )


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
