"""The store's connection check in a gevent worker, against a real Redis: it gives the other
greenlets their turn and only then looks at the socket, so that a connection Redis closed
during that turn is never handed out (it would fail its request with a 503)."""

import subprocess

from tests.support import server_python

# Run in its own process (the server's interpreter: the image's with SERVER_IMAGE): gevent
# must patch the socket module before redis-py is imported.
SCENARIO = """
from gevent import monkey; monkey.patch_all()
import sys
import gevent, redis
from gevent.monkey import get_original
from microservices_server.settings import Settings
from microservices_server.store import CounterStore

url = sys.argv[1]
store = CounterStore.from_settings(Settings(redis_url=url))
store.get()  # one pooled connection, idle from now on
host, port = url.removeprefix("redis://").split("/")[0].split(":")

def redis_closes_it():  # another greenlet's turn during which Redis drops its clients
    sock = get_original("socket", "socket")()
    sock.connect((host, int(port)))
    sock.sendall(b"CLIENT KILL TYPE normal\\r\\n")
    sock.recv(100)
    sock.close()

failed = 0
for _ in range(20):
    gevent.spawn(redis_closes_it)  # ready to run at the check's turn
    try:
        store.get()
    except redis.ConnectionError:
        failed += 1
print("failed", failed)
"""


def test_a_connection_closed_during_the_checks_turn_is_never_handed_out(redis_url):
    done = subprocess.run(
        server_python("-c", SCENARIO, redis_url), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["failed", "0"], done.stdout + done.stderr
