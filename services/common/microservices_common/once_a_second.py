"""A text that depends only on the current second, made once a second.

The server writes a Date header and a log line per request, thousands a second; formatting a
time (strftime, email.utils.formatdate) costs 1-2 us each time, for the same text all second.
"""

from __future__ import annotations

from collections.abc import Callable


class OnceASecond:
    """`make(second)` for the second a time falls in, remembered until the next one comes.

    One tuple holds the second and its text, so that threads sharing it (gunicorn's gthread
    worker) can never read one second's text under another's number."""

    def __init__(self, make: Callable[[int], str]) -> None:
        self.make = make
        self._latest: tuple[int, str] = (-1, "")

    def __call__(self, timestamp: float) -> str:
        second = int(timestamp)
        latest = self._latest
        if latest[0] != second:
            latest = self._latest = (second, self.make(second))
        return latest[1]
