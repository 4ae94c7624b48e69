"""The fault switches' state, shared by every gunicorn worker of a pod (see faults.py).

A switch turned on through one worker must hold for the others too (a Service spreads the
probes and requests over them), so the state lives in shared memory (an in-memory file,
memfd) that the gunicorn master makes before it forks the workers, like the drain flag
(lifecycle.py). Nothing on disk, no Redis: a switch must work while Redis is down, and a
restarted container starts with every switch off.

Each switch is one fixed record: a sequence number, the time it turns itself off (the
system-wide CLOCK_MONOTONIC, the same in every process; 0 = off) and two numbers whose
meaning is the switch's own. Readers take no lock: they read the sequence number, the record,
and the sequence number again, and read again if it changed or was odd (a writer was in
between: a seqlock), so the request path never waits on another process. Writers take a lock
the kernel releases if its holder dies (a POSIX record lock on the memory's own file), and
one of their process's own for its threads.

Light on purpose: the gunicorn master imports this module (no Flask, no Redis).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
import time
from dataclasses import dataclass

SWITCHES = ("readiness", "liveness", "latency", "errors", "cpu")
# A record: the sequence number, then until (monotonic seconds) and two parameters. Native
# order and alignment, so that the sequence number is read and written as one word.
_SEQUENCE = struct.Struct("=Q")
_DATA = struct.Struct("=ddd")
_RECORD_SIZE = _SEQUENCE.size + _DATA.size


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
        # Memory with a file of its own: shared (MAP_SHARED) by every process forked after
        # this, and a file for the writers' lock.
        self._fd = os.memfd_create("fault-board")
        os.ftruncate(self._fd, _RECORD_SIZE * len(SWITCHES))
        self._memory = mmap.mmap(self._fd, _RECORD_SIZE * len(SWITCHES))
        self._threads_lock = threading.Lock()
        # Whose board: the gunicorn master's pid (the burners it names carry it).
        self.owner = os.getpid()

    def _offset(self, switch: str) -> int:
        return SWITCHES.index(switch) * _RECORD_SIZE

    def _read_record(self, offset: int) -> tuple[float, float, float] | None:
        for _ in range(100):
            before = _SEQUENCE.unpack_from(self._memory, offset)[0]
            data = _DATA.unpack_from(self._memory, offset + _SEQUENCE.size)
            if before % 2 == 0 and _SEQUENCE.unpack_from(self._memory, offset)[0] == before:
                return data
        return None  # a writer kept it busy for 100 reads (never seen): read it as off

    def read(self, switch: str) -> SwitchState:
        """The switch as it stands now; a switch past its time reads as off."""
        data = self._read_record(self._offset(switch))
        if data is None or data[0] <= time.monotonic():
            return OFF
        return SwitchState(True, *data)

    def until(self, switch: str) -> float:
        """When the switch's latest turn ends (or ended); 0 if it was turned off."""
        data = self._read_record(self._offset(switch))
        return data[0] if data else 0.0

    def swap(self, switch: str, seconds: float, first: float = 0.0, second: float = 0.0):
        """Turn `switch` on for `seconds` with its parameters, or off with seconds=0; return
        what it was just before (one change at a time, whichever worker makes it)."""
        until = time.monotonic() + seconds if seconds > 0 else 0.0
        offset = self._offset(switch)
        with self._threads_lock:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)  # nothing in here yields or waits
            try:
                before = self.read(switch)
                # Odd while writing (also if a writer died half-way: `| 1` keeps it odd).
                sequence = _SEQUENCE.unpack_from(self._memory, offset)[0] | 1
                _SEQUENCE.pack_into(self._memory, offset, sequence)
                _DATA.pack_into(self._memory, offset + _SEQUENCE.size, until, first, second)
                _SEQUENCE.pack_into(self._memory, offset, sequence + 1)
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)
        return before


# Made by the gunicorn master in on_starting (lifecycle.py); a worker inherits it.
_shared_board: FaultBoard | None = None


def make_shared_board() -> None:
    global _shared_board
    _shared_board = FaultBoard()


def fault_board() -> FaultBoard:
    """The gunicorn master's board in a worker; a board of its own outside gunicorn."""
    return _shared_board or FaultBoard()
