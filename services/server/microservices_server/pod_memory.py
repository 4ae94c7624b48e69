"""Memory that every gunicorn worker of a pod shares, with a lock no dead process can keep.

The fault switches (fault_board.py) and the clients that asked (asked_board.py) must read the
same in every worker: a Service spreads the requests over them. Each lives in an in-memory
file (memfd) that the gunicorn master maps before it forks the workers (per_pod.py), so
every worker inherits the same pages: nothing on disk, no Redis (both matter most while Redis
is down), and a restarted container starts empty.

Writers take a POSIX record lock on that file, which the kernel releases when its holder
dies (a worker killed half-way must not stop the others), and a lock of their process's own
for its threads (record locks are per process). Nothing done under the lock may yield or
wait, so under gevent no other greenlet can find it taken.

Light on purpose: the gunicorn master imports this module (no Flask, no Redis).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager


class PodMemory:
    def __init__(self, name: str, size: int) -> None:
        self.fd = os.memfd_create(name)
        os.ftruncate(self.fd, size)
        self.memory = mmap.mmap(self.fd, size)  # MAP_SHARED: one copy after fork
        self._threads_lock = threading.Lock()
        # Outside gunicorn each app has its own (tests make hundreds): its file goes with it.
        weakref.finalize(self, os.close, self.fd)

    @contextmanager
    def locked(self) -> Iterator[mmap.mmap]:
        with self._threads_lock:
            fcntl.lockf(self.fd, fcntl.LOCK_EX)
            try:
                yield self.memory
            finally:
                fcntl.lockf(self.fd, fcntl.LOCK_UN)
