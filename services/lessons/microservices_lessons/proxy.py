"""microservices-proxy: a TCP proxy, the ambassador of lesson 16 (k8s/16-ambassador).

    PROXY_UPSTREAM=data-tier:6379 microservices-proxy

listens on PROXY_LISTEN (127.0.0.1:6379: only the containers of its own pod reach it) and, for
each client, opens a connection of its own to PROXY_UPSTREAM and copies bytes both ways. The
app talks to localhost; the ambassador decides where that goes. It knows no protocol: Redis,
HTTP, anything over TCP.

- Half-close: a side's EOF (shutdown(SHUT_WR)) is passed on as an EOF, and the other
  direction keeps flowing until it ends too. A connection ends when both directions have, or
  at once when either side resets it.
- The upstream's name is resolved for every new connection, so a Service that moves is
  followed. An upstream that cannot be reached (refused, unresolvable, no answer within
  PROXY_CONNECT_TIMEOUT) closes that client's connection at once; the next client tries again.
  One warning when the upstream turns unreachable, one line when it is back.
- SIGTERM or SIGINT: stop accepting, close every connection, exit 0. In a pod, run it as a
  native sidecar (an init container with `restartPolicy: Always`): it then starts before the
  app's containers and gets SIGTERM only after they have exited.

Settings: PROXY_LISTEN (`127.0.0.1:6379`), PROXY_UPSTREAM (required), both `host:port`
(`[::1]:6379` for an IPv6 address); PROXY_CONNECT_TIMEOUT (5 s); LOG_FORMAT, LOG_LEVEL. Each
connection's opening and closing (with the bytes each way) is logged at debug level.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from dataclasses import dataclass, field

from microservices_common.config import ConfigError, env_float, env_str, exit_on_config_error
from microservices_common.logs import log_event, setup_logging

CHUNK = 64 * 1024


def parse_address(name: str, value: str | None) -> tuple[str, int]:
    """`host:port` (or `[v6 address]:port`) from the setting `name`, or a ConfigError."""
    if value is None:
        raise ConfigError(name, "", "must be set, as host:port")
    host, colon, port = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # an IPv6 address without brackets: no telling where the port starts
    if not colon or not host:
        raise ConfigError(name, value, "must be host:port ([address]:port for IPv6)")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(name, value, "the port must be a number from 1 to 65535")
    return host, int(port)


def display(address: tuple[str, int]) -> str:
    host, port = address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class ProxySettings:
    listen: tuple[str, int] = ("127.0.0.1", 6379)
    upstream: tuple[str, int] = ("localhost", 6379)
    connect_timeout: float = 5.0

    @classmethod
    def from_env(cls) -> ProxySettings:
        return cls(
            listen=parse_address("PROXY_LISTEN", env_str("PROXY_LISTEN", "127.0.0.1:6379")),
            upstream=parse_address("PROXY_UPSTREAM", env_str("PROXY_UPSTREAM")),
            connect_timeout=env_float("PROXY_CONNECT_TIMEOUT", cls.connect_timeout, 0.01, 300),
        )


@dataclass
class Proxy:
    settings: ProxySettings
    log: logging.Logger
    connections: set[asyncio.Task] = field(default_factory=set)
    failures: int = 0  # connections to the upstream that failed since it last answered

    async def handle(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter):
        self.connections.add(asyncio.current_task())
        client = display(client_out.get_extra_info("peername") or ("?", 0))
        try:
            upstream = await self.connect(client)
            if upstream is None:
                return
            upstream_in, upstream_out = upstream
            sent, received = await self.splice(client_in, client_out, upstream_in, upstream_out)
            self.log.debug(
                "connection from %s closed: %d bytes up, %d bytes down", client, sent, received
            )
        except (ConnectionError, OSError) as exc:
            log_event(
                self.log,
                "connection_broken",
                f"connection from {client} broken: {type(exc).__name__}: {exc}",
                logging.WARNING,
                client=client,
            )
        except asyncio.CancelledError:
            # Stopping (serve() cancels every connection): end quietly. Re-raised, asyncio's
            # own callback on Python 3.11/3.12 would log each one as an error with a traceback.
            pass
        finally:
            client_out.close()
            self.connections.discard(asyncio.current_task())

    async def connect(self, client: str):
        """A connection to the upstream for `client`, or None (logged) if there is none."""
        host, port = self.settings.upstream
        upstream = display(self.settings.upstream)
        try:
            connection = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=CHUNK),
                self.settings.connect_timeout,
            )
        except (OSError, TimeoutError) as exc:
            self.failures += 1
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if self.failures == 1:
                log_event(
                    self.log,
                    "upstream_unreachable",
                    f"upstream {upstream} unreachable ({reason}): closing the connections of "
                    "clients until it answers",
                    logging.WARNING,
                    upstream=upstream,
                )
            self.log.debug("connection from %s closed: upstream unreachable (%s)", client, reason)
            return None
        if self.failures:
            log_event(
                self.log,
                "upstream_back",
                f"upstream {upstream} answers again, after {self.failures} failed connection(s)",
                upstream=upstream,
                failed=self.failures,
            )
            self.failures = 0
        self.log.debug("connection from %s to %s opened", client, upstream)
        return connection

    async def splice(self, client_in, client_out, upstream_in, upstream_out) -> tuple[int, int]:
        """Copy both ways until both directions end (a reset ends both); (bytes up, down)."""
        up = asyncio.create_task(pump(client_in, upstream_out))
        down = asyncio.create_task(pump(upstream_in, client_out))
        try:
            done, pending = await asyncio.wait({up, down}, return_when=asyncio.FIRST_EXCEPTION)
            for task in pending:
                task.cancel()
            for task in done:
                task.result()  # a reset: raise it
            return up.result(), down.result()
        finally:
            for task in (up, down):
                task.cancel()
            upstream_out.close()


async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> int:
    """Copy `source` to `sink` until EOF, then pass the EOF on (a half-close); the bytes."""
    total = 0
    while data := await source.read(CHUNK):
        sink.write(data)
        await sink.drain()
        total += len(data)
    if sink.can_write_eof() and not sink.is_closing():
        # The other side may be gone already: then there is nothing left to tell it.
        with contextlib.suppress(OSError):
            sink.write_eof()
    return total


async def serve(settings: ProxySettings, log: logging.Logger) -> int:
    proxy = Proxy(settings, log)
    host, port = settings.listen
    try:
        server = await asyncio.start_server(
            proxy.handle, host, port, limit=CHUNK, backlog=socket.SOMAXCONN, reuse_address=True
        )
    except OSError as exc:
        log_event(
            log,
            "listen_failed",
            f"cannot listen on {display(settings.listen)} (PROXY_LISTEN): {exc.strerror or exc}",
            logging.ERROR,
        )
        return 1
    stopped = asyncio.Event()
    received: list[str] = []

    def stop(sig: signal.Signals) -> None:
        received.append(sig.name)
        stopped.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig)
    log_event(
        log,
        "started",
        f"forwarding {display(settings.listen)} to {display(settings.upstream)}",
        listen=display(settings.listen),
        upstream=display(settings.upstream),
    )
    await stopped.wait()
    server.close()
    open_connections = list(proxy.connections)
    for task in open_connections:
        task.cancel()
    await asyncio.gather(*open_connections, return_exceptions=True)
    log_event(
        log,
        "stopped",
        f"stopped by {received[0]}, {len(open_connections)} connection(s) closed",
        closed=len(open_connections),
    )
    return 0


@exit_on_config_error
def main() -> int:
    log = setup_logging("proxy")
    settings = ProxySettings.from_env()
    return asyncio.run(serve(settings, log))


if __name__ == "__main__":
    sys.exit(main())
