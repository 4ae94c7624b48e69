"""wire.py's pieces on real sockets: a whole answer arrives whatever its size, and the cached
Date header is the current date as HTTP writes it."""

import socket
import threading
import time
from email.utils import formatdate, parsedate_to_datetime

from microservices_server import wire


class Recording:
    """A socket that remembers which of its write methods were called."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.calls: list[str] = []

    def send(self, data) -> int:
        self.calls.append("send")
        return self.sock.send(data)

    def sendall(self, data) -> None:
        self.calls.append("sendall")
        self.sock.sendall(data)


def test_an_answer_larger_than_the_socket_buffer_arrives_whole():
    """One send() takes what the kernel buffer holds; the rest must still go, in order."""
    sender, receiver = socket.socketpair()
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sender.settimeout(10)  # like gevent's sockets: send() writes what fits, then returns
    recording = Recording(sender)
    data = bytes(range(256)) * 16_384  # 4 MiB: many times the buffer
    received = bytearray()

    def read_all() -> None:
        while chunk := receiver.recv(65536):
            received.extend(chunk)

    reader = threading.Thread(target=read_all)
    reader.start()
    try:
        wire.send_whole(recording, data)
    finally:
        sender.close()
        reader.join(10)
        receiver.close()
    assert bytes(received) == data
    assert recording.calls == ["send", "sendall"]  # the first send() was partial


def test_a_small_answer_takes_one_send():
    sender, receiver = socket.socketpair()
    recording = Recording(sender)
    with sender, receiver:
        wire.send_whole(recording, b"HTTP/1.1 200 OK\r\n\r\n")
        assert receiver.recv(100) == b"HTTP/1.1 200 OK\r\n\r\n"
    assert recording.calls == ["send"]


def test_the_date_header_is_now_in_http_format():
    before = time.time()
    date = wire.http_date()
    after = time.time()
    assert date.endswith(" GMT")
    assert int(before) <= parsedate_to_datetime(date).timestamp() <= after
    assert wire.http_date() in (date, formatdate(time.time(), usegmt=True))


def test_a_given_time_is_formatted_as_given():
    assert wire.http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"
