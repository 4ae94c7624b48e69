"""microservices-redis-metrics: Redis' INFO as Prometheus metrics, the adapter of lesson 17
(k8s/17-adapter).

Redis reports on itself in a format of its own (`INFO`: `field:value` lines in sections);
Prometheus reads its text exposition format. Beside Redis in its pod, this adapter answers
`GET /metrics` on PORT (9121) with a fresh INFO turned into metrics:

    redis_up 1
    redis_connected_clients 3
    redis_memory_used_bytes 1048576
    redis_commands_processed_total 5123
    redis_db_keys{db="db0"} 2
    ...

A Redis that does not answer (or refuses the password) gives `redis_up 0` and nothing else, with
status 200: the adapter is up, the thing it watches is not. One warning when Redis stops
answering, one line when it answers again. `GET /` says where the metrics are; anything else
is a 404.

Settings: REDIS_URL (`redis://localhost:6379/0`: Redis in the same pod), REDIS_PASSWORD (wins
over the URL's), REDIS_TIMEOUT (1 s), PORT (9121, the port Redis exporters use), LOG_FORMAT,
LOG_LEVEL. SIGTERM or SIGINT stops it with exit 0.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from microservices_common.config import env_float, env_int, env_str, env_url, exit_on_config_error
from microservices_common.logs import log_event, setup_logging
from microservices_common.signals import StopSignal

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_REPLY = 1024 * 1024
# INFO's fields that become metrics: field, metric, type, help. Counters end in _total, as
# Prometheus names them.
FIELDS = {
    field: (metric, kind, help_text)
    for field, metric, kind, help_text in (
        line.split(maxsplit=3)
        for line in """
uptime_in_seconds           redis_uptime_in_seconds           gauge   Seconds since Redis started.
connected_clients           redis_connected_clients           gauge   Client connections open.
blocked_clients             redis_blocked_clients             gauge   Clients in a blocking call.
used_memory                 redis_memory_used_bytes           gauge   Memory Redis' allocator holds.
used_memory_rss             redis_memory_rss_bytes            gauge   Memory the system gives Redis.
maxmemory                   redis_memory_max_bytes            gauge   maxmemory (0: no bound).
total_connections_received  redis_connections_received_total  counter Connections accepted.
rejected_connections        redis_rejected_connections_total  counter Connections refused.
total_commands_processed    redis_commands_processed_total    counter Commands processed.
instantaneous_ops_per_sec   redis_ops_per_second              gauge   Commands per second, now.
keyspace_hits               redis_keyspace_hits_total         counter Lookups that found their key.
keyspace_misses             redis_keyspace_misses_total       counter Lookups that did not.
expired_keys                redis_expired_keys_total          counter Keys whose TTL ran out.
evicted_keys                redis_evicted_keys_total          counter Keys evicted under maxmemory.
aof_enabled                 redis_aof_enabled                 gauge   1: the append-only file is on.
rdb_changes_since_last_save redis_rdb_changes_since_last_save gauge   Writes since the last save.
""".strip().splitlines()
    )
}
KEYSPACE = {
    "keys": ("redis_db_keys", "Keys in the database."),
    "expires": ("redis_db_keys_expiring", "Keys with a TTL in the database."),
}


class RedisUnavailable(Exception):
    """Redis did not answer INFO (no connection, a timeout, an error reply)."""


@dataclass(frozen=True)
class MetricsSettings:
    host: str = "localhost"
    port: int = 6379
    password: str | None = None
    username: str | None = None
    timeout: float = 1.0
    listen_port: int = 9121

    @classmethod
    def from_env(cls) -> MetricsSettings:
        url = urlsplit(env_url("REDIS_URL", "redis://localhost:6379/0", ("redis",)))
        return cls(
            host=url.hostname,
            port=url.port or cls.port,
            password=env_str("REDIS_PASSWORD") or (unquote(url.password) if url.password else None),
            username=unquote(url.username) if url.username else None,
            timeout=env_float("REDIS_TIMEOUT", cls.timeout, 0.01, 60),
            listen_port=env_int("PORT", cls.listen_port, 1, 65535),
        )


def command(*words: str) -> bytes:
    """A Redis command in RESP, the protocol's array of bulk strings."""
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def reply(stream) -> bytes:
    """One simple-string or bulk reply from `stream`; RedisUnavailable for an error reply."""
    line = stream.readline(MAX_REPLY)
    if not line.endswith(b"\r\n"):
        raise RedisUnavailable("the connection closed before a full reply")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RedisUnavailable(rest.decode(errors="replace"))
    if kind == b"$" and rest.isdigit() and int(rest) <= MAX_REPLY:
        data = stream.read(int(rest) + 2)
        if len(data) != int(rest) + 2:
            raise RedisUnavailable("the connection closed inside a reply")
        return data[:-2]
    raise RedisUnavailable(f"unexpected reply {line[:40]!r}")


def fetch_info(settings: MetricsSettings) -> str:
    """INFO's text, over a connection of its own (AUTH first when there is a password)."""
    try:
        with socket.create_connection((settings.host, settings.port), settings.timeout) as sock:
            stream = sock.makefile("rb")
            if settings.password is not None:
                user = [settings.username] if settings.username else []
                sock.sendall(command("AUTH", *user, settings.password))
                reply(stream)
            sock.sendall(command("INFO"))
            return reply(stream).decode(errors="replace")
    except OSError as exc:
        raise RedisUnavailable(f"{type(exc).__name__}: {exc}") from None


def parse_info(text: str) -> dict[str, str]:
    """INFO's `field:value` lines (sections and comments left out)."""
    fields = {}
    for line in text.splitlines():
        name, colon, value = line.partition(":")
        if colon and not line.startswith("#"):
            fields[name.strip()] = value.strip()
    return fields


def label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def number(value: str) -> str | None:
    """A value of INFO as the exposition format writes it (integers in full), None if it is
    not a number."""
    try:
        parsed = float(value)
    except ValueError:
        return None
    return str(int(parsed)) if parsed.is_integer() else repr(parsed)


def render(fields: dict[str, str] | None) -> str:
    """The exposition text for INFO's fields; None (Redis did not answer) gives redis_up 0."""
    lines = ["# HELP redis_up 1 when Redis answered INFO for this scrape.", "# TYPE redis_up gauge"]
    lines.append(f"redis_up {0 if fields is None else 1}")
    if fields is None:
        return "\n".join(lines) + "\n"
    version, role = label(fields.get("redis_version", "")), label(fields.get("role", ""))
    lines += [
        "# HELP redis_info Redis' version and role, as labels.",
        "# TYPE redis_info gauge",
        f'redis_info{{redis_version="{version}",role="{role}"}} 1',
    ]
    for field, (metric, kind, help_text) in FIELDS.items():
        value = number(fields.get(field, ""))
        if value is not None:
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} {kind}"]
            lines.append(f"{metric} {value}")
    databases = {
        db: dict(item.partition("=")[::2] for item in value.split(","))
        for db, value in fields.items()
        if db.startswith("db") and db[2:].isdigit()
    }
    for key, (metric, help_text) in KEYSPACE.items():
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
        lines += [f'{metric}{{db="{db}"}} {stats.get(key, 0)}' for db, stats in databases.items()]
    return "\n".join(lines) + "\n"


class Adapter:
    """Scrapes Redis on demand; logs when it stops and starts answering."""

    def __init__(self, settings: MetricsSettings, log: logging.Logger):
        self.settings = settings
        self.log = log
        self._lock = threading.Lock()
        self._down = False

    def metrics(self) -> str:
        try:
            fields = parse_info(fetch_info(self.settings))
        except RedisUnavailable as exc:
            self._changed(True, f"redis at {self.address} does not answer INFO: {exc}")
            return render(None)
        self._changed(False, f"redis at {self.address} answers INFO again")
        return render(fields)

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _changed(self, down: bool, message: str) -> None:
        with self._lock:
            if self._down == down:
                return
            self._down = down
        event, level = ("redis_down", logging.WARNING) if down else ("redis_up", logging.INFO)
        log_event(self.log, event, message, level, redis=self.address)


def handler_for(adapter: Adapter) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self.answer(200, adapter.metrics(), CONTENT_TYPE)
            elif self.path == "/":
                self.answer(200, "Redis metrics for Prometheus: GET /metrics\n")
            else:
                self.answer(404, "not found: GET /metrics\n")

        def answer(self, status: int, text: str, content_type: str = "text/plain") -> None:
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args) -> None:
            adapter.log.debug("%s " + fmt, self.address_string(), *args)

    return Handler


@exit_on_config_error
def main() -> int:
    log = setup_logging("redis-metrics")
    settings = MetricsSettings.from_env()
    stop = StopSignal().install()
    adapter = Adapter(settings, log)
    try:
        server = ThreadingHTTPServer(("0.0.0.0", settings.listen_port), handler_for(adapter))
    except OSError as exc:
        log_event(
            log,
            "listen_failed",
            f"cannot listen on port {settings.listen_port} (PORT): {exc.strerror or exc}",
            logging.ERROR,
        )
        return 1
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log_event(
        log,
        "started",
        f"serving redis at {adapter.address} as metrics on :{settings.listen_port}/metrics",
        redis=adapter.address,
        port=settings.listen_port,
    )
    while not stop.wait(3600):
        pass
    server.shutdown()
    server.server_close()
    log_event(log, "stopped", f"stopped by {stop.signal_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
