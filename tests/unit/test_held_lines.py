"""The stdout handler's held lines (the server's access log): written late, but never lost on a
normal exit, never after a line made later, and reading exactly as a record's would."""

import io
import json
import logging
import subprocess
import sys

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
    for created in (1_700_000_000.25, 1_700_000_000.999, 1_699_999_000.0):
        line = record(logging.INFO, '127.0.0.1 "POST / HTTP/1.1" 200 13 0.8ms', ACCESS)
        line.created, line.msecs = created, int((created % 1) * 1000)
        assert formatter.info_line(created, ACCESS, line.msg) == formatter.format(line)


def test_held_lines_are_written_together_soon_without_anything_after_them():
    held, stream = handler()
    for n in range(3):
        held.hold_info(ACCESS, f"request {n}")
    assert stream.writes == [], "held, not written one by one"
    wait_for(lambda: stream.writes, timeout=2, what="the flusher")
    assert len(stream.writes) == 1
    assert [line.rsplit(" ", 2)[-2:] for line in stream.getvalue().splitlines()] == [
        ["request", "0"], ["request", "1"], ["request", "2"],
    ]  # fmt: skip


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
