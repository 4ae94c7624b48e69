"""The poller's optional output file: each count it reads, appended as one line.

OUTPUT_FILE (unset: no file) names the file; each count goes in as `<UTC time> Current
counter: N`, written and closed at once, so that a reader following the file (the log-shipping
sidecar of lesson 15, `tail -F`) sees every line as it comes. Past OUTPUT_MAX_BYTES (1 MiB) the
file is renamed to OUTPUT_FILE.1 (replacing the one before) and a new one begun, so a volume of
twice that size never fills. A file that cannot be opened stops the poller at start (exit 2,
naming OUTPUT_FILE); a write that fails later is logged and the loop goes on.
"""

from __future__ import annotations

import logging
import os
import time

from microservices_common.config import ConfigError, env_int, env_str
from microservices_common.logs import log_event


class OutputFile:
    def __init__(self, path: str, max_bytes: int, log: logging.Logger):
        self.path = path
        self.max_bytes = max_bytes
        self.log = log
        self._failing = False

    @classmethod
    def from_env(cls, log: logging.Logger) -> OutputFile | None:
        path = env_str("OUTPUT_FILE")
        if path is None:
            return None
        max_bytes = env_int("OUTPUT_MAX_BYTES", 1024 * 1024, 1024, 2**40)
        try:
            with open(path, "a", encoding="utf-8"):
                pass
        except OSError as exc:
            raise ConfigError("OUTPUT_FILE", path, f"cannot append to it: {exc.strerror}") from None
        return cls(path, max_bytes, log)

    def append(self, text: str) -> None:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {text}\n"
        try:
            if self._size() + len(line) > self.max_bytes:
                os.replace(self.path, self.path + ".1")
            with open(self.path, "a", encoding="utf-8") as file:
                file.write(line)
        except OSError as exc:
            if not self._failing:
                log_event(
                    self.log,
                    "output_failed",
                    f"could not write to {self.path} (OUTPUT_FILE): {exc.strerror}; "
                    "counts go on in the log",
                    logging.WARNING,
                )
            self._failing = True
            return
        if self._failing:
            log_event(self.log, "output_resumed", f"writing to {self.path} again")
        self._failing = False

    def _size(self) -> int:
        try:
            return os.path.getsize(self.path)
        except FileNotFoundError:
            return 0  # removed by someone else: begin a new one
