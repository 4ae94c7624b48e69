"""PyPy only: each worker's major collections run a step at a time, STEP_EVERY apart.

PyPy's collector is incremental, but under this server's load its steps ran back to back:
once a major collection had begun, each step was followed at once by the next, so the whole
collection (PYPYLOG: 14 marking steps of 3-4 ms, a last one of 25-33 ms, two sweeps of
8-25 ms; about 190 ms) held every request in flight, every 5-6 s at one worker. That was
the PyPy image's p99 (2-3x Node's; with the major collections put off, 0.75x).

PyPy lets a program drive them itself (its gc_info docs, "Semi-manual GC management"):
gc.disable() stops the major collections (minor ones go on; finalizers, __del__ among them,
then run at the end of each collection that gc.collect_step() completes), and
gc.collect_step() runs one step. Here a thread (a greenlet under gevent) wakes every
STEP_EVERY seconds while a collection is due or under way, every IDLE_POLL otherwise; once
the heap (what the collector counts: its arenas and large objects, as reported after each
minor collection) has reached the start point, it runs one step per wake until that
collection is done. Requests run between the steps. The start point follows the heap a
collection leaves, as PyPy's own does (PYPY_GC_MAJOR_COLLECT's 1.82 times it), between a
quarter and 3/4 of PYPY_GC_MAX; half of it before the first collection.

The heap stays bounded as before: past HARD (checked after every minor collection, whether
or not the pacer gets its turn) or on a MemoryError, PyPy's own collector is switched back on
(back to back, then PYPY_GC_MAX's MemoryError and abort) until the heap is back under the
start point with no collection under way. Without PYPY_GC_MAX (the image sets it) nothing
changes: the start point is a share of it. Hooks already set on gc.hooks keep being called;
hooks set after start() would replace the pacer's (nothing here sets any). Should a step ever
raise (a chained hook runs inside it), the pacer ends and PyPy's own collector takes over.
"""

from __future__ import annotations

import gc
import os
import threading
import time

STEP_EVERY = 0.01  # seconds: tens of requests run between two steps (~40 at 4,000 a second)
IDLE_POLL = 0.1  # seconds between two looks at the heap while no collection is due
GROWTH = 1.82  # the next collection starts at this times the heap the last one left (PyPy's)
# Of PYPY_GC_MAX: the start point's bounds. Its highest leaves room under HARD for what one
# minor collection can add (up to a nursery, 64MB in the image) before the pacer's next look.
FIRST_SHARE, LOW_SHARE, HIGH_SHARE = 1 / 2, 1 / 4, 3 / 4
HARD_SHARE = 15 / 16  # of PYPY_GC_MAX: past this, PyPy's own collector takes over again
UNITS = {"k": 2**10, "m": 2**20, "g": 2**30}


def heap_limit(value: str | None) -> int | None:
    """PYPY_GC_MAX in bytes, read as PyPy reads it ("256MB", "1.5GB", "1e9"), or None where
    PyPy sets no limit (unset, 0, or anything it cannot read)."""
    if not value:
        return None
    if len(value) > 1 and value[-1] in "bB":
        value = value[:-1]
    factor = UNITS.get(value[-1].lower())
    try:
        number = int(float(value[:-1] if factor else value) * (factor or 1))
    except (ValueError, OverflowError):  # "abc", "nan", "inf"
        return None
    return number if number > 0 else None


class Pacer:
    """The major collections of this process, paced. `start()` once, in the worker."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.start_at = int(limit * FIRST_SHARE)
        self.hard = int(limit * HARD_SHARE)
        self.heap = 0  # bytes, as of the last minor collection
        self.collecting = False  # a major collection under way (ours or PyPy's own)
        self.steps = 0  # major-collection steps run here
        self.cycles = 0  # major collections completed by the steps here
        self.handed_back = 0  # times PyPy's own collector took over

    # The collector's hooks run in whichever thread it ran in, between two bytecodes: they
    # only note what they see, and switch PyPy's own collector back on.
    def _on_minor(self, stats) -> None:
        self.heap = stats.total_memory_used
        if self.heap >= self.hard and not gc.isenabled():
            self._hand_back()

    def _on_step(self, stats) -> None:
        self.collecting = not _done(stats.newstate)

    def _on_collect(self, stats) -> None:
        left = stats.arenas_bytes + stats.rawmalloc_bytes_after
        self.heap = left
        low, high = self.limit * LOW_SHARE, self.limit * HIGH_SHARE
        self.start_at = int(min(max(left * GROWTH, low), high))

    def _hand_back(self) -> None:
        self.handed_back += 1
        gc.enable()

    def start(self) -> None:
        for name, ours in (
            ("on_gc_minor", self._on_minor),
            ("on_gc_collect_step", self._on_step),
            ("on_gc_collect", self._on_collect),
        ):
            setattr(gc.hooks, name, _chained(ours, getattr(gc.hooks, name)))
        gc.disable()
        threading.Thread(target=self._run, name="gc-pacing", daemon=True).start()

    def due(self) -> bool:
        return self.collecting or self.heap >= self.start_at

    def _run(self) -> None:
        try:
            while True:
                time.sleep(STEP_EVERY if self.due() else IDLE_POLL)
                self.tick()
        finally:  # never leave a process without major collections (PyPy's own from here)
            gc.enable()

    def tick(self) -> None:
        """One wake: a step if a collection is due or under way."""
        if gc.isenabled() and not self.due():
            gc.disable()  # back from PyPy's own collector, its collection finished
        if not self.due():
            return
        self.steps += 1
        try:
            stats = gc.collect_step()
        except MemoryError:  # the live heap over PYPY_GC_MAX: PyPy's own handling from here
            self._hand_back()
            return
        # The last step (USERDEL -> SCANNING, the finalizers) is done only by collect_step: the
        # step hook, run before it returns, already said SCANNING; this says it is still due.
        self.collecting = not stats.major_is_done
        self.cycles += stats.major_is_done


def _done(state: int) -> bool:
    """Whether a collector state is between two major collections."""
    return state in (gc.GcCollectStepStats.STATE_SCANNING, gc.GcCollectStepStats.STATE_USERDEL)


def _chained(ours, theirs):
    if theirs is None:
        return ours

    def both(stats) -> None:
        ours(stats)
        theirs(stats)

    return both


def start() -> Pacer | None:
    """Pace this process's major collections, on PyPy with PYPY_GC_MAX set; else None."""
    limit = heap_limit(os.environ.get("PYPY_GC_MAX"))
    if not hasattr(gc, "collect_step") or limit is None:
        return None
    pacer = Pacer(limit)
    pacer.start()
    return pacer
