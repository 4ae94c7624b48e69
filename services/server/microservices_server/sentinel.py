"""Finding the primary through Sentinel: REDIS_SENTINELS and REDIS_MASTER_NAME.

With REDIS_SENTINELS set, the data tier is one primary and its replicas, watched by Sentinel,
which promotes a replica when the primary is gone. The server asks the sentinels which node is
the primary whenever it opens a connection, and redis-py's SentinelConnectionPool drops its
connections when that answer changes, or when the node it writes to turns out to be a replica
now (READONLY: a failover it has not heard of yet). So no address is cached past a failover.

Unset, none of this is used: the server talks to REDIS_URL exactly as it always did.
"""

from __future__ import annotations

import re

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
            reasons = []
            for position, sentinel in enumerate(self.sentinels):
                where = "{host}:{port}".format_map(sentinel.connection_pool.connection_kwargs)
                try:
                    masters = sentinel.sentinel_masters()
                except (ConnectionError, TimeoutError) as exc:
                    reasons.append(f"{where} did not answer ({type(exc).__name__}: {exc})")
                    continue
                state = masters.get(service_name)
                if state is None:
                    known = ", ".join(sorted(masters)) or "nothing"
                    reasons.append(f"{where} monitors {known}")
                elif not self.check_master_state(state, service_name):
                    reasons.append(f"{where} sees it down")
                else:
                    # The sentinel that answered goes first next time, as redis-py does.
                    self.sentinels[0], self.sentinels[position] = sentinel, self.sentinels[0]
                    return state["ip"], state["port"]
            raise MasterNotFoundError(
                f"no primary named {service_name!r} (REDIS_MASTER_NAME): " + "; ".join(reasons)
            )

    return ExplainedSentinel
