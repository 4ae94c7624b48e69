"""When each support-tier client last asked this pod anything, answered or not, shared by
every gunicorn worker of the pod (seen.py says why the page needs it).

A counter's request reaches one worker; the page's /api/status, any worker. Were the time
kept per process, a page polling through a Service would read "retrying" from one worker and
"stale" from the next. So it lives in memory every worker of the pod shares (pod_memory.py),
like the fault switches: no Redis, since it matters most while Redis is down. Not shared
between pods: each pod's page knows the clients that asked it (with Redis up, what Redis
records is seen by every pod).

A fixed table of slots: the client's member string (identity.Client.member, at most 105
bytes) and the wall-clock time it last asked. Bounded: once every slot is taken, a new
client is dropped (a flood of invented User-Agents cannot grow it), a known one kept.
Readers and writers take the memory's lock (pod_memory.py); each worker writes a client at
most once a second (seen.py), so it is rarely taken.

Light on purpose: the gunicorn master imports this module (no Flask, no Redis).
"""

from __future__ import annotations

import struct

from .per_pod import PerPod
from .pod_memory import PodMemory

SLOTS = 100
# A slot: when (wall-clock seconds; 0 = empty), then the member, zero-padded.
_SLOT = struct.Struct("=d112s")


class AskedBoard:
    def __init__(self, slots: int = SLOTS) -> None:
        self.slots = slots
        self._shared = PodMemory("asked-board", _SLOT.size * slots)
        self._memory = self._shared.memory

    def _filled(self):
        """(index, when, member) of each slot taken: they fill in order, never empty."""
        for index in range(self.slots):
            at, name = _SLOT.unpack_from(self._memory, index * _SLOT.size)
            if at == 0:
                return
            yield index, at, name.rstrip(b"\0").decode()

    def mark(self, client: str, at: float) -> None:
        """`client` asked at `at` (wall clock); dropped if it is new and every slot taken."""
        with self._shared.locked():
            filled = list(self._filled())
            slot = next((i for i, _, name in filled if name == client), len(filled))
            if slot < self.slots:
                _SLOT.pack_into(self._memory, slot * _SLOT.size, at, client.encode())

    def since(self, since: float) -> dict[str, float]:
        """The clients that asked any worker of this pod since `since` (wall clock)."""
        with self._shared.locked():
            return {name: at for _, at, name in self._filled() if at >= since}


# The gunicorn master makes it in on_starting (lifecycle.py) and every worker inherits it;
# outside gunicorn, each caller gets a board of its own.
shared_board = PerPod(AskedBoard)
asked_board = shared_board.get
