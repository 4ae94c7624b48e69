"""PyPy only: each worker's major collections run a step at a time, STEP_EVERY apart.

PyPy's collector is incremental, but under this server's load its steps ran back to back:
once a major collection had begun, each step was followed at once by the next, so the whole
collection (PYPYLOG: 14 marking steps of 3-4 ms, a last one of 25-33 ms, two sweeps of
8-25 ms; about 190 ms) held every request in flight, every 5-6 s at one worker. That was
the PyPy image's p99 (2.3x Node's; with the major collections put off, 0.75x).

PyPy lets a program drive them itself (its gc_info docs, "Semi-manual GC management"):
gc.disable() stops only the major collections (minor ones go on, and so do finalizers'
queues), and gc.collect_step() runs one step. Here a thread (a greenlet under gevent) wakes
every STEP_EVERY seconds; once the heap (what the collector counts: its arenas and large
objects, as reported after each minor collection) has reached START, it runs one step per
wake until that collection is done. Requests run between the steps.

The heap stays bounded as before: past HARD (checked after every minor collection, whether
or not the pacer gets its turn), PyPy's own collector is switched back on (back to back, then
PYPY_GC_MAX's MemoryError and abort) until a collection brings the heap back under START.
Without PYPY_GC_MAX (the image sets it) nothing changes: START is a share of it.
"""

from __future__ import annotations

import gc
import os
import re
import threading
import time

STEP_EVERY = 0.01  # seconds: tens of requests run between two steps (~40 at 4,000 a second)
START_SHARE = 1 / 2  # of PYPY_GC_MAX: a collection begins here (PyPy's own began at all of it)
HARD_SHARE = 15 / 16  # of PYPY_GC_MAX: past this, PyPy's own collector takes over again


def heap_limit(value: str | None) -> int | None:
    """PYPY_GC_MAX in bytes, read as PyPy reads it ("256MB", "1.5GB", "300000"), or None."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kmg]?)b?\s*", value or "", re.IGNORECASE)
    if not match:
        return None
    scale = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[match[2].lower()]
    return int(float(match[1]) * scale) or None


class Pacer:
    """The major collections of this process, paced. `start()` once, in the worker."""

    def __init__(self, limit: int) -> None:
        self.start_at = int(limit * START_SHARE)
        self.hard = int(limit * HARD_SHARE)
        self.heap = 0  # bytes, as of the last minor collection
        self.collecting = False
        self.steps = 0  # major-collection steps run here
        self.cycles = 0  # major collections completed by the steps here
        self.handed_back = 0  # times PyPy's own collector took over

    def _on_minor(self, stats) -> None:
        """After every minor collection, whatever the pacer's thread is doing: the bound is
        kept even if it does not get its turn."""
        self.heap = stats.total_memory_used
        if self.heap >= self.hard and not gc.isenabled():
            self.handed_back += 1
            gc.enable()

    def start(self) -> None:
        gc.hooks.on_gc_minor = self._on_minor
        gc.disable()
        threading.Thread(target=self._run, name="gc-pacing", daemon=True).start()

    def _run(self) -> None:
        try:
            while True:
                time.sleep(STEP_EVERY)
                self.tick()
        finally:  # never leave a process without major collections
            gc.enable()

    def tick(self) -> None:
        """One wake: a step if a collection is due or under way."""
        if self.heap < self.start_at and gc.isenabled() and not self.collecting:
            gc.disable()  # back from PyPy's own collector (_on_minor)
        if self.collecting or self.heap >= self.start_at:
            self.steps += 1
            self.collecting = not gc.collect_step().major_is_done
            if not self.collecting:
                self.cycles += 1


def start() -> Pacer | None:
    """Pace this process's major collections, on PyPy with PYPY_GC_MAX set; else None."""
    limit = heap_limit(os.environ.get("PYPY_GC_MAX"))
    if not hasattr(gc, "collect_step") or limit is None:
        return None
    pacer = Pacer(limit)
    pacer.start()
    return pacer
