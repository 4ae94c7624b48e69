"""One object per pod: made by the gunicorn master before it forks, inherited by every worker.

The drain flag (lifecycle.py), the fault switches (fault_board.py), the clients that asked
(asked_board.py) and how many workers have warmed up (warmup.py) must read the same in every
worker of a pod: a Service spreads the probes and requests over them. Each keeps its state
in shared memory (MAP_SHARED), so it is enough that the master makes the object in
on_starting, before any worker exists: every worker is a fork of the master and inherits the
object with the same pages under it (nothing to look up or attach to, nothing on disk).

Without a master (tests, the app run in one process) nothing made it: each caller gets a new
one of its own, so apps built side by side in one test process share nothing.

Light on purpose: the gunicorn master imports this module (no Flask, no Redis).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerPod(Generic[T]):
    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._masters: T | None = None

    def make_in_master(self) -> None:
        """In the gunicorn master's on_starting, before the fork: the one every worker gets."""
        self._masters = self._make()

    def get(self) -> T:
        """The master's in a worker (and in the master); a new one of its own without one."""
        return self._masters if self._masters is not None else self._make()
