"""The fault switches' state, shared by every gunicorn worker of a pod (see faults.py).

A switch turned on through one worker must hold for the others too (a Service spreads the
probes and requests over them), so the state lives in an anonymous shared mapping that the
gunicorn master makes before it forks the workers, like the drain flag (lifecycle.py). No
file, no Redis: a switch must work while Redis is down, and a restarted container starts
with every switch off.

Each switch is one fixed record: a sequence number, the time it turns itself off (the
system-wide CLOCK_MONOTONIC, the same in every process; 0 = off) and two numbers whose
meaning is the switch's own. Writers take a lock; readers take none: they read the sequence
number before and after the record and read again if a writer was in between (a seqlock),
so the request path never waits on a lock held by another process.

Light on purpose: the gunicorn master imports this module (no Flask, no Redis).
"""

from __future__ import annotations

import mmap
import multiprocessing
import struct
import time
from dataclasses import dataclass

SWITCHES = ("readiness", "liveness", "latency", "errors", "cpu")
# sequence number, until (monotonic seconds), first and second parameter
_RECORD = struct.Struct("<Qddd")


@dataclass(frozen=True)
class SwitchState:
    on: bool
    until: float = 0.0
    first: float = 0.0
    second: float = 0.0

    def seconds_left(self, now: float | None = None) -> float:
        return max(0.0, self.until - (time.monotonic() if now is None else now))


OFF = SwitchState(on=False)


class FaultBoard:
    def __init__(self) -> None:
        # MAP_SHARED | MAP_ANONYMOUS: made before fork, the same memory in every worker.
        self._memory = mmap.mmap(-1, _RECORD.size * len(SWITCHES))
        # A POSIX semaphore, inherited across fork like the mapping: only writers take it.
        self._write_lock = multiprocessing.Lock()

    def _offset(self, switch: str) -> int:
        return SWITCHES.index(switch) * _RECORD.size

    def read(self, switch: str) -> SwitchState:
        """The switch as it stands now; a switch past its time reads as off."""
        offset = self._offset(switch)
        for _ in range(100):
            sequence, until, first, second = _RECORD.unpack_from(self._memory, offset)
            if sequence % 2 == 0 and _RECORD.unpack_from(self._memory, offset)[0] == sequence:
                break
        else:  # a writer that died half-way (never seen; a record a writer keeps rewriting)
            return OFF
        if until <= time.monotonic():
            return OFF
        return SwitchState(True, until, first, second)

    def write(self, switch: str, seconds: float, first: float = 0.0, second: float = 0.0) -> None:
        """Turn `switch` on for `seconds` with its parameters, or off with seconds=0."""
        until = time.monotonic() + seconds if seconds > 0 else 0.0
        offset = self._offset(switch)
        if not self._write_lock.acquire(timeout=1):
            raise TimeoutError("the fault switches are locked by another worker")
        try:
            sequence = _RECORD.unpack_from(self._memory, offset)[0]
            _RECORD.pack_into(self._memory, offset, sequence + 1, 0.0, 0.0, 0.0)  # odd: writing
            _RECORD.pack_into(self._memory, offset, sequence + 2, until, first, second)
        finally:
            self._write_lock.release()


# Made by the gunicorn master in on_starting (lifecycle.py); a worker inherits it.
_shared_board: FaultBoard | None = None


def make_shared_board() -> None:
    global _shared_board
    _shared_board = FaultBoard()


def fault_board() -> FaultBoard:
    """The gunicorn master's board in a worker; a board of its own outside gunicorn."""
    return _shared_board or FaultBoard()
