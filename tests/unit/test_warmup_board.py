"""The warm board (warmup.py), between real processes: the one the master made before the
fork counts each first worker that warmed up in its own process, and no replacement."""

from __future__ import annotations

import os
from types import SimpleNamespace

from microservices_server.per_pod import PerPod
from microservices_server.warmup import WarmBoard


def warmed_in_a_worker(board: WarmBoard, age: int, workers: int = 2) -> None:
    """A forked process, as gunicorn's worker number `age` of `workers`, marks itself warm."""
    pid = os.fork()
    if pid == 0:
        board.warmed(SimpleNamespace(age=age, cfg=SimpleNamespace(workers=workers)))
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_all_warm_once_every_first_worker_is_and_not_before():
    shared = PerPod(WarmBoard)
    shared.make_in_master()
    board = shared.get()
    warmed_in_a_worker(board, 1)
    assert board.all_warm(1) and not board.all_warm(2)
    warmed_in_a_worker(board, 3)  # one that replaced a worker: not waited on, not counted
    assert not board.all_warm(2)
    warmed_in_a_worker(board, 2)
    assert board.all_warm(2)
