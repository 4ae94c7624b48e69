"""The workers' major collections on PyPy, a step at a time (gc_pacing.py), in the server's
interpreter (the image's with SERVER_IMAGE): run by the PyPy pass of `make test`, and by the
CPython pass, where the collector is left alone."""

from __future__ import annotations

import json
import os
import subprocess

from tests.support import server_on_pypy, server_python

# A process that allocates for 3 s, a live set of ~12 MB among short-lived garbage, with
# PYPY_GC_MAX=96MB (collections paced from 48 MB, PyPy's own past 90); it reports what the
# pacer did and what the collector's hook saw. STEP_EVERY may be set by argv[1].
SCENARIO = """
import gc, json, sys, time
from microservices_server import gc_pacing

if len(sys.argv) > 1:
    gc_pacing.STEP_EVERY = float(sys.argv[1])
seen = {"steps": 0, "heap": 0}
if hasattr(gc, "hooks"):
    def on_step(stats):
        seen["steps"] += stats.count
    gc.hooks.on_gc_collect_step = on_step
pacer = gc_pacing.start()
disabled = samples = 0
live = []
end = time.monotonic() + 3
while time.monotonic() < end:
    live.append([str(n) for n in range(100)])
    if len(live) > 2_000:
        del live[:1_000]
    if len(live) % 4 == 0:
        time.sleep(0.0001)  # the pacer's thread gets its turns
    if pacer:
        seen["heap"] = max(seen["heap"], pacer.heap)
    samples += 1
    disabled += not gc.isenabled()
print(json.dumps({
    "paced": pacer is not None,
    "enabled": gc.isenabled(),
    "disabled_share": disabled / samples,
    "steps_seen": seen["steps"],
    "steps_paced": pacer.steps if pacer else 0,
    "cycles": pacer.cycles if pacer else 0,
    "handed_back": pacer.handed_back if pacer else 0,
    "max_heap": seen["heap"],
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
        assert (report["paced"], report["enabled"], report["steps_seen"]) == (False, True, 0)
        return
    assert report["paced"], report
    # Collections completed, every step one of the pacer's (none run back to back by PyPy's
    # own collector), which never had to take over; the heap under PYPY_GC_MAX all along.
    assert report["cycles"] >= 2, report
    assert 0 < report["steps_seen"] <= report["steps_paced"], report  # the last may be unseen
    assert report["handed_back"] == 0 and report["disabled_share"] == 1.0, report
    assert report["max_heap"] < 96 * MB, report


def test_on_pypy_a_pacer_left_behind_hands_back_to_pypys_own_collector():
    """One step a second cannot keep up: past 15/16 of PYPY_GC_MAX PyPy collects again by
    itself, and the heap stays bounded."""
    report = run("1.0")
    if not server_on_pypy():
        assert (report["paced"], report["enabled"]) == (False, True)
        return
    assert report["handed_back"] >= 1, report
    assert report["steps_seen"] > report["steps_paced"], report  # PyPy's own steps
    assert report["max_heap"] < 96 * MB + 16 * MB, report
