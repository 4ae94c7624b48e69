"""The counter in Redis: read, increment (idempotently), reset, ping.

The increment and its Idempotency-Key record are one Lua script, which Redis runs atomically:
two retries of the same request racing each other cannot both increment, and a key is never
recorded without its increment (or the other way round).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import select
from dataclasses import dataclass

import gevent
import redis
from gevent.monkey import get_original, is_module_patched
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError
from redis.retry import Retry
from redis.sentinel import SentinelManagedConnection

from .sentinel import PrimaryWatch, sentinel_class
from .settings import Settings

# One hash tag, {microservices}, for every key: Redis Cluster puts them in one slot, so the
# scripts below may touch the count and the other keys together (else CROSSSLOT).
COUNT_KEY = "{microservices}:count"
IDEMPOTENCY_PREFIX = "{microservices}:idempotency:"
# The support-tier clients seen (for the page): a sorted set, member "kind host version",
# score the last time seen (Redis' clock). Trimmed on every write and expiring, so bounded.
CLIENTS_KEY = "{microservices}:clients"
MAX_CLIENTS = 100
# Increments per second over the last HISTORY_SECONDS (for the page's rate and chart): a hash,
# field the second (Redis' clock), value the increments counted in it.
HISTORY_KEY = "{microservices}:history"
HISTORY_SECONDS = 300

# Shared by the scripts: the time on Redis' clock (one clock for every server pod), and the
# record of a client seen (the client, '' for none, and how long it is remembered). The record
# is for the page only: pcall, so that a write Redis refuses (out of memory) fails no increment.
LUA_COMMON = f"""
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function seen(key, client, keep, at)
  if client == '' then return end
  redis.pcall('ZADD', key, at, client)
  redis.pcall('ZREMRANGEBYSCORE', key, '-inf', at - keep)
  redis.pcall('ZREMRANGEBYRANK', key, 0, -{MAX_CLIENTS + 1})
  redis.pcall('EXPIRE', key, keep)
end
"""

# KEYS[1] the clients seen; ARGV[1] how long one is remembered, ARGV[2...] the clients.
# Run off the request's path (seen.py): a read never waits for, nor fails on, this write.
SEEN_SCRIPT = (
    LUA_COMMON
    + """
local at = now()
for i = 2, #ARGV do seen(KEYS[1], ARGV[i], tonumber(ARGV[1]), at) end
"""
)

# KEYS[1] the count, KEYS[2] the clients seen, KEYS[3] the history, KEYS[4] the
# Idempotency-Key's record (optional); ARGV[1] the increment, ARGV[2] the record's TTL in
# seconds, ARGV[3] the client, ARGV[4] how long it is remembered, ARGV[5] HISTORY_SECONDS.
# Returns {count, replayed, the increment first recorded under this key}.
# The client is recorded last: once a script has written, Redis lets it write on even past
# maxmemory, so INCRBY must stay the first write (refused when Redis is out of memory).
# Numbers travel as strings: Lua's numbers are doubles (exact only up to 2^53) and `..`
# prints them with 14 digits, while GET returns the count exactly as Redis keeps it (int64).
INCREMENT_SCRIPT = (
    LUA_COMMON
    + """
local at = now()
if KEYS[4] then
  local recorded = redis.call('GET', KEYS[4])
  if recorded then
    -- Written again as it is: a WAIT after this script then also covers the record, which
    -- an earlier request wrote and which may not have reached the replicas yet (WAIT counts
    -- only its own connection's writes). pcall: a replay must not fail on a full Redis.
    redis.pcall('SET', KEYS[4], recorded, 'KEEPTTL')
    seen(KEYS[2], ARGV[3], tonumber(ARGV[4]), at)
    local sep = string.find(recorded, ':', 1, true)
    return {string.sub(recorded, sep + 1), 1, string.sub(recorded, 1, sep - 1)}
  end
end
redis.call('INCRBY', KEYS[1], ARGV[1])
local count = redis.call('GET', KEYS[1])
if KEYS[4] then
  redis.call('SET', KEYS[4], ARGV[1] .. ':' .. count, 'EX', ARGV[2])
end
-- The history is the page's: pcall, so that a history Redis refuses (a key of the wrong
-- type) fails nothing after the INCRBY above, which a failed script would not undo.
local second = math.floor(at)
if redis.pcall('HINCRBY', KEYS[3], second, ARGV[1]) == tonumber(ARGV[1]) then
  -- The first increment of this second: forget the seconds that left the window.
  local window = tonumber(ARGV[5])
  for _, field in ipairs(redis.pcall('HKEYS', KEYS[3])) do
    if tonumber(field) <= second - window then redis.pcall('HDEL', KEYS[3], field) end
  end
  redis.pcall('EXPIRE', KEYS[3], window)
end
seen(KEYS[2], ARGV[3], tonumber(ARGV[4]), at)
return {count, 0, ARGV[1]}
"""
)


# The kernel's poll(), even where gevent has replaced select.poll with its own (see below).
_kernel_poll = get_original("select", "poll")


def _give_way() -> None:
    """Let every other ready greenlet run first, in a gevent worker; nothing outside one."""
    if is_module_patched("socket"):
        gevent.sleep(0)


class CheapCheck:
    """A redis-py TCP connection, checked more cheaply when the pool hands it out.

    Before every command the pool asks can_read() of the connection it picked: bytes (or an
    end of file) waiting on an idle connection mean Redis closed it, or it holds a stale
    answer, and the pool reconnects instead of failing the request. redis-py asks with
    select.poll(), which in a gevent worker is gevent's cooperative version: three system calls
    and a tenth of the request's CPU. A poll with timeout 0 never waits, so the kernel's own
    poll gives the same answer with one call.

    gevent's version also gave way to the other greenlets first, and that turn matters: without
    it the worker's tail latency grew threefold (scripts/benchmark, two workers: p99 43 ms,
    with it 16 ms, and 8% more requests a second). So the check still yields, with
    gevent.sleep(0), and before it looks: Redis may close the connection while others run, and
    the answer must be the socket's state when the command goes out, not before the turn.

    The one case it does not look at, bytes already read but not yet parsed, does not arise
    here: every command's (and pipeline's) replies are read whole before the connection goes
    back, there are no push messages (RESP2), and redis-py drops a connection whose read
    failed part way."""

    def can_read(self, timeout: float = 0) -> bool:
        if timeout == 0 and self._sock is not None:
            _give_way()
            poller = _kernel_poll()
            poller.register(self._sock, select.POLLIN)
            if not poller.poll(0):
                return False  # nothing waiting: ready for the next command
        return super().can_read(timeout)


class Connection(CheapCheck, redis.Connection):
    """redis-py's TCP connection to REDIS_URL, checked cheaply."""


class SentinelConnection(CheapCheck, SentinelManagedConnection):
    """A connection to the primary Sentinel names (REDIS_SENTINELS), checked cheaply."""


class NotReplicated(Exception):
    """The write was done on the primary, but fewer replicas than REDIS_WAIT_REPLICAS
    confirmed it within REDIS_WAIT_TIMEOUT: a failover now could lose it, or it could survive.
    The outcome is unknown, so the client must retry (with the same Idempotency-Key)."""

    def __init__(self, confirmed: int, wanted: int, seconds: float):
        super().__init__(
            f"{confirmed} of {wanted} replica(s) confirmed the write within {seconds:g}s "
            "(REDIS_WAIT_REPLICAS, REDIS_WAIT_TIMEOUT)"
        )


class Script:
    """A Lua script run by its SHA1 (EVALSHA), loaded again if Redis does not know it (a
    restart, a failover, SCRIPT FLUSH). redis-py's own Script does the same through two more
    layers of wrappers, 3 us more per call (41.6 against 38.9 us of CPU)."""

    def __init__(self, client: redis.Redis, source: str, run=None) -> None:
        self.client = client
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        # How the EVALSHA is sent: as a plain command, or followed by a WAIT (a write).
        self.run = run or client.execute_command

    def __call__(self, keys: list[str], args: list[object]):
        try:
            return self.run("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.client.execute_command("SCRIPT LOAD", self.source)
            return self.run("EVALSHA", self.sha, len(keys), *keys, *args)


class CounterOverflow(Exception):
    """The increment would take the count past 2^63-1 (Redis refuses; nothing changed)."""


class CorruptCount(Exception):
    """The count key holds something that is not an integer (written by hand, or by another
    program): nothing can be read or counted until it is repaired (DELETE / resets it)."""


COUNT_PROBLEM = f"the count in Redis ({COUNT_KEY}) is not a number"
COUNT_REPAIR = "nothing was counted; reset it with DELETE / and X-API-Key (README: Repairs)"


WRONG_TYPE = "it holds another type of key, not a string"
INTEGER = re.compile(rb"-?(0|[1-9][0-9]{0,18})")


def count_of(reply: bytes | None | Exception) -> int:
    """The count from Redis' reply to GET: 0 when the key does not exist yet; CorruptCount
    when it holds a string that is no integer, or another type (WRONGTYPE)."""
    if reply is None:
        return 0
    if isinstance(reply, redis.ResponseError) and "WRONGTYPE" in str(reply):
        raise CorruptCount(WRONG_TYPE)
    if isinstance(reply, Exception):
        raise reply
    # What INCRBY itself takes: a plain decimal within 64 bits (not " 12", "+5" nor "1_000").
    if INTEGER.fullmatch(reply) and -(2**63) <= (count := int(reply)) < 2**63:
        return count
    shown = reply[:40].decode("utf-8", "replace")
    raise CorruptCount(f"it holds {shown!r}, not an integer")


@dataclass(frozen=True)
class Increment:
    count: int
    replayed: bool  # True when the Idempotency-Key was seen before: nothing was added
    recorded_increment: int  # the increment the key was first used with


@dataclass(frozen=True)
class Snapshot:
    """What the page shows, read in one round trip (see CounterStore.snapshot)."""

    count: int | None  # None when the count key holds no integer (count_error says what)
    count_error: str
    now: float  # Redis' clock, the one the clients' times and the history are on
    clients: list[tuple[str, float]]  # (member, last seen), the latest first
    history: dict[int, int]  # second -> increments counted in it
    server_version: str  # "Valkey 8.1.1" (or "Redis 7.4.2" on a Redis)
    server_uptime: int  # seconds
    replication: dict  # INFO replication of the node answering: its role, replicas, offset
    sentinels: dict | None = None  # what the sentinels say (sentinel_view), None without


def server_version(info: dict) -> str:
    """Which server and release: Valkey reports redis_version 7.2.4 for compatibility, and its
    own release as valkey_version."""
    if "valkey_version" in info:
        return f"Valkey {info['valkey_version']}"
    return f"Redis {info.get('redis_version', '')}".strip()


def primary_through_sentinels(settings: Settings, **options) -> redis.Redis:
    """A client of the primary the sentinels name (REDIS_SENTINELS, REDIS_MASTER_NAME), with
    REDIS_URL's database number and options. The sentinels get the same timeouts and the
    data tier's password (one Secret for the tier: the shipped sentinels require it too)."""
    from redis.connection import parse_url

    url_options = parse_url(settings.redis_url)
    url_options.pop("host", None)
    url_options.pop("port", None)
    if settings.redis_password is not None:
        url_options["password"] = settings.redis_password
    sentinel_options = {
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
        "retry": Retry(NoBackoff(), 0),
    }
    if settings.redis_password is not None:
        sentinel_options["password"] = settings.redis_password
    sentinels = sentinel_class()(list(settings.redis_sentinels), sentinel_kwargs=sentinel_options)
    return sentinels.master_for(
        settings.redis_master_name,
        connection_class=SentinelConnection,
        **{**url_options, **options},
    )


def answering(replica: dict) -> bool:
    """A replica, as a sentinel sees it (SENTINEL REPLICAS), that it has heard from (a run
    id, from its INFO) and does not see down. The old primary, listed as a replica the moment
    a failover ends, has neither until it is back: it is not seen down for a while yet."""
    seen_down = replica["is_sdown"] or replica["is_odown"] or replica["is_disconnected"]
    return bool(replica.get("runid")) and not seen_down


class CounterStore:
    def __init__(
        self,
        client: redis.Redis,
        idempotency_ttl: int,
        clients_ttl: int = 120,
        wait_replicas: int = 0,
        wait_timeout: float = 0.5,
    ):
        self.redis = client
        self.idempotency_ttl = idempotency_ttl
        self.clients_ttl = clients_ttl  # how long a client seen is remembered
        self.wait_replicas = wait_replicas
        self.wait_timeout = wait_timeout
        self._seen = Script(client, SEEN_SCRIPT)
        self._increment = Script(client, INCREMENT_SCRIPT, run=self._acknowledged)
        # With REDIS_SENTINELS: the sentinels asked once a second (sentinel.py says why).
        sentinels = getattr(client.connection_pool, "sentinel_manager", None)
        self._watch = PrimaryWatch(self.check_primary) if sentinels is not None else None

    @classmethod
    def from_settings(cls, settings: Settings) -> CounterStore:
        options = {
            "socket_timeout": settings.redis_timeout,
            "socket_connect_timeout": settings.redis_timeout,
            # No hidden retries: the caller answers 503 at once and the client retries.
            "retry": Retry(NoBackoff(), 0),
            "health_check_interval": 30,
        }
        if settings.redis_wait_replicas:
            # A write's reply comes after its WAIT: the read may take the WAIT's time too.
            options["socket_timeout"] += settings.redis_wait_timeout
        if settings.redis_sentinels:
            client = primary_through_sentinels(settings, **options)
        else:
            # TLS (rediss://) and unix sockets keep redis-py's own connection classes.
            plain_tcp = settings.redis_url.startswith("redis://")
            client = redis.Redis.from_url(
                settings.redis_url,
                **({"connection_class": Connection} if plain_tcp else {}),
                **options,
            )
            if settings.redis_password is not None:
                client.connection_pool.connection_kwargs["password"] = settings.redis_password
        return cls(
            client,
            settings.idempotency_ttl,
            settings.clients_ttl,
            settings.redis_wait_replicas,
            settings.redis_wait_timeout,
        )

    def check_primary(self) -> None:
        """With REDIS_SENTINELS: ask the sentinels which node is the primary now and, when it
        changed, drop the connections to the old one (idle ones at once, busy ones when they
        come back to the pool). A redis error (MasterNotFoundError) when none names one."""
        if self._watch is not None:
            self._watch.start()
            self.redis.connection_pool.get_master_address()

    def _recheck_after(self, exc: Exception) -> None:
        """After a write refused or unconfirmed: perhaps the node is no primary any more."""
        refused = isinstance(exc, redis.ReadOnlyError) or str(exc).startswith("NOREPLICAS")
        if self._watch is not None and (refused or isinstance(exc, NotReplicated)):
            # No primary named: the next request, or readiness, says so.
            with contextlib.suppress(redis.RedisError):
                self.check_primary()

    def _acknowledged(self, *command):
        """Run a write command; with REDIS_WAIT_REPLICAS, followed by WAIT in the same round
        trip and on the same connection (WAIT counts the writes of its own connection only),
        and NotReplicated unless enough replicas confirmed it in time."""
        if self._watch is not None:
            self._watch.start()
        try:
            return self._write(*command)
        except (redis.ResponseError, NotReplicated) as exc:
            self._recheck_after(exc)
            raise

    def _write(self, *command):
        if not self.wait_replicas:
            return self.redis.execute_command(*command)
        pipe = self.redis.pipeline(transaction=False)
        pipe.execute_command(*command)
        pipe.execute_command("WAIT", self.wait_replicas, max(1, round(self.wait_timeout * 1000)))
        reply, confirmed = pipe.execute(raise_on_error=False)
        for answer in (reply, confirmed):
            if isinstance(answer, Exception):
                raise answer
        if confirmed < self.wait_replicas:
            raise NotReplicated(confirmed, self.wait_replicas, self.wait_timeout)
        return reply

    def get(self) -> int:
        """The count: one plain GET, which a paused primary or a read-only replica serves."""
        if self._watch is not None:
            self._watch.start()
        try:
            reply = self.redis.get(COUNT_KEY)
        except redis.ResponseError as exc:
            reply = exc
        return count_of(reply)

    def record_seen(self, clients: list[str]) -> None:
        """Record support-tier clients (identity.Client.member) as seen now."""
        if clients:
            self._seen(keys=[CLIENTS_KEY], args=[self.clients_ttl, *clients])

    def increment(
        self, amount: int, idempotency_key: str | None = None, client: str | None = None
    ) -> Increment:
        keys = [COUNT_KEY, CLIENTS_KEY, HISTORY_KEY]
        if idempotency_key is not None:
            keys.append(IDEMPOTENCY_PREFIX + idempotency_key)
        args = [amount, self.idempotency_ttl, client or "", self.clients_ttl, HISTORY_SECONDS]
        try:
            count, replayed, recorded = self._increment(keys=keys, args=args)
        except redis.ResponseError as exc:
            if "overflow" in str(exc):
                raise CounterOverflow(str(exc)) from None
            if "WRONGTYPE" in str(exc):
                raise CorruptCount(WRONG_TYPE) from None
            if "not an integer" in str(exc):
                raise CorruptCount("it holds a string that is not an integer") from None
            raise
        return Increment(int(count), bool(replayed), int(recorded))

    def snapshot(self) -> Snapshot:
        """The count, the clients seen, the history, Redis' clock, version and replication:
        one round trip of read-only commands, however many pages ask (and one to a sentinel,
        with REDIS_SENTINELS)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(COUNT_KEY)
        pipe.time()
        pipe.zrange(CLIENTS_KEY, 0, -1, desc=True, withscores=True)
        pipe.hgetall(HISTORY_KEY)
        pipe.info("server")
        pipe.info("replication")
        # A count key of the wrong type fails only its own command: the rest is still shown.
        replies = pipe.execute(raise_on_error=False)
        for reply in replies[1:]:
            if isinstance(reply, Exception):
                raise reply
        count_reply, (seconds, micros), clients, history, info, replication = replies
        try:
            count, count_error = count_of(count_reply), ""
        except CorruptCount as exc:
            count, count_error = None, str(exc)
        return Snapshot(
            count=count,
            count_error=count_error,
            now=seconds + micros / 1e6,
            clients=[(member.decode(), score) for member, score in clients],
            history={int(second): int(n) for second, n in history.items()},
            server_version=server_version(info),
            server_uptime=int(info.get("uptime_in_seconds", 0)),
            replication=replication,
            sentinels=self.sentinel_view(),
        )

    def sentinel_view(self) -> dict | None:
        """What the first sentinel that answers says of the primary (SENTINEL MASTER and
        SENTINEL REPLICAS): None without REDIS_SENTINELS. A sentinel that cannot be reached is
        skipped. `flags` as Sentinel gives them: s_down (this sentinel sees it down), o_down
        (a quorum does), failover_in_progress. `replicas` counts those the sentinel hears
        from; the others, among them the old primary after a failover until it is back, are
        `replicas_down`."""
        pool = self.redis.connection_pool
        sentinels = getattr(pool, "sentinel_manager", None)
        if sentinels is None:
            return None
        for sentinel in sentinels.sentinels:
            try:
                state = sentinel.sentinel_master(pool.service_name)
                replicas = sentinel.sentinel_slaves(pool.service_name)
            except redis.RedisError:
                continue
            up = sum(1 for replica in replicas if answering(replica))
            return {
                "primary": f"{state['ip']}:{state['port']}",
                "flags": state["flags"],
                "replicas": up,
                "replicas_down": len(replicas) - up,
                "sentinels": state["num-other-sentinels"] + 1,
                "quorum": state["quorum"],
            }
        return {"error": "no sentinel answered"}

    def reset(self) -> int:
        self._acknowledged("SET", COUNT_KEY, 0)
        return 0

    def ping(self) -> None:
        """Raise a redis error unless Redis answers PING; with REDIS_SENTINELS, unless the
        node the sentinels name the primary now answers it. With no sentinel answering at all,
        the node they named last will do while it still says it is the primary: the sentinels
        being away must not take every server out of the Service while the data tier works."""
        try:
            self.check_primary()
        except redis.RedisError as exc:
            if not getattr(exc, "sentinels_unreachable", False):
                raise
            role = self.redis.execute_command("ROLE")[0]
            if role not in (b"master", "master"):
                raise
        self.redis.ping()

    def close(self) -> None:
        if self._watch is not None:
            self._watch.stop()
        self.redis.close()
