"""The server's settings, read once from the environment."""

from __future__ import annotations

from dataclasses import dataclass

from microservices_common.config import env_float, env_int, env_str, env_url

REDIS_SCHEMES = ("redis", "rediss", "unix")


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
    idempotency_ttl: int = 24 * 3600
    max_body_bytes: int = 1024

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            redis_url=env_url("REDIS_URL", cls.redis_url, REDIS_SCHEMES),
            redis_password=env_str("REDIS_PASSWORD"),
            redis_timeout=env_float("REDIS_TIMEOUT", cls.redis_timeout, 0.01, 30),
            api_key=env_str("API_KEY"),
            max_increment=env_int("MAX_INCREMENT", cls.max_increment, 1, 2**31),
            idempotency_ttl=env_int("IDEMPOTENCY_TTL", cls.idempotency_ttl, 1, 30 * 24 * 3600),
        )
