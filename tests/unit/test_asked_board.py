"""When each support-tier client last asked the pod (asked_board.py), between real processes:
what one forked worker marks, every other reads; the table stays bounded; and the per-process
side (seen.ClientsSeen.asked) writes a client at most once per `every`."""

from __future__ import annotations

import multiprocessing

from microservices_server.asked_board import AskedBoard
from microservices_server.seen import ClientsSeen

COUNTER = "counter counter-7c9f-x2kq 1.0.0"
POLLER = "poller poller-5d8b-q1rt 1.0.0"


def mark_in_another_process(board: AskedBoard, client: str, at: float) -> None:
    worker = multiprocessing.get_context("fork").Process(target=board.mark, args=(client, at))
    worker.start()
    worker.join()
    assert worker.exitcode == 0


def test_what_one_worker_marks_every_worker_reads():
    board = AskedBoard()
    mark_in_another_process(board, COUNTER, 100.0)
    mark_in_another_process(board, POLLER, 50.0)
    assert board.since(0) == {COUNTER: 100.0, POLLER: 50.0}
    mark_in_another_process(board, COUNTER, 200.0)  # its own slot, moved on
    assert board.since(60) == {COUNTER: 200.0}


def test_once_full_a_new_client_is_dropped_and_a_known_one_kept():
    board = AskedBoard(slots=2)
    board.mark(COUNTER, 1.0)
    board.mark(POLLER, 1.0)
    board.mark("counter invented 1.0.0", 2.0)
    board.mark(COUNTER, 3.0)
    assert board.since(0) == {COUNTER: 3.0, POLLER: 1.0}


def test_a_process_marks_a_client_at_most_once_per_every():
    board = AskedBoard()
    seen = ClientsSeen(lambda clients: None, board, every=3600)
    seen.asked(COUNTER)
    first = seen.asked_since(0)[COUNTER]
    seen.asked(COUNTER)
    assert seen.asked_since(0) == {COUNTER: first}
