"""The fault board shared by a pod's workers (fault_board.py), between real processes: a
reader never sees a record half-written, and a writer that dies holding the lock stops
nobody."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import signal
import time

from microservices_server.fault_board import FaultBoard

WRITTEN = {(0.25, 503.0), (0.75, 500.0)}


def keep_writing(board: FaultBoard, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for ratio, status in WRITTEN:
            board.swap("errors", 600, ratio, status)


def test_a_reader_sees_only_what_a_writer_wrote_whole():
    board = FaultBoard()
    board.swap("errors", 600, 0.25, 503.0)
    writers = [
        multiprocessing.get_context("fork").Process(target=keep_writing, args=(board, 2))
        for _ in range(2)
    ]
    for writer in writers:
        writer.start()
    seen: dict[tuple[float, float], int] = {}
    off = reads = 0
    while any(writer.is_alive() for writer in writers):
        state = board.read("errors")
        reads += 1
        if state.on:
            pair = (state.first, state.second)
            seen[pair] = seen.get(pair, 0) + 1
        else:
            off += 1
    for writer in writers:
        writer.join()
        assert writer.exitcode == 0
    assert reads > 10_000
    assert set(seen) <= WRITTEN, f"torn reads: {seen}"
    # A reader gives up (reads "off") only after 100 tries against writers that never stop.
    assert off < reads // 10


def die_holding_the_lock(board: FaultBoard) -> None:
    fcntl.lockf(board._shared.fd, fcntl.LOCK_EX)
    board._memory[0] |= 1  # half-way through a write: the sequence number odd
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_writer_that_died_half_way_blocks_no_one():
    board = FaultBoard()
    child = multiprocessing.get_context("fork").Process(target=die_holding_the_lock, args=(board,))
    child.start()
    child.join()
    assert child.exitcode == -signal.SIGKILL
    assert board.read("readiness").on is False  # odd: no reader trusts the record
    previous = board.swap("readiness", 60)  # the kernel released the dead writer's lock
    assert previous.on is False
    assert board.read("readiness").on is True
    assert board.swap("readiness", 0).on is True
    assert board.read("readiness").on is False
