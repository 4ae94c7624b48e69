"""The worker heartbeat: a file the loop touches, and the liveness check that reads it.

The counter and the poller have no HTTP port, so Kubernetes cannot probe them over HTTP.
Their loop touches HEARTBEAT_FILE on every tick; the liveness probe runs

    python -m microservices_common.heartbeat --max-age 30

which exits 1 when the file is older than that, so a hung loop gets its container restarted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

from .config import env_str

DEFAULT_FILE = "/tmp/heartbeat"  # noqa: S108 - /tmp is an emptyDir/tmpfs in our manifests


class Heartbeat:
    def __init__(self, path: str | None):
        self.path = Path(path) if path else None

    def beat(self) -> None:
        if self.path is None:
            return
        # A read-only or missing /tmp must not stop the loop; the probe will say so.
        with contextlib.suppress(OSError):
            self.path.touch()


def age(path: str) -> float:
    return time.time() - os.stat(path).st_mtime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Exit 0 if the heartbeat file is fresh.")
    parser.add_argument("--file", default=env_str("HEARTBEAT_FILE", DEFAULT_FILE))
    parser.add_argument("--max-age", type=float, default=30.0, help="seconds")
    args = parser.parse_args(argv)
    try:
        seconds = age(args.file)
    except OSError as exc:
        print(f"heartbeat: {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    if seconds > args.max_age:
        print(
            f"heartbeat: {args.file} is {seconds:.0f}s old (max {args.max_age:.0f}s)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
