"""The workers' major collections on PyPy, a step at a time (gc_pacing.py), in the server's
interpreter (the image's with SERVER_IMAGE): run by the PyPy pass of `make test`, and by the
CPython pass, where the collector is left alone."""

from __future__ import annotations

import json
import os
import subprocess

from tests.support import server_on_pypy, server_python

# A process that allocates for 3 s, a live set of ~12 MB among short-lived garbage, with
# PYPY_GC_MAX=96MB (PyPy's own collector back past 90 MB), then drops the live set and
# allocates gently for 2 s; it reports what the pacer did and what the collector's hook saw
# in the first part: how many steps each call reported (several: run back to back) and the
# shortest time between two calls. STEP_EVERY may be set by argv[1].
SCENARIO = """
import gc, json, sys, time
from microservices_server import gc_pacing

if len(sys.argv) > 1:
    gc_pacing.STEP_EVERY = float(sys.argv[1])
calls = []
if hasattr(gc, "hooks"):
    gc.hooks.on_gc_collect_step = lambda stats: calls.append((time.monotonic(), stats.count))
pacer = gc_pacing.start()
disabled = samples = max_heap = 0

def allocate(seconds, live, keep):
    global disabled, samples, max_heap
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        live.append([str(n) for n in range(100)])
        if len(live) > keep:
            del live[: keep // 2]
        if len(live) % 4 == 0:
            time.sleep(0.0001)  # the pacer's thread gets its turns
        if pacer:
            max_heap = max(max_heap, pacer.heap)
        samples += 1
        disabled += not gc.isenabled()

allocate(3, [], 2_000)
first = list(calls)
gaps = [b[0] - a[0] for a, b in zip(first, first[1:])]
disabled_share = disabled / samples
allocate(2, [], 20)
print(json.dumps({
    "paced": pacer is not None,
    "enabled_at_the_end": gc.isenabled(),
    "disabled_share": disabled_share,
    "steps_seen": sum(count for _, count in first),
    "most_steps_in_a_call": max((count for _, count in first), default=0),
    "shortest_gap": min(gaps, default=None),
    "steps_paced": pacer.steps if pacer else 0,
    "cycles": pacer.cycles if pacer else 0,
    "handed_back": pacer.handed_back if pacer else 0,
    "max_heap": max_heap,
}))
"""
ENV = {"PATH": os.environ["PATH"], "PYPY_GC_MAX": "96MB", "PYPY_GC_NURSERY": "4MB"}
MB = 2**20


def run(*args: str) -> dict:
    done = subprocess.run(
        server_python("-c", SCENARIO, *args), capture_output=True, text=True, timeout=60, env=ENV
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_pypy_runs_every_major_collection_a_step_at_a_time_and_cpython_is_left_alone():
    report = run()
    if not server_on_pypy():
        # CPython: no pacing, its collector as it was.
        assert (report["paced"], report["enabled_at_the_end"], report["steps_seen"]) == (
            False,
            True,
            0,
        )
        return
    assert report["paced"], report
    # Collections completed, PyPy's own collector off all along (no hand-back), the heap
    # under PYPY_GC_MAX, and every step on its own: one per call of the collector's hook, at
    # least half of STEP_EVERY (10 ms) after the one before (PyPy ran them back to back).
    assert report["cycles"] >= 2, report
    assert report["handed_back"] == 0 and report["disabled_share"] == 1.0, report
    assert report["max_heap"] < 96 * MB, report
    assert report["steps_seen"] > 10 and report["most_steps_in_a_call"] == 1, report
    assert report["shortest_gap"] >= 0.005, report
    assert not report["enabled_at_the_end"], report


def test_on_pypy_a_pacer_left_behind_hands_back_to_pypys_own_collector_and_takes_over_again():
    """One step a second cannot keep up: past 15/16 of PYPY_GC_MAX PyPy collects again by
    itself, the heap stays bounded, and once it is low again the steps are paced again."""
    report = run("1.0")
    if not server_on_pypy():
        assert (report["paced"], report["enabled_at_the_end"]) == (False, True)
        return
    assert report["handed_back"] >= 1, report
    assert report["most_steps_in_a_call"] > 1, report  # PyPy's own steps, back to back
    assert report["max_heap"] < 96 * MB + 16 * MB, report
    assert not report["enabled_at_the_end"], report
