"""The fault switches' state, shared by every gunicorn worker of a pod (see faults.py).

A switch turned on through one worker must hold for the others too (a Service spreads the
probes and requests over them), so the state lives in memory every worker of the pod shares
(pod_memory.py): a switch works while Redis is down, and a restarted container starts with
every switch off.

Each switch is one fixed record: a sequence number, the time it turns itself off (the
system-wide CLOCK_MONOTONIC, the same in every process; 0 = off) and two numbers whose
meaning is the switch's own. Readers take no lock: they read the sequence number, the record,
and the sequence number again, and read again if it changed or was odd (a writer was in
between: a seqlock), so the request path never waits on another process. Writers take the
memory's lock, which no dead worker can keep.

Light on purpose: the gunicorn master imports this module (no Flask, no Redis).
"""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass

from .per_pod import PerPod
from .pod_memory import PodMemory

SWITCHES = ("readiness", "liveness", "latency", "errors", "cpu")
# A record: the sequence number (8 bytes), then until (monotonic seconds) and two parameters.
# The sequence number is copied in and out as bytes, never through struct.pack_into, which
# zero-fills its target first: a reader could read that passing 0 twice and take a record
# half-written for a whole one (seen: 1 read in 424,000).
_SEQUENCE_SIZE = 8
_DATA = struct.Struct("=ddd")
_RECORD_SIZE = _SEQUENCE_SIZE + _DATA.size


def _sequence(memory, offset: int) -> int:
    return int.from_bytes(memory[offset : offset + _SEQUENCE_SIZE], "little")


def _set_sequence(memory, offset: int, value: int) -> None:
    memory[offset : offset + _SEQUENCE_SIZE] = value.to_bytes(_SEQUENCE_SIZE, "little")


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
        self._shared = PodMemory("fault-board", _RECORD_SIZE * len(SWITCHES))
        self._memory = self._shared.memory
        # Whose board: the gunicorn master's pid (the burners it names carry it).
        self.owner = os.getpid()

    def _offset(self, switch: str) -> int:
        return SWITCHES.index(switch) * _RECORD_SIZE

    def _read_record(self, offset: int) -> tuple[float, float, float] | None:
        for _ in range(100):
            before = _sequence(self._memory, offset)
            data = _DATA.unpack_from(self._memory, offset + _SEQUENCE_SIZE)
            if before % 2 == 0 and _sequence(self._memory, offset) == before:
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
        with self._shared.locked() as memory:
            before = self.read(switch)
            # Odd while writing (also if a writer died half-way: `| 1` keeps it odd).
            sequence = _sequence(memory, offset) | 1
            _set_sequence(memory, offset, sequence)
            _DATA.pack_into(memory, offset + _SEQUENCE_SIZE, until, first, second)
            _set_sequence(memory, offset, sequence + 1)
        return before


# The gunicorn master makes it in on_starting (lifecycle.py), so its pid is the owner, and
# every worker inherits it; outside gunicorn, each caller gets a board of its own.
shared_board = PerPod(FaultBoard)
fault_board = shared_board.get
