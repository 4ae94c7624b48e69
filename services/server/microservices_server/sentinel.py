"""Finding the primary through Sentinel: REDIS_SENTINELS and REDIS_MASTER_NAME.

With REDIS_SENTINELS set, the data tier is one primary and its replicas, watched by Sentinel,
which promotes a replica when the primary is gone. redis-py asks the sentinels which node is
the primary whenever it opens a connection, and its SentinelConnectionPool drops its
connections when that answer changes, or when the node it writes to turns out to be a replica
now (READONLY: a failover it has not heard of yet).

That is not enough when the old primary is cut off from the sentinels and the replicas but not
from the server: the sentinels promote a replica, the old node never hears of it, and the
server's open connections would keep writing to it (every write refused: NOREPLICAS, or no
replica to confirm it) and reading a count that no longer moves, with nothing to make redis-py
ask again. So each worker also asks the sentinels once a second (PrimaryWatch), readiness asks
them before its PING, and so does a write that no replica confirmed: when the answer changed,
the pool drops the connections to the old node. No address is cached past a failover.

Unset, none of this is used: the server talks to REDIS_URL exactly as it always did.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable

from microservices_common.config import ConfigError

# A node's address: host:port, the host a name, an IPv4 address or an IPv6 one in brackets.
ADDRESS = re.compile(r"^(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+)):(?P<port>\d+)$")
# Sentinel splits its commands on spaces: a name with spaces or control characters cannot be
# monitored, so it is refused at start rather than never found.
MASTER_NAME = re.compile(r"^[!-~]+$")


def parse_sentinels(name: str, value: str) -> tuple[tuple[str, int], ...]:
    """`host:port,host:port,...` as (host, port) pairs, or a ConfigError naming `name`."""
    sentinels = []
    for entry in value.split(","):
        match = ADDRESS.match(entry.strip())
        if match is None:
            raise ConfigError(name, value, f"{entry.strip()!r} is not host:port")
        port = int(match["port"])
        if not 1 <= port <= 65535:
            raise ConfigError(name, value, f"{entry.strip()!r}: port must be 1 to 65535")
        sentinels.append((match["ipv6"] or match["host"], port))
    if len(set(sentinels)) != len(sentinels):
        raise ConfigError(name, value, "a sentinel is listed twice")
    return tuple(sentinels)


def check_master_name(name: str, value: str) -> str:
    if not MASTER_NAME.match(value):
        raise ConfigError(name, value, "a name with no spaces, as in `sentinel monitor NAME`")
    return value


def sentinel_class():
    """The Sentinel client class, defined on first use: redis-py is imported only once a
    gevent worker has patched the socket module (see settings.redis_url)."""
    from redis.exceptions import ConnectionError, TimeoutError
    from redis.sentinel import MasterNotFoundError, Sentinel

    class ExplainedSentinel(Sentinel):
        """redis-py's Sentinel, with a "no primary" error that says why, per sentinel: one
        that cannot be reached, one that monitors no primary of that name (a wrong
        REDIS_MASTER_NAME), one that sees it down (a failover under way)."""

        def discover_master(self, service_name):
            reasons, unreachable = [], 0
            for sentinel in list(self.sentinels):  # a copy: other threads reorder it
                where = "{host}:{port}".format_map(sentinel.connection_pool.connection_kwargs)
                try:
                    masters = sentinel.sentinel_masters()
                except (ConnectionError, TimeoutError) as exc:
                    reasons.append(f"{where} did not answer ({type(exc).__name__}: {exc})")
                    unreachable += 1
                    continue
                state = masters.get(service_name)
                if state is None:
                    known = ", ".join(sorted(masters)) or "nothing"
                    reasons.append(f"{where} monitors {known}")
                elif not self.check_master_state(state, service_name):
                    reasons.append(f"{where} sees it down")
                else:
                    # The sentinel that answered goes first next time, as redis-py does; under
                    # a lock, since the primary watch and the requests ask at the same time
                    # (swapping unlocked lost a sentinel from the list in review).
                    with _REORDER:
                        if sentinel in self.sentinels:
                            self.sentinels.remove(sentinel)
                            self.sentinels.insert(0, sentinel)
                    return state["ip"], state["port"]
            error = MasterNotFoundError(
                f"no primary named {service_name!r} (REDIS_MASTER_NAME): " + "; ".join(reasons)
            )
            # None answered at all (not "none names one"): the store may go on with the node
            # they named last (CounterStore.ping).
            error.sentinels_unreachable = unreachable == len(self.sentinels)
            raise error

    return ExplainedSentinel


# Taken to reorder a Sentinel client's list (shared by the threads or greenlets of a worker).
_REORDER = threading.Lock()


class PrimaryWatch:
    """Calls `check` (CounterStore.check_primary) every `every` seconds in a background thread
    (a greenlet under gevent), started on first use: in each gunicorn worker, after the fork.
    A check that fails is left to readiness and the requests to report: they ask too."""

    def __init__(self, check: Callable[[], object], every: float = 1.0):
        self.check = check
        self.every = every
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None and not self._stopped.is_set():
            self._thread = threading.Thread(target=self._run, name="primary-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(self.every):
            # A failure is reported by readiness and the requests, which ask too.
            with contextlib.suppress(Exception):
                self.check()
