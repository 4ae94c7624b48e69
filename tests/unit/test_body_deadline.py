"""body_deadline.py's pieces on real sockets, with gunicorn's own parser: the body deadline
holds however the body trickles, and a lingering close stops at each of its bounds."""

import contextlib
import socket
import threading
import time

import pytest
from gunicorn.config import Config
from gunicorn.http.parser import RequestParser
from microservices_server import body_deadline


@pytest.fixture
def deadlines():
    """gunicorn's parser with the deadlines (put back as gunicorn has them afterwards)."""
    from gunicorn.http import parser

    saved = parser.SocketUnreader, RequestParser.mesg_class
    body_deadline.install(body_timeout=0.5, head_timeout=0.5)
    yield
    parser.SocketUnreader, RequestParser.mesg_class = saved


def trickling(sock: socket.socket, every: float, stop: threading.Event) -> threading.Thread:
    """A byte on `sock` every `every` seconds until `stop`: each recv() gets one in time."""

    def send() -> None:
        while not stop.wait(every):
            try:
                sock.send(b" ")
            except OSError:
                return

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def test_a_trickled_body_is_cut_at_its_deadline_though_every_read_gets_a_byte(deadlines):
    client, server = socket.socketpair()
    stop = threading.Event()
    with client, server:
        client.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        request = next(RequestParser(Config(), server, ("127.0.0.1", 1)))
        trickling(client, 0.05, stop)
        started = time.monotonic()
        with pytest.raises(body_deadline.BodyTimeout, match="within 0.5 s"):
            request.body.read()
        stop.set()
        assert 0.45 <= time.monotonic() - started < 1.0
        assert body_deadline.unread(request)
        assert server.gettimeout() is None  # gunicorn's socket as it was


def test_a_trickled_head_is_cut_at_its_deadline(deadlines):
    client, server = socket.socketpair()
    stop = threading.Event()
    with client, server:
        client.sendall(b"GET / HTTP/1.1\r\n")
        trickling(client, 0.05, stop)
        started = time.monotonic()
        with pytest.raises(body_deadline.HeadTimeout):
            next(RequestParser(Config(), server, ("127.0.0.1", 1)))
        stop.set()
        assert 0.45 <= time.monotonic() - started < 1.0


def test_a_body_read_whole_leaves_the_connection_usable(deadlines):
    client, server = socket.socketpair()
    with client, server:
        client.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        request = next(RequestParser(Config(), server, ("127.0.0.1", 1)))
        assert body_deadline.unread(request)
        assert request.body.read() == b"{}"
        assert not body_deadline.unread(request)


def send_quietly(sock: socket.socket, size: int) -> None:
    with contextlib.suppress(OSError):  # the lingering close stopped reading, as it should
        sock.sendall(b" " * size)


@pytest.mark.parametrize(
    ("bounds", "client_sends", "longest"),
    [
        ({"idle": 0.2}, "nothing", 0.5),  # silent: stops after `idle`
        ({"seconds": 0.5, "idle": 0.2}, "a byte every 0.05 s", 0.9),  # stops after `seconds`
        ({"max_bytes": 1_000_000}, "megabytes", 1.5),  # stops after `max_bytes`
    ],
)
def test_a_lingering_close_stops_at_each_bound(bounds, client_sends, longest):
    client, server = socket.socketpair()
    stop = threading.Event()
    with client, server:
        client.settimeout(5)
        server.sendall(b"the answer")
        if client_sends == "a byte every 0.05 s":
            trickling(client, 0.05, stop)
        elif client_sends == "megabytes":
            threading.Thread(target=send_quietly, args=(client, 50_000_000), daemon=True).start()
        started = time.monotonic()
        body_deadline.linger(server, **bounds)
        stop.set()
        assert time.monotonic() - started < longest
        assert client.recv(100) == b"the answer"
        assert client.recv(100) == b""  # then the FIN: the answer is whole


def test_a_lingering_close_ends_when_the_client_closes():
    client, server = socket.socketpair()
    with server:
        server.sendall(b"the answer")
        client.sendall(b"the rest of a body")
        client.close()
        started = time.monotonic()
        body_deadline.linger(server, idle=5, seconds=5)
        assert time.monotonic() - started < 0.5
