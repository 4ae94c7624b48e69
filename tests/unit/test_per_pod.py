"""One object per pod (per_pod.py), between real processes: what the master made before the
fork is the one a forked worker gets, so the drain the master sets reaches the worker; with
no master, each caller gets its own."""

from __future__ import annotations

import os

from microservices_server.lifecycle import DrainFlag
from microservices_server.per_pod import PerPod


def test_a_worker_gets_the_flag_the_master_made_and_sees_it_set():
    shared = PerPod(DrainFlag)
    shared.make_in_master()
    go_read, master_set_it = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: waits for the master, then reads the flag it got
        os.close(master_set_it)
        os.read(go_read, 1)
        os._exit(0 if shared.get().is_set() else 1)
    os.close(go_read)
    shared.get().set()  # the master, on SIGTERM
    os.write(master_set_it, b"x")
    os.close(master_set_it)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the worker read its flag unset"


def test_without_a_master_each_caller_gets_one_of_its_own():
    shared = PerPod(DrainFlag)
    first, second = shared.get(), shared.get()
    first.set()
    assert not second.is_set()
