"""The support-tier clients that read the count, recorded for the page off the request's path.

A read must never fail, nor wait, because its bookkeeping cannot be written. Redis refuses or
holds writes while a failover or a managed Redis' maintenance pauses them (`CLIENT PAUSE
WRITE`), on a read-only replica, and when out of memory; a plain GET works through all three.
So GET / only notes its caller here, and one background thread per worker process (a greenlet
under gevent) writes what was noted: at most once every `every` seconds, all the clients noted
meanwhile in one script call. A write that fails is logged and dropped; the next GET of that
client notes it again. The page calls a client "stale" only after CLIENT_STALE_AFTER (10 s),
so a second's delay never shows.

The pod also keeps, in memory every worker shares (asked_board.py), when each client last
asked it anything, answered or not (asked(), called before any fault switch or Redis call): a
counter whose increments fail (Redis away, a fault switch) is never recorded in Redis, yet it
is working, and the page calls it "retrying" rather than "stale", whichever worker answers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis
from microservices_common.logs import log_event

from .asked_board import AskedBoard

log = logging.getLogger("server")


class ClientsSeen:
    def __init__(
        self,
        record: Callable[[list[str]], None],
        asked: AskedBoard,
        every: float = 1.0,
        max_pending: int = 100,
    ):
        self._record = record  # CounterStore.record_seen
        self.every = every
        # Bounded: while Redis holds writes, a flood of invented User-Agents cannot grow it.
        self.max_pending = max_pending
        self._pending: set[str] = set()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._asked = asked  # the pod's, shared by its workers
        self._marked: dict[str, float] = {}  # client -> when this process last marked it

    def asked(self, client: str) -> None:
        """Remember that `client` asked this pod something just now, whatever the answer: on
        the pod's board at most once every `every` s per process (the page reads seconds).
        Bounded like the pending set: an invented User-Agent more is dropped, a known one kept."""
        now = time.time()
        if client not in self._marked and len(self._marked) >= self.max_pending:
            return
        if now - self._marked.get(client, 0.0) >= self.every:
            self._marked[client] = now  # one dict store: safe across threads
            self._asked.mark(client, now)

    def asked_since(self, since: float) -> dict[str, float]:
        """The clients that asked any worker of this pod something since `since`."""
        return self._asked.since(since)

    def note(self, client: str) -> None:
        """Remember that `client` read the count; it is written within about `every` s."""
        with self._wake:
            if client in self._pending or len(self._pending) >= self.max_pending:
                return
            self._pending.add(client)
            # Started on first use: in each gunicorn worker, after the fork.
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="clients-seen", daemon=True)
                self._thread.start()
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._pending)
                clients, self._pending = sorted(self._pending), set()
            try:
                self._record(clients)
            except Exception as exc:  # noqa: BLE001 - bookkeeping: never stop the thread
                log_event(
                    log,
                    "clients_not_recorded",
                    f"could not record the clients seen ({type(exc).__name__}: {exc}); "
                    "the page may show them stale",
                    logging.INFO if isinstance(exc, redis.RedisError) else logging.ERROR,
                )
            # Coalesce: whatever is noted meanwhile goes in the next call.
            time.sleep(self.every)
