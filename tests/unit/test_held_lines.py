"""The stdout handler's held lines (the server's access log): written late, but never lost on a
normal exit, never after a line made later, never cut into by another process' lines, and
reading exactly as a record's would."""

import io
import json
import logging
import os
import subprocess
import sys
import threading
import time

import pytest
from microservices_common.logs import JsonFormatter, StdoutHandler, TextFormatter

from tests.support import wait_for

ACCESS = "gunicorn.access"


class Writes(io.StringIO):
    """A stream that remembers each write: what a reader of the pipe would get at once."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def handler(hold_seconds: float = StdoutHandler.HOLD_SECONDS) -> tuple[StdoutHandler, Writes]:
    stream = Writes()
    held = StdoutHandler(stream)
    held.setFormatter(TextFormatter("server"))
    held.HOLD_SECONDS = hold_seconds
    return held, stream


def record(level: int, message: str, name: str = "server") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


@pytest.mark.parametrize("formatter", [TextFormatter("server"), JsonFormatter("server")])
def test_a_held_line_reads_as_the_record_would(formatter):
    line = record(logging.INFO, '127.0.0.1 "POST / HTTP/1.1" 200 13 0.8ms', ACCESS)
    assert formatter.info_line(line.created, line.msecs, ACCESS, line.msg) == formatter.format(line)


def test_held_lines_are_written_together():
    held, stream = handler(hold_seconds=60)
    for n in range(3):
        held.hold_info(ACCESS, f"request {n}")
    assert stream.writes == [], "held, not written one by one"
    held.flush()
    assert len(stream.writes) == 1
    assert [line.split(" ", 3)[3] for line in stream.getvalue().splitlines()] == [
        "server request 0", "server request 1", "server request 2",
    ]  # fmt: skip


def test_held_lines_are_written_soon_without_anything_after_them():
    held, stream = handler()
    held.hold_info(ACCESS, "the last request for a while")
    wait_for(lambda: stream.writes, timeout=5, what="the flusher")
    assert stream.getvalue().endswith(" INFO server the last request for a while\n")


def test_a_record_writes_what_was_held_first_and_at_once():
    held, stream = handler(hold_seconds=60)
    held.hold_info(ACCESS, "first")
    held.hold_info(ACCESS, "second")
    held.handle(record(logging.WARNING, "Redis is gone"))
    assert len(stream.writes) == 1, "held lines and the warning in one write, at once"
    lines = stream.getvalue().splitlines()
    assert [line.split(" ", 3)[2:] for line in lines] == [
        ["INFO", "server first"], ["INFO", "server second"], ["WARNING", "server Redis is gone"]
    ]  # fmt: skip


def test_a_full_hold_is_written_at_once():
    held, stream = handler(hold_seconds=60)
    for n in range(held.HOLD_LINES - 1):
        held.hold_info(ACCESS, f"request {n}")
    assert stream.writes == []
    held.hold_info(ACCESS, "the last one it holds")
    assert len(stream.getvalue().splitlines()) == held.HOLD_LINES


def test_a_stdout_that_fails_is_reported_not_raised_into_the_request(capsys):
    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    held = StdoutHandler(Broken())
    held.setFormatter(TextFormatter("server"))
    held.HOLD_SECONDS = 60
    for n in range(held.HOLD_LINES):  # the last one writes them: in the request's own call
        held.hold_info(ACCESS, f"request {n}")
    assert "--- Logging error ---" in capsys.readouterr().err


# Two processes, one pipe: each holds lines long enough that a batch is several pipe buffers.
WRITER = """
import logging, logging.config, sys
from microservices_common.logs import logging_config
logging.config.dictConfig(logging_config("server"))
[stdout] = logging.getLogger("gunicorn.access").handlers
stdout.HOLD_SECONDS = 60
for n in range(2000):
    stdout.hold_info("gunicorn.access", f"{sys.argv[1]} {n} " + "x" * 150)
"""


def test_the_lines_of_processes_sharing_a_slowly_read_pipe_stay_whole():
    """gunicorn's workers share the container's stdout, a pipe; a log collector that falls
    behind fills it, and a write larger than the pipe's atomic size would then be cut into."""
    read_end, write_end = os.pipe()
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, name],
            stdout=write_end,
            env={"LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        for name in ("first", "second")
    ]
    os.close(write_end)
    out = bytearray()

    def read_slowly() -> None:  # a collector that falls behind
        while chunk := os.read(read_end, 512):
            out.extend(chunk)
            time.sleep(0.0005)

    reader = threading.Thread(target=read_slowly)
    reader.start()
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    reader.join(timeout=120)
    os.close(read_end)
    messages = [json.loads(line)["message"] for line in out.decode().splitlines()]
    for name in ("first", "second"):
        mine = [m.split(" ", 2)[1] for m in messages if m.startswith(name + " ")]
        assert mine == [str(n) for n in range(2000)]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_held_lines_are_written_when_the_process_exits(log_format):
    """As gunicorn's worker ends (logging flushes every handler at exit), long before the
    flusher would have."""
    program = (
        "import logging, logging.config, sys\n"
        "from microservices_common.logs import logging_config\n"
        "logging.config.dictConfig(logging_config('server'))\n"
        "[stdout] = logging.getLogger('gunicorn.access').handlers\n"
        "stdout.HOLD_SECONDS = 60\n"
        "for n in range(3): stdout.hold_info('gunicorn.access', f'request {n}')\n"
        "sys.exit(0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], env={"LOG_FORMAT": log_format},
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    if log_format == "json":
        lines = [json.loads(line)["message"] for line in lines]
    assert [line[-9:] for line in lines] == ["request 0", "request 1", "request 2"], done.stderr


def test_a_forked_child_neither_writes_its_parents_lines_nor_keeps_them_waiting():
    """What the parent held is its own; the child's lines need a flusher of its own."""
    held, stream = handler(hold_seconds=60)
    held.hold_info(ACCESS, "the parent's")  # starts the parent's flusher, which waits 60 s
    held.HOLD_SECONDS = 0.05
    child = os.fork()
    if child == 0:  # the child reports through its exit code
        held.hold_info(ACCESS, "the child's")
        deadline = time.monotonic() + 5
        while not stream.writes and time.monotonic() < deadline:
            time.sleep(0.01)
        os._exit(0 if stream.getvalue().endswith(" server the child's\n") else 1)
    assert os.waitpid(child, 0)[1] == 0
