"""The counter in Redis: read, increment (idempotently), reset, ping.

With an Idempotency-Key, the increment and the key's record are one Lua script, which Redis
runs atomically: two retries of the same request racing each other cannot both increment, and
a key is never recorded without its increment (or the other way round). Without a key there is
nothing to record: a plain INCRBY (atomic, one round trip, and a tenth of the script's work in
Redis) returns the count.
"""

from __future__ import annotations

import select
from dataclasses import dataclass

import redis
from gevent.monkey import get_original
from redis.backoff import NoBackoff
from redis.retry import Retry

from .settings import Settings

# One hash tag, {microservices}, for every key: Redis Cluster puts them in one slot, so the
# script below may touch the count and a record together (else CROSSSLOT).
COUNT_KEY = "{microservices}:count"
IDEMPOTENCY_PREFIX = "{microservices}:idempotency:"

# KEYS[1] the count, KEYS[2] the Idempotency-Key's record (optional);
# ARGV[1] the increment, ARGV[2] the record's TTL in seconds.
# Returns {count, replayed, the increment first recorded under this key}.
# Numbers travel as strings: Lua's numbers are doubles (exact only up to 2^53) and `..`
# prints them with 14 digits, while GET returns the count exactly as Redis keeps it (int64).
INCREMENT_SCRIPT = """
if KEYS[2] then
  local seen = redis.call('GET', KEYS[2])
  if seen then
    local sep = string.find(seen, ':', 1, true)
    return {string.sub(seen, sep + 1), 1, string.sub(seen, 1, sep - 1)}
  end
end
redis.call('INCRBY', KEYS[1], ARGV[1])
local count = redis.call('GET', KEYS[1])
if KEYS[2] then
  redis.call('SET', KEYS[2], ARGV[1] .. ':' .. count, 'EX', ARGV[2])
end
return {count, 0, ARGV[1]}
"""


# The kernel's poll(), even where gevent has replaced select.poll with its own (see below).
_kernel_poll = get_original("select", "poll")


class Connection(redis.Connection):
    """redis-py's TCP connection, checked more cheaply when the pool hands it out.

    Before every command the pool asks can_read() of the connection it picked: bytes (or an
    end of file) waiting on an idle connection mean Redis closed it, or it holds a stale
    answer, and the pool reconnects instead of failing the request. redis-py asks with
    select.poll(), which in a gevent worker is gevent's cooperative version: three system calls
    and a tenth of the request's CPU. A poll with timeout 0 never waits, so the kernel's own
    poll gives the same answer with one call and nothing to yield for.

    The one case it does not look at, bytes already read but not yet parsed, does not arise
    here: one command per round trip, no push messages (RESP2), and redis-py drops a connection
    whose read failed part way."""

    def can_read(self, timeout: float = 0) -> bool:
        if timeout == 0 and self._sock is not None:
            poller = _kernel_poll()
            poller.register(self._sock, select.POLLIN)
            if not poller.poll(0):
                return False  # nothing waiting: ready for the next command
        return super().can_read(timeout)


class CounterOverflow(Exception):
    """The increment would take the count past 2^63-1 (Redis refuses; nothing changed)."""


@dataclass(frozen=True)
class Increment:
    count: int
    replayed: bool  # True when the Idempotency-Key was seen before: nothing was added
    recorded_increment: int  # the increment the key was first used with


class CounterStore:
    def __init__(self, client: redis.Redis, idempotency_ttl: int):
        self.redis = client
        self.idempotency_ttl = idempotency_ttl
        self._increment = client.register_script(INCREMENT_SCRIPT)

    @classmethod
    def from_settings(cls, settings: Settings) -> CounterStore:
        # TLS (rediss://) and unix sockets keep redis-py's own connection classes.
        plain_tcp = settings.redis_url.startswith("redis://")
        client = redis.Redis.from_url(
            settings.redis_url,
            **({"connection_class": Connection} if plain_tcp else {}),
            socket_timeout=settings.redis_timeout,
            socket_connect_timeout=settings.redis_timeout,
            # No hidden retries: the caller answers 503 at once and the client retries.
            retry=Retry(NoBackoff(), 0),
            health_check_interval=30,
        )
        if settings.redis_password is not None:
            client.connection_pool.connection_kwargs["password"] = settings.redis_password
        return cls(client, settings.idempotency_ttl)

    def get(self) -> int:
        value = self.redis.get(COUNT_KEY)
        return int(value) if value is not None else 0

    def increment(self, amount: int, idempotency_key: str | None = None) -> Increment:
        try:
            if idempotency_key is None:
                # INCRBY answers an integer reply: the exact int64, no Lua number in between.
                return Increment(self.redis.incrby(COUNT_KEY, amount), False, amount)
            count, replayed, recorded = self._increment(
                keys=[COUNT_KEY, IDEMPOTENCY_PREFIX + idempotency_key],
                args=[amount, self.idempotency_ttl],
            )
        except redis.ResponseError as exc:
            if "overflow" in str(exc):
                raise CounterOverflow(str(exc)) from None
            raise
        return Increment(int(count), bool(replayed), int(recorded))

    def reset(self) -> int:
        self.redis.set(COUNT_KEY, 0)
        return 0

    def ping(self) -> None:
        """Raise a redis error unless Redis answers PING."""
        self.redis.ping()

    def close(self) -> None:
        self.redis.close()
