"""Helpers for tests that run the services as real processes."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from tests.image_root import image_env, in_image

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def env_file(path: Path) -> dict[str, str]:
    """The NAME=value lines of a dotenv file (compose's .env, kustomize's secrets .env), a value
    in shell quoting as compose reads it; comment lines skipped; {} if there is no file."""
    lines = path.read_text().splitlines() if path.is_file() else []
    found = {}
    for number, line in enumerate(lines, 1):
        if "=" in line and not line.lstrip().startswith("#"):
            name, value = line.split("=", 1)
            try:
                found[name.strip()] = " ".join(shlex.split(value))
            except ValueError as exc:  # an unclosed quote
                raise ValueError(f"{path}:{number}: {exc}") from None
    return found


def setting(name: str) -> str | None:
    """A setting from the environment, else from .env (where scripts/airgap-images keeps
    PYTHON_IMAGE, REDIS_IMAGE and PIP_INSTALL_FLAGS for a new shell), else None."""
    return os.environ.get(name) or env_file(ROOT / ".env").get(name) or None


# The Redis-protocol image for testcontainers: the data tier's (valkey/valkey, named once, in
# kustomize/base); where no registry is reachable, the one scripts/airgap-images made (from the
# environment or .env).
def data_tier_image() -> str:
    kustomization = (ROOT / "kustomize/base/kustomization.yaml").read_text()
    tag = re.search(r"name: valkey/valkey\n\s+newTag: ([^\s@]+)", kustomization).group(1)
    return f"valkey/valkey:{tag}"


REDIS_IMAGE = setting("REDIS_IMAGE") or data_tier_image()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    check: Callable[[], object],
    timeout: float = 15.0,
    interval: float = 0.05,
    what: str = "condition",
):
    """Poll check() until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last one
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}: {last_error}")


# SERVER_IMAGE=microservices/server-pypy:<version>: the server's commands run as that image
# ships them (its interpreter, its /opt/venv, its ENV), not from .venv: `make test` runs the
# server's tests again so, under PyPy. The other services run from .venv either way.
SERVER_IMAGE = os.environ.get("SERVER_IMAGE") or None
SERVER_COMMANDS = ("microservices-server", "microservices-await-redis", "gunicorn")


def command_line(command: str, args: list[str]) -> tuple[list[str], dict[str, str]]:
    """How to run one of our commands: its argv and the environment under the test's own."""
    if SERVER_IMAGE and command in SERVER_COMMANDS:
        argv = in_image(SERVER_IMAGE, [f"/opt/venv/bin/{command}", *args])
        # No warm-up (the PyPy image sets 15 s) but where a test asks for one (test_warmup.py).
        return argv, {**image_env(SERVER_IMAGE), "WARMUP_SECONDS": "0"}
    return [str(BIN / command), *args], dict(os.environ)


def server_on_pypy() -> bool:
    """Whether the server under test runs on PyPy (SERVER_IMAGE=microservices/server-pypy)."""
    code = "import platform; print(platform.python_implementation())"
    run = subprocess.run(server_python("-c", code), capture_output=True, text=True, check=True)
    return run.stdout.strip() == "PyPy"


def server_python(*args: str) -> list[str]:
    """A command line running the server's interpreter with args: the image's (its /opt/venv)
    with SERVER_IMAGE, else this one."""
    if SERVER_IMAGE:
        return in_image(SERVER_IMAGE, ["/opt/venv/bin/python", *args])
    return [sys.executable, *args]


class Service:
    """One of our commands running as a real process, its stdout collected line by line."""

    def __init__(self, command: str, env: dict[str, str], args: list[str] | None = None):
        self.lines: list[str] = []
        argv, base_env = command_line(command, args or [])
        full_env = {k: v for k, v in base_env.items() if not k.startswith("LOG_")}
        full_env.update({"PYTHONUNBUFFERED": "1", "HEARTBEAT_FILE": "", **env})
        self.proc = subprocess.Popen(
            argv,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def events(self, name: str) -> list[dict]:
        """The JSON log lines (LOG_FORMAT=json) whose event is `name`."""
        found = []
        for line in list(self.lines):
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("event") == name:
                    found.append(entry)
        return found

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def wait(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Server(Service):
    """microservices-server (gunicorn) on a free port."""

    def __init__(self, redis_url: str, port: int | None = None, **env: str):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            "microservices-server",
            {
                "PORT": str(self.port),
                "REDIS_URL": redis_url,
                "API_KEY": "test-key",
                "GRACEFUL_TIMEOUT": "10",
                **env,
            },
        )

    def wait_ready(self, timeout: float = 20.0) -> Server:
        wait_for(
            lambda: requests.get(self.url + "/probe/liveness", timeout=1).ok,
            timeout,
            what=f"server on {self.url}\n{self.output}",
        )
        return self

    def count(self) -> int:
        return requests.get(self.url + "/", timeout=5).json()["count"]


def post_concurrently(url: str, increment: int, clients: int, each: int) -> list[int]:
    """`clients` sessions at once, each POSTing `increment` `each` times: every status."""

    def post(_) -> list[int]:
        with requests.Session() as session:
            return [
                session.post(url + "/", json={"increment": increment}, timeout=10).status_code
                for _ in range(each)
            ]

    with ThreadPoolExecutor(clients) as pool:
        return [status for batch in pool.map(post, range(clients)) for status in batch]
