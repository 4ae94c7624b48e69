"""microservices-proxy (the ambassador of k8s/16-ambassador) as a real process: the server
counting through it to a real Redis, many connections at once, half-closes both ways, an
upstream that goes away and comes back, SIGTERM, and bad settings."""

from __future__ import annotations

import socket
import socketserver
import time

import pytest
import redis
import requests
from microservices_lessons.proxy import parse_address
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.conftest import redis_url_of
from tests.faults import _Server
from tests.integration.test_processes import server_count
from tests.support import Server, Service, free_port, post_concurrently, wait_for

PROXY = "microservices-proxy"


def start_proxy(upstream: str, **env: str) -> tuple[Service, int]:
    port = free_port()
    proxy = Service(
        PROXY,
        {"PROXY_LISTEN": f"127.0.0.1:{port}", "PROXY_UPSTREAM": upstream, "LOG_FORMAT": "json"}
        | env,
    )
    wait_for(lambda: proxy.events("started"), what=f"the proxy to listen\n{proxy.output}")
    return proxy, port


def address_of(redis_url: str) -> str:
    return redis_url.removeprefix("redis://").rsplit("/", 1)[0]


@pytest.fixture
def proxies():
    """proxies(upstream, **env) -> (proxy, port); every proxy killed after the test."""
    started: list[Service] = []

    def start(upstream: str, **env: str) -> tuple[Service, int]:
        proxy, port = start_proxy(upstream, **env)
        started.append(proxy)
        return proxy, port

    yield start
    for proxy in started:
        proxy.kill()


def test_the_server_counts_exactly_through_the_proxy(redis_url, proxies):
    """The ambassador's whole point: the app talks to localhost and its data lands in Redis."""
    _, port = proxies(address_of(redis_url))
    server = Server(f"redis://127.0.0.1:{port}/0").wait_ready()
    try:
        assert post_concurrently(server.url, 2, clients=16, each=25) == [200] * 400
        assert requests.get(server.url + "/probe/readiness", timeout=5).status_code == 200
        assert server.count() == 800 == server_count(redis_url)
    finally:
        server.kill()


def test_many_connections_at_once(redis_url, redis_client, proxies):
    """200 clients connected at the same time, each answered on its own connection."""
    _, port = proxies(address_of(redis_url))
    clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(200)]
    try:
        for number, client in enumerate(clients):
            word = f"client-{number}".encode()
            client.sendall(b"*2\r\n$4\r\nECHO\r\n$%d\r\n%s\r\n" % (len(word), word))
        for number, client in enumerate(clients):
            word = f"client-{number}".encode()
            assert client.recv(100) == b"$%d\r\n%s\r\n" % (len(word), word)
        assert len(redis_client.client_list()) > 200, "one upstream connection per client"
    finally:
        for client in clients:
            client.close()


class HalfCloser(_Server):
    """An upstream that, per connection, first sends `greeting` and shuts its sending side
    (EOF to the client), then reads until the client's EOF and answers with the byte count,
    if the connection still lets it write."""

    def __init__(self, greeting: bytes = b""):
        self.received: list[int] = []
        closer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                if greeting:
                    self.request.sendall(greeting)
                    self.request.shutdown(socket.SHUT_WR)
                total = 0
                while chunk := self.request.recv(65536):
                    total += len(chunk)
                closer.received.append(total)
                if not greeting:
                    self.request.sendall(b"received %d bytes" % total)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_clients_half_close_reaches_the_upstream_and_the_answer_still_comes(proxies):
    with HalfCloser() as upstream:
        _, port = proxies(f"127.0.0.1:{upstream.port}")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"x" * 1_000_000)
            client.shutdown(socket.SHUT_WR)
            assert read_all(client) == b"received 1000000 bytes"
    assert upstream.received == [1_000_000]


def test_an_upstreams_half_close_reaches_the_client_which_may_still_send(proxies):
    with HalfCloser(greeting=b"hello") as upstream:
        proxy, port = proxies(f"127.0.0.1:{upstream.port}", LOG_LEVEL="debug")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            assert read_all(client) == b"hello"  # then EOF: the upstream is done sending
            client.sendall(b"y" * 300_000)  # the other direction is still open
            client.shutdown(socket.SHUT_WR)
            wait_for(lambda: upstream.received == [300_000], what="the client's bytes upstream")
    wait_for(
        lambda: "closed: 300000 bytes up, 5 bytes down" in proxy.output,
        what=f"the connection's closing line\n{proxy.output}",
    )


def test_an_upstream_that_goes_away_and_comes_back(own_redis, proxies):
    """Connections to a vanished upstream end at once (no hang), new ones are closed with one
    warning for the whole outage, and the proxy needs no restart when the upstream returns."""
    proxy, port = proxies(address_of(redis_url_of(own_redis)))
    # No retries hidden in the client: each failure must be the proxy's answer.
    client = redis.Redis("127.0.0.1", port, socket_timeout=5, retry=Retry(NoBackoff(), 0))
    assert client.ping()
    own_redis.get_wrapped_container().stop(timeout=1)
    started = time.monotonic()
    for _ in range(5):
        with pytest.raises(redis.ConnectionError):
            client.ping()
    assert time.monotonic() - started < 4, "each failure is quick: the proxy closes at once"
    assert proxy.proc.poll() is None
    wait_for(lambda: proxy.events("upstream_unreachable"), what="the warning")
    [warning] = proxy.events("upstream_unreachable")
    assert warning["level"] == "warning" and "unreachable" in warning["message"]

    own_redis.get_wrapped_container().start()
    wait_for(client.ping, 30, interval=0.2, what="Redis through the same proxy")
    wait_for(lambda: proxy.events("upstream_back"), what="the line saying it is back")
    [back] = proxy.events("upstream_back")
    assert back["failed"] >= 5
    client.close()


def test_sigterm_closes_every_connection_and_exits_0(redis_url, proxies):
    proxy, port = proxies(address_of(redis_url))
    clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(5)]
    try:
        for client in clients:
            client.sendall(b"*1\r\n$4\r\nPING\r\n")
            assert client.recv(100) == b"+PONG\r\n"
        assert proxy.stop(timeout=10) == 0
        for client in clients:
            assert client.recv(100) == b"", "the client sees its connection end"
    finally:
        for client in clients:
            client.close()
    [stopped] = proxy.events("stopped")
    assert stopped["message"] == "stopped by SIGTERM, 5 connection(s) closed"
    # A clean stop, as the lesson promises: no error line, no traceback per connection.
    assert "Traceback" not in proxy.output and "Exception in callback" not in proxy.output


def test_a_taken_port_is_said_clearly(redis_url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proxy = Service(
            PROXY,
            {"PROXY_LISTEN": f"127.0.0.1:{port}", "PROXY_UPSTREAM": address_of(redis_url)},
        )
        assert proxy.wait(10) == 1
    assert f"cannot listen on 127.0.0.1:{port} (PROXY_LISTEN)" in proxy.output


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "PROXY_UPSTREAM"),
        ({"PROXY_UPSTREAM": "data-tier"}, "PROXY_UPSTREAM"),
        ({"PROXY_UPSTREAM": "data-tier:redis"}, "PROXY_UPSTREAM"),
        ({"PROXY_UPSTREAM": "data-tier:70000"}, "PROXY_UPSTREAM"),
        ({"PROXY_UPSTREAM": "::1:6379"}, "PROXY_UPSTREAM"),
        ({"PROXY_UPSTREAM": "data-tier:6379", "PROXY_LISTEN": ":6379"}, "PROXY_LISTEN"),
        ({"PROXY_UPSTREAM": "data-tier:6379", "PROXY_CONNECT_TIMEOUT": "0"}, "PROXY_CONNECT"),
    ],
)
def test_a_bad_setting_exits_2_naming_it(env, named):
    proxy = Service(PROXY, env)
    assert proxy.wait(10) == 2
    [line] = proxy.lines
    assert line.startswith(f"configuration error: {named}")


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("data-tier:6379", ("data-tier", 6379)),
        ("data-tier.ambassador.svc:6380", ("data-tier.ambassador.svc", 6380)),
        (" 127.0.0.1:1 ", ("127.0.0.1", 1)),
        ("[::1]:6379", ("::1", 6379)),
    ],
)
def test_addresses_it_reads(value, address):
    assert parse_address("PROXY_UPSTREAM", value) == address
